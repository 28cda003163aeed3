//! Fuzz target `payload`: segments of a connection, both directions, fed to
//! the payload layer (`diagnose::payload::App`): TCP reassembly by sequence
//! number (gaps, overlaps, retransmissions, wrap-around) and the TLS / HTTP
//! parsers on what it reassembles. The input is a list of segments, each a
//! 4-byte header (direction and flags, a sequence offset, a length) and its
//! bytes. Nothing may panic, and the `tls` / `http` facts never carry a
//! query string.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_user::diagnose::payload::App;

fuzz_target!(|data: &[u8]| {
    let mut app = App::default();
    let (mut seq_in, mut seq_out) = (u32::from(data.first().copied().unwrap_or(0)) << 24, 1u32);
    let mut rest = data;
    let mut ts = 0u64;
    while let [flags, back, len_hi, len_lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*len_hi, *len_lo]) & 0x3fff).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        rest = next;
        ts += 1_000;
        let outbound = flags & 1 == 1;
        let keep_path = flags & 2 == 2;
        // Step back by `back` bytes now and then: overlaps and retransmissions.
        let seq = if outbound { &mut seq_out } else { &mut seq_in };
        let at = if flags & 4 == 4 {
            seq.wrapping_sub(u32::from(*back))
        } else if flags & 8 == 8 {
            seq.wrapping_add(u32::from(*back)) // a gap
        } else {
            *seq
        };
        // The acknowledgement: what the other side sent so far (the start
        // of the next turn's response, on the edge's side).
        let ack = if outbound { seq_in } else { seq_out };
        let seq = if outbound { &mut seq_out } else { &mut seq_in };
        let _ = app.on_payload(ts, outbound, (at, ack), bytes, keep_path);
        *seq = at.wrapping_add(u32::try_from(bytes.len()).unwrap_or(0));
        let _ = (
            app.origin_blind(),
            app.tls_answered(),
            app.tls_tickets(),
            app.oversized_headers(),
            app.response_ok(),
            app.origin_sent_unseen(*seq, None),
        );
    }
    if let Some(path) = app.http_facts().and_then(|h| h.path) {
        assert!(!path.contains('?'), "a query string in the output: {path:?}");
    }
    let _ = app.tls_facts();
});
