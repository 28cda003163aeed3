//! Kernel ring-buffer records decoded into [`crate::source::event`] types:
//! flow events (with the running kernel's names for its enum values) and
//! packet snapshots.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use tracer_ebpf::{
    flow_flag, kind, tls_phase, Hello, History, RawEvent, FAMILY_V4, FAMILY_V6, HEAD_BYTES,
    HELLO_BYTES,
};

use crate::source::{
    event::{Flow, FlowEvent, FlowEventKind, TlsResume},
    names::{DropReason, TcpState},
};

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

/// The flow a kernel record names.
fn flow_of(raw: &RawEvent) -> Result<Flow, DecodeError> {
    Ok(Flow {
        edge: addr(raw.family, raw.edge_addr)?,
        edge_port: raw.edge_port,
        origin: addr(raw.family, raw.origin_addr)?,
        origin_port: raw.origin_port,
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

/// Is this ring-buffer record a quiet flow's history?
pub fn is_history(bytes: &[u8]) -> bool {
    bytes
        .get(8..12)
        .is_some_and(|k| u32::from_ne_bytes([k[0], k[1], k[2], k[3]]) == kind::HISTORY)
}

/// Read a [`History`] record (unaligned).
pub fn read_history(bytes: &[u8]) -> Result<History, DecodeError> {
    let need = std::mem::size_of::<History>();
    if bytes.len() < need {
        return Err(DecodeError::Short(bytes.len(), need));
    }
    // SAFETY: length checked; History is plain old data.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<History>()) })
}

/// Is this ring-buffer record a TLS connection's `ClientHello`?
pub fn is_hello(bytes: &[u8]) -> bool {
    bytes
        .get(8..12)
        .is_some_and(|k| u32::from_ne_bytes([k[0], k[1], k[2], k[3]]) == kind::HELLO)
}

/// Read a [`Hello`] record: its flow and the hello's bytes.
pub fn read_hello(bytes: &[u8]) -> Result<(Flow, Vec<u8>), DecodeError> {
    let need = std::mem::size_of::<Hello>();
    if bytes.len() < need {
        return Err(DecodeError::Short(bytes.len(), need));
    }
    // SAFETY: length checked; Hello is plain old data.
    let h = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Hello>()) };
    let flow = flow_of(&h.head)?;
    Ok((flow, h.bytes[..(h.len as usize).min(HELLO_BYTES)].to_vec()))
}

/// What the kernel kept of a quiet flow, as the events it stands for, in
/// time order: the handshake, a `resume` when the kernel counted it (and
/// answered requests; for TLS, with the `ClientHello` bytes `hello` the
/// kernel kept and what it read of the handshake), the request that waits
/// (its first bytes), the closes.
pub fn decode_history(
    h: &History,
    hello: Option<(u64, Vec<u8>)>,
) -> Result<Vec<FlowEvent>, DecodeError> {
    let v = &h.value;
    let flow = flow_of(&h.head)?;
    let at = |ts_ns: u64, kind: FlowEventKind, seq: u32| FlowEvent {
        ts_ns,
        flow,
        kind,
        seq,
    };
    let mut out = vec![at(v.syn_ns, FlowEventKind::SynIn, v.isn)];
    if v.synack_ns != 0 {
        out.push(at(v.synack_ns, FlowEventKind::SynAckOut, v.origin_isn));
    }
    let waiting = v.flags & flow_flag::WAITING != 0;
    let is_tls = v.flags & flow_flag::TLS != 0;
    let requests = v.turns;
    let h2 = v.flags & flow_flag::H2 != 0;
    if v.flags & flow_flag::COUNTED != 0 || is_tls {
        // Just before the ACK it stands beside: the diagnoser must know
        // before the handshake completes that the kernel counted it.
        let tls = None;
        out.push(at(v.ack_ns, FlowEventKind::Resume { requests, h2, tls }, 0));
    }
    if v.ack_ns != 0 {
        out.push(at(v.ack_ns, FlowEventKind::AckIn, 0));
    }
    if is_tls {
        let (hello_ns, client_hello) = match hello {
            Some((ts, bytes)) => (ts, Some(bytes)),
            None => (v.ack_ns, None),
        };
        let tls = Some(Box::new(TlsResume {
            client_hello,
            server_hello: (v.tls_version != 0).then(|| {
                (
                    u16::try_from(v.tls_version).unwrap_or(0),
                    u16::try_from(v.tls_cipher).unwrap_or(0),
                    v.server_hello_ns,
                )
            }),
            done: v.tls_phase == tls_phase::DONE,
            tickets_pending: v.tls_version == 0x0304 && v.flags & flow_flag::TICKETS_DONE == 0,
            tickets_ns: (v.tickets_ns != 0).then_some(v.tickets_ns),
        }));
        out.push(at(hello_ns, FlowEventKind::Resume { requests, h2, tls }, 0));
    }
    // A TLS handshake that waits has its hello in the resume instead.
    if waiting && v.head_len > 0 {
        let len = (v.head_len as usize).min(HEAD_BYTES);
        out.push(at(
            v.req_ns,
            FlowEventKind::Payload {
                outbound: false,
                ack: v.req_ack,
                bytes: v.head[..len].to_vec(),
            },
            v.req_seq,
        ));
    }
    if v.flags & flow_flag::FIN_OUT != 0 {
        out.push(at(v.fin_out_ns, FlowEventKind::FinOut, v.fin_out_seq));
    }
    if v.flags & flow_flag::FIN_IN != 0 {
        out.push(at(v.fin_in_ns, FlowEventKind::FinIn, 0));
    }
    // Stable: the resume stays right before the ACK of the same time.
    out.sort_by_key(|e| e.ts_ns);
    Ok(out)
}

/// Turn a kernel record into an [`Event`], naming reasons and states.
pub fn decode(raw: &RawEvent, names: &KernelNames) -> Result<FlowEvent, DecodeError> {
    let flow = flow_of(raw)?;
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
            reason: DropReason::from_kernel(&lookup(&names.drop_reasons, raw.aux0)),
            outbound: raw.aux1 == 1,
            tcp_flags: flags,
        },
        kind::KERNEL_SEND_RESET => FlowEventKind::KernelSendReset {
            reason: (raw.aux0 != u32::MAX).then(|| lookup(&names.reset_reasons, raw.aux0)),
        },
        kind::KERNEL_RECV_RESET => FlowEventKind::KernelRecvReset,
        kind::KERNEL_RETRANS_SYNACK => FlowEventKind::SynAckRetransmit,
        kind::KERNEL_SET_STATE => FlowEventKind::StateChange {
            from: TcpState::from_kernel(&lookup(&names.tcp_states, raw.aux0)),
            to: TcpState::from_kernel(&lookup(&names.tcp_states, raw.aux1)),
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
            matches!(unnamed.kind, FlowEventKind::KernelDrop { ref reason, .. } if reason.as_str() == "UNKNOWN(12)")
        );
    }

    #[test]
    fn a_history_stands_for_the_events_the_kernel_kept() {
        let mut v = tracer_ebpf::FlowValue::new(flow_flag::COUNTED | flow_flag::WAITING);
        (v.syn_ns, v.synack_ns, v.ack_ns, v.req_ns) = (10, 20, 30, 40);
        (v.isn, v.origin_isn, v.turns) = (100, 200, 3);
        (v.req_seq, v.req_ack) = (1_000, 2_000);
        v.head[..4].copy_from_slice(b"GET ");
        v.head_len = 4;
        let h = History {
            head: raw(kind::HISTORY),
            value: v,
        };
        // SAFETY: History is repr(C) plain data.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                std::ptr::from_ref(&h).cast::<u8>(),
                std::mem::size_of::<History>(),
            )
        };
        assert!(is_history(bytes) && !is_snapshot(bytes));
        let events = decode_history(&read_history(bytes).unwrap(), None).unwrap();
        let kinds: Vec<(&str, u64, u32)> = events
            .iter()
            .map(|e| (e.kind.name(), e.ts_ns, e.seq))
            .collect();
        assert_eq!(
            kinds,
            [
                ("syn_in", 10, 100),
                ("synack_out", 20, 200),
                ("resumed", 30, 0),
                ("ack_in", 30, 0),
                ("data_in", 40, 1_000)
            ]
        );
        assert_eq!(
            events[2].kind,
            FlowEventKind::Resume {
                requests: 3,
                h2: false,
                tls: None
            }
        );
        assert!(
            matches!(&events[4].kind, FlowEventKind::Payload { bytes, ack: 2_000, .. } if bytes == b"GET ")
        );
        assert!(matches!(
            read_history(&bytes[..100]),
            Err(DecodeError::Short(100, _))
        ));
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
}
