//! TC programs (ingress and egress): pick the edge's SYN/ACK/RST/FIN and the
//! origin's SYN-ACK/RST/FIN/ICMP-unreachable out of the packet stream. A
//! quiet flow's control segments are noted in its map value only; a loud
//! flow's go out as events (see [`tracer_ebpf::FlowValue`]). They only read
//! packets and always return TC_ACT_UNSPEC: traffic is never dropped,
//! delayed or altered.

use aya_ebpf::{bindings::TC_ACT_UNSPEC, macros::classifier, programs::TcContext};
use tracer_ebpf::{
    flow_state, handover, kind, prog_slot, snapshot_mode, tcp_flag, FlowKey, FlowValue, SnapArgs,
    FAMILY_V4, FAMILY_V6,
};

use super::{
    maps::{
        blank_event, emit, flow_key, forget, go_loud, is_edge, is_loud, l2_len, new_flow, now_ns,
        port_watched, quiet_mode, FLOWS, SETTINGS, SNAP_ARGS, SNAP_PROGS,
    },
    quiet,
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
    let l2 = l2_len(ifindex);
    if l2 > PEEK_MAX {
        // The agent attaches to no such link.
        return None;
    }
    if !may_matter(ctx, proto, l2, ingress) {
        return None;
    }
    let ip = parse_ip(ctx, proto, l2)?;
    match ip.proto {
        IPPROTO_TCP => tcp(ctx, &ip, ingress, ifindex),
        IPPROTO_ICMP | IPPROTO_ICMPV6 if !ingress => icmp(ctx, &ip, ifindex),
        _ => None,
    }
}

/// The longest link-layer header the agent attaches behind
/// ([`tracer_ebpf::L2_MAX`]).
const PEEK_MAX: usize = tracer_ebpf::L2_MAX as usize;

