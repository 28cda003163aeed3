//! The TLS program, tail-called by the turn program for each payload
//! segment of a quiet TLS connection. It keeps the edge's `ClientHello`
//! (map `HELLOS`), reads the `ServerHello`'s version and cipher suite, and
//! then follows record headers (type and length; nothing is decrypted) in
//! both directions, by the same rules as userspace's record walk
//! (`proto::tls_records`): the edge's `Finished`, the origin's session
//! tickets, each request's first record and its response's (not for a
//! connection whose edge offered HTTP/2: only its handshake is followed). A healthy turn
//! is counted and timed here. Anything else (an alert while it may matter,
//! a record that fits no rule, a segment out of order, a header split
//! across segments, a `HelloRetryRequest`, an unknown cipher suite) turns
//! the connection loud, with its `ClientHello`, and hands the segment to the
//! snapshot program.

use aya_ebpf::{
    bindings::TC_ACT_UNSPEC, helpers::bpf_skb_load_bytes, macros::classifier, programs::TcContext,
};
use tracer_ebpf::{
    counter, flow_flag, kind, measure, tls_phase, FlowValue, SnapArgs, HEAD_BYTES, HELLO_BYTES,
};

use super::{
    alpn::{self, Alpn},
    maps::{
        bump, now_ns, observe, wake_flags, EVENTS, FLOWS, HELLOS, HELLO_BUF, SETTINGS, SNAP_ARGS,
    },
    turn::{bounded, finish},
};

/// Record content types.
const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
/// Record header: type, version, length.
const HEADER: u32 = 5;
/// Most record headers read in one segment (a TLS 1.3 server flight is
/// about six records; a 64 KiB segment of a download, four or five).
const MAX_RECORDS: u32 = 8;
/// Longest record taken for a session ticket (OpenSSL's are ~250 bytes).
const TICKET_MAX: u32 = 1024;
/// The first bytes of a `HelloRetryRequest`'s fixed random (RFC 8446 4.1.3).
const HRR_RANDOM: [u8; 8] = [0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11];

#[classifier]
pub fn otr_tc_tls(ctx: TcContext) -> i32 {
    let _ = tls(&ctx);
    TC_ACT_UNSPEC
}

#[inline(always)]
fn tls(ctx: &TcContext) -> Option<()> {
    let args: SnapArgs = *SNAP_ARGS.get(0)?;
    let f = FLOWS.get_ptr_mut(&args.key)?;
    let ingress = args.ingress != 0;
    let len = ctx.len().saturating_sub(args.header_end);
    // SAFETY: LRU value pointer valid for this program run.
    let fine = if unsafe { (*f).flags } & flow_flag::TLS == 0 {
        hello(ctx, f, &args, len)
    } else {
        match order(f, &args, len, ingress) {
            Order::New => walk(ctx, f, &args, len, ingress),
            Order::Again => true,
            Order::Broken => false,
        }
    };
    finish(ctx, f, &args, fine);
    Some(())
}

/// The edge's first segment: a whole `ClientHello` record, kept.
#[inline(always)]
fn hello(ctx: &TcContext, f: *mut FlowValue, args: &SnapArgs, len: u32) -> bool {
    let Ok(h) = ctx.load::<[u8; 5]>(args.header_end as usize) else {
        return false;
    };
    let rec = u32::from(u16::from_be_bytes([h[3], h[4]])) + HEADER;
    // Alone in its segment (no early data), and small enough to keep.
    if h[0] != HANDSHAKE || h[1] != 3 || rec != len || rec > HELLO_BYTES as u32 {
        return false;
    }
    let Some(buf) = HELLO_BUF.get_ptr_mut(0) else {
        return false;
    };
    let seq = args.head.seq;
    // SAFETY: this CPU's buffer; `f` as above.
    unsafe {
        let n = bounded(rec, HELLO_BYTES as u32);
        if bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            args.header_end,
            (*buf).bytes.as_mut_ptr().cast(),
            n,
        ) != 0
        {
            return false;
        }
        (*buf).head = args.head;
        (*buf).head.kind = kind::HELLO;
        (*buf).head.ts_ns = now_ns();
        (*buf).len = n;
        (*buf).isn = (*f).isn;
        if HELLOS.insert(&args.key, &*buf, 0).is_err() {
            return false;
        }
        match alpn::offer(&(*buf).bytes, n) {
            Alpn::H2 => {
                (*f).flags |= flow_flag::H2;
                bump(counter::HTTP2);
            }
            Alpn::Other => {}
            Alpn::Unknown => return false,
        }
        if matches!(SETTINGS.get(0), Some(s) if s.hellos != 0)
            && EVENTS
                .output::<tracer_ebpf::Hello>(&*buf, wake_flags())
                .is_err()
        {
            bump(counter::RINGBUF_LOST);
        }
        (*f).flags |= flow_flag::TLS | flow_flag::WAITING;
        (*f).tls_phase = tls_phase::HELLO;
        (*f).req_ns = (*buf).head.ts_ns;
        (*f).req_seq = seq;
        (*f).req_ack = args.ack;
        (*f).head_len = 0;
        (*f).in_next = seq.wrapping_add(len);
        (*f).rec_in = seq.wrapping_add(rec);
    }
    true
}

