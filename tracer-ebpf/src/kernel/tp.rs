//! Tracepoint programs: kernel drops with their reason (skb:kfree_skb),
//! resets sent and received, SYN-ACK retransmits and handshake state changes.
//! Field offsets come from the running kernel's tracefs formats and BTF,
//! handed over by the agent in `TP_LAYOUTS` / `DROP_LAYOUT`. Any of them
//! about a quiet flow turns it loud (state changes excepted).

use aya_ebpf::{helpers::bpf_probe_read_kernel, macros::tracepoint, programs::TracePointContext};
use tracer_ebpf::{
    addr_layout, counter, flow_state, handover, kind, tp_index, RawEvent, DROP_BY_NETFILTER,
    FAMILY_V4, FAMILY_V6,
};

use super::{
    maps::{
        blank_event, bump, emit, flow_key, go_loud, is_edge, is_loud, port_watched, quiet_mode,
        DROP_LAYOUT, FLOWS, SETTINGS, TP_LAYOUTS,
    },
    quiet,
};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const IPPROTO_TCP: u8 = 6;
const ABSENT: u32 = u32::MAX;

#[tracepoint]
pub fn otr_kfree_skb(ctx: TracePointContext) -> u32 {
    let _ = kfree_skb(&ctx);
    0
}

#[tracepoint]
pub fn otr_send_reset(ctx: TracePointContext) -> u32 {
    let _ = sock_event(&ctx, tp_index::SEND_RESET, kind::KERNEL_SEND_RESET);
    0
}

#[tracepoint]
pub fn otr_recv_reset(ctx: TracePointContext) -> u32 {
    let _ = sock_event(&ctx, tp_index::RECV_RESET, kind::KERNEL_RECV_RESET);
    0
}

#[tracepoint]
pub fn otr_retr_synack(ctx: TracePointContext) -> u32 {
    let _ = sock_event(&ctx, tp_index::RETRANS_SYNACK, kind::KERNEL_RETRANS_SYNACK);
    0
}

#[tracepoint]
pub fn otr_set_state(ctx: TracePointContext) -> u32 {
    let _ = sock_event(&ctx, tp_index::SET_STATE, kind::KERNEL_SET_STATE);
    0
}

/// Read a field of the tracepoint record; failures are counted.
#[inline(always)]
fn field<T>(ctx: &TracePointContext, offset: u32) -> Option<T> {
    // SAFETY: the offset comes from the tracepoint's own format file.
    match unsafe { ctx.read_at::<T>(offset as usize) } {
        Ok(v) => Some(v),
        Err(_) => {
            bump(counter::READ_ERRORS);
            None
        }
    }
}

/// Read kernel memory; failures are counted.
#[inline(always)]
fn kread<T>(addr: u64) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel validates the address itself.
    match unsafe { bpf_probe_read_kernel(addr as *const T) } {
        Ok(v) => Some(v),
        Err(_) => {
            bump(counter::READ_ERRORS);
            None
        }
    }
}

