//! The parts of the `summary` line that report on one thing each: the
//! findings per cause, the `--write-pcap` evidence file and the capture
//! `analyze` read (the line itself is [`crate::output::line::Summary`]).

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Serialize, Serializer};

use super::schema;
use crate::{diagnose::finding::Cause, source::capture::decode::Skip};

/// Findings per cause, every cause present (0 when none).
#[derive(Debug, Default)]
pub struct FindingCounts(pub BTreeMap<Cause, u64>);

impl Serialize for FindingCounts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let all: BTreeMap<Cause, u64> = Cause::ALL
            .into_iter()
            .map(|c| (c, self.0.get(&c).copied().unwrap_or(0)))
            .collect();
        all.serialize(s)
    }
}

impl JsonSchema for FindingCounts {
    fn schema_name() -> Cow<'static, str> {
        "FindingCounts".into()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        schema::every_cause(g)
    }
}

/// `--write-pcap`: what the evidence file holds.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(extend(
    "if" = { "required": ["complete"], "properties": { "complete": { "const": true } } },
    "then" = {
        "description": "complete: everything was written",
        "properties": { "packets_not_written": { "const": 0 } }
    },
))]
pub struct PcapReport {
    #[schemars(length(min = 1))]
    pub file: String,
    pub flows_written: u64,
    pub packets_written: u64,
    pub packets_not_written: u64,
    pub complete: bool,
    pub payload: PcapPayload,
    /// Packets whose payload was masked or cut (`payload` `masked`).
    pub packets_masked: u64,
}

/// What the evidence file holds of the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PcapPayload {
    /// Plain HTTP without its secrets (credential headers, query strings,
    /// bodies); TLS as it was (encrypted).
    Masked,
    /// `--write-pcap-raw`: the bytes as captured, secrets included.
    Raw,
}

/// `analyze`: what the capture held.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CaptureReport {
    #[schemars(length(min = 1))]
    pub file: String,
    pub packets: u64,
    /// Frames not read, by why.
    #[schemars(schema_with = "schema::skipped")]
    pub packets_skipped: BTreeMap<Skip, u64>,
    /// Where and why the file ended early; null when it was whole.
    pub damage: Option<String>,
}