/// Where a segment stands in its direction's bytes.
enum Order {
    /// The next bytes: their records are read.
    New,
    /// The origin sending bytes again: nothing new.
    Again,
    /// A gap or an overlap, or the edge sending again (it was not
    /// acknowledged): read in userspace.
    Broken,
}

#[inline(always)]
fn order(f: *mut FlowValue, args: &SnapArgs, len: u32, ingress: bool) -> Order {
    let seq = args.head.seq;
    // SAFETY: as above.
    unsafe {
        if ingress {
            // The edge writes after the origin closed: the two crossed.
            if (*f).flags & flow_flag::FIN_OUT != 0 || seq != (*f).in_next {
                return Order::Broken;
            }
            (*f).in_next = seq.wrapping_add(len);
        } else {
            let next = (*f).out_next;
            if next == 0 {
                // The origin's first bytes start with a record.
                (*f).rec_out = seq;
            } else if seq != next {
                let end = seq.wrapping_add(len);
                return if (end.wrapping_sub(next) as i32) <= 0 {
                    Order::Again
                } else {
                    Order::Broken
                };
            }
            (*f).out_next = seq.wrapping_add(len);
        }
    }
    Order::New
}

/// Read the headers of the records that start in this segment.
#[inline(always)]
fn walk(ctx: &TcContext, f: *mut FlowValue, args: &SnapArgs, len: u32, ingress: bool) -> bool {
    let seq = args.head.seq;
    // SAFETY: as above.
    let mut pos = unsafe {
        if ingress {
            (*f).rec_in
        } else {
            (*f).rec_out
        }
    };
    for _ in 0..MAX_RECORDS {
        let off = pos.wrapping_sub(seq);
        if off >= len {
            break;
        }
        if off > len - HEADER.min(len) {
            // The header continues in the next segment.
            return false;
        }
        let at = args.header_end + (off & 0xffff);
        let Ok(h) = ctx.load::<[u8; 5]>(at as usize) else {
            return false;
        };
        let rlen = u32::from(u16::from_be_bytes([h[3], h[4]]));
        if h[1] != 3 || !record(ctx, f, args, ingress, h[0], rlen, (pos, at, len - off)) {
            return false;
        }
        pos = pos.wrapping_add(HEADER + rlen);
    }
    if pos.wrapping_sub(seq) < len {
        // More records in one segment than are read.
        return false;
    }
    // SAFETY: as above.
    unsafe {
        if ingress {
            (*f).rec_in = pos;
        } else {
            (*f).rec_out = pos;
        }
    }
    true
}

/// One record header: true while nothing about it may be a failure.
/// `(seq, at, left)`: where it starts in the stream and in the packet, and
/// the segment's bytes from there.
#[inline(always)]
fn record(
    ctx: &TcContext,
    f: *mut FlowValue,
    args: &SnapArgs,
    ingress: bool,
    t: u8,
    rlen: u32,
    (seq, at, left): (u32, u32, u32),
) -> bool {
    // SAFETY: as above.
    unsafe {
        let phase = (*f).tls_phase;
        let v13 = (*f).tls_version == 0x0304;
        let waiting = (*f).flags & flow_flag::WAITING != 0;
        let h2 = (*f).flags & flow_flag::H2 != 0;
        if phase == tls_phase::HELLO {
            return !ingress && t == HANDSHAKE && server_hello(ctx, f, at);
        }
        if t == ALERT {
            // A close_notify between turns (TLS 1.2); any other alert is
            // read in userspace.
            return phase == tls_phase::DONE && !waiting;
        }
        if phase == tls_phase::SHAKE {
            return match t {
                CHANGE_CIPHER_SPEC => true,
                // TLS 1.2 flights; a second ClientHello is read in userspace.
                HANDSHAKE => !(ingress && v13),
                // TLS 1.2 and HTTP/2: the origin's SETTINGS after its
                // Finished, before any request.
                APPLICATION_DATA if !ingress && !v13 && h2 => {
                    (*f).tls_phase = tls_phase::DONE;
                    (*f).flags &= !flow_flag::WAITING;
                    true
                }
                // TLS 1.3: the origin's encrypted flight.
                APPLICATION_DATA if !ingress => v13,
                APPLICATION_DATA if !v13 => {
                    // TLS 1.2: the request (after the origin's Finished, or
                    // before it with False Start).
                    (*f).tls_phase = tls_phase::DONE;
                    if !h2 {
                        request(ctx, f, args, seq, at, left);
                    } else {
                        (*f).flags &= !flow_flag::WAITING;
                    }
                    true
                }
                APPLICATION_DATA if rlen == (*f).finished_len => {
                    // The edge's Finished: the handshake is done.
                    (*f).tls_phase = tls_phase::DONE;
                    (*f).flags &= !flow_flag::WAITING;
                    true
                }
                // A client certificate and its proof; an alert-sized record
                // (the edge refusing the certificate) is read in userspace.
                APPLICATION_DATA => rlen > (*f).control_len,
                _ => false,
            };
        }
        if h2 {
            // HTTP/2: frames of many streams, no turns to follow.
            return true;
        }
        if t != APPLICATION_DATA {
            // TLS 1.2 with False Start: the origin's CCS and Finished come
            // after the first request.
            return !ingress
                && !v13
                && (t == CHANGE_CIPHER_SPEC || t == HANDSHAKE)
                && waiting
                && (*f).turns == 0;
        }
        if ingress {
            if rlen <= (*f).control_len {
                // close_notify or KeyUpdate: harmless between turns.
                return !waiting;
            }
            if !waiting {
                request(ctx, f, args, seq, at, left);
            }
            return true;
        }
        if v13 && (*f).flags & flow_flag::TICKETS_DONE == 0 {
            if rlen <= (*f).control_len {
                return false;
            }
            if rlen <= TICKET_MAX {
                // OpenSSL's two tickets, of one length; anything else is
                // told apart in userspace.
                if (*f).ticket_len == 0 {
                    (*f).ticket_len = rlen;
                } else if rlen == (*f).ticket_len {
                    (*f).flags |= flow_flag::TICKETS_DONE;
                    (*f).tickets_ns = now_ns();
                } else {
                    return false;
                }
                if waiting {
                    // The response, when it comes, follows the tickets.
                    (*f).req_ack = seq.wrapping_add(HEADER + rlen);
                }
                return true;
            }
            if (*f).ticket_len != 0 {
                return false;
            }
            (*f).flags |= flow_flag::TICKETS_DONE;
        }
        if waiting {
            if rlen <= (*f).control_len {
                return false;
            }
            answered(f);
        }
    }
    true
}

