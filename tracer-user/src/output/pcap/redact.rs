//! The secrets out of one connection's packets before they reach the
//! evidence file: each direction's payload put back in stream order (so that
//! a header split across segments, a retransmission or a reordering is
//! judged once), [`crate::proto::secrets`] says which bytes to mask or drop,
//! and each packet is rewritten in place: masked bytes become `x` (lengths
//! and sequence numbers stay true), dropped bytes are cut from the end of the
//! captured data (the original length stays), the TCP checksum is recomputed,
//! and a comment says what was done.

use std::collections::BTreeMap;

use crate::proto::secrets::{self, Action, Span};

/// One packet of the connection, as held for the evidence file.
pub struct Frame {
    /// Origin -> edge.
    pub outbound: bool,
    /// Link-layer header length at the start of `data`.
    pub l2_len: u32,
    /// The packet as captured (maybe cut short of its wire length).
    pub data: Vec<u8>,
    /// What was done to it, for the pcapng comment.
    pub comment: Option<String>,
}

/// Where a TCP segment's parts are in a frame.
struct Segment {
    v6: bool,
    ip: usize,
    tcp: usize,
    payload: usize,
    /// End of the segment on the wire (may be past the captured data).
    end: usize,
    seq: u32,
    syn: bool,
}

fn be16(d: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes(
        d.get(at..at + 2)?.try_into().ok()?,
    )))
}

fn segment(data: &[u8], l2_len: u32) -> Option<Segment> {
    let ip = usize::try_from(l2_len).ok()?;
    let (v6, tcp, end) = match data.get(ip)? >> 4 {
        4 if *data.get(ip + 9)? == 6 => {
            let ihl = usize::from(data[ip] & 0x0f) * 4;
            (false, ip + ihl, ip + be16(data, ip + 2)?)
        }
        6 if *data.get(ip + 6)? == 6 => (true, ip + 40, ip + 40 + be16(data, ip + 4)?),
        _ => return None,
    };
    let offset = usize::from(*data.get(tcp + 12)? >> 4) * 4;
    let seq = u32::from_be_bytes(data.get(tcp + 4..tcp + 8)?.try_into().ok()?);
    let syn = data.get(tcp + 13)? & 0x02 != 0;
    let payload = tcp + offset;
    // Headers cut short of their own length: nothing to place.
    (offset >= 20 && tcp >= ip + 20 && payload <= end && payload <= data.len()).then_some(Segment {
        v6,
        ip,
        tcp,
        payload,
        end,
        seq,
        syn,
    })
}

/// A direction's payload: each frame's place in it, and the bytes put back
/// in order as far as they run without a gap.
struct Stream {
    /// (frame, offset in the stream; negative: before its start).
    places: Vec<(usize, i64)>,
    bytes: Vec<u8>,
    at_start: bool,
}

fn stream(frames: &[Frame], segs: &[Option<Segment>], outbound: bool) -> Stream {
    let mine = |i: &usize| frames[*i].outbound == outbound;
    let syn = (0..frames.len()).filter(mine).find_map(|i| {
        segs[i]
            .as_ref()
            .filter(|s| s.syn)
            .map(|s| s.seq.wrapping_add(1))
    });
    let with_payload: Vec<usize> = (0..frames.len())
        .filter(mine)
        .filter(|&i| segs[i].as_ref().is_some_and(|s| s.end > s.payload))
        .collect();
    let base = syn.or_else(|| {
        with_payload
            .first()
            .and_then(|&i| Some(segs[i].as_ref()?.seq))
    });
    let Some(base) = base else {
        return Stream {
            places: Vec::new(),
            bytes: Vec::new(),
            at_start: false,
        };
    };
    let mut places: Vec<(usize, i64)> = with_payload
        .iter()
        .filter_map(|&i| {
            let s = segs[i].as_ref()?;
            Some((i, i64::from(s.seq.wrapping_sub(base).cast_signed())))
        })
        .collect();
    places.sort_by_key(|&(i, at)| (at, i));
    let mut bytes = Vec::new();
    for &(i, at) in &places {
        let Some(s) = segs[i].as_ref() else { continue };
        let Ok(at) = usize::try_from(at) else {
            continue;
        };
        if at > bytes.len() {
            break;
        }
        let data = &frames[i].data;
        let captured = &data[s.payload.min(data.len())..s.end.min(data.len())];
        if at + captured.len() > bytes.len() {
            bytes.extend_from_slice(&captured[bytes.len() - at..]);
        }
        if captured.len() < s.end - s.payload {
            break;
        }
    }
    Stream {
        places,
        bytes,
        at_start: syn.is_some(),
    }
}

