//! Kept-alive connections (how Cloudflare reaches origins): every request
//! on a connection is diagnosed, not only the first. Real backends answer
//! some requests on one connection, then close, reset or stall on the next;
//! curl sends them one after the other on one connection. Each recording is
//! checked live and offline (`analyze` of a tcpdump capture of the same
//! traffic) and both must agree. curl retries a request whose reused
//! connection closed or reset without a response on a fresh connection (as
//! Cloudflare does for idempotent requests), so the client succeeds; the
//! backend's log says what it did.

use std::net::IpAddr;
use std::time::Duration;

use integration_tests::backends::{Backend, BackendTls, Behavior};
use integration_tests::differential::{Recording, Runs};
use integration_tests::tls::{Certs, EdgeCurl};
use integration_tests::tls_origin::GOOD;
use integration_tests::verdict::{evidence_events, summary};
use integration_tests::{require_root, Family, Lab, Nginx, Source, Tap};
use serde_json::Value;

const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

fn edge(lab: &Lab) -> IpAddr {
    lab.client_addr(Family::V4, Source::Edge)
}

/// `n` requests on one connection to `port` (TLS with `tls`: the version).
fn requests(lab: &Lab, port: u16, n: usize, tls: Option<&str>) -> integration_tests::CurlResult {
    let c = match tls {
        None => EdgeCurl::http(port),
        Some(v) => EdgeCurl::https(port).args(&["-k", &format!("--tlsv{v}"), "--tls-max", v]),
    };
    c.requests(n).max_time(Duration::from_secs(8)).run(lab)
}

/// The one finding for `port`, the same live and offline: its cause, its
/// request index, its evidence of the failing request.
fn expect(runs: &Runs, lab: &Lab, port: u16, cause: &str, index: u64) -> Value {
    let pairs = runs.pairs(edge(lab), port);
    assert_eq!(
        pairs.len(),
        1,
        "one finding for port {port}\n{}",
        runs.context()
    );
    let (live, offline) = &pairs[0];
    for f in [live, offline] {
        assert!(
            f["cause"] == cause && f["http"]["request_index"] == index,
            "want {cause} on request {index} for port {port}: {f}\n{}",
            runs.context()
        );
        let requests = evidence_events(f)
            .iter()
            .filter(|e| **e == "request_in")
            .count();
        assert_eq!(requests, 1, "the failing request's evidence only: {f}");
    }
    live.clone()
}

/// The backend did what the test says, on one connection.
fn answered(backend: &Backend, n: u32) {
    assert!(
        backend.wait_log(&format!("answered request {n}"), Duration::from_secs(2)),
        "the backend did not answer {n} requests on one connection: {}",
        backend.log()
    );
}

