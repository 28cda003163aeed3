//! The one event type every source produces (the kernel's ring buffer, decoded
//! in [`crate::source::kernel::records`], or a packet capture) and the
//! diagnoser consumes.

use std::net::IpAddr;

use tracer_ebpf::tcp_flag;

use super::names::{DropReason, TcpState};

/// An edge connection, seen from the origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Flow {
    pub edge: IpAddr,
    pub edge_port: u16,
    pub origin: IpAddr,
    pub origin_port: u16,
}

/// What happened to a flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowEventKind {
    SynIn,
    AckIn,
    RstIn,
    FinIn,
    SynAckOut,
    RstOut,
    FinOut,
    /// ICMP(v6) destination unreachable toward the edge.
    IcmpUnreachOut {
        v6: bool,
        icmp_type: u8,
        code: u8,
    },
    /// The kernel dropped a segment; `reason` as the running kernel names it.
    KernelDrop {
        reason: DropReason,
        outbound: bool,
        tcp_flags: u8,
    },
    /// The TCP stack sent a RST.
    KernelSendReset {
        reason: Option<String>,
    },
    /// An origin socket received a RST.
    KernelRecvReset,
    /// The origin retransmitted its SYN-ACK.
    SynAckRetransmit,
    /// An origin socket changed TCP state (names as the kernel spells them).
    StateChange {
        from: TcpState,
        to: TcpState,
    },
    /// The kernel followed the connection quietly until here: its handshake
    /// was healthy (and counted there), `requests` requests were answered
    /// healthy; the edge's next payload starts the next turn. A TLS
    /// connection has a second one, at its `ClientHello`'s time, with what
    /// the kernel saw of its handshake (`tls`); that one stands for the
    /// hellos in the evidence.
    Resume {
        requests: u32,
        /// It speaks HTTP/2 ([`tracer_ebpf::flow_flag::H2`]): the kernel
        /// followed no turns and counted it.
        h2: bool,
        tls: Option<Box<TlsResume>>,
    },
    /// Payload bytes of a segment (from a snapshot or a capture); `seq` of
    /// the [`FlowEvent`] is the sequence number of its first byte. What they
    /// say becomes evidence, not the bytes themselves.
    Payload {
        outbound: bool,
        /// The segment's acknowledgement number: where the other side's
        /// next bytes begin (a new turn's response, on the edge's request).
        ack: u32,
        bytes: Vec<u8>,
    },
}

/// A TLS connection the kernel followed: its handshake as far as it got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsResume {
    /// The edge's `ClientHello` record, when the kernel still had it (it
    /// keeps a bounded number).
    pub client_hello: Option<Vec<u8>>,
    /// The `ServerHello`'s version, cipher suite and time (`None` before
    /// it).
    pub server_hello: Option<(u16, u16, u64)>,
    /// The edge's side of the handshake finished: its next record starts a
    /// turn.
    pub done: bool,
    /// TLS 1.3: the origin's session tickets had not all gone by (a
    /// response record can then not be told from a ticket for sure).
    pub tickets_pending: bool,
    /// TLS 1.3: when the origin's two session tickets went by.
    pub tickets_ns: Option<u64>,
}

/// One observation about one flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowEvent {
    /// `CLOCK_MONOTONIC` nanoseconds.
    pub ts_ns: u64,
    pub flow: Flow,
    pub kind: FlowEventKind,
    /// Sequence number of the segment (the ISN for a SYN); 0 when unknown.
    pub seq: u32,
}

/// Host-wide evidence that a listener's accept queue overflowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenOverflow {
    pub ts_ns: u64,
    /// How much `TcpExtListenOverflows` rose since the previous sample.
    pub count: u64,
    /// Listeners with a non-empty accept queue: (port, queue length).
    pub queues: Vec<(u16, u32)>,
}

/// Everything the diagnoser consumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Flow(FlowEvent),
    ListenOverflow(ListenOverflow),
}

impl Event {
    pub fn ts_ns(&self) -> u64 {
        match self {
            Event::Flow(e) => e.ts_ns,
            Event::ListenOverflow(e) => e.ts_ns,
        }
    }
}

impl FlowEventKind {
    /// The event's name in the output schema.
    pub fn name(&self) -> &'static str {
        match self {
            Self::SynIn => "syn_in",
            Self::AckIn => "ack_in",
            Self::RstIn => "rst_in",
            Self::FinIn => "fin_in",
            Self::SynAckOut => "synack_out",
            Self::RstOut => "rst_out",
            Self::FinOut => "fin_out",
            Self::IcmpUnreachOut { .. } => "icmp_unreach_out",
            Self::KernelDrop { .. } => "kernel_drop",
            Self::KernelSendReset { .. } => "kernel_send_reset",
            Self::KernelRecvReset => "kernel_recv_reset",
            Self::SynAckRetransmit => "synack_retransmit",
            Self::StateChange { .. } => "state_change",
            Self::Resume { .. } => "resumed",
            Self::Payload {
                outbound: false, ..
            } => "data_in",
            Self::Payload { outbound: true, .. } => "data_out",
        }
    }
}

/// Render TCP flags as `SYN+ACK`.
pub fn flags_name(flags: u8) -> String {
    let names = [
        (tcp_flag::SYN, "SYN"),
        (tcp_flag::RST, "RST"),
        (tcp_flag::FIN, "FIN"),
        (tcp_flag::PSH, "PSH"),
        (tcp_flag::ACK, "ACK"),
    ];
    let parts: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| u32::from(flags) & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join("+")
    }
}

/// Name of an ICMP destination-unreachable code.
pub fn icmp_name(v6: bool, code: u8) -> &'static str {
    if v6 {
        match code {
            0 => "no_route",
            1 => "admin_prohibited",
            3 => "address_unreachable",
            4 => "port_unreachable",
            5 => "source_policy_failed",
            6 => "reject_route",
            _ => "unreachable",
        }
    } else {
        match code {
            0 => "net_unreachable",
            1 => "host_unreachable",
            2 => "protocol_unreachable",
            3 => "port_unreachable",
            9 | 10 | 13 => "admin_prohibited",
            _ => "unreachable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_flags_and_icmp() {
        assert_eq!(flags_name(0x12), "SYN+ACK");
        assert_eq!(flags_name(0x14), "RST+ACK");
        assert_eq!(icmp_name(false, 3), "port_unreachable");
        assert_eq!(icmp_name(true, 1), "admin_prohibited");
    }
}
