//! TC programs (ingress and egress): pick the edge's SYN/ACK/RST/FIN and the
//! origin's SYN-ACK/RST/FIN/ICMP-unreachable out of the packet stream. They
//! only read packets and always return TC_ACT_UNSPEC: traffic is never
//! dropped, delayed or altered.

use aya_ebpf::{
    bindings::TC_ACT_UNSPEC,
    helpers::{bpf_ktime_get_ns, bpf_skb_load_bytes},
    macros::classifier,
    programs::TcContext,
};
use tracer_ebpf::{
    flow_state, kind, snapshot_mode, tcp_flag, FlowValue, RawEvent, SnapArgs, Snapshot, FAMILY_V4,
    FAMILY_V6, SNAP_CHUNK, SNAP_CHUNKS_PER_PACKET,
};

use super::maps::{
    blank_event, bump, emit, flow_key, is_edge, port_watched, wake_flags, EVENTS, FLOWS, IFACE_L2,
    SETTINGS, SNAP_ARGS, SNAP_BUF, SNAP_PROGS,
};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMPV6_DEST_UNREACH: u8 = 1;

#[classifier]
pub fn otr_tc_ingress(ctx: TcContext) -> i32 {
    let _ = handle(&ctx, true);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn otr_tc_egress(ctx: TcContext) -> i32 {
    let _ = handle(&ctx, false);
    TC_ACT_UNSPEC
}

/// Where the transport header starts and which addresses the packet carries.
struct Ip {
    /// Link-layer header length before the IP header.
    l2: usize,
    family: u32,
    proto: u8,
    src: [u8; 16],
    dst: [u8; 16],
    l4: usize,
}

#[inline(always)]
fn handle(ctx: &TcContext, ingress: bool) -> Option<()> {
    let proto = u16::from_be(ctx.skb.protocol() as u16);
    if proto != ETH_P_IP && proto != ETH_P_IPV6 {
        return None;
    }
    // SAFETY: the context points at a valid __sk_buff for the program's run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: plain map lookup; the value is copied out.
    let l2 = unsafe { IFACE_L2.get(&ifindex) }.copied().unwrap_or(14) as usize;
    let ip = parse_ip(ctx, proto, l2)?;
    match ip.proto {
        IPPROTO_TCP => tcp(ctx, &ip, ingress, ifindex),
        IPPROTO_ICMP | IPPROTO_ICMPV6 if !ingress => icmp(ctx, &ip, ifindex),
        _ => None,
    }
}

#[inline(always)]
fn parse_ip(ctx: &TcContext, proto: u16, l2: usize) -> Option<Ip> {
    let mut ip = Ip {
        l2,
        family: FAMILY_V4,
        proto: 0,
        src: [0; 16],
        dst: [0; 16],
        l4: 0,
    };
    if proto == ETH_P_IP {
        let h: [u8; 20] = ctx.load(l2).ok()?;
        let ihl = usize::from(h[0] & 0x0f) * 4;
        // Later fragments carry no transport header.
        if ihl < 20 || (u16::from_be_bytes([h[6], h[7]]) & 0x1fff) != 0 {
            return None;
        }
        ip.proto = h[9];
        ip.src[..4].copy_from_slice(&h[12..16]);
        ip.dst[..4].copy_from_slice(&h[16..20]);
        ip.l4 = l2 + ihl;
    } else {
        let h: [u8; 40] = ctx.load(l2).ok()?;
        ip.family = FAMILY_V6;
        ip.proto = h[6];
        ip.src.copy_from_slice(&h[8..24]);
        ip.dst.copy_from_slice(&h[24..40]);
        ip.l4 = l2 + 40;
    }
    Some(ip)
}

#[inline(always)]
fn tcp(ctx: &TcContext, ip: &Ip, ingress: bool, ifindex: u32) -> Option<()> {
    // The whole fixed header must be there, options aside.
    let th: [u8; 20] = ctx.load(ip.l4).ok()?;
    let sport = u16::from_be_bytes([th[0], th[1]]);
    let dport = u16::from_be_bytes([th[2], th[3]]);
    let seq = u32::from_be_bytes([th[4], th[5], th[6], th[7]]);
    let flags = u32::from(th[13]);
    let (origin_port, edge_port, edge, origin) = if ingress {
        (dport, sport, &ip.src, &ip.dst)
    } else {
        (sport, dport, &ip.dst, &ip.src)
    };
    if !port_watched(origin_port) || !is_edge(ip.family, edge) {
        return None;
    }
    let mut ev = blank_event(0, ip.family);
    ev.edge_addr = *edge;
    ev.origin_addr = *origin;
    ev.edge_port = edge_port;
    ev.origin_port = origin_port;
    ev.tcp_flags = flags;
    ev.seq = seq;
    ev.ifindex = ifindex;
    let key = flow_key(&ev);
    let syn = flags & tcp_flag::SYN != 0;
    let ack = flags & tcp_flag::ACK != 0;
    // (budget in, budget out) when this packet is to be snapshotted: with
    // PAYLOAD, only segments that carry data.
    let header_end = ip.l4 as u32 + u32::from(th[12] >> 4) * 4;
    let has_payload = ctx.len() > header_end;
    let snap = match SETTINGS.get(0) {
        Some(s)
            if s.snapshots == snapshot_mode::ALL
                || (s.snapshots == snapshot_mode::PAYLOAD && has_payload) =>
        {
            Some((s.snap_budget_in, s.snap_budget_out))
        }
        _ => None,
    };
    let budget = snap.map(|(budget_in, budget_out)| if ingress { budget_in } else { budget_out });
    let rst = flags & tcp_flag::RST != 0;
    // The flow whose budget a snapshot of this packet spends, if any.
    let flow: Option<*mut FlowValue> = if rst {
        FLOWS.get_ptr_mut(&key)
    } else if ingress && syn && !ack {
        let value = FlowValue {
            state: flow_state::SYN_SEEN,
            snap_in: 0,
            snap_out: 0,
            answered: 0,
        };
        if FLOWS.insert(&key, &value, 0).is_err() {
            bump(tracer_ebpf::counter::FLOW_INSERT_ERRORS);
        }
        ev.kind = kind::EDGE_SYN;
        emit(&mut ev);
        FLOWS.get_ptr_mut(&key)
    } else if !ingress && syn && ack {
        ev.kind = kind::ORIGIN_SYNACK;
        emit(&mut ev);
        FLOWS.get_ptr_mut(&key)
    } else {
        // Anything else matters only for flows whose SYN we saw.
        let flow = FLOWS.get_ptr_mut(&key)?;
        // SAFETY: LRU value pointer valid for this program run.
        let state = unsafe { (*flow).state };
        if flags & tcp_flag::FIN != 0 {
            ev.kind = if ingress {
                kind::EDGE_FIN
            } else {
                kind::ORIGIN_FIN
            };
            emit(&mut ev);
        } else if ingress && ack && state == flow_state::SYN_SEEN {
            // SAFETY: as above.
            unsafe { (*flow).state = flow_state::ESTABLISHED };
            ev.kind = kind::EDGE_ACK;
            emit(&mut ev);
        } else if !has_payload {
            // A data segment: only its bytes may matter.
            return None;
        }
        if has_payload {
            // SAFETY: as above.
            unsafe {
                if !ingress {
                    (*flow).answered = 1;
                } else if (*flow).answered != 0 {
                    // The edge's next request: a new turn, fresh budgets.
                    (*flow).answered = 0;
                    (*flow).snap_in = 0;
                    (*flow).snap_out = 0;
                }
            }
        }
        Some(flow)
    };
    if rst {
        ev.kind = if ingress {
            kind::EDGE_RST
        } else {
            kind::ORIGIN_RST
        };
        emit(&mut ev);
    }
    // The snapshot program takes the packet's bytes (and forgets a reset
    // flow after): tail-called, it is verified once, on its own.
    if let (Some(budget), Some(_)) = (budget, flow) {
        if let Some(args) = SNAP_ARGS.get_ptr_mut(0) {
            let mut head = ev;
            head.kind = kind::PACKET;
            // SAFETY: per-CPU slot; this CPU runs the tail call next.
            unsafe {
                *args = SnapArgs {
                    head,
                    key,
                    l2: ip.l2 as u32,
                    header_end,
                    budget,
                    ingress: u32::from(ingress),
                    remove: u32::from(rst),
                    _pad: 0,
                };
                SNAP_PROGS.tail_call(ctx, 0);
            }
        }
    }
    // No snapshot (or the tail call failed): a reset flow is forgotten here.
    if rst {
        let _ = FLOWS.remove(&key);
    }
    Some(())
}

/// Tail-called by both TC programs for a packet to snapshot.
#[classifier]
pub fn otr_tc_snapshot(ctx: TcContext) -> i32 {
    if let Some(args) = SNAP_ARGS.get(0) {
        let args = *args;
        if let Some(flow) = FLOWS.get_ptr_mut(&args.key) {
            snapshot(
                &ctx,
                &args.head,
                args.ingress != 0,
                args.l2 as usize,
                args.header_end,
                flow,
                args.budget,
            );
        }
        if args.remove != 0 {
            let _ = FLOWS.remove(&args.key);
        }
    }
    TC_ACT_UNSPEC
}

/// Send the packet's bytes, in chunks, while the flow's budget for this
/// direction lasts. Costs nothing once the budget is spent.
#[inline(always)]
fn snapshot(
    ctx: &TcContext,
    ev: &RawEvent,
    ingress: bool,
    l2: usize,
    header_end: u32,
    flow: *mut FlowValue,
    budget: u32,
) {
    // SAFETY: LRU value pointer valid for this program run.
    let used = unsafe {
        if ingress {
            (*flow).snap_in
        } else {
            (*flow).snap_out
        }
    };
    let wire = ctx.len();
    // The budget counts payload bytes only (as `analyze` does): the headers
    // of a packet always come with it, then as much payload as is left.
    let payload = wire.saturating_sub(header_end);
    if payload > 0 && used >= budget {
        return;
    }
    let take = core::cmp::min(payload, budget.saturating_sub(used));
    let end = core::cmp::min(wire, header_end + take);
    let mut offset = 0u32;
    const _: () = assert!(SNAP_CHUNK == 2048, "the asm mask below is SNAP_CHUNK - 1");
    for _ in 0..SNAP_CHUNKS_PER_PACKET {
        if offset >= end {
            break;
        }
        let len = core::cmp::min(end - offset, SNAP_CHUNK as u32);
        if len == 0 {
            break;
        }
        // Identity for 1..=SNAP_CHUNK, and provably in that range for the
        // verifier; the mask is asm so that LLVM cannot fold it away.
        let mut masked = u64::from(len - 1);
        // SAFETY: register arithmetic only.
        unsafe { core::arch::asm!("{0} &= 2047", inout(reg) masked) };
        let len = masked as u32 + 1;
        // The chunk is built in a per-CPU buffer and copied into the ring
        // (not reserved there): a held reservation keeps old verifiers
        // (6.1) from pruning, and they walked this loop 450,000 times.
        let Some(rec) = SNAP_BUF.get_ptr_mut(0) else {
            break;
        };
        // SAFETY: `rec` points at this CPU's Snapshot buffer; `len` is at
        // most SNAP_CHUNK.
        let ok = unsafe {
            (*rec).head = *ev;
            (*rec).head.kind = kind::PACKET;
            (*rec).head.aux0 = u32::from(!ingress);
            (*rec).head.ts_ns = bpf_ktime_get_ns();
            (*rec).wire_len = wire;
            (*rec).offset = offset;
            (*rec).len = len;
            (*rec).l2_len = l2 as u32;
            bpf_skb_load_bytes(
                ctx.skb.skb as *const _,
                offset,
                (*rec).data.as_mut_ptr().cast(),
                len,
            ) == 0
        };
        if !ok {
            break;
        }
        // SAFETY: the buffer was filled above.
        if EVENTS
            .output::<Snapshot>(unsafe { &*rec }, wake_flags())
            .is_err()
        {
            bump(tracer_ebpf::counter::RINGBUF_LOST);
            break;
        }
        offset += len;
    }
    let used = used + take;
    // SAFETY: as above.
    unsafe {
        if ingress {
            (*flow).snap_in = used;
        } else {
            (*flow).snap_out = used;
        }
    }
}

/// An ICMP(v6) destination-unreachable leaving toward the edge about a TCP
/// segment the edge sent to a watched port (a firewall's REJECT).
#[inline(always)]
fn icmp(ctx: &TcContext, ip: &Ip, ifindex: u32) -> Option<()> {
    let head: [u8; 2] = ctx.load(ip.l4).ok()?;
    let v6 = ip.family == FAMILY_V6;
    if (v6 && (ip.proto != IPPROTO_ICMPV6 || head[0] != ICMPV6_DEST_UNREACH))
        || (!v6 && (ip.proto != IPPROTO_ICMP || head[0] != ICMP_DEST_UNREACH))
    {
        return None;
    }
    // The quoted packet: the edge's segment, edge -> origin.
    let inner = ip.l4 + 8;
    let (proto_inner, inner_src, inner_dst, inner_l4) = if v6 {
        let h: [u8; 40] = ctx.load(inner).ok()?;
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s.copy_from_slice(&h[8..24]);
        d.copy_from_slice(&h[24..40]);
        (h[6], s, d, inner + 40)
    } else {
        let h: [u8; 20] = ctx.load(inner).ok()?;
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s[..4].copy_from_slice(&h[12..16]);
        d[..4].copy_from_slice(&h[16..20]);
        (h[9], s, d, inner + usize::from(h[0] & 0x0f) * 4)
    };
    if proto_inner != IPPROTO_TCP {
        return None;
    }
    // RFC 792 quotes at least 8 bytes of the transport header: ports and seq.
    let th: [u8; 8] = ctx.load(inner_l4).ok()?;
    let edge_port = u16::from_be_bytes([th[0], th[1]]);
    let origin_port = u16::from_be_bytes([th[2], th[3]]);
    if !port_watched(origin_port) || !is_edge(ip.family, &ip.dst) {
        return None;
    }
    let mut ev = blank_event(kind::ORIGIN_ICMP_UNREACH, ip.family);
    ev.edge_addr = inner_src;
    ev.origin_addr = inner_dst;
    ev.edge_port = edge_port;
    ev.origin_port = origin_port;
    ev.seq = u32::from_be_bytes([th[4], th[5], th[6], th[7]]);
    ev.ifindex = ifindex;
    ev.aux0 = u32::from(head[0]);
    ev.aux1 = u32::from(head[1]);
    emit(&mut ev);
    Some(())
}
