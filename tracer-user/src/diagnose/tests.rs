//! Unit tests of the diagnoser on event sequences as the kernel reports them.

use super::*;
use crate::diagnose::finding::Confidence;
use crate::source::event::{Event, Flow, FlowEvent, FlowEventKind as K, ListenOverflow};

const MS: u64 = 1_000_000;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

fn flow(port: u16) -> Flow {
    Flow {
        edge: "198.18.0.1".parse().unwrap(),
        edge_port: port,
        origin: "198.18.0.2".parse().unwrap(),
        origin_port: 443,
    }
}

fn cfg() -> Config {
    Config {
        syn_timeout_ns: 3_000 * MS,
        settle_ns: 100 * MS,
        linger_ns: 10_000 * MS,
        max_flows: 16,
        max_evidence: 8,
        response_timeout_ns: 2_000 * MS,
        ..Config::default()
    }
}

fn ev(t_ms: u64, port: u16, kind: K) -> Event {
    Event::Flow(FlowEvent {
        ts_ns: 1_000 * MS + t_ms * MS,
        flow: flow(port),
        kind,
        seq: 0,
    })
}

fn drop(reason: &str, flags: u8) -> K {
    K::KernelDrop {
        reason: reason.into(),
        outbound: false,
        tcp_flags: flags,
    }
}

/// Feed events, tick every 50 ms up to `until_ms`, return all findings.
fn run(events: &[Event], until_ms: u64) -> (Vec<Finding>, Stats) {
    run_with(cfg(), events, until_ms)
}

fn run_with(cfg: Config, events: &[Event], until_ms: u64) -> (Vec<Finding>, Stats) {
    let mut d = Diagnoser::new(cfg);
    let mut out = Vec::new();
    let mut events = events.iter().peekable();
    let mut t = 0;
    while t <= until_ms {
        let now = 1_000 * MS + t * MS;
        while let Some(e) = events.next_if(|e| e.ts_ns() <= now) {
            d.on_event(e);
        }
        out.extend(d.tick(now));
        t += 50;
    }
    (out, d.stats().clone())
}

fn single(events: &[Event], until_ms: u64) -> Finding {
    let (f, _) = run(events, until_ms);
    assert_eq!(f.len(), 1, "expected one finding, got {f:#?}");
    f.into_iter().next().unwrap()
}

#[test]
fn healthy_handshake_is_counted_not_reported() {
    let (f, stats) = run(
        &[
            ev(0, 1, K::SynIn),
            ev(0, 1, K::SynAckOut),
            ev(1, 1, K::AckIn),
        ],
        5_000,
    );
    assert!(f.is_empty(), "{f:#?}");
    assert_eq!(stats.healthy_handshakes, 1);
    assert_eq!(stats.findings.values().sum::<u64>(), 0);
}

#[test]
fn handshake_completed_by_kernel_state_change_is_healthy() {
    let change = K::StateChange {
        from: "TCP_SYN_RECV".into(),
        to: "TCP_ESTABLISHED".into(),
    };
    let (f, stats) = run(
        &[ev(0, 1, K::SynIn), ev(0, 1, K::SynAckOut), ev(1, 1, change)],
        5_000,
    );
    assert!(f.is_empty());
    assert_eq!(stats.healthy_handshakes, 1);
}

