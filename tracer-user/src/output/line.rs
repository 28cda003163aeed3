//! The schema's lines as types: one struct per line type under [`Line`],
//! tagged by `type`. Every line the agent writes is one of these; the JSON
//! is their serialization, docs/schema-v1.json is their schema (derived by
//! [`crate::output::schema`]) and `--format pretty` renders them
//! ([`crate::output::pretty`]). docs/SCHEMA.md explains every field.

use std::borrow::Cow;
use std::net::IpAddr;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Serialize, Serializer};

pub use super::report::{CaptureReport, FindingCounts, PcapPayload, PcapReport};
use super::{fields::EventFields, schema};
use crate::{
    certcheck::Problem,
    diagnose::{
        finding::{Cause, Class, Confidence, Evidence, EvidenceKind, HttpFacts, TlsFacts},
        timing::Timing,
    },
    source::event::Flow,
};

pub use crate::diagnose::finding::SCHEMA_VERSION;

/// One output line.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Start(Start),
    Finding(Box<FindingLine>),
    Event(EventLine),
    Inconclusive(Inconclusive),
    CertCheck(CertCheckLine),
    Loss(Loss),
    Summary(Box<Summary>),
}

/// When a line was written, or what it reports happened: RFC 3339 in UTC
/// with microseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Timestamp(pub String);

impl Timestamp {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for Timestamp {
    fn from(s: String) -> Self {
        Timestamp(s)
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "RFC 3339 in UTC with microseconds",
            "type": "string",
            "pattern": schema::TIMESTAMP_PATTERN,
        })
    }
}

/// A finding's `class`: the Cloudflare error the edge shows (`520` to
/// `526`), or for `origin_error_status` the origin's own status (`502`).
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct ClassCode(pub String);

impl JsonSchema for ClassCode {
    fn schema_name() -> Cow<'static, str> {
        "Class".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let cloudflare: Vec<&str> = Class::ALL.iter().map(|c| c.as_str()).collect();
        json_schema!({
            "description": format!(
                "the Cloudflare error the edge shows ({}), or the origin's own 5xx status (origin_error_status)",
                cloudflare.join(", ")
            ),
            "type": "string",
            "pattern": "^5[0-9]{2}$",
        })
    }
}

/// Where the events came from: the `source` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The live agent's kernel programs.
    Kernel,
    /// `analyze`: a packet capture.
    Capture,
}

/// How the TC programs were attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
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

/// An interface the TC programs are attached to.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Interface {
    #[schemars(length(min = 1))]
    pub name: String,
    #[schemars(range(min = 1))]
    pub ifindex: u32,
}

/// How many edge prefixes are watched.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EdgePrefixes {
    pub ipv4: usize,
    pub ipv6: usize,
}

/// Whether a kernel hook is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProbeStatus {
    Attached,
    Skipped,
}

/// One kernel hook and whether it is in use.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(extend(
    "if" = { "properties": { "status": { "const": "skipped" } } },
    "then" = { "description": "a skipped probe says why", "required": ["reason"] },
))]
pub struct ProbeLine {
    #[schemars(length(min = 1))]
    pub name: String,
    pub status: ProbeStatus,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub reason: Option<String>,
    /// What an attached probe cannot see on this kernel, and which findings
    /// are lowered for it (e.g. `skb:kfree_skb` before Linux 5.17).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String", length(min = 1))]
    pub limits: Option<String>,
    /// Instructions the kernel's verifier processed for its program (Linux
    /// 5.16 and later report it; the limit is 1,000,000).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32", range(min = 1))]
    pub verified_insns: Option<u32>,
}

/// Written once everything is attached (or the capture opened).
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(extend(
    "if" = { "required": ["source"], "properties": { "source": { "const": "capture" } } },
    "then" = {
        "description": "analyze: the capture opened, nothing attached",
        "required": ["capture_file"],
        "properties": {
            "attach_mode": { "const": "none" },
            "interfaces": { "maxItems": 0 },
            "probes": { "maxItems": 0 },
            "stale_removed": { "maxItems": 0 }
        }
    },
    "else" = { "properties": { "attach_mode": { "enum": ["tcx", "netlink"] } } },
))]
pub struct Start {
    #[schemars(schema_with = "schema::version")]
    pub schema_version: u32,
    pub ts: Timestamp,
    /// Only `analyze` writes it (`capture`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Source")]
    pub source: Option<Source>,
    /// `analyze`: the capture read.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String", length(min = 1))]
    pub capture_file: Option<String>,
    /// origin-tracer's version.
    #[schemars(length(min = 1))]
    pub version: &'static str,
    /// The running kernel's release.
    #[schemars(length(min = 1))]
    pub kernel: String,
    pub attach_mode: AttachMode,
    pub interfaces: Vec<Interface>,
    /// The origin ports watched.
    #[schemars(inner(range(min = 1)))]
    pub ports: Vec<u16>,
    pub edge_prefixes: EdgePrefixes,
    /// `--all-sources`: every source address is treated as the edge.
    pub all_sources: bool,
    pub syn_timeout_ms: u64,
    pub response_timeout_ms: u64,
    /// `--ack-timeout`: how long a request may go unacknowledged.
    pub ack_timeout_ms: u64,
    pub probes: Vec<ProbeLine>,
    /// Leftovers of an earlier run that were removed.
    pub stale_removed: Vec<String>,
}

