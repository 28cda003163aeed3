use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use super::*;

const EDGE: [u8; 4] = [198, 18, 0, 1];
const ORIGIN: [u8; 4] = [198, 18, 0, 2];
const ISN_IN: u32 = 1_000;
const ISN_OUT: u32 = 5_000;

/// An Ethernet frame of the connection; `inbound`: from the edge.
fn frame(inbound: bool, seq: u32, syn: bool, payload: &[u8]) -> Frame {
    let (src, dst, sport, dport) = if inbound {
        (EDGE, ORIGIN, 40_000, 80)
    } else {
        (ORIGIN, EDGE, 80, 40_000)
    };
    let b = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, seq, 64_000);
    let b = if syn { b.syn() } else { b.ack(1).psh() };
    let mut data = Vec::new();
    b.write(&mut data, payload).expect("a frame");
    Frame {
        outbound: !inbound,
        l2_len: 14,
        data,
        comment: None,
    }
}

fn frame_v6(payload: &[u8], seq: u32) -> Frame {
    let mut data = Vec::new();
    PacketBuilder::ip(etherparse::IpHeaders::Ipv6(
        etherparse::Ipv6Header {
            source: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            destination: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            hop_limit: 64,
            ..Default::default()
        },
        etherparse::Ipv6Extensions::default(),
    ))
    .tcp(40_000, 80, seq, 64_000)
    .ack(1)
    .write(&mut data, payload)
    .expect("a frame");
    Frame {
        outbound: false,
        l2_len: 0,
        data,
        comment: None,
    }
}

/// The captured payload (maybe cut short).
fn payload(f: &Frame) -> Vec<u8> {
    let s = segment(&f.data, f.l2_len).expect("still TCP");
    f.data[s.payload.min(f.data.len())..s.end.min(f.data.len())].to_vec()
}

/// The TCP checksum is right for the (whole) frame.
fn checksum_ok(f: &Frame) -> bool {
    let p = SlicedPacket::from_ip(&f.data[f.l2_len as usize..]).expect("parses");
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        return false;
    };
    let want = match &p.net {
        Some(NetSlice::Ipv4(ip)) => t
            .to_header()
            .calc_checksum_ipv4(&ip.header().to_header(), t.payload()),
        Some(NetSlice::Ipv6(ip)) => t
            .to_header()
            .calc_checksum_ipv6(&ip.header().to_header(), t.payload()),
        _ => return false,
    };
    want.is_ok_and(|c| c == t.checksum())
}

fn syns() -> Vec<Frame> {
    vec![
        frame(true, ISN_IN, true, b""),
        frame(false, ISN_OUT, true, b""),
    ]
}

#[test]
fn a_request_loses_its_secrets_and_keeps_its_lengths_and_checksum() {
    let req = b"GET /x?token=s3cret HTTP/1.1\r\nHost: a\r\nCookie: session=abc\r\n\r\n";
    let mut frames = syns();
    frames.push(frame(true, ISN_IN + 1, false, req));
    let len = frames[2].data.len();
    assert_eq!(redact(&mut frames, true), 1);
    let f = &frames[2];
    assert_eq!(f.data.len(), len, "masking keeps the length");
    assert_eq!(
        payload(f),
        b"GET /x?xxxxxxxxxxxx HTTP/1.1\r\nHost: a\r\nCookie:xxxxxxxxxxxx\r\n\r\n"
    );
    assert!(checksum_ok(f), "the checksum is recomputed");
    let comment = f.comment.as_deref().expect("a comment");
    assert!(
        comment.contains("masked: cookie (12 bytes), query string (12 bytes)"),
        "{comment}"
    );
    assert!(frames[0].comment.is_none() && frames[1].comment.is_none());
}

#[test]
fn a_header_split_across_segments_and_retransmitted_is_masked_everywhere() {
    let part1 = b"GET / HTTP/1.1\r\nAuthori";
    let part2 = b"zation: Bearer abc\r\n\r\n";
    let mut frames = syns();
    // Out of order, and the second part retransmitted.
    let second = ISN_IN + 1 + u32::try_from(part1.len()).expect("short");
    frames.push(frame(true, second, false, part2));
    frames.push(frame(true, ISN_IN + 1, false, part1));
    frames.push(frame(true, second, false, part2));
    redact(&mut frames, true);
    assert_eq!(payload(&frames[3]), part1.to_vec(), "the name is kept");
    for f in [&frames[2], &frames[4]] {
        assert_eq!(payload(f), b"zation:xxxxxxxxxxx\r\n\r\n");
        assert!(checksum_ok(f));
    }
}

