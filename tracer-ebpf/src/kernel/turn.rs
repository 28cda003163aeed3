//! The turn program, tail-called by both TC programs for each payload
//! segment of a quiet flow: a request's first segment is noted (its time,
//! its first bytes), a response's first segment judged. A healthy turn (an
//! HTTP/1 status line of 2xx-4xx whose head ends in that segment) is
//! counted and timed here; anything else (a 1xx or 5xx status, bytes that
//! are no HTTP, a longer head, a resent request, the edge writing after the
//! origin's FIN) turns the flow loud and hands the segment to the snapshot
//! program. TLS connections go to the TLS program.

use aya_ebpf::{
    bindings::TC_ACT_UNSPEC, helpers::bpf_skb_load_bytes, macros::classifier, programs::TcContext,
};
use tracer_ebpf::{
    counter, flow_flag, handover, kind, measure, prog_slot, FlowValue, SnapArgs, HEAD_BYTES,
};

use super::{
    maps::{
        bump, emit, forget, go_loud, is_loud, now_ns, observe, FLOWS, HELLOS, SNAP_ARGS, SNAP_BUF,
        SNAP_PROGS,
    },
    quiet,
};

/// Bytes of a response's first segment searched for the end of its head.
const SCAN: u32 = 1024;

#[classifier]
pub fn otr_tc_turn(ctx: TcContext) -> i32 {
    let _ = turn(&ctx);
    TC_ACT_UNSPEC
}

#[inline(always)]
fn turn(ctx: &TcContext) -> Option<()> {
    let args: SnapArgs = *SNAP_ARGS.get(0)?;
    let f = FLOWS.get_ptr_mut(&args.key)?;
    let ingress = args.ingress != 0;
    let len = ctx.len().saturating_sub(args.header_end);
    if is_tls(ctx, f, &args, ingress) {
        // SAFETY: SNAP_ARGS still holds this packet's arguments.
        unsafe { SNAP_PROGS.tail_call(ctx, prog_slot::TLS) };
        // No TLS program: userspace reads the connection.
        finish(ctx, f, &args, false);
        return None;
    }
    let fine = if ingress {
        request(ctx, f, &args, len)
    } else {
        response(ctx, f, &args, len)
    };
    finish(ctx, f, &args, fine);
    Some(())
}

/// A TLS connection, or the edge's first bytes are a TLS handshake record.
#[inline(always)]
fn is_tls(ctx: &TcContext, f: *mut FlowValue, args: &SnapArgs, ingress: bool) -> bool {
    // SAFETY: LRU value pointer valid for this program run.
    unsafe {
        if (*f).flags & flow_flag::TLS != 0 {
            return true;
        }
        let known = flow_flag::WAITING | flow_flag::H2;
        if !ingress || (*f).flags & known != 0 || (*f).req_ns != 0 {
            return false;
        }
    }
    matches!(ctx.load::<[u8; 2]>(args.header_end as usize), Ok([22, 3]))
}

/// After a payload segment of a quiet flow was judged: a segment that may
/// be a failure turns the flow loud and goes to the snapshot program;
/// otherwise a FIN with it is noted (both sides closed: the flow is gone).
#[inline(always)]
pub(super) fn finish(ctx: &TcContext, f: *mut FlowValue, args: &SnapArgs, fine: bool) {
    let ingress = args.ingress != 0;
    let mut ev = args.head;
    ev.kind = if ingress {
        kind::EDGE_FIN
    } else {
        kind::ORIGIN_FIN
    };
    if !fine {
        go_loud(f, &ev, handover::PAYLOAD);
        quiet::loud_turn(f, ingress);
        if args.fin != 0 {
            emit(&mut ev);
        }
        // Snapshots are on, or this program would not run.
        // SAFETY: SNAP_ARGS still holds this packet's arguments.
        unsafe { SNAP_PROGS.tail_call(ctx, prog_slot::SNAPSHOT) };
        return;
    }
    if args.fin != 0 {
        if quiet::fin(f, ingress, &ev) {
            forget(&args.key);
            let _ = HELLOS.remove(&args.key);
        } else if is_loud(f) {
            emit(&mut ev);
        }
    }
}