#[test]
fn rst_from_the_tcp_stack_is_no_listener() {
    let f = single(
        &[
            ev(0, 1, K::SynIn),
            ev(
                0,
                1,
                K::KernelSendReset {
                    reason: Some("NO_SOCKET".into()),
                },
            ),
            ev(0, 1, K::RstOut),
            ev(0, 1, drop("NO_SOCKET", SYN)),
        ],
        1_000,
    );
    assert_eq!(
        (f.cause, f.confidence),
        (Cause::NoListener, Confidence::High)
    );
    assert_eq!(f.cause.class().as_str(), "521");
    let names: Vec<_> = f
        .evidence
        .iter()
        .map(|e| e.to_json()["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        ["syn_in", "kernel_send_reset", "rst_out", "kernel_drop"]
    );
    assert!(f.hint.contains("ss -tlnp"), "{}", f.hint);
    // Decided after the settle time, not at the timeout.
    assert!(f.ts_ns < 1_000 * MS + 500 * MS);
}

#[test]
fn rst_without_kernel_evidence_is_a_medium_no_listener() {
    let f = single(&[ev(0, 1, K::SynIn), ev(0, 1, K::RstOut)], 1_000);
    assert_eq!(
        (f.cause, f.confidence),
        (Cause::NoListener, Confidence::Medium)
    );
}

#[test]
fn rst_after_netfilter_drop_is_firewall_reject() {
    let f = single(
        &[
            ev(0, 1, K::SynIn),
            ev(0, 1, K::RstOut),
            ev(0, 1, drop("NETFILTER_DROP", SYN)),
        ],
        1_000,
    );
    assert_eq!(
        (f.cause, f.confidence),
        (Cause::FirewallReject, Confidence::High)
    );
}

#[test]
fn icmp_unreachable_is_firewall_reject() {
    let icmp = K::IcmpUnreachOut {
        v6: false,
        icmp_type: 3,
        code: 3,
    };
    let f = single(
        &[
            ev(0, 1, K::SynIn),
            ev(0, 1, icmp),
            ev(0, 1, drop("NETFILTER_DROP", SYN)),
        ],
        1_000,
    );
    assert_eq!(f.cause, Cause::FirewallReject);
    assert_eq!(f.evidence[1].to_json()["icmp"]["name"], "port_unreachable");
}

#[test]
fn netfilter_drop_with_retransmits_is_one_firewall_drop() {
    let events = [
        ev(0, 1, K::SynIn),
        ev(0, 1, drop("NETFILTER_DROP", SYN)),
        ev(1_000, 1, K::SynIn),
        ev(1_000, 1, drop("NETFILTER_DROP", SYN)),
        ev(3_000, 1, K::SynIn),
        ev(3_000, 1, drop("NETFILTER_DROP", SYN)),
    ];
    let (f, stats) = run(&events, 8_000);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(
        (f[0].cause, f[0].cause.class().as_str()),
        (Cause::FirewallDrop, "522")
    );
    assert_eq!(f[0].evidence[1].to_json()["reason"], "NETFILTER_DROP");
    assert_eq!(stats.findings[&Cause::FirewallDrop], 1);
}

#[test]
fn other_drop_reasons_are_named() {
    let f = single(
        &[ev(0, 1, K::SynIn), ev(0, 1, drop("IP_RPFILTER", SYN))],
        1_000,
    );
    assert_eq!(f.cause, Cause::KernelDrop);
    assert!(f.hint.contains("rp_filter"));
}

#[test]
fn listen_overflow_from_the_kernel_counter() {
    let overflow = Event::ListenOverflow(ListenOverflow {
        ts_ns: 1_000 * MS + 200 * MS,
        count: 2,
        queues: vec![(443, 2)],
    });
    let f = single(&[ev(0, 1, K::SynIn), overflow], 1_000);
    assert_eq!(
        (f.cause, f.confidence),
        (Cause::ListenOverflow, Confidence::High)
    );
    assert_eq!(f.evidence[1].to_json()["queue"]["accept_queue"], 2);
}

#[test]
fn listen_overflow_does_not_blame_answered_or_other_port_flows() {
    let overflow = Event::ListenOverflow(ListenOverflow {
        ts_ns: 1_000 * MS + 200 * MS,
        count: 1,
        queues: vec![(8080, 5)],
    });
    // Port 443 is not the full listener: the flow times out as plain unanswered.
    let f = single(&[ev(0, 1, K::SynIn), overflow.clone()], 4_000);
    assert_eq!(f.cause, Cause::SynUnanswered);
    // A flow that got its SYN-ACK is not an overflow victim.
    let f = single(
        &[ev(0, 2, K::SynIn), ev(0, 2, K::SynAckOut), overflow],
        4_000,
    );
    assert_eq!(f.cause, Cause::SynackUnacked);
}

#[test]
fn listen_overflow_drop_reason_on_the_handshake_ack() {
    let f = single(
        &[
            ev(0, 1, K::SynIn),
            ev(0, 1, K::SynAckOut),
            ev(1, 1, drop("TCP_LISTEN_OVERFLOW", ACK)),
        ],
        1_000,
    );
    assert_eq!(
        (f.cause, f.confidence),
        (Cause::ListenOverflow, Confidence::High)
    );
}

#[test]
fn retransmitted_synack_without_ack_is_synack_unacked_at_timeout() {
    let events = [
        ev(0, 1, K::SynIn),
        ev(0, 1, K::SynAckOut),
        ev(1_000, 1, K::SynAckRetransmit),
        ev(1_000, 1, K::SynAckOut),
        ev(2_000, 1, K::SynAckRetransmit),
        ev(2_000, 1, K::SynAckOut),
    ];
    let (f, _) = run(&events, 2_900);
    assert!(f.is_empty(), "decided before the timeout: {f:#?}");
    let f = single(&events, 4_000);
    assert_eq!(
        (f.cause, f.confidence),
        (Cause::SynackUnacked, Confidence::High)
    );
    assert!(f.ts_ns >= 1_000 * MS + 3_000 * MS);
}

#[test]
fn silence_is_syn_unanswered_at_timeout() {
    let f = single(&[ev(0, 1, K::SynIn), ev(1_000, 1, K::SynIn)], 4_000);
    assert_eq!(
        (f.cause, f.confidence),
        (Cause::SynUnanswered, Confidence::Medium)
    );
    assert_eq!(f.evidence.len(), 1);
    assert_eq!(f.evidence[0].repeat, 2);
}

#[test]
fn events_of_unknown_flows_are_ignored() {
    let (f, stats) = run(
        &[
            ev(0, 1, K::RstOut),
            ev(0, 1, K::SynAckOut),
            ev(0, 1, K::FinIn),
        ],
        5_000,
    );
    assert!(f.is_empty());
    assert_eq!(stats, Stats::default());
}

#[test]
fn a_drop_without_a_tc_syn_still_starts_a_flow() {
    // The SYN came in on an interface the TC programs are not attached to.
    let f = single(&[ev(0, 1, drop("NETFILTER_DROP", SYN))], 1_000);
    assert_eq!(f.cause, Cause::FirewallDrop);
}

#[test]
fn the_table_is_bounded() {
    let events: Vec<_> = (0..40).map(|p| ev(0, p, K::SynIn)).collect();
    let mut d = Diagnoser::new(cfg());
    for e in &events {
        d.on_event(e);
    }
    assert!(d.pending() <= 16);
    assert_eq!(d.stats().flows_evicted, 24);
    let findings = d.tick(1_000 * MS + 4_000 * MS);
    assert_eq!(findings.len(), 16);
}

#[test]
fn settled_flows_are_forgotten_after_linger() {
    let mut d = Diagnoser::new(cfg());
    d.on_event(&ev(0, 1, K::SynIn));
    d.on_event(&ev(0, 1, K::RstOut));
    assert_eq!(d.tick(1_000 * MS + 200 * MS).len(), 1);
    assert_eq!(d.flows.len(), 1);
    d.tick(1_000 * MS + 20_000 * MS);
    assert!(d.flows.is_empty());
    // A new SYN on the same 4-tuple after that is a new connection.
    d.on_event(&ev(21_000, 1, K::SynIn));
    d.on_event(&ev(21_000, 1, K::RstOut));
    assert_eq!(d.tick(1_000 * MS + 21_200 * MS).len(), 1);
}

#[test]
fn duplicate_syn_drops_after_a_synack_do_not_decide() {
    // Return path broken: the SYN-ACK never leaves (no neighbour), the edge
    // retransmits its SYN and the kernel drops the duplicate.
    let events = [
        ev(0, 1, K::SynIn),
        ev(1_000, 1, K::SynAckRetransmit),
        ev(1_000, 1, K::SynIn),
        ev(1_000, 1, drop("NOT_SPECIFIED", SYN)),
        ev(1_001, 1, drop("TCP_FLAGS", SYN)),
        ev(
            2_000,
            1,
            K::KernelDrop {
                reason: "NEIGH_FAILED".into(),
                outbound: true,
                tcp_flags: SYN | ACK,
            },
        ),
    ];
    let f = single(&events, 4_000);
    assert_eq!(
        (f.cause, f.confidence),
        (Cause::SynackUnacked, Confidence::High)
    );
    assert!(f
        .evidence
        .iter()
        .any(|e| e.to_json()["reason"] == "NEIGH_FAILED"));
    assert!(
        !f.evidence
            .iter()
            .any(|e| e.to_json()["reason"] == "NOT_SPECIFIED"),
        "the routine drop of a duplicate SYN is not evidence: {:?}",
        f.evidence
    );
    // NOT_SPECIFIED alone on a first SYN is no verdict either.
    let f = single(
        &[ev(0, 2, K::SynIn), ev(0, 2, drop("NOT_SPECIFIED", SYN))],
        4_000,
    );
    assert_eq!(f.cause, Cause::SynUnanswered);
}

#[test]
fn a_reused_four_tuple_with_a_new_isn_is_a_new_connection() {
    let syn = |t: u64, isn: u32| {
        Event::Flow(FlowEvent {
            ts_ns: 1_000 * MS + t * MS,
            flow: flow(1),
            kind: K::SynIn,
            seq: isn,
        })
    };
    let mut d = Diagnoser::new(cfg());
    d.on_event(&syn(0, 100));
    d.on_event(&ev(1, 1, K::AckIn));
    // The client reuses its port at once: a new ISN, and this one fails.
    d.on_event(&syn(10, 5_000));
    d.on_event(&ev(10, 1, K::RstOut));
    let f = d.tick(1_000 * MS + 500 * MS);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].cause, Cause::NoListener);
    assert_eq!(
        f[0].evidence.len(),
        2,
        "evidence of the new connection only: {:?}",
        f[0].evidence
    );
    // A retransmission (same ISN) of the failed one stays quiet.
    d.on_event(&syn(1_000, 5_000));
    d.on_event(&ev(1_000, 1, K::RstOut));
    assert!(d.tick(1_000 * MS + 1_500 * MS).is_empty());
    assert_eq!(d.stats().healthy_handshakes, 1);
}

