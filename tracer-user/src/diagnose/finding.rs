//! What the diagnoser concludes: causes with their 52x class, confidence,
//! evidence timelines and hints, rendered as schema v1 JSON.

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use crate::source::event::{flags_name, icmp_name, Flow, FlowEventKind};

/// Version of the JSON output schema (docs/SCHEMA.md).
pub const SCHEMA_VERSION: u32 = 1;

/// A root cause the diagnoser can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
    pub fn class(self) -> &'static str {
        match self {
            Cause::NoListener | Cause::FirewallReject => "521",
            Cause::TlsAlertFromOrigin | Cause::TlsClosedDuringHandshake | Cause::NotTls => "525",
            Cause::EdgeRejectedCertificate | Cause::EdgeAbortedAfterCertificate => "526",
            Cause::ResetAfterRequest
            | Cause::ClosedWithoutResponse
            | Cause::HeadersTooLarge
            | Cause::MalformedResponse => "520",
            Cause::ResponseTimeout => "524",
            Cause::FirewallDrop
            | Cause::ListenOverflow
            | Cause::SynackUnacked
            | Cause::KernelDrop
            | Cause::SynUnanswered => "522",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

impl Evidence {
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("t_us".into(), json!(self.t_us));
        evidence_fields(&self.what, &mut m);
        if self.repeat > 1 {
            m.insert("repeat".into(), json!(self.repeat));
        }
        Value::Object(m)
    }
}

/// Fill `event` and its kind-specific fields (shared with `--events all`).
pub fn evidence_fields(what: &EvidenceKind, m: &mut Map<String, Value>) {
    match what {
        EvidenceKind::Payload { event, detail } => {
            m.insert("event".into(), json!(event));
            m.insert("detail".into(), json!(detail));
        }
        EvidenceKind::ListenOverflowCounter { count, queue } => {
            m.insert("event".into(), json!("listen_overflow_counter"));
            m.insert("count".into(), json!(count));
            if let Some((port, q)) = queue {
                m.insert("queue".into(), json!({"port": port, "accept_queue": q}));
            }
        }
        EvidenceKind::Flow(kind) => {
            m.insert("event".into(), json!(kind.name()));
            match kind {
                FlowEventKind::KernelDrop {
                    reason,
                    outbound,
                    tcp_flags,
                } => {
                    m.insert("reason".into(), json!(reason));
                    m.insert(
                        "direction".into(),
                        json!(if *outbound { "out" } else { "in" }),
                    );
                    m.insert("segment".into(), json!(flags_name(*tcp_flags)));
                }
                FlowEventKind::KernelSendReset {
                    reason: Some(reason),
                } => {
                    m.insert("reason".into(), json!(reason));
                }
                FlowEventKind::IcmpUnreachOut {
                    v6,
                    icmp_type,
                    code,
                } => {
                    m.insert(
                        "icmp".into(),
                        json!({"type": icmp_type, "code": code, "name": icmp_name(*v6, *code)}),
                    );
                }
                FlowEventKind::StateChange { from, to } => {
                    m.insert("from".into(), json!(from));
                    m.insert("to".into(), json!(to));
                }
                _ => {}
            }
        }
    }
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
    pub tls: Option<Value>,
    /// HTTP facts, for findings about HTTP.
    pub http: Option<Value>,
}

pub fn flow_json(flow: &Flow) -> Value {
    json!({
        "src": flow.edge.to_string(),
        "sport": flow.edge_port,
        "dst": flow.origin.to_string(),
        "dport": flow.origin_port,
        "family": if flow.edge.is_ipv4() { "ipv4" } else { "ipv6" },
    })
}

impl Finding {
    /// The schema v1 `finding` line; `ts` is the RFC 3339 rendering of `ts_ns`.
    /// `source` is `kernel` (live) or `capture` (offline).
    pub fn to_json(&self, ts: &str, source: &str) -> Value {
        let mut v = json!({
            "type": "finding",
            "schema_version": SCHEMA_VERSION,
            "ts": ts,
            "source": source,
            "class": self.cause.class(),
            "cause": self.cause.as_str(),
            "confidence": self.confidence.as_str(),
            "flow": flow_json(&self.flow),
            "evidence": self.evidence.iter().map(Evidence::to_json).collect::<Vec<_>>(),
            "hint": self.hint,
        });
        if let Some(tls) = &self.tls {
            v["tls"] = tls.clone();
        }
        if let Some(http) = &self.http {
            v["http"] = http.clone();
        }
        v
    }
}