/// An edge segment: true while nothing in it may be a failure.
#[inline(always)]
fn request(ctx: &TcContext, f: *mut FlowValue, args: &SnapArgs, len: u32) -> bool {
    let seq = args.head.seq;
    // SAFETY: LRU value pointer valid for this program run.
    unsafe {
        let flags = (*f).flags;
        if flags & flow_flag::H2 != 0 {
            // Frames of many streams: no turn is followed.
            return true;
        }
        if flags & flow_flag::FIN_OUT != 0 {
            // The edge writes after the origin closed: the two crossed.
            return false;
        }
        if flags & flow_flag::WAITING != 0 {
            // More of the request; one sent again was not acknowledged.
            if (seq.wrapping_sub((*f).in_next) as i32) < 0 {
                return false;
            }
            (*f).in_next = seq.wrapping_add(len);
            return true;
        }
        // A new request: HTTP/1 starts with a method, prior-knowledge
        // HTTP/2 with its preface; anything else is read in userspace.
        let Ok(first) = ctx.load::<u8>(args.header_end as usize) else {
            return false;
        };
        if first == b'P' && is_h2_preface(ctx, args.header_end) {
            (*f).flags |= flow_flag::H2;
            bump(counter::HTTP2);
            return true;
        }
        if !first.is_ascii_uppercase() {
            return false;
        }
        (*f).flags |= flow_flag::WAITING;
        (*f).req_ns = now_ns();
        (*f).req_seq = seq;
        (*f).req_ack = args.ack;
        (*f).in_next = seq.wrapping_add(len);
        let n = bounded(len, HEAD_BYTES as u32);
        (*f).head_len = if bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            args.header_end,
            (*f).head.as_mut_ptr().cast(),
            n,
        ) == 0
        {
            n
        } else {
            0
        };
        true
    }
}

/// `PRI * HTTP/2.0`: a prior-knowledge HTTP/2 (h2c) connection.
#[inline(always)]
fn is_h2_preface(ctx: &TcContext, at: u32) -> bool {
    matches!(ctx.load::<[u8; 4]>(at as usize), Ok(b) if &b == b"PRI ")
}

/// An origin segment: true while nothing in it may be a failure.
#[inline(always)]
fn response(ctx: &TcContext, f: *mut FlowValue, args: &SnapArgs, len: u32) -> bool {
    // SAFETY: as above.
    unsafe {
        if (*f).flags & flow_flag::WAITING == 0 {
            // More of an answered response, or the origin speaking first.
            return true;
        }
        if !status_ok(ctx, args.header_end, len) {
            return false;
        }
        (*f).flags &= !flow_flag::WAITING;
        (*f).turns += 1;
        observe(
            measure::REQUEST_TO_FIRST_BYTE,
            now_ns().saturating_sub((*f).req_ns),
        );
    }
    bump(counter::REQUESTS);
    true
}

/// `HTTP/1.x NNN` with a 2xx-4xx status, and the head ends in this segment.
#[inline(always)]
fn status_ok(ctx: &TcContext, at: u32, len: u32) -> bool {
    if len < 16 {
        return false;
    }
    let Ok(h) = ctx.load::<[u8; 12]>(at as usize) else {
        return false;
    };
    &h[..7] == b"HTTP/1."
        && h[8] == b' '
        && (b'2'..=b'4').contains(&h[9])
        && h[10].is_ascii_digit()
        && h[11].is_ascii_digit()
        && head_ends(ctx, at, len)
}

/// Does `\r\n\r\n` occur in the first [`SCAN`] bytes of the segment? Every
/// window of four bytes holds exactly one offset that is a multiple of
/// four, so only those are read, and the two windows a CR or LF there can
/// belong to are checked.
#[inline(always)]
fn head_ends(ctx: &TcContext, at: u32, len: u32) -> bool {
    let Some(buf) = SNAP_BUF.get_ptr_mut(0) else {
        return false;
    };
    let n = bounded(len, SCAN);
    // SAFETY: this CPU's buffer (the snapshot program, run after, rewrites
    // it); `n` is at most SCAN, within `data`.
    unsafe {
        let data = (*buf).data.as_mut_ptr();
        if bpf_skb_load_bytes(ctx.skb.skb as *const _, at, data.cast(), n) != 0 {
            return false;
        }
        let data = &(*buf).data;
        let window = |s: u32| {
            let s = s & (SCAN - 1);
            s + 4 <= n
                && data[s as usize] == b'\r'
                && data[s as usize + 1] == b'\n'
                && data[s as usize + 2] == b'\r'
                && data[s as usize + 3] == b'\n'
        };
        for i in 0..SCAN / 4 {
            let p = i * 4;
            if p >= n {
                break;
            }
            let b = data[p as usize];
            if b == b'\n' && ((p >= 1 && window(p - 1)) || (p >= 3 && window(p - 3))) {
                return true;
            }
            if b == b'\r' && (window(p) || (p >= 2 && window(p - 2))) {
                return true;
            }
        }
    }
    false
}

/// `min(len, max)`, provably within `1..=max` for the verifier (`max` a
/// power of two); 0 stays 1, harmless for a length the caller checked.
#[inline(always)]
pub(super) fn bounded(len: u32, max: u32) -> u32 {
    let n = if len < max { len } else { max };
    let mut masked = u64::from(n.saturating_sub(1));
    let mask = u64::from(max - 1);
    // SAFETY: register arithmetic only; asm so that LLVM keeps the mask.
    unsafe { core::arch::asm!("{0} &= {1}", inout(reg) masked, in(reg) mask) };
    masked as u32 + 1
}