// ---- after the handshake: TLS and HTTP, from payload bytes ----

fn payload(t_ms: u64, port: u16, outbound: bool, seq: u32, bytes: &[u8]) -> Event {
    payload_ack(t_ms, port, outbound, (seq, 0), bytes)
}

/// A payload segment with its acknowledgement number.
fn payload_ack(
    t_ms: u64,
    port: u16,
    outbound: bool,
    (seq, ack): (u32, u32),
    bytes: &[u8],
) -> Event {
    Event::Flow(FlowEvent {
        ts_ns: 1_000 * MS + t_ms * MS,
        flow: flow(port),
        kind: K::Payload {
            outbound,
            ack,
            bytes: bytes.to_vec(),
        },
        seq,
    })
}

fn record(content: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![content, 3, 3];
    r.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    r.extend_from_slice(body);
    r
}

fn handshake(kind: u8, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap().to_be_bytes();
    let mut h = vec![kind, len[1], len[2], len[3]];
    h.extend_from_slice(body);
    record(22, &h)
}

/// A `ClientHello` offering `version` through `supported_versions`.
fn client_hello(version: u16) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[7; 32]);
    b.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    let [hi, lo] = version.to_be_bytes();
    let ext = [0x00, 0x2b, 0, 3, 2, hi, lo];
    b.extend_from_slice(&u16::try_from(ext.len()).unwrap().to_be_bytes());
    b.extend_from_slice(&ext);
    handshake(1, &b)
}