/// The `ServerHello` at `at`: its cipher suite says the version (TLS 1.3
/// suites are used by nothing else) and the lengths of the records to come.
#[inline(always)]
fn server_hello(ctx: &TcContext, f: *mut FlowValue, at: u32) -> bool {
    // Record header (5), handshake type and length (4), legacy version
    // (2), random (32), session id length (1).
    let Ok(h) = ctx.load::<[u8; 44]>(at as usize) else {
        return false;
    };
    let sid = u32::from(h[43]);
    if h[5] != 2 || sid > 32 || h[11..19] == HRR_RANDOM {
        return false;
    }
    let Ok(c) = ctx.load::<[u8; 2]>((at + 44 + sid) as usize) else {
        return false;
    };
    let cipher = u16::from_be_bytes(c);
    let legacy = u16::from_be_bytes([h[9], h[10]]);
    // RFC 8446 B.4: (hash, AEAD tag) lengths.
    let (version, hash, tag) = match cipher {
        0x1301 | 0x1303 | 0x1304 => (0x0304, 32, 16),
        0x1302 => (0x0304, 48, 16),
        0x1305 => (0x0304, 32, 8),
        _ if (0x0301..=0x0303).contains(&legacy) => (legacy, 0, 0),
        _ => return false,
    };
    // SAFETY: as above.
    unsafe {
        (*f).tls_version = u32::from(version);
        (*f).tls_cipher = u32::from(cipher);
        if version == 0x0304 {
            (*f).finished_len = 4 + hash + 1 + tag;
            (*f).control_len = 5 + 1 + tag;
        }
        (*f).tls_phase = tls_phase::SHAKE;
        (*f).server_hello_ns = now_ns();
        observe(
            measure::CLIENT_HELLO_TO_SERVER_HELLO,
            (*f).server_hello_ns.saturating_sub((*f).req_ns),
        );
    }
    true
}

/// A request's first record at `seq` (`at` in the packet, `left` bytes of
/// the segment from there): noted, its first bytes kept.
#[inline(always)]
fn request(ctx: &TcContext, f: *mut FlowValue, args: &SnapArgs, seq: u32, at: u32, left: u32) {
    // SAFETY: as above.
    unsafe {
        (*f).flags |= flow_flag::WAITING;
        (*f).req_ns = now_ns();
        (*f).req_seq = seq;
        (*f).req_ack = args.ack;
        let n = bounded(left, HEAD_BYTES as u32);
        (*f).head_len = if bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            at,
            (*f).head.as_mut_ptr().cast(),
            n,
        ) == 0
        {
            n
        } else {
            0
        };
    }
}

/// The origin's first record after a request: a healthy turn.
#[inline(always)]
fn answered(f: *mut FlowValue) {
    // SAFETY: as above.
    unsafe {
        (*f).flags &= !flow_flag::WAITING;
        (*f).turns += 1;
        observe(
            measure::REQUEST_TO_FIRST_BYTE,
            now_ns().saturating_sub((*f).req_ns),
        );
    }
    bump(counter::REQUESTS);
    bump(counter::TLS_REQUESTS);
}