/// A socket-level tracepoint. Every one of them stores the local end as
/// `saddr`/`sport` (tcp_send_reset reverses the segment's tuple for that), so
/// the remote address must be an edge address and the local port watched.
#[inline(always)]
fn sock_event(ctx: &TracePointContext, index: u32, event_kind: u32) -> Option<()> {
    let layout = TP_LAYOUTS.get(index)?;
    let mut ev = blank_event(event_kind, 0);
    if layout.addr_layout == addr_layout::SPLIT {
        // The local port first: most sockets (clients, other services) stop here.
        ev.origin_port = field(ctx, layout.sport)?;
        if !port_watched(ev.origin_port) {
            return None;
        }
        let family: u16 = if layout.family == ABSENT {
            inferred_family(ctx, layout.daddr_v6)?
        } else {
            field(ctx, layout.family)?
        };
        ev.edge_port = field(ctx, layout.dport)?;
        if family == AF_INET {
            ev.family = FAMILY_V4;
            let s: [u8; 4] = field(ctx, layout.saddr)?;
            let d: [u8; 4] = field(ctx, layout.daddr)?;
            ev.origin_addr[..4].copy_from_slice(&s);
            ev.edge_addr[..4].copy_from_slice(&d);
        } else if family == AF_INET6 {
            ev.family = FAMILY_V6;
            ev.origin_addr = field(ctx, layout.saddr_v6)?;
            ev.edge_addr = field(ctx, layout.daddr_v6)?;
            if ev.edge_addr == [0; 16] {
                // A dual-stack listener's IPv4 request socket: its IPv6
                // addresses are unset, its IPv4 ones are the connection's.
                ev.family = FAMILY_V4;
                let s: [u8; 4] = field(ctx, layout.saddr)?;
                let d: [u8; 4] = field(ctx, layout.daddr)?;
                ev.origin_addr = [0; 16];
                ev.edge_addr = [0; 16];
                ev.origin_addr[..4].copy_from_slice(&s);
                ev.edge_addr[..4].copy_from_slice(&d);
            }
        } else {
            return None;
        }
    } else if layout.addr_layout == addr_layout::SOCKADDR {
        let s: [u8; 28] = field(ctx, layout.saddr)?;
        let d: [u8; 28] = field(ctx, layout.daddr)?;
        let family = u16::from_ne_bytes([s[0], s[1]]);
        ev.origin_port = u16::from_be_bytes([s[2], s[3]]);
        ev.edge_port = u16::from_be_bytes([d[2], d[3]]);
        if family == AF_INET {
            ev.family = FAMILY_V4;
            ev.origin_addr[..4].copy_from_slice(&s[4..8]);
            ev.edge_addr[..4].copy_from_slice(&d[4..8]);
        } else if family == AF_INET6 {
            ev.family = FAMILY_V6;
            ev.origin_addr.copy_from_slice(&s[8..24]);
            ev.edge_addr.copy_from_slice(&d[8..24]);
        } else {
            return None;
        }
    } else {
        return None;
    }
    unmap_v4(&mut ev);
    if layout.protocol != ABSENT {
        let protocol: u16 = field(ctx, layout.protocol)?;
        if protocol != u16::from(IPPROTO_TCP) {
            return None;
        }
    }
    if !port_watched(ev.origin_port) || !is_edge(ev.family, &ev.edge_addr) {
        return None;
    }
    ev.aux0 = if layout.extra0 == ABSENT {
        ABSENT
    } else {
        field::<u32>(ctx, layout.extra0)?
    };
    ev.aux1 = if layout.extra1 == ABSENT {
        ABSENT
    } else {
        field::<u32>(ctx, layout.extra1)?
    };
    if quiet_mode() {
        // Only flows whose SYN was seen; a quiet flow's state changes are
        // its own business, any reset or SYN-ACK resend turns it loud.
        let f = FLOWS.get_ptr_mut(&flow_key(&ev))?;
        if !is_loud(f) {
            if event_kind == kind::KERNEL_SET_STATE {
                let settings = SETTINGS.get(0)?;
                // The socket took the handshake's ACK, which may have come
                // in on an interface that is not watched.
                // SAFETY: LRU value pointer valid for this program run.
                if ev.aux0 == settings.tcp_syn_recv
                    && ev.aux1 == settings.tcp_established
                    && unsafe { (*f).state } == flow_state::SYN_SEEN
                {
                    quiet::established(f);
                }
                return None;
            }
            go_loud(f, &ev, handover::TCP_EVENT);
        }
    }
    if event_kind == kind::KERNEL_SET_STATE {
        // Only the handshake's outcome and the end of a connection matter.
        let settings = SETTINGS.get(0)?;
        if ev.aux0 != settings.tcp_syn_recv && ev.aux1 != settings.tcp_close {
            return None;
        }
    }
    emit(&mut ev);
    Some(())
}

/// An IPv4 edge on a dual-stack socket (`[::]:80` without `IPV6_V6ONLY`):
/// its socket is IPv6 with IPv4-mapped addresses (`::ffff:a.b.c.d`), its
/// packets are IPv4. The event is made IPv4, as the flow is.
#[inline(always)]
fn unmap_v4(ev: &mut RawEvent) {
    let mapped = |a: &[u8; 16]| a[..10].iter().all(|b| *b == 0) && a[10] == 0xff && a[11] == 0xff;
    if ev.family != FAMILY_V6 || !mapped(&ev.edge_addr) || !mapped(&ev.origin_addr) {
        return;
    }
    ev.family = FAMILY_V4;
    for a in [&mut ev.edge_addr, &mut ev.origin_addr] {
        let v4 = [a[12], a[13], a[14], a[15]];
        *a = [0; 16];
        a[..4].copy_from_slice(&v4);
    }
}