fn server_hello(version: u16) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[9; 32]);
    b.extend_from_slice(&[0, 0x13, 0x01, 0]);
    let [hi, lo] = version.to_be_bytes();
    let ext = [0x00, 0x2b, 0, 2, hi, lo];
    b.extend_from_slice(&u16::try_from(ext.len()).unwrap().to_be_bytes());
    b.extend_from_slice(&ext);
    handshake(2, &b)
}

fn alert(description: u8) -> Vec<u8> {
    record(21, &[2, description])
}

/// A completed handshake on `port`.
fn connected(port: u16) -> Vec<Event> {
    vec![
        ev(0, port, K::SynIn),
        ev(0, port, K::SynAckOut),
        ev(1, port, K::AckIn),
    ]
}

fn with(port: u16, more: Vec<Event>) -> Vec<Event> {
    let mut v = connected(port);
    v.extend(more);
    v
}

#[test]
fn an_origin_alert_is_a_525_named_after_it() {
    let ch = client_hello(0x0303);
    let events = with(
        1,
        vec![
            payload(2, 1, false, 1, &ch),
            payload(3, 1, true, 1, &alert(70)),
            ev(3, 1, K::FinOut),
        ],
    );
    let f = single(&events, 1_000);
    assert_eq!(
        (f.cause, f.cause.class().as_str()),
        (Cause::TlsAlertFromOrigin, "525")
    );
    let tls = serde_json::to_value(f.tls.as_ref().unwrap()).unwrap();
    assert_eq!(tls["alert"]["description"], "protocol_version");
    assert_eq!(tls["alert"]["from"], "origin");
    assert_eq!(tls["offered_versions"][0], "TLS1.2");
    assert!(f.hint.contains("protocol_version"));
}

