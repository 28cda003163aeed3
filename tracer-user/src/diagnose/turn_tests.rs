//! Request/response turns on kept-alive connections: each request gets the
//! 520/524 rules, an answered connection closing idle is healthy.

use super::*;

const REQ: &[u8] = b"GET /n HTTP/1.1\r\nHost: x\r\n\r\n";
const RESP: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// `n` answered plain-HTTP requests on one connection.
fn answered(port: u16, n: usize) -> Wire {
    (0..n).fold(Wire::new(port), |w, _| w.edge(REQ).wait(2).origin(RESP))
}

fn index(f: &Finding) -> serde_json::Value {
    serde_json::to_value(f.http.as_ref().expect("an http object")).unwrap()["request_index"].clone()
}

#[test]
fn a_later_request_closed_reset_or_unanswered_is_named_with_its_index() {
    let cases = [
        (
            answered(1, 1).edge(REQ).origin_closes(K::FinOut),
            Cause::ClosedWithoutResponse,
            2,
        ),
        (
            answered(2, 4).edge(REQ).origin_closes(K::RstOut),
            Cause::ResetAfterRequest,
            5,
        ),
        (answered(3, 1).edge(REQ).events, Cause::ResponseTimeout, 2),
    ];
    for (events, cause, n) in cases {
        let f = single(&events, 3_000);
        assert_eq!(f.cause, cause, "{f:#?}");
        assert_eq!(index(&f), n, "{f:#?}");
        // The evidence is the handshake's and the failing turn's.
        let turn: Vec<_> = f
            .evidence
            .iter()
            .filter(|e| matches!(e.what, EvidenceKind::Payload { .. }))
            .collect();
        assert_eq!(turn.len(), 1, "only the failing request: {f:#?}");
    }
}

#[test]
fn an_idle_close_after_answered_requests_is_healthy_and_each_turn_is_timed() {
    let events = answered(1, 3).wait(50).origin_closes(K::FinOut);
    let (f, stats) = run(&events, 3_000);
    assert!(f.is_empty(), "{f:#?}");
    assert_eq!(stats.timing.to_json()["request_to_first_byte"]["count"], 3);
    // Also without a close in view (the run ends with it open).
    let mut d = Diagnoser::new(cfg());
    for e in &answered(2, 4).events {
        d.on_event(e);
    }
    assert!(d.tick(1_000 * MS + 3_000 * MS).is_empty());
    d.count_open_healthy();
    assert_eq!(
        d.stats().timing.to_json()["request_to_first_byte"]["count"],
        4
    );
}

#[test]
fn a_retransmitted_request_does_not_start_a_turn() {
    let w = answered(1, 1);
    let mut events = w.events.clone();
    // The first request again, after its response.
    events.push(payload(20, 1, false, 1, REQ));
    events.push(ev(21, 1, K::FinOut));
    let (f, _) = run(&events, 3_000);
    assert!(f.is_empty(), "{f:#?}");
}

#[test]
fn later_tls_requests_are_diagnosed_too() {
    let req = record(23, &[0; 120]);
    let resp = record(23, &[0; 300]);
    let ticket = record(23, &[0; 250]);
    let tls12 = tls12_after_hellos(1)
        .edge(&req)
        .origin(&resp)
        .edge(&req)
        .origin_closes(K::FinOut);
    let f = single(&tls12, 3_000);
    assert_eq!(
        (f.cause, index(&f)),
        (Cause::ClosedWithoutResponse, 2.into())
    );
    let tls13 = tls13_after_finished(2)
        .origin(&[ticket.clone(), ticket].concat())
        .edge(&req)
        .origin(&resp)
        .edge(&req)
        .origin(&resp)
        .edge(&req)
        .origin_closes(K::RstOut);
    let f = single(&tls13, 3_000);
    assert_eq!((f.cause, index(&f)), (Cause::ResetAfterRequest, 3.into()));
    // Answered every time, then closed idle: healthy.
    let idle = tls12_after_hellos(3)
        .edge(&req)
        .origin(&resp)
        .edge(&req)
        .origin(&resp)
        .origin_closes(K::FinOut);
    assert!(run(&idle, 3_000).0.is_empty());
}