/// The backend logged `what` (its fault, after reading a request).
fn did(backend: &Backend, what: &str) {
    assert!(
        backend.wait_log(what, Duration::from_secs(2)),
        "the backend did not do {what:?}: {}",
        backend.log()
    );
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn later_http_requests_closed_reset_or_late_are_named_with_their_index() {
    if !require_root("later_http_requests_closed_reset_or_late_are_named_with_their_index") {
        return;
    }
    let lab = Lab::new("keepalive");
    let ka = |n, then| Behavior::KeepAlive(n, Box::new(then));
    let close = Backend::start(&lab, 9101, ka(1, Behavior::Close));
    let reset = Backend::start(&lab, 9102, ka(4, Behavior::Reset));
    let slow = Backend::start(&lab, 9103, ka(1, Behavior::Slow(Duration::from_secs(4))));
    let idle = Backend::start(
        &lab,
        9104,
        ka(3, Behavior::IdleClose(Duration::from_millis(300))),
    );
    let rec = Recording::start_with(
        &lab,
        Tap::OriginVeth,
        "9101,9102,9103,9104",
        Some(RESPONSE_TIMEOUT),
    );
    requests(&lab, 9101, 2, None);
    answered(&close, 1);
    did(&close, "closed");
    requests(&lab, 9102, 5, None);
    answered(&reset, 4);
    did(&reset, "reset");
    let r = requests(&lab, 9103, 2, None);
    assert!(r.ok(), "the second request, answered late: {r:?}");
    answered(&slow, 1);
    let r = requests(&lab, 9104, 3, None);
    assert!(r.ok(), "three answered requests: {r:?}");
    assert!(
        idle.wait_log("closed idle", Duration::from_secs(2)),
        "{}",
        idle.log()
    );
    let e = edge(&lab);
    let runs = rec.finish(&[(e, 9101), (e, 9102), (e, 9103)]);
    let f = expect(&runs, &lab, 9101, "closed_without_response", 2);
    assert_eq!(f["class"], "520", "{f}");
    let f = expect(&runs, &lab, 9102, "reset_after_request", 5);
    assert_eq!(f["http"]["method"], "GET", "{f}");
    let f = expect(&runs, &lab, 9103, "response_timeout", 2);
    assert_eq!(f["class"], "524", "{f}");
    assert!(
        runs.pairs(e, 9104).is_empty(),
        "an origin closing an idle kept-alive connection is healthy\n{}",
        runs.context()
    );
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn later_tls_requests_are_diagnosed_over_tls12_and_tls13() {
    if !require_root("later_tls_requests_are_diagnosed_over_tls12_and_tls13") {
        return;
    }
    let lab = Lab::new("keepalivetls");
    let leaf = Certs::new(&lab).signed(GOOD, &[GOOD]);
    let start = |port, n, then, version| {
        let tls = BackendTls {
            leaf: leaf.clone(),
            version,
        };
        Backend::start_tls(&lab, port, Behavior::KeepAlive(n, Box::new(then)), &tls)
    };
    let close12 = start(9111, 1, Behavior::Close, "1.2");
    let reset13 = start(9112, 2, Behavior::Reset, "1.3");
    let idle13 = start(
        9113,
        2,
        Behavior::IdleClose(Duration::from_millis(300)),
        "1.3",
    );
    let rec = Recording::start_with(
        &lab,
        Tap::OriginVeth,
        "9111,9112,9113",
        Some(RESPONSE_TIMEOUT),
    );
    requests(&lab, 9111, 2, Some("1.2"));
    answered(&close12, 1);
    did(&close12, "closed");
    requests(&lab, 9112, 3, Some("1.3"));
    answered(&reset13, 2);
    did(&reset13, "reset");
    let r = requests(&lab, 9113, 2, Some("1.3"));
    assert!(r.ok(), "two answered requests over TLS 1.3: {r:?}");
    assert!(
        idle13.wait_log("closed idle", Duration::from_secs(2)),
        "{}",
        idle13.log()
    );
    let e = edge(&lab);
    let runs = rec.finish(&[(e, 9111), (e, 9112)]);
    let f = expect(&runs, &lab, 9111, "closed_without_response", 2);
    assert_eq!(
        (&f["tls"]["negotiated_version"], &f["confidence"]),
        (&"TLS1.2".into(), &"high".into()),
        "{f}"
    );
    let f = expect(&runs, &lab, 9112, "reset_after_request", 3);
    assert_eq!(f["tls"]["negotiated_version"], "TLS1.3", "{f}");
    assert!(
        runs.pairs(e, 9113).is_empty(),
        "answered TLS requests, then an idle close: healthy\n{}",
        runs.context()
    );
}

/// An edge client that sends its second request on the connection after
/// the origin's FIN arrived (so the two crossed on the wire: what the edge
/// does when the origin's keep-alive timeout is the shorter one), and says
/// what came back: `reset` (the socket's error), `eof` or `answered`.
const CROSSING_CLIENT: &str = r#"
import socket, sys, time
src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.create_connection((dst, port), timeout=5, source_address=(src, 0))
s.sendall(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
got = b""
while not got.endswith(b"ok\n"):
    got += s.recv(4096)
time.sleep(0.15)
s.sendall(b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
time.sleep(0.2)
# The FIN was read already (recv would say EOF): the socket's error says
# whether the origin answered the request with a RST (EPIPE in CLOSE_WAIT).
err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
print("reset" if err in (32, 104) else "answered" if s.recv(4096) else "eof")
"#;

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn a_request_crossing_the_origins_keepalive_close_is_a_keepalive_race() {
    if !require_root("a_request_crossing_the_origins_keepalive_close_is_a_keepalive_race") {
        return;
    }
    let lab = Lab::new("karace");
    // Its keep-alive timeout: 50 ms after answering the first request.
    let backend = Backend::start(
        &lab,
        9121,
        Behavior::KeepAlive(1, Box::new(Behavior::IdleClose(Duration::from_millis(50)))),
    );
    let rec = Recording::start_with(&lab, Tap::OriginVeth, "9121", Some(RESPONSE_TIMEOUT));
    let out = lab.edge.run(
        "python3",
        &[
            "-c",
            CROSSING_CLIENT,
            &edge(&lab).to_string(),
            &lab.origin_addr(Family::V4).to_string(),
            "9121",
        ],
    );
    assert_eq!(
        out.stdout.trim(),
        "reset",
        "the second request, after the origin's FIN, is reset: {out:?}"
    );
    did(&backend, "closed idle");
    let runs = rec.finish(&[(edge(&lab), 9121)]);
    let f = expect(&runs, &lab, 9121, "keepalive_race", 2);
    assert!(
        evidence_events(&f).contains(&"fin_out") && evidence_events(&f).contains(&"rst_out"),
        "the origin's FIN before the request, its RST after: {f}"
    );
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn healthy_keepalive_traffic_makes_no_finding_and_every_request_is_timed() {
    if !require_root("healthy_keepalive_traffic_makes_no_finding_and_every_request_is_timed") {
        return;
    }
    let lab = Lab::new("keepaliveok");
    let _nginx = Nginx::start(&lab, &[80], None);
    let rec = Recording::start_with(&lab, Tap::OriginVeth, "80", Some(RESPONSE_TIMEOUT));
    for _ in 0..2 {
        let r = requests(&lab, 80, 20, None);
        assert!(r.ok(), "20 requests on one connection: {r:?}");
    }
    let runs = rec.finish(&[]);
    for (side, lines) in [("live", &runs.live), ("offline", &runs.offline)] {
        let timed = summary(lines)["timing"]["request_to_first_byte"]["count"]
            .as_u64()
            .unwrap_or(0);
        assert!(
            timed >= 40,
            "{side}: {timed} requests timed, want all 40\n{}",
            runs.context()
        );
    }
    assert!(runs.pairs(edge(&lab), 80).is_empty(), "{}", runs.context());
}