/// One failed edge connection.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(transform = schema::finding_rules)]
pub struct FindingLine {
    #[schemars(schema_with = "schema::version")]
    pub schema_version: u32,
    pub ts: Timestamp,
    pub source: Source,
    pub class: ClassCode,
    pub cause: Cause,
    pub confidence: Confidence,
    pub flow: Flow,
    /// `origin_error_status` only: how many responses with this status on
    /// this port the line stands for (at most one line per status and port
    /// per 10 s; `flow` is an example); exact totals are in the summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u64", range(min = 1))]
    pub count: Option<u64>,
    #[schemars(length(min = 1))]
    pub evidence: Vec<Evidence>,
    /// What to check.
    #[schemars(length(min = 1))]
    pub hint: String,
    /// What the TLS handshake said (findings about TLS, and others over TLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "TlsFacts")]
    pub tls: Option<TlsFacts>,
    /// What the HTTP exchange said (findings about HTTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "HttpFacts")]
    pub http: Option<HttpFacts>,
    /// `no_listener`, live only: the sockets that do listen on the port
    /// (any address), as `ss -tlnp` shows them, read when the line was
    /// written; empty: nothing listens on the port.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<Listener>")]
    pub listeners: Option<Vec<Listener>>,
}

/// A socket listening on the port of a `no_listener` finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Listener {
    /// Its local address (`0.0.0.0` or `::`: every address).
    pub address: std::net::IpAddr,
    /// The command name of a process holding it (from /proc), when found.
    pub process: Option<String>,
    pub pid: Option<u32>,
}

/// A raw observation (`--events all`): the evidence item's fields, and the
/// flow unless the observation is host-wide.
#[derive(Debug)]
pub struct EventLine {
    pub schema_version: u32,
    pub ts: Timestamp,
    pub source: Source,
    pub what: EvidenceKind,
    pub flow: Option<Flow>,
}

/// A raw observation (`--events all`): an evidence item's fields, and the
/// flow unless the observation is host-wide.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "EventLine", transform = schema::event_rules)]
struct EventLineFields<'a> {
    #[schemars(schema_with = "schema::version")]
    schema_version: u32,
    ts: &'a Timestamp,
    source: Source,
    #[serde(flatten)]
    what: EventFields<'a>,
    /// Absent on host-wide observations.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Flow")]
    flow: Option<&'a Flow>,
}

impl Serialize for EventLine {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        EventLineFields {
            schema_version: self.schema_version,
            ts: &self.ts,
            source: self.source,
            what: (&self.what).into(),
            flow: self.flow.as_ref(),
        }
        .serialize(s)
    }
}

impl JsonSchema for EventLine {
    fn schema_name() -> Cow<'static, str> {
        "EventLine".into()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        EventLineFields::json_schema(g)
    }
}

/// `analyze`: a connection still waiting when the capture ended, which did
/// not cover the time it needed (`--syn-timeout`, or `--response-timeout`
/// after its request; the reason names which).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Inconclusive {
    #[schemars(schema_with = "schema::version")]
    pub schema_version: u32,
    pub ts: Timestamp,
    #[schemars(extend("const" = "capture"))]
    pub source: Source,
    pub flow: Flow,
    pub watched_ms: u64,
    pub needed_ms: u64,
    #[schemars(length(min = 1))]
    pub evidence: Vec<Evidence>,
    #[schemars(length(min = 1))]
    pub reason: String,
}

/// Ring-buffer records the kernel could not hand over.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Loss {
    #[schemars(schema_with = "schema::version")]
    pub schema_version: u32,
    pub ts: Timestamp,
    pub events_lost: u64,
    pub events_lost_total: u64,
}

/// `--check-certs`: one TLS handshake to the origin for an SNI seen, and
/// whether its certificate would pass Full (strict) validation.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(extend(
    "if" = { "required": ["ok"], "properties": { "ok": { "const": true } } },
    "then" = { "description": "ok: no problem found", "properties": { "problems": { "maxItems": 0 } } },
    "else" = { "description": "not ok: a problem named", "properties": { "problems": { "minItems": 1 } } },
    "allOf" = [
        {
            "description": "negative once expired",
            "if": {
                "required": ["days_until_expiry"],
                "properties": { "days_until_expiry": { "type": "integer", "maximum": -1 } }
            },
            "then": { "properties": { "problems": { "contains": { "const": "expired" } } } }
        },
        {
            "description": "an expired certificate has no day left",
            "if": { "required": ["problems"], "properties": { "problems": { "contains": { "const": "expired" } } } },
            "then": { "properties": { "days_until_expiry": { "maximum": 0 } } }
        }
    ],
))]
pub struct CertCheckLine {
    #[schemars(schema_with = "schema::version")]
    pub schema_version: u32,
    pub ts: Timestamp,
    #[schemars(length(min = 1))]
    pub sni: String,
    #[schemars(schema_with = "schema::ip_address")]
    pub addr: IpAddr,
    #[schemars(range(min = 1))]
    pub port: u16,
    pub ok: bool,
    #[schemars(extend("uniqueItems" = true))]
    pub problems: Vec<Problem>,
    pub subject: Option<String>,
    pub issuer: Option<String>,
    /// The leaf's DNS names.
    #[schemars(inner(length(min = 1)))]
    pub san: Vec<String>,
    #[schemars(pattern(schema::DATE_TIME_PATTERN))]
    pub not_before: Option<String>,
    #[schemars(pattern(schema::DATE_TIME_PATTERN))]
    pub not_after: Option<String>,
    /// Whole days until notAfter, rounded down: negative once expired.
    pub days_until_expiry: Option<i64>,
    /// Why the handshake failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String", length(min = 1))]
    pub error: Option<String>,
}

