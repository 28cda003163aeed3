//! The schema's lines as types: one struct per line type under [`Line`],
//! tagged by `type`. Every line the agent writes is one of these; the JSON
//! is their serialization and `--format pretty` renders them
//! ([`crate::output::pretty`]). docs/SCHEMA.md explains every field.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{ser::SerializeMap, Serialize, Serializer};

use crate::{
    diagnose::{
        finding::{Cause, Class, Confidence, Evidence, EvidenceKind, HttpFacts, TlsFacts},
        timing::Timing,
    },
    source::event::Flow,
};

pub use crate::diagnose::finding::SCHEMA_VERSION;

/// One output line.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Start(Start),
    Finding(FindingLine),
    Event(EventLine),
    Inconclusive(Inconclusive),
    CertCheck(CertCheckLine),
    Loss(Loss),
    Summary(Summary),
}

/// Where the events came from: the `source` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The live agent's kernel programs.
    Kernel,
    /// `analyze`: a packet capture.
    Capture,
}

/// How the TC programs were attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// BPF links: nothing can outlive the agent.
    Tcx,
    /// clsact qdisc and tc filters, removed on exit.
    Netlink,
    /// `analyze`: nothing attached.
    None,
}

impl AttachMode {
    /// The schema's name.
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Tcx => "tcx",
            AttachMode::Netlink => "netlink",
            AttachMode::None => "none",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
}

#[derive(Debug, Serialize)]
pub struct EdgePrefixes {
    pub ipv4: usize,
    pub ipv6: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeStatus {
    Attached,
    Skipped,
}

#[derive(Debug, Serialize)]
pub struct ProbeLine {
    pub name: String,
    pub status: ProbeStatus,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Written once everything is attached (or the capture opened).
#[derive(Debug, Serialize)]
pub struct Start {
    pub schema_version: u32,
    pub ts: String,
    /// Only `analyze` writes it (`capture`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_file: Option<String>,
    pub version: &'static str,
    pub kernel: String,
    pub attach_mode: AttachMode,
    pub interfaces: Vec<Interface>,
    pub ports: Vec<u16>,
    pub edge_prefixes: EdgePrefixes,
    pub all_sources: bool,
    pub syn_timeout_ms: u64,
    pub response_timeout_ms: u64,
    pub probes: Vec<ProbeLine>,
    pub stale_removed: Vec<String>,
}

/// One failed edge connection.
#[derive(Debug, Serialize)]
pub struct FindingLine {
    pub schema_version: u32,
    pub ts: String,
    pub source: Source,
    pub class: Class,
    pub cause: Cause,
    pub confidence: Confidence,
    pub flow: Flow,
    pub evidence: Vec<Evidence>,
    pub hint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFacts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpFacts>,
}

/// A raw observation (`--events all`): the evidence item's fields, and the
/// flow unless the observation is host-wide.
#[derive(Debug)]
pub struct EventLine {
    pub schema_version: u32,
    pub ts: String,
    pub source: Source,
    pub what: EvidenceKind,
    pub flow: Option<Flow>,
}

impl Serialize for EventLine {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("schema_version", &self.schema_version)?;
        m.serialize_entry("ts", &self.ts)?;
        m.serialize_entry("source", &self.source)?;
        self.what.serialize_fields(&mut m)?;
        if let Some(flow) = &self.flow {
            m.serialize_entry("flow", flow)?;
        }
        m.end()
    }
}

/// `analyze`: a connection still waiting when the capture ended.
#[derive(Debug, Serialize)]
pub struct Inconclusive {
    pub schema_version: u32,
    pub ts: String,
    pub source: Source,
    pub flow: Flow,
    pub watched_ms: u64,
    pub needed_ms: u64,
    pub evidence: Vec<Evidence>,
    pub reason: String,
}

/// Ring-buffer records the kernel could not hand over.
#[derive(Debug, Serialize)]
pub struct Loss {
    pub schema_version: u32,
    pub ts: String,
    pub events_lost: u64,
    pub events_lost_total: u64,
}

/// `--check-certs`: the certificate the origin serves for one SNI.
#[derive(Debug, Serialize)]
pub struct CertCheckLine {
    pub schema_version: u32,
    pub ts: String,
    pub sni: String,
    pub addr: IpAddr,
    pub port: u16,
    pub ok: bool,
    pub problems: Vec<&'static str>,
    pub subject: Option<String>,
    pub issuer: Option<String>,
    pub san: Vec<String>,
    pub not_before: Option<String>,
    pub not_after: Option<String>,
    pub days_until_expiry: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Findings per cause, every cause present (0 when none).
#[derive(Debug, Default)]
pub struct FindingCounts(pub BTreeMap<Cause, u64>);

impl Serialize for FindingCounts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(Cause::ALL.len()))?;
        for cause in Cause::ALL {
            m.serialize_entry(&cause, &self.0.get(&cause).copied().unwrap_or(0))?;
        }
        m.end()
    }
}

/// `--write-pcap`: what the evidence file holds.
#[derive(Debug, Serialize)]
pub struct PcapReport {
    pub file: String,
    pub flows_written: u64,
    pub packets_written: u64,
    pub packets_not_written: u64,
    pub complete: bool,
}

/// `analyze`: what the capture held.
#[derive(Debug, Serialize)]
pub struct CaptureReport {
    pub file: String,
    pub packets: u64,
    pub packets_skipped: BTreeMap<&'static str, u64>,
    pub damage: Option<String>,
}

/// The last line.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub schema_version: u32,
    pub ts: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    pub duration_ms: u64,
    pub findings: FindingCounts,
    pub findings_total: u64,
    pub healthy_handshakes: u64,
    pub events_received: u64,
    pub events_lost: u64,
    pub kernel_read_errors: u64,
    pub flows_untracked: u64,
    pub flows_evicted: u64,
    pub pending_at_exit: u64,
    pub lines_dropped: u64,
    pub timing: Timing,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcap: Option<PcapReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureReport>,
}
