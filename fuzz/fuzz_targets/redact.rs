//! Fuzz target `redact`: the evidence masking of `--write-pcap`. The input is
//! one edge direction's bytes with a planted credential (a `Cookie:` line
//! placed after the input's first bytes), cut into TCP segments where the
//! input says, some sent twice, the last maybe cut short as a snapshot is.
//! Nothing may panic, no frame grows, and the planted value never survives
//! unless the stream looks like TLS (which is kept as it is).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_user::output::pcap::redact::{redact, Frame};

/// The planted cookie value.
const MARK: &[u8] = b"SECRETMARK";

/// An IPv4 + TCP frame (no link layer) from the edge.
fn frame(seq: u32, syn: bool, payload: &[u8]) -> Frame {
    let total = 40 + payload.len();
    let mut d = vec![0u8; 40];
    d[0] = 0x45;
    d[2..4].copy_from_slice(&u16::try_from(total).unwrap_or(u16::MAX).to_be_bytes());
    d[8] = 64;
    d[9] = 6;
    d[12..16].copy_from_slice(&[198, 18, 0, 1]);
    d[16..20].copy_from_slice(&[198, 18, 0, 2]);
    d[20..22].copy_from_slice(&40_000u16.to_be_bytes());
    d[22..24].copy_from_slice(&80u16.to_be_bytes());
    d[24..28].copy_from_slice(&seq.to_be_bytes());
    d[32] = 0x50;
    d[33] = if syn { 0x02 } else { 0x18 };
    d.extend_from_slice(payload);
    Frame {
        outbound: false,
        l2_len: 0,
        data: d,
        comment: None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, rest)) = data.split_first() else {
        return;
    };
    let split = rest.len() / 2;
    let mut stream = rest[..split].to_vec();
    stream.extend_from_slice(b"\r\nCookie: ");
    stream.extend_from_slice(MARK);
    stream.extend_from_slice(b"\r\n");
    stream.extend_from_slice(&rest[split..]);
    let isn = 7u32;
    let mut frames = vec![frame(isn, true, b"")];
    let step = usize::from(cuts % 23) + 1;
    let mut at = 0;
    while at < stream.len() {
        let end = (at + step).min(stream.len());
        let seq = isn + 1 + u32::try_from(at).unwrap_or(0);
        frames.push(frame(seq, false, &stream[at..end]));
        if cuts & 0x80 != 0 && at % 3 == 0 {
            frames.push(frame(seq, false, &stream[at..end]));
        }
        at = end;
    }
    if cuts & 0x10 != 0 {
        // A header that claims more than the segment holds (data offset
        // 15 with 20 bytes of TCP header).
        if let Some(f) = frames.get_mut(1) {
            f.data[32] = 0xf0;
        }
    }
    if cuts & 0x40 != 0 {
        if let Some(last) = frames.last_mut() {
            let keep = last.data.len().saturating_sub(3).max(40);
            last.data.truncate(keep);
        }
    }
    let before: Vec<usize> = frames.iter().map(|f| f.data.len()).collect();
    redact(&mut frames, cuts & 0x20 != 0);
    let planted = split + 10..split + 10 + MARK.len();
    let tls = matches!(stream.as_slice(), [0x14..=0x17, 0x03, ..]);
    for (f, len) in frames.iter().zip(before).skip(1) {
        assert!(f.data.len() <= len, "a frame grew");
        if f.data.len() < 40 {
            // Not read as TCP: cut after its IP header, nothing else.
            assert_eq!(f.data.len(), 20, "a frame cut inside its headers");
            continue;
        }
        let seq = u32::from_be_bytes([f.data[24], f.data[25], f.data[26], f.data[27]]);
        let at = (seq - isn - 1) as usize;
        for (i, &b) in f.data[40..].iter().enumerate() {
            if planted.contains(&(at + i)) && !tls {
                assert_eq!(
                    b, b'x',
                    "a byte of the planted cookie survived: {:?}",
                    String::from_utf8_lossy(&stream)
                );
            }
        }
    }
});
