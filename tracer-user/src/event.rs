//! The one event type every source produces (kernel ring buffer today, packet
//! captures later) and the diagnoser consumes; decoding of kernel records.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use tracer_ebpf::{kind, tcp_flag, RawEvent, FAMILY_V4, FAMILY_V6};

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
        reason: String,
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
        from: String,
        to: String,
    },
    /// Payload bytes of a segment (from a snapshot or a capture); `seq` of
    /// the [`FlowEvent`] is the sequence number of its first byte. What they
    /// say becomes evidence, not the bytes themselves.
    Payload {
        outbound: bool,
        bytes: Vec<u8>,
    },
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

/// The running kernel's names for its enum values, read at start-up.
#[derive(Clone, Debug, Default)]
pub struct KernelNames {
    pub drop_reasons: HashMap<u32, String>,
    pub reset_reasons: HashMap<u32, String>,
    pub tcp_states: HashMap<u32, String>,
}

fn lookup(table: &HashMap<u32, String>, value: u32) -> String {
    table
        .get(&value)
        .cloned()
        .unwrap_or_else(|| format!("UNKNOWN({value})"))
}

/// Why a kernel record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The record is shorter than the ABI's event.
    #[error("kernel record of {0} bytes, expected {1}")]
    Short(usize, usize),
    /// Unknown family tag.
    #[error("kernel record with unknown family {0}")]
    Family(u32),
    /// Unknown kind.
    #[error("kernel record with unknown kind {0}")]
    Kind(u32),
}

/// Read a ring-buffer record (unaligned) into the ABI struct.
pub fn read_raw(bytes: &[u8]) -> Result<RawEvent, DecodeError> {
    let need = std::mem::size_of::<RawEvent>();
    if bytes.len() < need {
        return Err(DecodeError::Short(bytes.len(), need));
    }
    // SAFETY: length checked; RawEvent is plain old data, any bit pattern is valid.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<RawEvent>()) })
}

/// Bytes of one packet of a tracked flow, from the TC programs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketSnap {
    /// `CLOCK_MONOTONIC` ns.
    pub ts_ns: u64,
    pub flow: Flow,
    /// Origin -> edge.
    pub outbound: bool,
    pub ifindex: u32,
    /// Link-layer header length at the start of the packet (14 Ethernet, 0 none).
    pub l2_len: u32,
    /// The packet's length on the wire.
    pub wire_len: u32,
    /// Where `data` starts within the packet (later chunks of a long packet).
    pub offset: u32,
    pub data: Vec<u8>,
}

/// Is this ring-buffer record a packet snapshot (rather than an event)?
pub fn is_snapshot(bytes: &[u8]) -> bool {
    bytes
        .get(8..12)
        .is_some_and(|k| u32::from_ne_bytes([k[0], k[1], k[2], k[3]]) == kind::PACKET)
}

/// Decode a [`tracer_ebpf::Snapshot`] record, copying only its valid bytes.
pub fn decode_snapshot(bytes: &[u8]) -> Result<PacketSnap, DecodeError> {
    let need = std::mem::size_of::<tracer_ebpf::Snapshot>();
    if bytes.len() < need {
        return Err(DecodeError::Short(bytes.len(), need));
    }
    let head = read_raw(bytes)?;
    let at = std::mem::offset_of!(tracer_ebpf::Snapshot, wire_len);
    let field = |i: usize| {
        let o = at + 4 * i;
        u32::from_ne_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]])
    };
    let (wire_len, offset, len, l2_len) = (field(0), field(1), field(2), field(3));
    let data_at = std::mem::offset_of!(tracer_ebpf::Snapshot, data);
    let len = (len as usize).min(tracer_ebpf::SNAP_CHUNK);
    let flow = Flow {
        edge: addr(head.family, head.edge_addr)?,
        edge_port: head.edge_port,
        origin: addr(head.family, head.origin_addr)?,
        origin_port: head.origin_port,
    };
    Ok(PacketSnap {
        ts_ns: head.ts_ns,
        flow,
        outbound: head.aux0 == 1,
        ifindex: head.ifindex,
        l2_len,
        wire_len,
        offset,
        data: bytes[data_at..data_at + len].to_vec(),
    })
}