fn addr_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// How a 520/524 over TLS was told: " (TLS 1.3, request and response
/// encrypted ...)"; nothing over plain HTTP.
fn over_tls(detail: Option<&str>) -> String {
    detail
        .filter(|d| d.starts_with("TLS"))
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

/// One sentence on what to check, in the operator's terms.
pub fn hint(cause: Cause, flow: &Flow, drop_reason: Option<&str>) -> String {
    let origin = addr_port(flow.origin, flow.origin_port);
    let port = flow.origin_port;
    let edge = flow.edge;
    match cause {
        Cause::NoListener => format!(
            "nothing listens on {origin}: is the web server running and bound to this address? check `ss -tlnp 'sport = :{port}'`"
        ),
        Cause::FirewallReject => format!(
            "a firewall rule rejects {edge} on port {port}: find the REJECT rule (`nft list ruleset`, `iptables -S`) and allow Cloudflare's IP ranges"
        ),
        Cause::FirewallDrop => format!(
            "a firewall rule drops SYNs from {edge} to port {port}: check `nft list ruleset` / `iptables -L -v -n` and allow Cloudflare's IP ranges"
        ),
        Cause::ListenOverflow => format!(
            "the listener on port {port} accepts too slowly and its accept queue is full: check the server's workers (hung or overloaded?) and its backlog (`ss -tln 'sport = :{port}'`, net.core.somaxconn)"
        ),
        Cause::SynackUnacked => {
            let dropped = drop_reason.map(|r| format!(" (this host dropped it: {r})")).unwrap_or_default();
            format!(
                "the SYN-ACK to {edge} was never acknowledged{dropped}: the return path is broken; check `ip route get {edge}`, the next hop, asymmetric routing, rp_filter and egress firewall rules"
            )
        }
        Cause::KernelDrop => match drop_reason {
            Some("IP_RPFILTER") => format!(
                "the reverse-path filter dropped the SYN from {edge}: the route back to it leaves by another interface; check rp_filter and `ip route get {edge}`"
            ),
            Some(r) => format!(
                "the kernel dropped the SYN from {edge} to port {port} ({r}): check `nstat -az` and the kernel log for that reason"
            ),
            None => format!("the kernel dropped the SYN from {edge} to port {port}"),
        },
        Cause::TlsAlertFromOrigin => format!(
            "the origin's TLS stack refused the edge's handshake on port {port} ({}): check the server's TLS versions, ciphers and the certificate for the SNI (`openssl s_client -connect {origin} -servername <host>`)",
            drop_reason.unwrap_or("alert")
        ),
        Cause::TlsClosedDuringHandshake => format!(
            "the origin closed the connection after the edge's ClientHello without answering: check the TLS configuration for this SNI and the server's error log (`openssl s_client -connect {origin}`)"
        ),
        Cause::NotTls => format!(
            "the origin answered the edge's ClientHello on port {port} with something that is not TLS: is this port serving plain HTTP? set the Cloudflare SSL mode or the listener right"
        ),
        Cause::EdgeRejectedCertificate => format!(
            "the edge rejected the origin's certificate ({}): check expiry, the hostnames in its SAN and its chain (`--check-certs`, Cloudflare Full (strict) needs a publicly trusted or Origin CA certificate)",
            drop_reason.unwrap_or("certificate alert")
        ),
        Cause::EdgeAbortedAfterCertificate => "with TLS 1.3 the edge closed right after the origin's certificate without finishing the handshake (its alert is encrypted, so this is inferred): most likely it rejected the certificate; run with --check-certs".to_owned(),
        Cause::ResetAfterRequest => format!(
            "the origin reset the connection after reading the request, before answering: check the application server behind {origin} (crashes, worker limits, SO_LINGER 0 closes) and its logs{}",
            over_tls(drop_reason)
        ),
        Cause::ClosedWithoutResponse => format!(
            "the origin closed the connection after reading the request without any response byte: check the application's error log and timeouts (e.g. an upstream that crashes or a keepalive mismatch){}",
            over_tls(drop_reason)
        ),
        Cause::HeadersTooLarge => format!(
            "the response header block is over Cloudflare's 16 KiB limit ({}): trim large headers or cookies set by the application",
            drop_reason.unwrap_or("size unknown")
        ),
        Cause::MalformedResponse => format!(
            "the origin answered an HTTP request on port {port} with bytes that are not an HTTP status line: is another service listening on this port?"
        ),
        Cause::ResponseTimeout => format!(
            "the origin read the request but sent no response byte in time: find the slow handler or upstream behind {origin} (Cloudflare waits 100 s){}",
            over_tls(drop_reason)
        ),
        Cause::SynUnanswered => format!(
            "SYNs from {edge} to port {port} got no answer and nothing on this host explained why: check upstream firewalls or security groups, and that the SYNs reach this host's TCP stack"
        ),
    }
}
