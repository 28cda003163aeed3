//! The wire shapes of a connection (`flow`) and of an observation (an
//! evidence item, an `event` line): one derived type each, so that the JSON
//! and its schema ([`crate::output::schema`]) come from one definition.
//! Each observation's `event` name decides which fields it carries.

use std::borrow::Cow;
use std::net::IpAddr;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Serialize, Serializer};

use crate::{
    diagnose::finding::{Evidence, EvidenceKind, PayloadEvent},
    source::{
        event::{flags_name, icmp_name, Flow, FlowEventKind},
        names::{DropReason, TcpState},
    },
};

/// The address family of a connection.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Family {
    Ipv4,
    Ipv6,
}

/// An edge connection, seen from the origin: `src` is the edge.
#[derive(Serialize, JsonSchema)]
#[schemars(extend(
    "if" = { "properties": { "family": { "const": "ipv4" } } },
    "then" = { "properties": { "src": { "format": "ipv4" }, "dst": { "format": "ipv4" } } },
    "else" = { "properties": { "src": { "format": "ipv6" }, "dst": { "format": "ipv6" } } },
))]
struct FlowFields {
    /// The edge's address.
    #[schemars(schema_with = "super::schema::ip_address")]
    src: IpAddr,
    /// The edge's port.
    sport: u16,
    /// The origin's address.
    #[schemars(schema_with = "super::schema::ip_address")]
    dst: IpAddr,
    /// The origin's port.
    dport: u16,
    family: Family,
}

impl From<&Flow> for FlowFields {
    fn from(f: &Flow) -> Self {
        FlowFields {
            src: f.edge,
            sport: f.edge_port,
            dst: f.origin,
            dport: f.origin_port,
            family: if f.edge.is_ipv4() {
                Family::Ipv4
            } else {
                Family::Ipv6
            },
        }
    }
}

impl Serialize for Flow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        FlowFields::from(self).serialize(s)
    }
}

impl JsonSchema for Flow {
    fn schema_name() -> Cow<'static, str> {
        "Flow".into()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        FlowFields::json_schema(g)
    }
}

/// Which way a dropped segment went.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum Direction {
    /// From the edge.
    In,
    /// Toward the edge.
    Out,
}

/// An ICMP(v6) destination unreachable the origin sent.
#[derive(Serialize, JsonSchema)]
pub(super) struct Icmp {
    r#type: u8,
    code: u8,
    /// What the code means (`port unreachable` ...).
    name: &'static str,
}

/// The listener whose accept queue overflowed.
#[derive(Serialize, JsonSchema)]
pub(super) struct Queue {
    port: u16,
    /// Connections waiting in its accept queue.
    accept_queue: u32,
}

