//! What the diagnoser concludes: causes with their 52x class, confidence,
//! evidence timelines and the TLS / HTTP facts of a finding, as typed values
//! that serialize to the schema's fields (the lines themselves are in
//! [`crate::output::line`]).

use serde::{ser::SerializeMap, Serialize, Serializer};

use crate::source::event::{flags_name, icmp_name, Flow, FlowEventKind};

/// Version of the JSON output schema (docs/SCHEMA.md).
pub const SCHEMA_VERSION: u32 = 1;

/// A root cause the diagnoser can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    NoListener,
    FirewallReject,
    FirewallDrop,
    ListenOverflow,
    SynackUnacked,
    KernelDrop,
    SynUnanswered,
    TlsAlertFromOrigin,
    TlsClosedDuringHandshake,
    NotTls,
    EdgeRejectedCertificate,
    EdgeAbortedAfterCertificate,
    ResetAfterRequest,
    ClosedWithoutResponse,
    HeadersTooLarge,
    MalformedResponse,
    ResponseTimeout,
}

/// The Cloudflare error the edge shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Class {
    /// Unknown error: the origin answered with something unexpected.
    #[serde(rename = "520")]
    Unknown,
    /// Web server is down: the connection was refused.
    #[serde(rename = "521")]
    Down,
    /// Connection timed out: the handshake did not complete.
    #[serde(rename = "522")]
    TimedOut,
    /// A timeout occurred: no response in time.
    #[serde(rename = "524")]
    Timeout,
    /// SSL handshake failed.
    #[serde(rename = "525")]
    HandshakeFailed,
    /// Invalid SSL certificate.
    #[serde(rename = "526")]
    InvalidCertificate,
}

impl Class {
    /// The status code, as the schema writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Unknown => "520",
            Class::Down => "521",
            Class::TimedOut => "522",
            Class::Timeout => "524",
            Class::HandshakeFailed => "525",
            Class::InvalidCertificate => "526",
        }
    }

    /// A TLS handshake or certificate failure (525, 526).
    pub fn is_tls(self) -> bool {
        matches!(self, Class::HandshakeFailed | Class::InvalidCertificate)
    }
}

impl Cause {
    pub const ALL: [Cause; 17] = [
        Cause::NoListener,
        Cause::FirewallReject,
        Cause::FirewallDrop,
        Cause::ListenOverflow,
        Cause::SynackUnacked,
        Cause::KernelDrop,
        Cause::SynUnanswered,
        Cause::TlsAlertFromOrigin,
        Cause::TlsClosedDuringHandshake,
        Cause::NotTls,
        Cause::EdgeRejectedCertificate,
        Cause::EdgeAbortedAfterCertificate,
        Cause::ResetAfterRequest,
        Cause::ClosedWithoutResponse,
        Cause::HeadersTooLarge,
        Cause::MalformedResponse,
        Cause::ResponseTimeout,
    ];

    /// The exact string of the output schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::NoListener => "no_listener",
            Cause::FirewallReject => "firewall_reject",
            Cause::FirewallDrop => "firewall_drop",
            Cause::ListenOverflow => "listen_overflow",
            Cause::SynackUnacked => "synack_unacked",
            Cause::KernelDrop => "kernel_drop",
            Cause::SynUnanswered => "syn_unanswered",
            Cause::TlsAlertFromOrigin => "tls_alert_from_origin",
            Cause::TlsClosedDuringHandshake => "tls_closed_during_handshake",
            Cause::NotTls => "not_tls",
            Cause::EdgeRejectedCertificate => "edge_rejected_certificate",
            Cause::EdgeAbortedAfterCertificate => "edge_aborted_after_certificate",
            Cause::ResetAfterRequest => "reset_after_request",
            Cause::ClosedWithoutResponse => "closed_without_response",
            Cause::HeadersTooLarge => "headers_too_large",
            Cause::MalformedResponse => "malformed_response",
            Cause::ResponseTimeout => "response_timeout",
        }
    }

    /// The Cloudflare error the edge shows.
    pub fn class(self) -> Class {
        match self {
            Cause::NoListener | Cause::FirewallReject => Class::Down,
            Cause::TlsAlertFromOrigin | Cause::TlsClosedDuringHandshake | Cause::NotTls => {
                Class::HandshakeFailed
            }
            Cause::EdgeRejectedCertificate | Cause::EdgeAbortedAfterCertificate => {
                Class::InvalidCertificate
            }
            Cause::ResetAfterRequest
            | Cause::ClosedWithoutResponse
            | Cause::HeadersTooLarge
            | Cause::MalformedResponse => Class::Unknown,
            Cause::ResponseTimeout => Class::Timeout,
            Cause::FirewallDrop
            | Cause::ListenOverflow
            | Cause::SynackUnacked
            | Cause::KernelDrop
            | Cause::SynUnanswered => Class::TimedOut,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    High,
    Medium,
    Low,
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::High => "high",
            Confidence::Medium => "medium",
            Confidence::Low => "low",
        }
    }
}

