//! The snapshot program, tail-called by both TC programs (and by the turn
//! program) for a packet of a loud flow: its bytes go to userspace in
//! chunks while the flow's budget for that direction lasts.

use aya_ebpf::{
    bindings::TC_ACT_UNSPEC,
    helpers::{bpf_ktime_get_ns, bpf_skb_load_bytes},
    macros::classifier,
    programs::TcContext,
};
use tracer_ebpf::{kind, FlowValue, RawEvent, Snapshot, SNAP_CHUNK, SNAP_CHUNKS_PER_PACKET};

use super::maps::{bump, forget, wake_flags, EVENTS, FLOWS, SNAP_ARGS, SNAP_BUF};

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
            forget(&args.key);
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
