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

#[test]
fn a_request_crossing_the_origins_idle_close_is_a_keepalive_race() {
    // The origin's keep-alive timeout ran out: its FIN, then the edge's
    // next request (sent before the FIN reached it), then the origin's RST.
    for last in [K::RstOut, K::FinIn] {
        let events = answered(1, 2)
            .origin_sends(K::FinOut)
            .edge(REQ)
            .origin_closes(last.clone());
        let f = single(&events, 3_000);
        assert_eq!(
            (f.cause, index(&f)),
            (Cause::KeepaliveRace, 3.into()),
            "{f:#?}"
        );
        assert_eq!(f.cause.class().as_str(), "520");
        assert!(f.hint.contains("keep-alive timeout"), "{}", f.hint);
    }
    // The FIN with no request after it: an idle close, healthy.
    let (f, _) = run(&answered(2, 2).origin_closes(K::FinOut), 3_000);
    assert!(f.is_empty(), "{f:#?}");
}

#[test]
fn the_race_keeps_the_origins_fin_in_its_evidence() {
    let events = answered(1, 1)
        .origin_sends(K::FinOut)
        .edge(REQ)
        .origin_closes(K::RstOut);
    let f = single(&events, 3_000);
    let names: Vec<&str> = f.evidence.iter().map(|e| e.what.event()).collect();
    let at = |n: &str| names.iter().position(|x| *x == n);
    assert!(
        at("fin_out") < at("request_in") && at("request_in") < at("rst_out"),
        "{names:?}"
    );
}

#[test]
fn an_origin_5xx_is_named_with_its_status_and_the_connection_goes_on() {
    let bad = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";
    let events = answered(1, 1)
        .edge(REQ)
        .wait(2)
        .origin(bad)
        .edge(REQ)
        .origin_closes(K::FinOut);
    let (f, stats) = run(&events, 3_000);
    let causes: Vec<Cause> = f.iter().map(|f| f.cause).collect();
    assert_eq!(
        causes,
        [Cause::OriginErrorStatus, Cause::ClosedWithoutResponse],
        "{f:#?}"
    );
    assert_eq!(
        (f[0].class_code(), index(&f[0])),
        ("502".to_owned(), 2.into())
    );
    assert_eq!(f[0].count, Some(1));
    assert!(f[0].hint.contains("bad gateway"), "{}", f[0].hint);
    assert_eq!(index(&f[1]), 3);
    assert_eq!(stats.origin_statuses.get(&502), Some(&1));
    assert_eq!(stats.findings.get(&Cause::OriginErrorStatus), Some(&1));
}

#[test]
fn tls_responses_are_counted_as_encrypted() {
    let req = record(23, &[0; 120]);
    let resp = record(23, &[0; 300]);
    let events = tls12_after_hellos(1)
        .edge(&req)
        .origin(&resp)
        .edge(&req)
        .origin(&resp)
        .origin_closes(K::FinOut);
    let (f, stats) = run(&events, 3_000);
    assert!(f.is_empty(), "{f:#?}");
    assert_eq!(
        (stats.encrypted_responses, stats.origin_statuses.len()),
        (2, 0)
    );
}

#[test]
fn a_request_the_origin_never_acknowledges_is_request_unacked() {
    let quick = Config {
        ack_timeout_ns: 1_000 * MS,
        ..cfg()
    };
    // The edge resends its request (twice: one may be a tail-loss probe):
    // the origin did not take it.
    let mut resent = Wire::new(1).edge(REQ).events;
    resent.push(payload(300, 1, false, 1, REQ));
    let (f, _) = run_with(quick.clone(), &resent, 3_000);
    assert_eq!(
        f[0].cause,
        Cause::ResponseTimeout,
        "one resend proves nothing: {f:#?}"
    );
    resent.push(payload(700, 1, false, 1, REQ));
    let (f, _) = run_with(quick.clone(), &resent, 3_000);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(
        (f[0].cause, f[0].confidence),
        (Cause::RequestUnacked, Confidence::Medium)
    );
    assert_eq!(f[0].cause.class().as_str(), "522");
    // The kernel says a firewall dropped it: high, and the hint says so.
    let mut dropped = Wire::new(2).edge(REQ).events;
    dropped.push(ev(3, 2, drop("NETFILTER_DROP", 0x18)));
    let (f, _) = run_with(quick.clone(), &dropped, 3_000);
    assert_eq!(
        (f[0].cause, f[0].confidence),
        (Cause::RequestUnacked, Confidence::High)
    );
    assert!(f[0].hint.contains("NETFILTER_DROP"), "{}", f[0].hint);
    // Taken but not answered (no resend, no drop): the response timeout.
    let (f, _) = run_with(quick, &Wire::new(3).edge(REQ).events, 3_000);
    assert_eq!(f[0].cause, Cause::ResponseTimeout, "{f:#?}");
}