#[test]
fn an_edge_certificate_alert_is_a_526() {
    let ch = client_hello(0x0303);
    let events = with(
        1,
        vec![
            payload(2, 1, false, 1, &ch),
            payload(3, 1, true, 1, &server_hello(0x0303)),
            {
                let at = 1 + u32::try_from(ch.len()).unwrap();
                payload(4, 1, false, at, &alert(48))
            },
        ],
    );
    let f = single(&events, 1_000);
    assert_eq!(
        (f.cause, f.cause.class().as_str()),
        (Cause::EdgeRejectedCertificate, "526")
    );
    assert_eq!(
        serde_json::to_value(f.tls.as_ref().unwrap()).unwrap()["alert"]["description"],
        "unknown_ca"
    );
}

#[test]
fn plain_http_on_the_tls_port_is_not_tls() {
    let events = with(
        1,
        vec![
            payload(2, 1, false, 1, &client_hello(0x0304)),
            payload(3, 1, true, 1, b"HTTP/1.1 400 Bad Request\r\n\r\n"),
        ],
    );
    let f = single(&events, 1_000);
    assert_eq!(f.cause, Cause::NotTls);
}

#[test]
fn a_close_after_the_client_hello_is_tls_closed_during_handshake() {
    let events = with(
        1,
        vec![
            payload(2, 1, false, 1, &client_hello(0x0304)),
            ev(5, 1, K::FinOut),
        ],
    );
    let f = single(&events, 1_000);
    assert_eq!(f.cause, Cause::TlsClosedDuringHandshake);
}

#[test]
fn a_tls13_edge_that_closes_after_the_certificate() {
    let ch = client_hello(0x0304);
    let at = 1 + u32::try_from(ch.len()).unwrap();
    let events = with(
        1,
        vec![
            payload(2, 1, false, 1, &ch),
            payload(3, 1, true, 1, &server_hello(0x0304)),
            // An encrypted alert: 19 bytes of application data, then FIN.
            payload(4, 1, false, at, &record(23, &[0; 19])),
            ev(4, 1, K::FinIn),
        ],
    );
    let f = single(&events, 1_000);
    assert_eq!(
        (f.cause, f.confidence),
        (Cause::EdgeAbortedAfterCertificate, Confidence::Low)
    );
}

#[test]
fn healthy_tls_and_http_make_no_finding_but_timing() {
    let ch = client_hello(0x0304);
    let at = 1 + u32::try_from(ch.len()).unwrap();
    let mut events = with(
        1,
        vec![
            payload(2, 1, false, 1, &ch),
            payload(3, 1, true, 1, &server_hello(0x0304)),
            payload(4, 1, false, at, &record(23, &[0; 200])),
            ev(9, 1, K::FinIn),
        ],
    );
    events.extend(with(
        2,
        vec![
            payload(2, 2, false, 1, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            payload(
                5,
                2,
                true,
                1,
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            ),
            ev(6, 2, K::FinOut),
        ],
    ));
    events.sort_by_key(Event::ts_ns);
    let (f, stats) = run(&events, 3_000);
    assert!(f.is_empty(), "{f:#?}");
    assert_eq!(stats.healthy_handshakes, 2);
    let t = stats.timing.to_json();
    assert_eq!(t["client_hello_to_server_hello"]["count"], 1);
    assert_eq!(
        t["request_to_first_byte"]["p50_us"],
        timing::reported(3_000)
    );
    assert_eq!(t["syn_to_synack"]["count"], 2);
}

#[test]
fn http_failures_after_the_request() {
    let req = b"GET /a?token=secret HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases: Vec<(Vec<Event>, Cause)> = vec![
        (
            with(1, vec![payload(2, 1, false, 1, req), ev(3, 1, K::RstOut)]),
            Cause::ResetAfterRequest,
        ),
        (
            with(2, vec![payload(2, 2, false, 1, req), ev(3, 2, K::FinOut)]),
            Cause::ClosedWithoutResponse,
        ),
        (
            with(
                3,
                vec![
                    payload(2, 3, false, 1, req),
                    payload(3, 3, true, 1, b"SSH-2.0-OpenSSH_9.2\r\n"),
                ],
            ),
            Cause::MalformedResponse,
        ),
        (
            with(4, vec![payload(2, 4, false, 1, req)]),
            Cause::ResponseTimeout,
        ),
    ];
    for (events, cause) in cases {
        let f = single(&events, 3_000);
        assert_eq!(f.cause, cause);
        assert_eq!(
            f.cause.class().as_str(),
            if cause == Cause::ResponseTimeout {
                "524"
            } else {
                "520"
            }
        );
        let http = serde_json::to_value(f.http.as_ref().unwrap()).unwrap();
        assert_eq!(http["method"], "GET");
        assert!(
            !f.to_json("t", "kernel").to_string().contains("secret"),
            "no query string, ever"
        );
    }
    // The timeout is the response timeout after the request, not before.
    let (f, _) = run(&with(5, vec![payload(2, 5, false, 1, req)]), 1_900);
    assert!(f.is_empty());
}

