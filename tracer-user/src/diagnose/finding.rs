//! What the diagnoser concludes: causes with their 52x class, confidence,
//! evidence timelines and the TLS / HTTP facts of a finding, as typed values
//! that serialize to the schema's fields (the lines themselves are in
//! [`crate::output::line`]).

use schemars::JsonSchema;
use serde::Serialize;

use crate::source::event::{Flow, FlowEventKind};

/// Version of the JSON output schema (docs/SCHEMA.md).
pub const SCHEMA_VERSION: u32 = 1;

/// A root cause the diagnoser can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
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
    KeepaliveRace,
    OriginErrorStatus,
    RequestUnacked,
}

/// The Cloudflare error the edge shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, JsonSchema)]
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
    /// The origin's own 5xx status, passed on by the edge: a finding's
    /// `class` is then that status ([`Finding::class_code`]).
    #[serde(rename = "5xx")]
    OriginStatus,
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
            Class::OriginStatus => "5xx",
        }
    }

    /// A TLS handshake or certificate failure (525, 526): the finding
    /// carries a `tls` object.
    pub fn is_tls(self) -> bool {
        matches!(self, Class::HandshakeFailed | Class::InvalidCertificate)
    }

    /// A failure after the request (520, 524): the finding carries an
    /// `http` object.
    pub fn is_http(self) -> bool {
        matches!(self, Class::Unknown | Class::Timeout | Class::OriginStatus)
    }

    /// The classes that are Cloudflare's own errors (all but the origin's
    /// status).
    pub const ALL: [Class; 6] = [
        Class::Unknown,
        Class::Down,
        Class::TimedOut,
        Class::Timeout,
        Class::HandshakeFailed,
        Class::InvalidCertificate,
    ];
}

impl Cause {
    pub const ALL: [Cause; 20] = [
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
        Cause::KeepaliveRace,
        Cause::OriginErrorStatus,
        Cause::RequestUnacked,
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
            Cause::KeepaliveRace => "keepalive_race",
            Cause::OriginErrorStatus => "origin_error_status",
            Cause::RequestUnacked => "request_unacked",
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
            | Cause::MalformedResponse
            | Cause::KeepaliveRace => Class::Unknown,
            Cause::ResponseTimeout => Class::Timeout,
            Cause::OriginErrorStatus => Class::OriginStatus,
            Cause::FirewallDrop
            | Cause::ListenOverflow
            | Cause::SynackUnacked
            | Cause::KernelDrop
            | Cause::SynUnanswered
            | Cause::RequestUnacked => Class::TimedOut,
        }
    }
}

/// How sure the diagnosis is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
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
        event: PayloadEvent,
        detail: String,
    },
}

/// The evidence the payload layer reads from the bytes of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadEvent {
    ClientHelloIn,
    ServerHelloOut,
    TlsAlertIn,
    TlsAlertOut,
    RequestIn,
    ResponseOut,
    DataOut,
}

impl PayloadEvent {
    /// The schema's `event` name.
    pub fn name(self) -> &'static str {
        match self {
            PayloadEvent::ClientHelloIn => "client_hello_in",
            PayloadEvent::ServerHelloOut => "server_hello_out",
            PayloadEvent::TlsAlertIn => "tls_alert_in",
            PayloadEvent::TlsAlertOut => "tls_alert_out",
            PayloadEvent::RequestIn => "request_in",
            PayloadEvent::ResponseOut => "response_out",
            PayloadEvent::DataOut => "data_out",
        }
    }
}

impl EvidenceKind {
    /// The schema's `event` name.
    pub fn event(&self) -> &'static str {
        match self {
            EvidenceKind::Payload { event, .. } => event.name(),
            EvidenceKind::ListenOverflowCounter { .. } => "listen_overflow_counter",
            EvidenceKind::Flow(kind) => kind.name(),
        }
    }
}

/// Who sent a TLS alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Origin,
    Edge,
}

/// The first TLS alert of a connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct TlsAlert {
    /// `warning` or `fatal` (RFC 8446 names).
    #[schemars(length(min = 1))]
    pub level: &'static str,
    /// The alert's RFC 8446 name (`handshake_failure` ...).
    #[schemars(length(min = 1))]
    pub description: &'static str,
    pub from: Side,
}

/// A finding's `tls` object: what the handshake showed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct TlsFacts {
    /// The server name the edge asked for; null without SNI.
    #[schemars(length(min = 1))]
    pub sni: Option<String>,
    /// Versions the edge offered (`TLSv1.3` ...).
    #[schemars(inner(length(min = 1)))]
    pub offered_versions: Vec<&'static str>,
    /// The version the origin chose; null when it never answered.
    #[schemars(length(min = 1))]
    pub negotiated_version: Option<&'static str>,
    /// The first alert of the connection, or null.
    pub alert: Option<TlsAlert>,
}

/// A finding's `http` object: the request line and response head, never
/// bodies, cookies, credentials or query strings. All null when encrypted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct HttpFacts {
    /// The request method; null when not seen or encrypted.
    #[schemars(length(min = 1))]
    pub method: Option<String>,
    /// The response status; null when no status line came.
    #[schemars(range(min = 100, max = 999))]
    pub status: Option<u16>,
    /// Bytes of the response header block seen (all of it, or as far as it
    /// went); null when no response came.
    pub header_bytes: Option<usize>,
    /// Only with `--show-path`: the URL path without its query string.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String", pattern(r"^[^?]*$"))]
    pub path: Option<String>,
    /// Which request on its connection this is: 1 for the first, 5 for the
    /// fifth on a kept-alive connection. Absent when no request was seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32", range(min = 1))]
    pub request_index: Option<u32>,
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
    /// `origin_error_status` only: responses with this status on this port
    /// that this line stands for (one line per status and port per 10 s).
    pub count: Option<u64>,
}

impl Finding {
    /// The `class` the line writes: the Cloudflare error, or for
    /// `origin_error_status` the origin's own status.
    pub fn class_code(&self) -> String {
        match (
            self.cause.class(),
            self.http.as_ref().and_then(|h| h.status),
        ) {
            (Class::OriginStatus, Some(status)) => status.to_string(),
            (class, _) => class.as_str().to_owned(),
        }
    }
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
        serde_json::to_value(lines::finding(self, ts.to_owned(), source, None))
            .expect("a finding line serializes")
    }
}