/// An observation: its `event` name and the fields that name carries.
/// Names as the kernel spells them (`reason`, `from`, `to`) are strings.
#[derive(Serialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(super) enum EventFields<'a> {
    /// A SYN from the edge.
    SynIn,
    /// An ACK from the edge.
    AckIn,
    /// A RST from the edge.
    RstIn,
    /// A FIN from the edge.
    FinIn,
    /// The origin's SYN-ACK.
    SynackOut,
    /// A RST from the origin.
    RstOut,
    /// A FIN from the origin.
    FinOut,
    /// The origin answered with ICMP destination unreachable.
    IcmpUnreachOut { icmp: Icmp },
    /// The kernel freed a segment of the connection.
    KernelDrop {
        /// The drop reason as the running kernel names it.
        reason: &'a DropReason,
        direction: Direction,
        /// The segment's TCP flags (`SYN`, `SYN+ACK` ...).
        #[schemars(length(min = 1))]
        segment: String,
    },
    /// The TCP stack sent a RST.
    KernelSendReset {
        /// The reset reason, on kernels that report one.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schemars(with = "String", length(min = 1))]
        reason: Option<&'a str>,
    },
    /// An origin socket received a RST.
    KernelRecvReset,
    /// The origin retransmitted its SYN-ACK.
    SynackRetransmit,
    /// An origin socket changed TCP state.
    StateChange {
        from: &'a TcpState,
        to: &'a TcpState,
    },
    /// Until here the kernel followed the connection without a word to
    /// userspace: its handshake was healthy and `requests_answered`
    /// requests on it were answered healthy (2xx-4xx).
    Resumed { requests_answered: u32 },
    /// Host-wide: `TcpExtListenOverflows` rose.
    ListenOverflowCounter {
        /// How much it rose.
        count: u64,
        /// The listener on the connection's port, when it could be read.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schemars(with = "Queue")]
        queue: Option<Queue>,
    },
    /// The TLS client hello from the edge.
    ClientHelloIn { detail: &'a str },
    /// The TLS server hello from the origin.
    ServerHelloOut { detail: &'a str },
    /// A TLS alert from the edge.
    TlsAlertIn { detail: &'a str },
    /// A TLS alert from the origin.
    TlsAlertOut { detail: &'a str },
    /// The edge's HTTP request.
    RequestIn { detail: &'a str },
    /// The origin's HTTP response head.
    ResponseOut { detail: &'a str },
    /// Payload from the edge (`--events all`).
    DataIn,
    /// Payload from the origin; `detail` says what it was when the payload
    /// layer read it.
    DataOut {
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schemars(with = "String")]
        detail: Option<&'a str>,
    },
}

impl<'a> From<&'a EvidenceKind> for EventFields<'a> {
    fn from(what: &'a EvidenceKind) -> Self {
        match what {
            EvidenceKind::Payload { event, detail } => {
                let detail = detail.as_str();
                match event {
                    PayloadEvent::ClientHelloIn => Self::ClientHelloIn { detail },
                    PayloadEvent::ServerHelloOut => Self::ServerHelloOut { detail },
                    PayloadEvent::TlsAlertIn => Self::TlsAlertIn { detail },
                    PayloadEvent::TlsAlertOut => Self::TlsAlertOut { detail },
                    PayloadEvent::RequestIn => Self::RequestIn { detail },
                    PayloadEvent::ResponseOut => Self::ResponseOut { detail },
                    PayloadEvent::DataOut => Self::DataOut {
                        detail: Some(detail),
                    },
                }
            }
            EvidenceKind::ListenOverflowCounter { count, queue } => Self::ListenOverflowCounter {
                count: *count,
                queue: queue.map(|(port, accept_queue)| Queue { port, accept_queue }),
            },
            EvidenceKind::Flow(kind) => match kind {
                FlowEventKind::SynIn => Self::SynIn,
                FlowEventKind::AckIn => Self::AckIn,
                FlowEventKind::RstIn => Self::RstIn,
                FlowEventKind::FinIn => Self::FinIn,
                FlowEventKind::SynAckOut => Self::SynackOut,
                FlowEventKind::RstOut => Self::RstOut,
                FlowEventKind::FinOut => Self::FinOut,
                FlowEventKind::IcmpUnreachOut {
                    v6,
                    icmp_type,
                    code,
                } => Self::IcmpUnreachOut {
                    icmp: Icmp {
                        r#type: *icmp_type,
                        code: *code,
                        name: icmp_name(*v6, *code),
                    },
                },
                FlowEventKind::KernelDrop {
                    reason,
                    outbound,
                    tcp_flags,
                } => Self::KernelDrop {
                    reason,
                    direction: if *outbound {
                        Direction::Out
                    } else {
                        Direction::In
                    },
                    segment: flags_name(*tcp_flags),
                },
                FlowEventKind::KernelSendReset { reason } => Self::KernelSendReset {
                    reason: reason.as_deref(),
                },
                FlowEventKind::KernelRecvReset => Self::KernelRecvReset,
                FlowEventKind::SynAckRetransmit => Self::SynackRetransmit,
                FlowEventKind::StateChange { from, to } => Self::StateChange { from, to },
                FlowEventKind::Resume { requests, .. } => Self::Resumed {
                    requests_answered: *requests,
                },
                FlowEventKind::Payload {
                    outbound: false, ..
                } => Self::DataIn,
                FlowEventKind::Payload { outbound: true, .. } => Self::DataOut { detail: None },
            },
        }
    }
}

/// One item of an evidence timeline.
#[derive(Serialize, JsonSchema)]
struct EvidenceFields<'a> {
    /// Microseconds since the connection's first SYN.
    t_us: u64,
    #[serde(flatten)]
    what: EventFields<'a>,
    /// Identical consecutive observations folded into this one; absent
    /// when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32", range(min = 2))]
    repeat: Option<u32>,
}

impl Serialize for Evidence {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        EvidenceFields {
            t_us: self.t_us,
            what: (&self.what).into(),
            repeat: (self.repeat > 1).then_some(self.repeat),
        }
        .serialize(s)
    }
}

impl JsonSchema for Evidence {
    fn schema_name() -> Cow<'static, str> {
        "Evidence".into()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        EvidenceFields::json_schema(g)
    }
}