/// One item of a finding's evidence timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// Microseconds since the flow's first SYN.
    pub t_us: u64,
    pub what: EvidenceKind,
    /// Identical consecutive observations folded into this one.
    pub repeat: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvidenceKind {
    Flow(FlowEventKind),
    /// `TcpExtListenOverflows` rose by `count`; `queue` = accept queue of the
    /// listener on the flow's port, when it could be read.
    ListenOverflowCounter {
        count: u64,
        queue: Option<(u16, u32)>,
    },
    /// What the first payload bytes said (`client_hello_in`, `tls_alert_out` ...).
    Payload {
        event: &'static str,
        detail: String,
    },
}

impl EvidenceKind {
    /// The schema's `event` name.
    pub fn event(&self) -> &'static str {
        match self {
            EvidenceKind::Payload { event, .. } => event,
            EvidenceKind::ListenOverflowCounter { .. } => "listen_overflow_counter",
            EvidenceKind::Flow(kind) => kind.name(),
        }
    }

    /// Write `event` and its kind-specific fields into a map being
    /// serialized (an evidence item, or an `event` line).
    pub fn serialize_fields<M: SerializeMap>(&self, m: &mut M) -> Result<(), M::Error> {
        m.serialize_entry("event", self.event())?;
        match self {
            EvidenceKind::Payload { detail, .. } => m.serialize_entry("detail", detail)?,
            EvidenceKind::ListenOverflowCounter { count, queue } => {
                m.serialize_entry("count", count)?;
                if let Some((port, accept_queue)) = queue {
                    m.serialize_entry(
                        "queue",
                        &Queue {
                            port: *port,
                            accept_queue: *accept_queue,
                        },
                    )?;
                }
            }
            EvidenceKind::Flow(kind) => match kind {
                FlowEventKind::KernelDrop {
                    reason,
                    outbound,
                    tcp_flags,
                } => {
                    m.serialize_entry("reason", reason)?;
                    m.serialize_entry("direction", if *outbound { "out" } else { "in" })?;
                    m.serialize_entry("segment", &flags_name(*tcp_flags))?;
                }
                FlowEventKind::KernelSendReset {
                    reason: Some(reason),
                } => m.serialize_entry("reason", reason)?,
                FlowEventKind::IcmpUnreachOut {
                    v6,
                    icmp_type,
                    code,
                } => m.serialize_entry(
                    "icmp",
                    &Icmp {
                        r#type: *icmp_type,
                        code: *code,
                        name: icmp_name(*v6, *code),
                    },
                )?,
                FlowEventKind::StateChange { from, to } => {
                    m.serialize_entry("from", from)?;
                    m.serialize_entry("to", to)?;
                }
                _ => {}
            },
        }
        Ok(())
    }
}

/// The listener whose accept queue overflowed.
#[derive(Serialize)]
struct Queue {
    port: u16,
    accept_queue: u32,
}

/// An ICMP unreachable the origin sent.
#[derive(Serialize)]
struct Icmp {
    r#type: u8,
    code: u8,
    name: &'static str,
}

impl Serialize for Evidence {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("t_us", &self.t_us)?;
        self.what.serialize_fields(&mut m)?;
        if self.repeat > 1 {
            m.serialize_entry("repeat", &self.repeat)?;
        }
        m.end()
    }
}

impl Serialize for Flow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("src", &self.edge)?;
        m.serialize_entry("sport", &self.edge_port)?;
        m.serialize_entry("dst", &self.origin)?;
        m.serialize_entry("dport", &self.origin_port)?;
        m.serialize_entry("family", if self.edge.is_ipv4() { "ipv4" } else { "ipv6" })?;
        m.end()
    }
}

/// Who sent a TLS alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Origin,
    Edge,
}

/// The first TLS alert of a connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TlsAlert {
    pub level: &'static str,
    pub description: &'static str,
    pub from: Side,
}

/// A finding's `tls` object: what the handshake showed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TlsFacts {
    pub sni: Option<String>,
    pub offered_versions: Vec<&'static str>,
    pub negotiated_version: Option<&'static str>,
    pub alert: Option<TlsAlert>,
}

/// A finding's `http` object: the request line and response head, never
/// bodies, cookies, credentials or query strings. All null when encrypted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HttpFacts {
    pub method: Option<String>,
    pub status: Option<u16>,
    pub header_bytes: Option<usize>,
    /// Only with `--show-path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A failed edge connection and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// `CLOCK_MONOTONIC` ns of the decision.
    pub ts_ns: u64,
    pub flow: Flow,
    pub cause: Cause,
    pub confidence: Confidence,
    pub evidence: Vec<Evidence>,
    pub hint: String,
    /// TLS facts, for findings about TLS.
    pub tls: Option<TlsFacts>,
    /// HTTP facts, for findings about HTTP.
    pub http: Option<HttpFacts>,
}

#[cfg(test)]
impl Evidence {
    /// The item as JSON (tests).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("an evidence item serializes")
    }
}

#[cfg(test)]
impl Finding {
    /// The `finding` line as JSON (tests).
    pub fn to_json(&self, ts: &str, source: &str) -> serde_json::Value {
        use crate::output::{line::Source, lines};
        let source = if source == "capture" {
            Source::Capture
        } else {
            Source::Kernel
        };
        serde_json::to_value(lines::finding(self, ts.to_owned(), source))
            .expect("a finding line serializes")
    }
}