/// The check every packet of the host pays: false for a TCP segment to or
/// from a port that is not watched (SSH, databases, the host's own
/// clients), read straight from the packet's linear part without a helper
/// call. True for everything else, and when the headers are not all in the
/// linear part: the full parse, by `bpf_skb_load_bytes`, decides then. Only
/// its answer leaves this function, so that the verifier does not walk the
/// rest of the program once per way of reading.
#[inline(always)]
fn may_matter(ctx: &TcContext, proto: u16, l2: usize, ingress: bool) -> bool {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + l2 + 40 > end {
        return true;
    }
    // SAFETY: [start + l2, start + l2 + 40) is within [data, data_end).
    let (ip_proto, l4) = unsafe {
        let h = (start + l2) as *const u8;
        if proto == ETH_P_IP {
            (*h.add(9), l2 + usize::from(*h & 0x0f) * 4)
        } else {
            (*h.add(6), l2 + 40)
        }
    };
    if ip_proto != IPPROTO_TCP || l4 > PEEK_MAX + 60 || start + l4 + 4 > end {
        return true;
    }
    // SAFETY: [start + l4, start + l4 + 4) is within [data, data_end).
    let port = unsafe {
        let p = (start + l4 + if ingress { 2 } else { 0 }) as *const u8;
        u16::from_be_bytes([*p, *p.add(1)])
    };
    port_watched(port)
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
    let (origin_port, edge_port, edge, origin) = if ingress {
        (dport, sport, &ip.src, &ip.dst)
    } else {
        (sport, dport, &ip.dst, &ip.src)
    };
    if !port_watched(origin_port) || !is_edge(ip.family, edge) {
        return None;
    }
    let seq = u32::from_be_bytes([th[4], th[5], th[6], th[7]]);
    let ack_no = u32::from_be_bytes([th[8], th[9], th[10], th[11]]);
    let flags = u32::from(th[13]);
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
    let rst = flags & tcp_flag::RST != 0;
    let fin = flags & tcp_flag::FIN != 0;
    let header_end = ip.l4 as u32 + u32::from(th[12] >> 4) * 4;
    let has_payload = ctx.len() > header_end;
    let s = SETTINGS.get(0)?;
    let quiet = s.quiet != 0;
    // With PAYLOAD, only segments that carry data are snapshotted.
    let snap_wanted =
        s.snapshots == snapshot_mode::ALL || (s.snapshots == snapshot_mode::PAYLOAD && has_payload);
    let budget = if ingress {
        s.snap_budget_in
    } else {
        s.snap_budget_out
    };
    let payload_judged = s.snapshots != snapshot_mode::OFF;
    // The flow whose budget a snapshot of this packet spends.
    let flow: *mut FlowValue = if rst {
        let flow = FLOWS.get_ptr_mut(&key);
        match flow {
            Some(f) => go_loud(f, &ev, handover::RESET),
            // Not a flow whose SYN was seen: nothing to diagnose.
            None if quiet => return None,
            None => {}
        }
        ev.kind = if ingress {
            kind::EDGE_RST
        } else {
            kind::ORIGIN_RST
        };
        emit(&mut ev);
        flow?
    } else if ingress && syn && !ack {
        let f = match FLOWS.get_ptr_mut(&key) {
            // The same SYN again: the edge got no answer in time.
            // SAFETY: LRU value pointer valid for this program run.
            Some(f) if unsafe { (*f).isn } == seq => {
                go_loud(f, &ev, handover::SYN_RESENT);
                f
            }
            // A reused 4-tuple replaces its old flow.
            old => new_flow(&key, &ev, !quiet, old.is_some())?,
        };
        if is_loud(f) {
            ev.kind = kind::EDGE_SYN;
            emit(&mut ev);
        }
        f
    } else if !ingress && syn && ack {
        let Some(f) = FLOWS.get_ptr_mut(&key) else {
            if !quiet {
                ev.kind = kind::ORIGIN_SYNACK;
                emit(&mut ev);
            }
            return None;
        };
        if !is_loud(f) {
            // SAFETY: as above.
            unsafe {
                if (*f).synack_ns == 0 {
                    (*f).synack_ns = now_ns();
                    (*f).origin_isn = seq;
                } else {
                    // Sent again: the edge did not acknowledge it in time.
                    go_loud(f, &ev, handover::SYNACK_RESENT);
                }
            }
        }
        if is_loud(f) {
            ev.kind = kind::ORIGIN_SYNACK;
            emit(&mut ev);
        }
        f
    } else {
        // Anything else matters only for flows whose SYN we saw.
        let f = FLOWS.get_ptr_mut(&key)?;
        // SAFETY: as above.
        let state = unsafe { (*f).state };
        let completes = ingress && ack && state == flow_state::SYN_SEEN;
        if !is_loud(f) {
            if completes {
                quiet::established(f);
            }
            if has_payload && payload_judged {
                // The turn program judges the payload (and the FIN with it).
                let args = SnapArgs {
                    head: ev,
                    key,
                    l2: ip.l2 as u32,
                    header_end,
                    budget,
                    ingress: u32::from(ingress),
                    remove: 0,
                    ack: ack_no,
                    fin: u32::from(fin),
                    _pad: 0,
                };
                tail_call(ctx, args, prog_slot::TURN);
            }
            if fin {
                if quiet::fin(f, ingress, &ev) {
                    return remove(&key);
                }
                if !is_loud(f) {
                    return None;
                }
            } else {
                return None;
            }
        } else if completes {
            // SAFETY: as above.
            unsafe { (*f).state = flow_state::ESTABLISHED };
        }
        if fin {
            ev.kind = if ingress {
                kind::EDGE_FIN
            } else {
                kind::ORIGIN_FIN
            };
            emit(&mut ev);
        } else if completes {
            ev.kind = kind::EDGE_ACK;
            emit(&mut ev);
        } else if !has_payload {
            // A data segment: only its bytes may matter.
            return None;
        }
        if has_payload {
            quiet::loud_turn(f, ingress);
        }
        f
    };
    // The snapshot program takes the packet's bytes (and forgets a reset
    // flow after): tail-called, it is verified once, on its own.
    if snap_wanted && is_loud(flow) {
        let args = SnapArgs {
            head: ev,
            key,
            l2: ip.l2 as u32,
            header_end,
            budget,
            ingress: u32::from(ingress),
            remove: u32::from(rst),
            ack: ack_no,
            fin: 0,
            _pad: 0,
        };
        tail_call(ctx, args, prog_slot::SNAPSHOT);
    }
    // No snapshot (or the tail call failed): a reset flow is forgotten here.
    if rst {
        forget(&key);
    }
    Some(())
}

#[inline(always)]
fn remove(key: &FlowKey) -> Option<()> {
    forget(key);
    None
}

/// Hand the packet to another program (`slot`); returns only if that
/// failed (the slot is empty).
#[inline(always)]
fn tail_call(ctx: &TcContext, mut args: SnapArgs, slot: u32) {
    if let Some(slot_args) = SNAP_ARGS.get_ptr_mut(0) {
        args.head.kind = kind::PACKET;
        // SAFETY: per-CPU slot; this CPU runs the tail call next.
        unsafe {
            *slot_args = args;
            SNAP_PROGS.tail_call(ctx, slot);
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
    match FLOWS.get_ptr_mut(&flow_key(&ev)) {
        Some(f) => go_loud(f, &ev, handover::ICMP),
        None if quiet_mode() => return None,
        None => {}
    }
    emit(&mut ev);
    Some(())
}