#[test]
fn bodies_are_cut_from_the_captured_data_and_said_in_the_comment() {
    let head = b"HTTP/1.1 200 OK\r\nSet-Cookie: a=b\r\nContent-Length: 10\r\n\r\n";
    let mut resp = head.to_vec();
    resp.extend_from_slice(b"0123456789");
    let mut frames = syns();
    frames.push(frame(false, ISN_OUT + 1, false, &resp));
    let wire = frames[2].data.len();
    redact(&mut frames, true);
    let f = &frames[2];
    assert_eq!(f.data.len(), wire - 10, "the body is not in the file");
    let comment = f.comment.as_deref().expect("a comment");
    assert!(
        comment.contains("masked: set-cookie (4 bytes)"),
        "{comment}"
    );
    assert!(comment.contains("dropped: body (10 bytes)"), "{comment}");
    // The IP header still gives the wire length: tools see a cut packet.
    assert_eq!(
        usize::from(u16::from_be_bytes([f.data[16], f.data[17]])),
        wire - 14
    );
}

#[test]
fn a_frame_cut_short_gets_its_checksum_patched_not_recomputed() {
    let req = b"GET /?a=b HTTP/1.1\r\nCookie: c=d\r\nAccept: */*\r\n\r\n";
    let mut whole = syns();
    whole.push(frame(true, ISN_IN + 1, false, req));
    let mut cut = syns();
    cut.push(frame(true, ISN_IN + 1, false, req));
    // Cut before the head's end: the last header is read as it is.
    let keep = cut[2].data.len() - 4;
    cut[2].data.truncate(keep);
    redact(&mut whole, true);
    redact(&mut cut, true);
    assert!(checksum_ok(&whole[2]));
    // The patched checksum is the one of the masked packet on the wire.
    assert_eq!(cut[2].data[..keep], whole[2].data[..keep]);
}

#[test]
fn tls_is_left_as_it_is() {
    let hello = [0x16, 0x03, 0x01, 0x00, 0x04, 1, 2, 3, 4];
    let mut frames = syns();
    frames.push(frame(true, ISN_IN + 1, false, &hello));
    let before = frames[2].data.clone();
    assert_eq!(redact(&mut frames, true), 0);
    assert_eq!(frames[2].data, before);
    assert!(frames[2].comment.is_none());
}

#[test]
fn without_the_syn_nothing_but_tls_is_kept_and_ipv6_is_read() {
    let mut frames = vec![frame_v6(b"Cookie: a\r\n\r\n", 77)];
    redact(&mut frames, true);
    assert!(
        payload(&frames[0]).is_empty(),
        "mid-stream bytes are dropped"
    );
    assert!(frames[0]
        .comment
        .as_deref()
        .is_some_and(|c| c.contains("dropped")));
    let mut frames = vec![frame_v6(b"GET /?q HTTP/1.1\r\n\r\n", 77)];
    redact(&mut frames, true);
    assert_eq!(payload(&frames[0]), b"GET /?x HTTP/1.1\r\n\r\n");
    assert!(checksum_ok(&frames[0]));
}

#[test]
fn bytes_after_a_gap_cannot_be_placed_and_are_dropped() {
    let mut frames = syns();
    frames.push(frame(true, ISN_IN + 1, false, b"GET / HTTP/1.1\r\n"));
    // 10 bytes never seen, then what may be the rest of a secret header.
    frames.push(frame(
        true,
        ISN_IN + 1 + 16 + 10,
        false,
        b"abc: secret\r\n\r\n",
    ));
    redact(&mut frames, true);
    assert!(payload(&frames[3]).is_empty());
    let comment = frames[3].comment.as_deref().expect("a comment");
    assert!(comment.contains("cannot place"), "{comment}");
}

#[test]
fn frames_that_are_not_tcp_are_left_alone() {
    let mut data = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(ORIGIN, EDGE, 64)
        .icmpv4_raw(3, 3, [0; 4])
        .write(&mut data, b"quoted header")
        .expect("a frame");
    let mut frames = vec![Frame {
        outbound: true,
        l2_len: 14,
        data: data.clone(),
        comment: None,
    }];
    assert_eq!(redact(&mut frames, true), 0);
    assert_eq!(frames[0].data, data);
}