/// Mask and drop the secrets of one connection's frames (in capture order);
/// `keep_path`: the URL path may stay (`--show-path`). Returns how many
/// frames were rewritten.
pub fn redact(frames: &mut [Frame], keep_path: bool) -> u64 {
    let segs: Vec<Option<Segment>> = frames.iter().map(|f| segment(&f.data, f.l2_len)).collect();
    let mut rewritten = 0;
    // What cannot be read as TCP (but for ICMP, which quotes only headers)
    // keeps its IP header and nothing after it.
    for (f, seg) in frames.iter_mut().zip(&segs) {
        if seg.is_none() && cut_unreadable(f) {
            rewritten += 1;
        }
    }
    for outbound in [false, true] {
        let s = stream(frames, &segs, outbound);
        let spans = secrets::plan(&s.bytes, !outbound, s.at_start, keep_path);
        for &(i, at) in &s.places {
            if let Some(seg) = &segs[i] {
                if rewrite(&mut frames[i], seg, at, &s.bytes, &spans) {
                    rewritten += 1;
                }
            }
        }
    }
    rewritten
}

/// Cut a frame that is not readable TCP after its IP header; true if cut.
fn cut_unreadable(f: &mut Frame) -> bool {
    let Ok(ip) = usize::try_from(f.l2_len) else {
        return false;
    };
    let (header, proto) = match f.data.get(ip).map(|b| b >> 4) {
        Some(4) => (
            usize::from(f.data[ip] & 0x0f) * 4,
            f.data.get(ip + 9).copied(),
        ),
        Some(6) => (40, f.data.get(ip + 6).copied()),
        _ => (0, None),
    };
    if matches!(proto, Some(1 | 58)) {
        return false;
    }
    let keep = (ip + header).min(f.data.len());
    if keep >= f.data.len() {
        return false;
    }
    let dropped = f.data.len() - keep;
    f.data.truncate(keep);
    f.comment = Some(format!(
        "origin-tracer; dropped: all after the IP header of a packet not read as TCP ({dropped} bytes)"
    ));
    true
}