fn addr(family: u32, bytes: [u8; 16]) -> Result<IpAddr, DecodeError> {
    match family {
        FAMILY_V4 => Ok(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        FAMILY_V6 => Ok(IpAddr::V6(Ipv6Addr::from(bytes))),
        other => Err(DecodeError::Family(other)),
    }
}

/// Turn a kernel record into an [`Event`], naming reasons and states.
pub fn decode(raw: &RawEvent, names: &KernelNames) -> Result<FlowEvent, DecodeError> {
    let flow = Flow {
        edge: addr(raw.family, raw.edge_addr)?,
        edge_port: raw.edge_port,
        origin: addr(raw.family, raw.origin_addr)?,
        origin_port: raw.origin_port,
    };
    let flags = (raw.tcp_flags & 0xff) as u8;
    let kind = match raw.kind {
        kind::EDGE_SYN => FlowEventKind::SynIn,
        kind::EDGE_ACK => FlowEventKind::AckIn,
        kind::EDGE_RST => FlowEventKind::RstIn,
        kind::EDGE_FIN => FlowEventKind::FinIn,
        kind::ORIGIN_SYNACK => FlowEventKind::SynAckOut,
        kind::ORIGIN_RST => FlowEventKind::RstOut,
        kind::ORIGIN_FIN => FlowEventKind::FinOut,
        kind::ORIGIN_ICMP_UNREACH => FlowEventKind::IcmpUnreachOut {
            v6: raw.family == FAMILY_V6,
            icmp_type: (raw.aux0 & 0xff) as u8,
            code: (raw.aux1 & 0xff) as u8,
        },
        kind::KERNEL_DROP => FlowEventKind::KernelDrop {
            reason: lookup(&names.drop_reasons, raw.aux0),
            outbound: raw.aux1 == 1,
            tcp_flags: flags,
        },
        kind::KERNEL_SEND_RESET => FlowEventKind::KernelSendReset {
            reason: (raw.aux0 != u32::MAX).then(|| lookup(&names.reset_reasons, raw.aux0)),
        },
        kind::KERNEL_RECV_RESET => FlowEventKind::KernelRecvReset,
        kind::KERNEL_RETRANS_SYNACK => FlowEventKind::SynAckRetransmit,
        kind::KERNEL_SET_STATE => FlowEventKind::StateChange {
            from: lookup(&names.tcp_states, raw.aux0),
            to: lookup(&names.tcp_states, raw.aux1),
        },
        other => return Err(DecodeError::Kind(other)),
    };
    Ok(FlowEvent {
        ts_ns: raw.ts_ns,
        flow,
        kind,
        seq: raw.seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(kind: u32) -> RawEvent {
        let mut edge = [0u8; 16];
        edge[..4].copy_from_slice(&[198, 18, 0, 1]);
        let mut origin = [0u8; 16];
        origin[..4].copy_from_slice(&[198, 18, 0, 2]);
        RawEvent {
            ts_ns: 42,
            kind,
            family: FAMILY_V4,
            edge_addr: edge,
            origin_addr: origin,
            edge_port: 40_000,
            origin_port: 443,
            tcp_flags: 0x02,
            seq: 1,
            ifindex: 2,
            aux0: 12,
            aux1: 0,
        }
    }

    fn bytes(ev: &RawEvent) -> Vec<u8> {
        // SAFETY: RawEvent is repr(C) plain data without padding.
        unsafe {
            std::slice::from_raw_parts(
                std::ptr::from_ref::<RawEvent>(ev).cast::<u8>(),
                std::mem::size_of::<RawEvent>(),
            )
        }
        .to_vec()
    }

    #[test]
    fn decodes_a_drop_with_the_kernel_name() {
        let mut names = KernelNames::default();
        names.drop_reasons.insert(12, "NETFILTER_DROP".into());
        let ev = decode(&read_raw(&bytes(&raw(kind::KERNEL_DROP))).unwrap(), &names).unwrap();
        assert_eq!(ev.flow.edge, "198.18.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(ev.flow.origin_port, 443);
        assert_eq!(
            ev.kind,
            FlowEventKind::KernelDrop {
                reason: "NETFILTER_DROP".into(),
                outbound: false,
                tcp_flags: 2
            }
        );
        let unnamed = decode(&raw(kind::KERNEL_DROP), &KernelNames::default()).unwrap();
        assert!(
            matches!(unnamed.kind, FlowEventKind::KernelDrop { ref reason, .. } if reason == "UNKNOWN(12)")
        );
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        let b = bytes(&raw(kind::EDGE_SYN));
        assert!(matches!(read_raw(&b[..10]), Err(DecodeError::Short(10, _))));
        assert_eq!(
            decode(&raw(99), &KernelNames::default()),
            Err(DecodeError::Kind(99))
        );
        let mut bad = raw(kind::EDGE_SYN);
        bad.family = 7;
        assert_eq!(
            decode(&bad, &KernelNames::default()),
            Err(DecodeError::Family(7))
        );
    }

    #[test]
    fn names_flags_and_icmp() {
        assert_eq!(flags_name(0x12), "SYN+ACK");
        assert_eq!(flags_name(0x14), "RST+ACK");
        assert_eq!(icmp_name(false, 3), "port_unreachable");
        assert_eq!(icmp_name(true, 1), "admin_prohibited");
    }
}