#[test]
fn a_reset_after_the_edge_gave_up_is_not_a_520() {
    // The edge closes first (its own, shorter timeout), then the origin's
    // application resets: the edge was no longer waiting.
    let events = Wire::new(1)
        .edge(REQ)
        .wait(500)
        .origin_sends(K::FinIn)
        .origin_closes(K::RstOut);
    let (f, _) = run(&events, 3_000);
    assert!(f.is_empty(), "{f:#?}");
}

#[test]
fn an_interim_100_continue_is_skipped_for_the_final_response() {
    let post = b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n";
    let cont = b"HTTP/1.1 100 Continue\r\n\r\n";
    // The final response is a 502, after the 100 in the same stream.
    let events = Wire::new(1)
        .edge(post)
        .origin(cont)
        .edge(b"body")
        .origin(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        .edge(REQ)
        .origin_closes(K::FinOut);
    let (f, _) = run(&events, 3_000);
    let got: Vec<(Cause, serde_json::Value)> = f.iter().map(|f| (f.cause, index(f))).collect();
    assert_eq!(
        got,
        [
            (Cause::OriginErrorStatus, 1.into()),
            (Cause::ClosedWithoutResponse, 2.into())
        ],
        "the body is no new request; the request after the 502 is the second: {f:#?}"
    );
}

#[test]
fn an_edge_closing_at_its_own_response_timer_is_a_response_timeout() {
    // The edge gave up 1.9 s into a 2 s response timeout: its own timer.
    let events = Wire::new(1)
        .edge(REQ)
        .wait(1_900)
        .origin_sends(K::FinIn)
        .origin_closes(K::RstOut);
    let f = single(&events, 3_000);
    assert_eq!(f.cause, Cause::ResponseTimeout, "{f:#?}");
}

#[test]
fn a_body_after_an_early_answer_does_not_blind_the_connection() {
    // The origin answers 413 while the edge still uploads; the rest of the
    // body, then a new request that gets no answer.
    let events = answered(1, 1)
        .edge(b"PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
        .origin(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n")
        .edge(b"67890")
        .edge(REQ)
        .origin_closes(K::FinOut);
    let f = single(&events, 3_000);
    assert_eq!(
        (f.cause, index(&f)),
        (Cause::ClosedWithoutResponse, 3.into()),
        "{f:#?}"
    );
}

/// What `records::decode_history` makes of a quiet flow the kernel hands
/// over: 4 requests answered there, the 5th waiting (seq 5000, its answer
/// to begin at the origin's 9000).
fn resumed(port: u16) -> Vec<Event> {
    let mut v = vec![
        ev(0, port, K::SynIn),
        ev(0, port, K::SynAckOut),
        ev(
            0,
            port,
            K::Resume {
                requests: 4,
                h2: false,
                tls: None,
            },
        ),
        ev(1, port, K::AckIn),
    ];
    v.push(payload_ack(500, port, false, (5_000, 9_000), &REQ[..12]));
    v
}

#[test]
fn a_flow_handed_over_by_the_kernel_is_diagnosed_where_it_stands() {
    // The origin's FIN right where its answer should begin: closed without
    // a response, on the 5th request.
    let mut events = resumed(1);
    events.push(Event::Flow(FlowEvent {
        seq: 9_000,
        ..match ev(600, 1, K::FinOut) {
            Event::Flow(e) => e,
            Event::ListenOverflow(_) => unreachable!(),
        }
    }));
    let (f, stats) = run(&events, 3_000);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].cause, Cause::ClosedWithoutResponse, "{f:#?}");
    assert_eq!(index(&f[0]), 5);
    assert!(
        f[0].evidence
            .iter()
            .any(|e| matches!(e.what, EvidenceKind::Flow(K::Resume { requests: 4, .. }))),
        "{f:#?}"
    );
    // The kernel counted its handshake: not again here.
    assert_eq!(stats.healthy_handshakes, 0);
    // A FIN past bytes the agent never saw is no proof of an empty answer.
    let mut later = resumed(2);
    later.push(Event::Flow(FlowEvent {
        seq: 9_500,
        ..match ev(600, 2, K::FinOut) {
            Event::Flow(e) => e,
            Event::ListenOverflow(_) => unreachable!(),
        }
    }));
    let (f, _) = run(&later, 3_000);
    assert!(f.is_empty(), "{f:#?}");
    // Unanswered: a timeout, also named on the 5th request.
    let f = single(&resumed(3), 3_000);
    assert_eq!((f.cause, index(&f)), (Cause::ResponseTimeout, 5.into()));
}

/// A TLS 1.3 connection the kernel hands over after 2 answered requests:
/// its kept `ClientHello`, the `ServerHello` it read, the handshake done.
fn resumed_tls(port: u16) -> Vec<Event> {
    let tls = crate::source::event::TlsResume {
        client_hello: Some(client_hello(0x0304)),
        server_hello: Some((0x0304, 0x1301, 3 * MS)),
        done: true,
        tickets_pending: false,
        tickets_ns: Some(4 * MS),
    };
    vec![
        ev(0, port, K::SynIn),
        ev(0, port, K::SynAckOut),
        ev(
            0,
            port,
            K::Resume {
                requests: 2,
                h2: false,
                tls: None,
            },
        ),
        ev(1, port, K::AckIn),
        ev(
            2,
            port,
            K::Resume {
                requests: 2,
                h2: false,
                tls: Some(Box::new(tls)),
            },
        ),
    ]
}

#[test]
fn a_tls_flow_handed_over_by_the_kernel_keeps_its_hellos_and_its_turns() {
    // The third request, then the origin's FIN where its answer should be.
    let mut events = resumed_tls(1);
    let request = [&[23u8, 3, 3, 0, 120][..], &[0xaa; 120]].concat();
    events.push(payload_ack(500, 1, false, (5_000, 9_000), &request));
    events.push(Event::Flow(FlowEvent {
        seq: 9_000,
        ..match ev(600, 1, K::FinOut) {
            Event::Flow(e) => e,
            Event::ListenOverflow(_) => unreachable!(),
        }
    }));
    let f = single(&events, 3_000);
    assert_eq!(
        (f.cause, index(&f)),
        (Cause::ClosedWithoutResponse, 3.into()),
        "{f:#?}"
    );
    let names: Vec<&str> = f.evidence.iter().map(|e| e.what.event()).collect();
    assert_eq!(
        names,
        [
            "syn_in",
            "synack_out",
            "resumed",
            "ack_in",
            "client_hello_in",
            "server_hello_out",
            "request_in",
            "fin_out"
        ],
        "the first turn's tickets are not this turn's story: {f:#?}"
    );
    let t: Vec<u64> = f.evidence.iter().map(|e| e.t_us).collect();
    assert!(t.windows(2).all(|w| w[0] <= w[1]), "in time order: {t:?}");
    assert_eq!(
        f.tls.as_ref().and_then(|t| t.negotiated_version),
        Some("TLS1.3")
    );
    // The edge closing between turns after a finished handshake is no
    // certificate refusal.
    let mut idle = resumed_tls(2);
    idle.push(ev(700, 2, K::FinIn));
    idle.push(ev(701, 2, K::FinOut));
    let (f, _) = run(&idle, 3_000);
    assert!(f.is_empty(), "{f:#?}");
}
