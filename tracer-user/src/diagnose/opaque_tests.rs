//! Connections whose requests are not followed: HTTP/2 (h2c preface, ALPN
//! `h2` over TLS) and `101 Switching Protocols` give no 520/524 from their
//! frames, and are counted in the summary; their handshakes still are
//! diagnosed.

use super::*;

/// A TLS 1.3 `ClientHello` offering ALPN `protocols`.
fn client_hello_alpn(protocols: &[&str]) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[7; 32]);
    b.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    let mut list = Vec::new();
    for p in protocols {
        list.push(u8::try_from(p.len()).unwrap());
        list.extend_from_slice(p.as_bytes());
    }
    let mut alpn = u16::try_from(list.len()).unwrap().to_be_bytes().to_vec();
    alpn.extend_from_slice(&list);
    let mut ext = vec![0x00, 0x2b, 0, 3, 2, 0x03, 0x04, 0x00, 0x10];
    ext.extend_from_slice(&u16::try_from(alpn.len()).unwrap().to_be_bytes());
    ext.extend_from_slice(&alpn);
    b.extend_from_slice(&u16::try_from(ext.len()).unwrap().to_be_bytes());
    b.extend_from_slice(&ext);
    handshake(1, &b)
}

/// TLS 1.3 up to the edge's `Finished`, the edge offering `protocols`.
fn tls13_offering(port: u16, protocols: &[&str]) -> Wire {
    tls13_after_finished_with(port, &client_hello_alpn(protocols))
}

/// An HTTP/2 frame header and payload (RFC 9113 4.1).
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[test]
fn h2c_frames_are_no_turns_and_are_counted() {
    let preface = [
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        frame(4, 0, 0, &[]),
    ]
    .concat();
    // The origin's SETTINGS, then a request (HEADERS) the origin never
    // answers within the response timeout, and a SETTINGS ack that needs
    // no answer: nothing here is a turn.
    let events = Wire::new(1)
        .edge(&preface)
        .origin(&frame(4, 0, 0, &[0, 3, 0, 0, 0, 100]))
        .edge(&frame(4, 1, 0, &[]))
        .edge(&frame(1, 5, 1, &[0x82, 0x84, 0x86]))
        .wait(150_000)
        .events;
    let (f, stats) = run(&events, 200_000);
    assert!(f.is_empty(), "{f:#?}");
    assert_eq!(stats.per_request_off.http2, 1);
    assert_eq!(stats.healthy_requests, 0);
    // A reset after a frame of the edge is no reset after a request.
    let events = Wire::new(2)
        .edge(&preface)
        .origin(&frame(4, 0, 0, &[]))
        .edge(&frame(1, 5, 1, &[0x82]))
        .origin_closes(K::RstOut);
    let (f, stats) = run(&events, 3_000);
    assert!(f.is_empty(), "{f:#?}");
    assert_eq!(stats.per_request_off.http2, 1);
}

#[test]
fn the_preface_split_across_segments_is_still_the_preface() {
    let events = Wire::new(1)
        .edge(b"PRI * HT")
        .edge(b"TP/2.0\r\n\r\nSM\r\n\r\n")
        .origin(&frame(4, 0, 0, &[]))
        .edge(&frame(1, 5, 1, &[0x82]))
        .origin_closes(K::FinOut);
    let (f, stats) = run(&events, 3_000);
    assert!(f.is_empty(), "{f:#?}");
    assert_eq!(stats.per_request_off.http2, 1);
    // A request with the method `PRI` is a request like any other.
    let events = Wire::new(2)
        .edge(b"PRI /x HTTP/1.1\r\nHost: x\r\n\r\n")
        .origin_closes(K::FinOut);
    assert_eq!(single(&events, 3_000).cause, Cause::ClosedWithoutResponse);
}

#[test]
fn tls_offering_h2_follows_the_handshake_but_no_turns() {
    let req = record(23, &[0; 120]);
    let h2 = tls13_offering(1, &["h2", "http/1.1"])
        .origin(&record(23, &[0; 60]))
        .edge(&req)
        .wait(150_000)
        .events;
    let (f, stats) = run(&h2, 200_000);
    assert!(f.is_empty(), "no response timeout from frames: {f:#?}");
    assert_eq!(stats.per_request_off.http2, 1);
    // The same with only http/1.1 offered: a request and a 524.
    let h1 = tls13_offering(2, &["http/1.1"])
        .edge(&req)
        .wait(150_000)
        .events;
    let f = single(&h1, 200_000);
    assert_eq!(f.cause, Cause::ResponseTimeout, "{f:#?}");
    // The handshake is still diagnosed when h2 is offered.
    let refused = Wire::new(3)
        .edge(&client_hello_alpn(&["h2"]))
        .origin(&alert(40))
        .origin_closes(K::FinOut);
    let (f, stats) = run(&refused, 3_000);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].cause, Cause::TlsAlertFromOrigin);
    assert_eq!(stats.per_request_off.http2, 1);
}

#[test]
fn a_switch_of_protocols_ends_the_turns() {
    let upgrade =
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let switched =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    // WebSocket frames each way, then one of the edge's left unanswered
    // past the response timeout, then the origin closes.
    let events = Wire::new(1)
        .edge(upgrade)
        .origin(switched)
        .edge(&[0x81, 0x85, 1, 2, 3, 4, 5, 6, 7, 8, 9])
        .origin(&[0x81, 0x02, b'o', b'k'])
        .edge(&[0x81, 0x85, 1, 2, 3, 4, 5, 6, 7, 8, 9])
        .wait(150_000)
        .origin_closes(K::FinOut);
    let (f, stats) = run(&events, 200_000);
    assert!(f.is_empty(), "{f:#?}");
    assert_eq!(stats.per_request_off.upgraded, 1);
    assert_eq!(
        stats.healthy_requests, 1,
        "the upgrade request was answered"
    );
    // A request that asked for the upgrade and got no answer is named.
    let unanswered = Wire::new(2).edge(upgrade).origin_closes(K::RstOut);
    assert_eq!(single(&unanswered, 3_000).cause, Cause::ResetAfterRequest);
}