/// Apply the spans to one frame whose payload starts at `at` in the stream
/// `bytes` (as far as it is known); true if it changed.
fn rewrite(f: &mut Frame, seg: &Segment, at: i64, bytes: &[u8], spans: &[Span]) -> bool {
    let known = bytes.len();
    let captured = seg.end.min(f.data.len()).saturating_sub(seg.payload);
    let mut said: BTreeMap<(bool, &'static str), usize> = BTreeMap::new();
    // Keep up to the first byte that is dropped or cannot be placed.
    let end = at + off(captured);
    let mut cut: Option<(i64, &'static str)> = None;
    let mut earliest = |o: i64, why: &'static str| {
        if cut.is_none_or(|(c, _)| o < c) {
            cut = Some((o, why));
        }
    };
    if at < 0 {
        earliest(at, "payload before the stream's start");
    }
    let known = i64::try_from(known).unwrap_or(i64::MAX);
    if end > known {
        earliest(known.max(at), "payload the capture cannot place");
    }
    for sp in spans.iter().filter(|sp| sp.action == Action::Drop) {
        let (from, to) = (off(sp.range.start), off(sp.range.end));
        if from < end && to > at {
            earliest(from.max(at), sp.what.describe());
        }
    }
    let mut keep = cut.map_or(captured, |(c, _)| usize::try_from(c - at).unwrap_or(0));
    let mut why = cut.map(|(_, w)| w);
    // A copy (a retransmission) whose bytes differ from the ones the
    // stream was judged on is not placed.
    if let (Ok(start), true) = (usize::try_from(at), keep > 0) {
        let mine = &f.data[seg.payload..seg.payload + keep];
        if bytes
            .get(start..start + keep)
            .is_none_or(|judged| judged != mine)
        {
            keep = 0;
            why = Some("payload that differs from an earlier copy");
        }
    }
    if let (Some(why), true) = (why, captured > keep) {
        said.insert((false, why), captured - keep);
    }
    let old = f.data[seg.payload..seg.payload + keep].to_vec();
    let start = usize::try_from(at).unwrap_or(0);
    for span in spans.iter().filter(|sp| sp.action == Action::Mask) {
        let from = span.range.start.max(start);
        let to = span.range.end.min(start + keep);
        if from < to && at >= 0 {
            for b in &mut f.data[seg.payload + from - start..seg.payload + to - start] {
                *b = b'x';
            }
            *said.entry((true, span.what.describe())).or_default() += to - from;
        }
    }
    if said.is_empty() {
        return false;
    }
    let whole = f.data.len() >= seg.end;
    if keep < captured {
        // Bytes left out: a checksum over them would say something about
        // them, and none over the rest can be verified. Zero.
        f.data[seg.tcp + 16..seg.tcp + 18].fill(0);
    } else if whole {
        tcp_checksum(&mut f.data, seg);
    } else {
        let new = f.data[seg.payload..seg.payload + keep].to_vec();
        patch_checksum(&mut f.data, seg, &old, &new);
    }
    f.data.truncate(seg.payload + keep);
    let part = |masked: bool| -> Vec<String> {
        said.iter()
            .filter(|((m, _), _)| *m == masked)
            .map(|((_, what), n)| format!("{what} ({n} bytes)"))
            .collect()
    };
    let mut comment = String::from("origin-tracer");
    for (masked, verb) in [(true, "masked"), (false, "dropped")] {
        let list = part(masked);
        if !list.is_empty() {
            comment.push_str(&format!("; {verb}: {}", list.join(", ")));
        }
    }
    f.comment = Some(comment);
    true
}

fn off(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One's-complement sum of bytes placed from an even (`odd` false) or odd
/// offset of the checksummed data.
fn sum(bytes: &[u8], odd: bool) -> u64 {
    bytes
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (i % 2 == 0) ^ odd {
                u64::from(b) << 8
            } else {
                u64::from(b)
            }
        })
        .sum()
}

fn fold(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    u16::try_from(s).unwrap_or(u16::MAX)
}

/// Recompute the checksum of a segment captured whole.
fn tcp_checksum(d: &mut [u8], seg: &Segment) {
    d[seg.tcp + 16..seg.tcp + 18].fill(0);
    let len = seg.end - seg.tcp;
    let mut s = if seg.v6 {
        sum(&d[seg.ip + 8..seg.ip + 40], false) + len as u64 + 6
    } else {
        sum(&d[seg.ip + 12..seg.ip + 20], false) + len as u64 + 6
    };
    s += sum(&d[seg.tcp..seg.end], false);
    let c = !fold(s);
    d[seg.tcp + 16..seg.tcp + 18].copy_from_slice(&c.to_be_bytes());
}

/// Update the checksum of a segment cut short for payload bytes changed
/// from `old` to `new` (RFC 1624: the sum moves by what the bytes moved).
fn patch_checksum(d: &mut [u8], seg: &Segment, old: &[u8], new: &[u8]) {
    let odd = (seg.payload - seg.tcp) % 2 == 1;
    let c = u16::from_be_bytes([d[seg.tcp + 16], d[seg.tcp + 17]]);
    let s = u64::from(!c) + u64::from(!fold(sum(old, odd))) + u64::from(fold(sum(new, odd)));
    let c = !fold(s);
    d[seg.tcp + 16..seg.tcp + 18].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
#[path = "redact_tests.rs"]
mod tests;