/// The family of a split record without a `family` field: the kernel
/// fills `daddr_v6` with the v4-mapped address for IPv4 sockets (or leaves
/// it unset for IPv4 requests), with the socket's own address otherwise.
#[inline(always)]
fn inferred_family(ctx: &TracePointContext, daddr_v6: u32) -> Option<u16> {
    let d: [u8; 16] = field(ctx, daddr_v6)?;
    let mapped = d[..10].iter().all(|b| *b == 0)
        && ((d[10] == 0xff && d[11] == 0xff) || d[10..].iter().all(|b| *b == 0));
    Some(if mapped { AF_INET } else { AF_INET6 })
}

/// skb:kfree_skb: a TCP segment of a watched flow that the kernel dropped, in
/// either direction, with the kernel's reason.
#[inline(always)]
fn kfree_skb(ctx: &TracePointContext) -> Option<()> {
    let layout = DROP_LAYOUT.get(0)?;
    if layout.enabled == 0 {
        return None;
    }
    let protocol: u16 = field(ctx, layout.tp_protocol)?;
    if protocol != ETH_P_IP && protocol != ETH_P_IPV6 {
        return None;
    }
    let reason: u32 = if layout.tp_reason == ABSENT {
        // No reasons on this kernel: only a drop called from the netfilter
        // hook is known for what it is; every other free stays unreported.
        let location: u64 = field(ctx, layout.tp_location)?;
        if location < layout.nf_start || location >= layout.nf_end {
            return None;
        }
        DROP_BY_NETFILTER
    } else {
        field(ctx, layout.tp_reason)?
    };
    let skb: u64 = field(ctx, layout.tp_skbaddr)?;
    let head: u64 = kread(skb + u64::from(layout.skb_head))?;
    let network: u16 = kread(skb + u64::from(layout.skb_network_header))?;
    if network == u16::MAX {
        return None;
    }
    let iph = head + u64::from(network);
    let mut ev: RawEvent = blank_event(kind::KERNEL_DROP, FAMILY_V4);
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    let l4 = if protocol == ETH_P_IP {
        let h: [u8; 20] = kread(iph)?;
        if h[0] >> 4 != 4 || h[9] != IPPROTO_TCP {
            return None;
        }
        src[..4].copy_from_slice(&h[12..16]);
        dst[..4].copy_from_slice(&h[16..20]);
        iph + u64::from(h[0] & 0x0f) * 4
    } else {
        let h: [u8; 40] = kread(iph)?;
        if h[0] >> 4 != 6 || h[6] != IPPROTO_TCP {
            return None;
        }
        ev.family = FAMILY_V6;
        src.copy_from_slice(&h[8..24]);
        dst.copy_from_slice(&h[24..40]);
        iph + 40
    };
    let th: [u8; 14] = kread(l4)?;
    let sport = u16::from_be_bytes([th[0], th[1]]);
    let dport = u16::from_be_bytes([th[2], th[3]]);
    if port_watched(dport) && is_edge(ev.family, &src) {
        ev.edge_addr = src;
        ev.origin_addr = dst;
        ev.edge_port = sport;
        ev.origin_port = dport;
    } else if port_watched(sport) && is_edge(ev.family, &dst) {
        ev.edge_addr = dst;
        ev.origin_addr = src;
        ev.edge_port = dport;
        ev.origin_port = sport;
        ev.aux1 = 1;
    } else {
        return None;
    }
    ev.seq = u32::from_be_bytes([th[4], th[5], th[6], th[7]]);
    ev.tcp_flags = u32::from(th[13]);
    ev.aux0 = reason;
    if quiet_mode() {
        match FLOWS.get_ptr_mut(&flow_key(&ev)) {
            Some(f) => go_loud(f, &ev, handover::DROP),
            // A SYN may start a flow in userspace; other segments of
            // unknown flows say nothing.
            None if ev.aux1 == 1 || ev.tcp_flags & 0x12 != 0x02 => return None,
            None => {}
        }
    }
    emit(&mut ev);
    Some(())
}