#[test]
fn a_response_head_over_16k_is_headers_too_large() {
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    while head.len() < 20_000 {
        head.extend_from_slice(b"Set-Cookie: a=bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let mut events = with(1, vec![payload(2, 1, false, 1, b"GET / HTTP/1.1\r\n\r\n")]);
    for (i, chunk) in head.chunks(1448).enumerate() {
        events.push(payload(
            3,
            1,
            true,
            1 + u32::try_from(i * 1448).unwrap(),
            chunk,
        ));
    }
    let f = single(&events, 1_000);
    assert_eq!(f.cause, Cause::HeadersTooLarge);
    let http = serde_json::to_value(f.http.as_ref().unwrap()).unwrap();
    assert!(http["header_bytes"].as_u64().unwrap() > 16_384);
    assert!(f.hint.contains("bytes"), "{}", f.hint);
}

#[test]
fn queue_purges_at_close_are_not_evidence() {
    let events = with(
        1,
        vec![
            payload(2, 1, false, 1, b"GET / HTTP/1.1\r\n\r\n"),
            ev(3, 1, K::FinOut),
            ev(
                3,
                1,
                K::KernelDrop {
                    reason: "QUEUE_PURGE".into(),
                    outbound: true,
                    tcp_flags: 0x11,
                },
            ),
        ],
    );
    let f = single(&events, 1_000);
    assert_eq!(f.cause, Cause::ClosedWithoutResponse);
    assert!(
        !f.evidence
            .iter()
            .any(|e| e.to_json()["reason"] == "QUEUE_PURGE"),
        "{:?}",
        f.evidence
    );
}

// ---- 520/524 over TLS: encrypted records, and bytes that went unseen ----

/// One connection's payload with consistent sequence numbers (both sides'
/// initial sequence numbers 0, as `ev` reports them), one event a segment.
struct Wire {
    port: u16,
    t_ms: u64,
    next_in: u32,
    next_out: u32,
    events: Vec<Event>,
}

impl Wire {
    fn new(port: u16) -> Wire {
        Wire {
            port,
            t_ms: 1,
            next_in: 1,
            next_out: 1,
            events: connected(port),
        }
    }
    fn edge(mut self, bytes: &[u8]) -> Wire {
        self.t_ms += 1;
        let seq = self.next_in;
        self.next_in += u32::try_from(bytes.len()).unwrap();
        self.events.push(payload_ack(
            self.t_ms,
            self.port,
            false,
            (seq, self.next_out),
            bytes,
        ));
        self
    }
    /// Time passes.
    fn wait(mut self, ms: u64) -> Wire {
        self.t_ms += ms;
        self
    }
    fn origin(mut self, bytes: &[u8]) -> Wire {
        self.t_ms += 1;
        let seq = self.next_out;
        self.next_out += u32::try_from(bytes.len()).unwrap();
        self.events
            .push(payload(self.t_ms, self.port, true, seq, bytes));
        self
    }
    /// An origin segment the agent never saw (a lost snapshot).
    fn origin_unseen(mut self, len: u32) -> Wire {
        self.next_out += len;
        self
    }
    /// The origin's FIN or RST, at its true sequence number, and more may
    /// follow.
    fn origin_sends(mut self, kind: K) -> Wire {
        self.t_ms += 1;
        let mut e = ev(self.t_ms, self.port, kind);
        if let Event::Flow(f) = &mut e {
            f.seq = self.next_out;
        }
        self.events.push(e);
        self
    }
    /// The origin's FIN or RST, at its true sequence number.
    fn origin_closes(mut self, kind: K) -> Vec<Event> {
        self.t_ms += 1;
        let mut e = ev(self.t_ms, self.port, kind);
        if let Event::Flow(f) = &mut e {
            f.seq = self.next_out;
        }
        self.events.push(e);
        self.events
    }
}

/// A `ServerHello` choosing `version` and `TLS_AES_128_GCM_SHA256` (0x1301).
fn tls12_after_hellos(port: u16) -> Wire {
    // ClientKeyExchange, ChangeCipherSpec, encrypted Finished each way.
    Wire::new(port)
        .edge(&client_hello(0x0303))
        .origin(&server_hello(0x0303))
        .edge(&[record(22, &[0; 37]), record(20, &[1]), record(22, &[0; 40])].concat())
        .origin(&[record(20, &[1]), record(22, &[0; 40])].concat())
}

/// TLS 1.3 up to the edge's `Finished` (53 bytes with a SHA-256 suite).
fn tls13_after_finished(port: u16) -> Wire {
    tls13_after_finished_with(port, &client_hello(0x0304))
}

/// The same, the edge's `ClientHello` being `hello`.
fn tls13_after_finished_with(port: u16, hello: &[u8]) -> Wire {
    let flight = [
        server_hello(0x0304),
        record(20, &[1]),
        record(23, &[0; 40]),
        record(23, &[0; 900]),
        record(23, &[0; 53]),
    ]
    .concat();
    Wire::new(port)
        .edge(hello)
        .origin(&flight)
        .edge(&[record(20, &[1]), record(23, &[0; 53])].concat())
}

#[test]
fn tls_failures_after_the_request() {
    let req = record(23, &[0; 120]);
    let ticket = record(23, &[0; 250]);
    let cases: Vec<(Vec<Event>, Cause, Confidence)> = vec![
        (
            tls12_after_hellos(1).edge(&req).origin_closes(K::FinOut),
            Cause::ClosedWithoutResponse,
            Confidence::High,
        ),
        (
            // An encrypted close_notify before the FIN is no response.
            tls12_after_hellos(2)
                .edge(&req)
                .origin(&record(21, &[0; 26]))
                .origin_closes(K::RstOut),
            Cause::ResetAfterRequest,
            Confidence::High,
        ),
        (
            tls12_after_hellos(3).edge(&req).events,
            Cause::ResponseTimeout,
            Confidence::High,
        ),
        (
            // OpenSSL's two tickets, then close_notify and FIN.
            tls13_after_finished(4)
                .edge(&req)
                .origin(&ticket)
                .origin(&ticket)
                .origin(&record(23, &[0; 19]))
                .origin_closes(K::FinOut),
            Cause::ClosedWithoutResponse,
            Confidence::Medium,
        ),
        (
            tls13_after_finished(5)
                .origin(&[ticket.clone(), ticket.clone()].concat())
                .edge(&req)
                .events,
            Cause::ResponseTimeout,
            Confidence::Medium,
        ),
    ];
    for (events, cause, confidence) in cases {
        let f = single(&events, 3_000);
        assert_eq!((f.cause, f.confidence), (cause, confidence), "{f:#?}");
        let http =
            serde_json::to_value(f.http.as_ref().expect("a 520/524 has its http object")).unwrap();
        assert!(http["method"].is_null() && http["status"].is_null());
        let tls =
            serde_json::to_value(f.tls.as_ref().expect("and, over TLS, its tls object")).unwrap();
        assert!(tls["negotiated_version"] == "TLS1.2" || tls["negotiated_version"] == "TLS1.3");
        assert!(f.hint.contains("encrypted"), "{}", f.hint);
    }
}

#[test]
fn tls_responses_and_doubtful_records_make_no_finding() {
    let req = record(23, &[0; 120]);
    let ticket = record(23, &[0; 250]);
    let cases = [
        // TLS 1.2: a response, then close.
        tls12_after_hellos(1)
            .edge(&req)
            .origin(&record(23, &[0; 300]))
            .origin_closes(K::FinOut),
        // TLS 1.3: tickets, the response, close_notify, FIN.
        tls13_after_finished(2)
            .edge(&req)
            .origin(&[ticket.clone(), ticket.clone()].concat())
            .origin(&record(23, &[0; 300]))
            .origin(&record(23, &[0; 19]))
            .origin_closes(K::FinOut),
        // TLS 1.3: one record that may be a single ticket or a response.
        tls13_after_finished(3)
            .edge(&req)
            .origin(&ticket)
            .origin_closes(K::FinOut),
        // TLS 1.3: the edge's close_notify is no request.
        tls13_after_finished(4)
            .edge(&record(23, &[0; 19]))
            .origin(&[ticket.clone(), ticket.clone()].concat())
            .origin_closes(K::FinOut),
        // TLS 1.3 with a client certificate: the origin's alert-sized
        // record and FIN, no tickets, may refuse the certificate.
        Wire::new(8)
            .edge(&client_hello(0x0304))
            .origin(
                &[
                    server_hello(0x0304),
                    record(23, &[0; 900]),
                    record(23, &[0; 53]),
                ]
                .concat(),
            )
            .edge(
                &[
                    record(23, &[0; 700]),
                    record(23, &[0; 80]),
                    record(23, &[0; 53]),
                ]
                .concat(),
            )
            .edge(&req)
            .origin(&record(23, &[0; 19]))
            .origin_closes(K::FinOut),
        // Origin bytes that were not seen may have been the response.
        tls12_after_hellos(5)
            .edge(&req)
            .origin_unseen(300)
            .origin_closes(K::FinOut),
        Wire::new(6)
            .edge(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .origin_unseen(1448)
            .origin_closes(K::RstOut),
        // A certificate chain that fills the origin's 20 KiB snapshot
        // budget: the response comes after it, unseen, and the timeout
        // must not fire.
        Wire::new(7)
            .edge(&client_hello(0x0303))
            .origin(&[server_hello(0x0303), record(22, &[0; 16_000])].concat())
            .origin(&record(22, &[0; 8_000])[..20 * 1024 - 16_005 - server_hello(0x0303).len()])
            .edge(&[record(22, &[0; 37]), record(20, &[1]), record(22, &[0; 40])].concat())
            .edge(&record(23, &[0; 120]))
            .events,
    ];
    for (i, events) in cases.into_iter().enumerate() {
        let (f, stats) = run(&events, 3_000);
        assert!(f.is_empty(), "case {i}: {f:#?}");
        assert_eq!(stats.healthy_handshakes, 1);
    }
}

#[test]
fn tls_request_to_first_byte_skips_the_tickets() {
    let events = tls13_after_finished(1)
        .edge(&record(23, &[0; 120]))
        .origin(&record(23, &[0; 250]))
        .origin(&record(23, &[0; 250]))
        .origin(&record(23, &[0; 300]))
        .origin_closes(K::FinOut);
    let (f, stats) = run(&events, 3_000);
    assert!(f.is_empty(), "{f:#?}");
    // Request at 5 ms, tickets at 6 and 7 ms, the response at 8 ms.
    assert_eq!(
        stats.timing.to_json()["request_to_first_byte"]["p50_us"],
        timing::reported(3_000)
    );
}

#[path = "turn_tests.rs"]
mod turns;

#[path = "opaque_tests.rs"]
mod opaque_tests;

#[test]
fn the_edges_fin_proves_its_handshake_completed() {
    // A capture that keeps only SYN, FIN and RST segments: the handshake's
    // ACK is not in it, the edge's FIN is.
    let events = vec![
        ev(0, 1, K::SynIn),
        ev(0, 1, K::SynAckOut),
        ev(900, 1, K::FinIn),
        ev(901, 1, K::FinOut),
    ];
    let (f, stats) = run(&events, 30_000);
    assert!(f.is_empty(), "no synack_unacked: {f:#?}");
    assert_eq!(stats.healthy_handshakes, 1);
    // An edge that resets proves nothing: it may have given up waiting.
    let events = vec![
        ev(0, 2, K::SynIn),
        ev(0, 2, K::SynAckOut),
        ev(1_000, 2, K::SynAckOut),
        ev(3_000, 2, K::RstIn),
    ];
    assert_eq!(single(&events, 30_000).cause, Cause::SynackUnacked);
}