/// What the kernel programs counted themselves (quiet connections).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct InKernel {
    /// Healthy handshakes counted in the kernel (part of
    /// `healthy_handshakes`).
    pub handshakes: u64,
    /// Healthy requests counted there (part of `healthy_requests`).
    pub requests: u64,
    /// Of them, requests over TLS (part of `encrypted_responses`).
    pub tls_requests: u64,
    /// Quiet connections found to speak HTTP/2 (part of
    /// `per_request_off.http2`).
    pub http2_connections: u64,
    /// Connections handed to userspace because something about them might
    /// be a failure (each sent what the kernel had kept of it once): the
    /// sum of `handed_over_by`.
    pub handed_over: u64,
    pub handed_over_by: HandedOverBy,
    /// Connections the kernel's flow map forgot because it was full
    /// (`tracer_ebpf::FLOW_CAPACITY`, 65,536, under a SYN flood): neither
    /// closed nor still there at the end. Their later packets were not
    /// followed.
    pub flows_evicted: u64,
}

/// Why the kernel handed connections over, one count per connection (its
/// first reason).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct HandedOverBy {
    /// A RST from either side.
    pub reset: u64,
    /// The edge sent its SYN again.
    pub syn_resent: u64,
    /// The origin sent its SYN-ACK again.
    pub synack_resent: u64,
    /// An ICMP unreachable about one of its segments.
    pub icmp: u64,
    /// The kernel sent or took a reset, or resent the SYN-ACK (its TCP
    /// tracepoints).
    pub tcp_event: u64,
    /// The kernel dropped one of its segments.
    pub drop: u64,
    /// A FIN while a request waited, or before the handshake completed.
    pub closed_waiting: u64,
    /// A payload segment that may be a failure: a 1xx or 5xx status, bytes
    /// that are no HTTP, a longer head, a request sent again, a TLS record
    /// that fits no rule (an alert, a `HelloRetryRequest`, a split header).
    pub payload: u64,
    /// A handshake or a request still waiting when the agent swept the
    /// flow map, shortly before its timeout.
    pub overdue: u64,
}

/// The last line.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(extend(
    "if" = { "required": ["source"], "properties": { "source": { "const": "capture" } } },
    "then" = { "required": ["capture"] },
))]
pub struct Summary {
    #[schemars(schema_with = "schema::version")]
    pub schema_version: u32,
    pub ts: Timestamp,
    /// Only `analyze` writes it (`capture`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Source")]
    pub source: Option<Source>,
    pub duration_ms: u64,
    pub findings: FindingCounts,
    pub findings_total: u64,
    /// Handshakes that completed without a finding (those counted in the
    /// kernel included).
    pub healthy_handshakes: u64,
    /// Requests answered with a 2xx-4xx status, or over TLS answered (those
    /// counted in the kernel included).
    pub healthy_requests: u64,
    /// The live agent only: what the kernel counted itself, without a
    /// single event to userspace.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "InKernel")]
    pub in_kernel: Option<InKernel>,
    pub events_received: u64,
    /// Packet snapshots read (the first payload bytes of each turn of the
    /// connections handed to userspace).
    pub snapshots_received: u64,
    pub events_lost: u64,
    pub kernel_read_errors: u64,
    pub flows_untracked: u64,
    pub flows_evicted: u64,
    pub pending_at_exit: u64,
    pub lines_dropped: u64,
    pub timing: Timing,
    /// The origin's own 5xx responses over plain HTTP by status, every one
    /// (their `origin_error_status` lines are limited; `findings` counts
    /// them all too).
    pub origin_statuses: std::collections::BTreeMap<String, u64>,
    /// Responses inside TLS, whose status cannot be seen: 5xx among them
    /// are not counted.
    pub encrypted_responses: u64,
    /// Connections whose requests are not followed one by one (their
    /// handshakes are): no 520/522/524 is named on them.
    pub per_request_off: crate::diagnose::PerRequestOff,
    /// `--write-pcap` only: the evidence file written.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "PcapReport")]
    pub pcap: Option<PcapReport>,
    /// `analyze` only: the capture read.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "CaptureReport")]
    pub capture: Option<CaptureReport>,
}
