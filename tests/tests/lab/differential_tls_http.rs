//! Live and offline agree on TLS and HTTP failures: the scenarios of
//! `tls_http.rs` (real nginx, misbehaving Python backends, curl, `openssl
//! s_client` and the aborting Python TLS client), recorded at the origin by
//! tcpdump while the live agent watches, then read by `origin-tracer
//! analyze`. These causes come from the payload bytes on both sides, so each
//! live finding must appear offline for the same connection with the same
//! class, cause, confidence and `tls` / `http` objects
//! (`integration_tests::differential`). Scenarios sharing a lab share a
//! recording: one test per class of failure, and one for healthy traffic.

use std::net::IpAddr;
use std::thread;
use std::time::{Duration, Instant};

use integration_tests::backends::{Backend, BackendTls, Behavior};
use integration_tests::differential::{Recording, Runs, FINDING_WAIT};
use integration_tests::session::curl_failed;
use integration_tests::tls::{
    abort_after_certificate, filler_headers, http_server, s_client, start_nginx, Abort, Certs,
    EdgeCurl,
};
use integration_tests::tls_origin::{
    port, Origin, BANNER, BIG_HEADER_BYTES, EXPIRED, GOOD, SELF, UNKNOWN,
};
use integration_tests::verdict::{evidence_events, findings, is_finding_for, summary};
use integration_tests::{require_root, CurlResult, Family, Lab, Outcome, Source, Tap};
use serde_json::Value;

/// `--response-timeout` of the HTTP recording, live and offline.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the slow backend holds its response back.
const SLOW_BY: Duration = Duration::from_secs(5);

fn edge(lab: &Lab, family: Family) -> IpAddr {
    lab.client_addr(family, Source::Edge)
}

fn s_client_failed(out: &Outcome, says: &str, what: &str) {
    assert!(
        !out.success() && out.stdout.contains(says),
        "{what}: want s_client to fail saying {says:?}\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
}

/// The pairs of `src` -> `dport`: exactly `n`, each `cause` on both sides
/// (`Recording::finish` checked that offline equals live), with `check` on each live
/// finding.
fn expect_pairs(
    runs: &Runs,
    src: IpAddr,
    dport: u16,
    cause: &str,
    n: usize,
    check: impl Fn(&Value),
) {
    let pairs = runs.pairs(src, dport);
    assert_eq!(
        pairs.len(),
        n,
        "want {n} findings for {src} -> port {dport}\n{}",
        runs.context()
    );
    for (l, o) in &pairs {
        assert!(
            l["cause"] == cause && o["cause"] == cause && o["source"] == "capture",
            "want {cause} live and offline for {src} -> port {dport}:\n  live:    {l}\n  offline: {o}\n{}",
            runs.context()
        );
        check(l);
    }
}

fn alert(description: &'static str, from: &'static str) -> impl Fn(&Value) {
    move |f: &Value| {
        let a = &f["tls"]["alert"];
        assert!(
            a["description"] == description && a["from"] == from && a["level"] == "fatal",
            "want a fatal {description} alert from the {from}: {f}"
        );
    }
}

fn events(want: &'static [&'static str]) -> impl Fn(&Value) {
    move |f: &Value| {
        let have = evidence_events(f);
        let missing: Vec<_> = want.iter().filter(|e| !have.contains(e)).collect();
        assert!(missing.is_empty(), "evidence lacks {missing:?}: {f}");
    }
}

// ---------------------------------------------------------------------------
// The clients of each recording, checked from their side.

/// The 525 scenarios: the origin refuses the handshake.
fn refusing_clients(lab: &Lab, origin: &Origin, close: &Backend, reset: &Backend) {
    // protocol_version: a TLS 1.2-only client, a TLS 1.3-only origin.
    let r = EdgeCurl::https(port::TLS13_ONLY)
        .args(&["-k", "--tlsv1.2", "--tls-max", "1.2"])
        .run(lab);
    curl_failed(&r, 35, "alert protocol version", "TLS 1.2 curl");
    let out = s_client(lab, Family::V6, port::TLS13_ONLY, &["-tls1_2"]);
    s_client_failed(&out, "fatal protocol_version", "TLS 1.2 s_client");
    // handshake_failure: no shared cipher suite.
    let r = EdgeCurl::https(port::ONE_CIPHER)
        .args(&[
            "-k",
            "--tlsv1.2",
            "--tls-max",
            "1.2",
            "--ciphers",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
        ])
        .run(lab);
    curl_failed(&r, 35, "alert handshake failure", "no shared cipher");
    // unrecognized_name: ssl_reject_handshake; the known name works.
    let r = EdgeCurl::https(port::KNOWN_NAMES)
        .host(UNKNOWN)
        .args(&["-k"])
        .run(lab);
    curl_failed(&r, 35, "unrecognized name", "unknown SNI");
    let r = origin
        .trusting(EdgeCurl::https(port::KNOWN_NAMES).host(GOOD).v6())
        .run(lab);
    assert!(r.ok(), "known SNI: {r:?}");
    // not_tls: https to the plain-HTTP port.
    let r = EdgeCurl::https(port::HTTP).args(&["-k"]).run(lab);
    curl_failed(&r, 35, "wrong version number", "https to plain HTTP");
    let out = s_client(lab, Family::V6, port::HTTP, &[]);
    assert!(
        out.stdout.contains("<<< Not TLS data"),
        "s_client to plain HTTP: {out:?}"
    );
    // tls_closed_during_handshake: backends closing / resetting after the
    // ClientHello.
    for (backend, family) in [(close, Family::V4), (reset, Family::V6)] {
        let r = EdgeCurl::https(backend.port)
            .args(&["-k"])
            .over(family)
            .run(lab);
        assert_eq!(r.code, Some(35), "TLS to {backend:?}: {r:?}");
        assert!(
            backend.wait_log("bytes from", Duration::from_secs(2)),
            "{backend:?} read nothing: {}",
            backend.log()
        );
    }
}

/// The 526 scenarios: the edge refuses the certificate.
fn rejecting_clients(lab: &Lab, origin: &Origin) {
    // edge_rejected_certificate over TLS 1.2: curl (self-signed), s_client
    // (expired, the CA trusted) over IPv4, s_client (self-signed) over
    // IPv6; and over TLS 1.3 OpenSSL's alert in the clear.
    let r = EdgeCurl::https(port::SITES)
        .host(SELF)
        .args(&["--tlsv1.2", "--tls-max", "1.2"])
        .run(lab);
    curl_failed(&r, 60, "self-signed certificate", "TLS 1.2, self-signed");
    let ca = origin.ca();
    let out = s_client(
        lab,
        Family::V4,
        port::SITES,
        &[
            "-tls1_2",
            "-verify_return_error",
            "-CAfile",
            &ca,
            "-servername",
            EXPIRED,
        ],
    );
    s_client_failed(&out, "fatal certificate_expired", "TLS 1.2, expired");
    let out = s_client(
        lab,
        Family::V6,
        port::SITES,
        &["-tls1_2", "-verify_return_error", "-servername", SELF],
    );
    s_client_failed(&out, "fatal unknown_ca", "TLS 1.2, self-signed, IPv6");
    let r = EdgeCurl::https(port::SITES)
        .host(SELF)
        .args(&["--tlsv1.3"])
        .run(lab);
    curl_failed(&r, 60, "self-signed certificate", "TLS 1.3, self-signed");
    // edge_aborted_after_certificate: the TLS 1.3 client that withholds
    // its alert.
    for (family, how) in [
        (Family::V4, Abort::Fin),
        (Family::V4, Abort::Reset),
        (Family::V4, Abort::EncryptedAlert),
        (Family::V6, Abort::Fin),
    ] {
        let out = abort_after_certificate(lab, family, port::SITES, SELF, how);
        assert!(
            out.success()
                && out
                    .stdout
                    .contains("rejected the certificate: self-signed certificate"),
            "aborting client ({how:?}, {family:?}): {out:?}"
        );
    }
}

/// The 520 and 524 scenarios: requests to the misbehaving backends and
/// to the big-headers server.
fn failing_http_clients(lab: &Lab, rec: &Recording, backends: [&Backend; 4]) {
    let [close, reset, banner, slow] = backends;
    let e4 = edge(lab, Family::V4);
    let http = |backend: &Backend, family: Family| {
        EdgeCurl::http(backend.port)
            .max_time(Duration::from_secs(8))
            .over(family)
            .run(lab)
    };

    for family in [Family::V4, Family::V6] {
        curl_failed(
            &http(close, family),
            52,
            "Empty reply",
            "close after the request",
        );
    }
    curl_failed(
        &http(reset, Family::V4),
        56,
        "reset by peer",
        "reset after the request",
    );
    curl_failed(
        &http(banner, Family::V4),
        1,
        "HTTP/0.9",
        "banner after the request",
    );
    let r = EdgeCurl::http(port::BIG_HEADERS)
        .args(&["-o", "/dev/null", "-w", "%{size_header}"])
        .run(lab);
    let size: usize = r.body.trim().parse().unwrap_or(0);
    assert!(
        r.ok() && size > 16 * 1024,
        "want a response header block over 16 KiB: {r:?}"
    );
    slow_response(rec, e4, slow, || http(slow, Family::V4));
}

/// The slow response: the live verdict comes at --response-timeout, while
/// the backend still holds the response back; the response comes later, so
/// the capture covers the timeout.
fn slow_response(
    rec: &Recording,
    src: IpAddr,
    slow: &Backend,
    client: impl Fn() -> CurlResult + Send + Sync,
) {
    let started = Instant::now();
    let r = thread::scope(|s| {
        let client = s.spawn(&client);
        let found = rec
            .agent()
            .wait_for(|l| is_finding_for(l, src, slow.port), FINDING_WAIT);
        let at = started.elapsed();
        assert!(
            found.is_some() && at >= RESPONSE_TIMEOUT && !slow.log().contains("answered"),
            "want the live finding between {RESPONSE_TIMEOUT:?} and the response at {SLOW_BY:?}, got it after {at:?}: {found:?}; backend: {}",
            slow.log()
        );
        client.join().expect("curl thread")
    });
    assert!(r.ok(), "the slow response arrives in the end: {r:?}");
}

// ---------------------------------------------------------------------------
// The recordings.

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn origin_tls_refusals_agree() {
    if !require_root("origin_tls_refusals_agree") {
        return;
    }
    let lab = &Lab::new("dtls525");
    let origin = Origin::start(lab);
    let close = &Backend::start(lab, port::CLOSE, Behavior::Close);
    let reset = &Backend::start(lab, port::RESET, Behavior::Reset);
    let ports = [
        port::TLS13_ONLY,
        port::ONE_CIPHER,
        port::KNOWN_NAMES,
        port::HTTP,
        port::CLOSE,
        port::RESET,
    ]
    .map(|p| p.to_string())
    .join(",");
    let rec = Recording::start(lab, Tap::OriginVeth, &ports);
    let (e4, e6) = (edge(lab, Family::V4), edge(lab, Family::V6));
    refusing_clients(lab, &origin, close, reset);

    let runs = rec.finish(&[
        (e4, port::TLS13_ONLY),
        (e6, port::TLS13_ONLY),
        (e4, port::ONE_CIPHER),
        (e4, port::KNOWN_NAMES),
        (e4, port::HTTP),
        (e6, port::HTTP),
        (e4, port::CLOSE),
        (e6, port::RESET),
    ]);
    for src in [e4, e6] {
        expect_pairs(
            &runs,
            src,
            port::TLS13_ONLY,
            "tls_alert_from_origin",
            1,
            alert("protocol_version", "origin"),
        );
        expect_pairs(
            &runs,
            src,
            port::HTTP,
            "not_tls",
            1,
            events(&["client_hello_in"]),
        );
    }
    expect_pairs(
        &runs,
        e4,
        port::ONE_CIPHER,
        "tls_alert_from_origin",
        1,
        alert("handshake_failure", "origin"),
    );
    expect_pairs(
        &runs,
        e4,
        port::KNOWN_NAMES,
        "tls_alert_from_origin",
        1,
        |f| {
            alert("unrecognized_name", "origin")(f);
            assert_eq!(f["tls"]["sni"], UNKNOWN, "{f}");
        },
    );
    assert!(
        runs.pairs(e6, port::KNOWN_NAMES).is_empty(),
        "a finding for the known name\n{}",
        runs.context()
    );
    expect_pairs(
        &runs,
        e4,
        port::CLOSE,
        "tls_closed_during_handshake",
        1,
        events(&["client_hello_in", "fin_out"]),
    );
    expect_pairs(
        &runs,
        e6,
        port::RESET,
        "tls_closed_during_handshake",
        1,
        events(&["client_hello_in", "rst_out"]),
    );
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn edge_certificate_rejections_agree() {
    if !require_root("edge_certificate_rejections_agree") {
        return;
    }
    let lab = &Lab::new("dtls526");
    let origin = Origin::start(lab);
    let rec = Recording::start(lab, Tap::OriginVeth, &port::SITES.to_string());
    let (e4, e6) = (edge(lab, Family::V4), edge(lab, Family::V6));
    rejecting_clients(lab, &origin);
    let mut expect = vec![(e4, port::SITES); 6];
    expect.extend([(e6, port::SITES); 2]);

    let runs = rec.finish(&expect);
    let by_cause = |src: IpAddr| -> Vec<(String, String, String)> {
        let mut v: Vec<(String, String, String)> = runs
            .pairs(src, port::SITES)
            .iter()
            .map(|(l, _)| {
                (
                    l["cause"].as_str().unwrap_or("?").to_owned(),
                    l["tls"]["negotiated_version"]
                        .as_str()
                        .unwrap_or("-")
                        .to_owned(),
                    l["tls"]["alert"]["description"]
                        .as_str()
                        .unwrap_or("-")
                        .to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let t = |c: &str, v: &str, a: &str| (c.to_owned(), v.to_owned(), a.to_owned());
    assert_eq!(
        by_cause(e4),
        [
            t("edge_aborted_after_certificate", "TLS1.3", "-"),
            t("edge_aborted_after_certificate", "TLS1.3", "-"),
            t("edge_aborted_after_certificate", "TLS1.3", "-"),
            t("edge_rejected_certificate", "TLS1.2", "certificate_expired"),
            t("edge_rejected_certificate", "TLS1.2", "unknown_ca"),
            t("edge_rejected_certificate", "TLS1.3", "unknown_ca"),
        ],
        "IPv4 findings (cause, negotiated version, alert)\n{}",
        runs.context()
    );
    assert_eq!(
        by_cause(e6),
        [
            t("edge_aborted_after_certificate", "TLS1.3", "-"),
            t("edge_rejected_certificate", "TLS1.2", "unknown_ca"),
        ],
        "IPv6 findings (cause, negotiated version, alert)\n{}",
        runs.context()
    );
    for src in [e4, e6] {
        for (l, o) in runs.pairs(src, port::SITES) {
            if l["cause"] == "edge_aborted_after_certificate" {
                assert!(
                    l["confidence"] == "low" && o["confidence"] == "low",
                    "SCHEMA.md: confidence low\n  live:    {l}\n  offline: {o}"
                );
            } else {
                assert_eq!(o["tls"]["alert"]["from"], "edge", "{o}");
            }
        }
    }
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn http_failures_agree() {
    if !require_root("http_failures_agree") {
        return;
    }
    let lab = &Lab::new("dhttp520");
    let _nginx = start_nginx(
        lab,
        &[port::BIG_HEADERS],
        &[http_server(
            lab,
            port::BIG_HEADERS,
            &filler_headers(BIG_HEADER_BYTES),
        )],
    );
    let close = &Backend::start(lab, port::CLOSE, Behavior::Close);
    let reset = &Backend::start(lab, port::RESET, Behavior::Reset);
    let banner = &Backend::start(lab, port::BANNER, Behavior::Banner(BANNER.into()));
    let slow = &Backend::start(lab, port::SLOW, Behavior::Slow(SLOW_BY));
    let ports = [
        port::CLOSE,
        port::RESET,
        port::BANNER,
        port::SLOW,
        port::BIG_HEADERS,
    ]
    .map(|p| p.to_string())
    .join(",");
    let rec = Recording::start_with(lab, Tap::OriginVeth, &ports, Some(RESPONSE_TIMEOUT));
    let (e4, e6) = (edge(lab, Family::V4), edge(lab, Family::V6));
    failing_http_clients(lab, &rec, [close, reset, banner, slow]);

    let runs = rec.finish(&[
        (e4, port::CLOSE),
        (e6, port::CLOSE),
        (e4, port::RESET),
        (e4, port::BANNER),
        (e4, port::BIG_HEADERS),
        (e4, port::SLOW),
    ]);
    let get = |f: &Value| assert_eq!(f["http"]["method"], "GET", "{f}");
    for src in [e4, e6] {
        expect_pairs(&runs, src, port::CLOSE, "closed_without_response", 1, |f| {
            get(f);
            events(&["request_in", "fin_out"])(f);
        });
    }
    expect_pairs(&runs, e4, port::RESET, "reset_after_request", 1, |f| {
        get(f);
        events(&["request_in", "rst_out"])(f);
    });
    expect_pairs(&runs, e4, port::BANNER, "malformed_response", 1, |f| {
        get(f);
        assert!(f["http"]["status"].is_null(), "{f}");
        events(&["request_in", "response_out"])(f);
    });
    expect_pairs(&runs, e4, port::BIG_HEADERS, "headers_too_large", 1, |f| {
        get(f);
        let bytes = f["http"]["header_bytes"].as_u64().unwrap_or(0);
        assert!(
            bytes > 16384,
            "http.header_bytes {bytes}, want > 16384: {f}"
        );
    });
    expect_pairs(&runs, e4, port::SLOW, "response_timeout", 1, |f| {
        get(f);
        assert!(f["http"]["status"].is_null(), "{f}");
        events(&["request_in"])(f);
    });
    assert_eq!(
        runs.offline[0]["response_timeout_ms"],
        u64::try_from(RESPONSE_TIMEOUT.as_millis()).expect("2 s in ms"),
        "analyze ran with the agent's --response-timeout"
    );
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn healthy_tls_and_http_agree() {
    if !require_root("healthy_tls_and_http_agree") {
        return;
    }
    let lab = &Lab::new("dtlsok");
    let origin = Origin::start(lab);
    let ports = format!("{},{}", port::SITES, port::HTTP);
    let rec = Recording::start(lab, Tap::OriginVeth, &ports);
    let connections = origin.healthy_traffic(lab);

    let runs = rec.finish(&[]);
    assert!(
        findings(&runs.live).is_empty() && findings(&runs.offline).is_empty(),
        "findings for healthy connections\n{}",
        runs.context()
    );
    let (live, offline) = (summary(&runs.live), summary(&runs.offline));
    let healthy = offline["healthy_handshakes"].as_u64().unwrap_or(0);
    assert!(
        healthy >= connections,
        "healthy_handshakes {healthy} offline, want >= {connections}\n{}",
        runs.context()
    );
    // The same connections are timed on both sides (the times differ: the
    // kernel's clock against tcpdump's).
    for timing in [
        "syn_to_synack",
        "client_hello_to_server_hello",
        "request_to_first_byte",
    ] {
        assert_eq!(
            offline["timing"][timing]["count"],
            live["timing"][timing]["count"],
            "summary.timing.{timing}.count offline and live\n{}",
            runs.context()
        );
    }
    assert!(
        offline["timing"]["client_hello_to_server_hello"]["count"]
            .as_u64()
            .is_some_and(|n| n >= 4)
            && offline["timing"]["request_to_first_byte"]["count"]
                .as_u64()
                .is_some_and(|n| n >= 2),
        "TLS and HTTP timings offline\n{}",
        runs.context()
    );
}

/// The clients of the TLS 520/524 recording: close and reset over TLS 1.2
/// and 1.3, an answer then close (TLS 1.3), a slow answer over TLS 1.2 and
/// 1.3.
fn failing_tls_clients(lab: &Lab, rec: &Recording, backends: [&Backend; 7]) {
    let [close12, close13, reset12, reset13, ok13, slow12, slow13] = backends;
    let https = |backend: &Backend, version: &str| {
        EdgeCurl::https(backend.port)
            .args(&["-k", &format!("--tlsv{version}"), "--tls-max", version])
            .max_time(Duration::from_secs(8))
            .run(lab)
    };
    for (backend, version) in [(close12, "1.2"), (close13, "1.3")] {
        curl_failed(
            &https(backend, version),
            52,
            "Empty reply",
            "close after the request",
        );
    }
    for (backend, version) in [(reset12, "1.2"), (reset13, "1.3")] {
        let r = https(backend, version);
        assert!(
            !r.ok() && backend.wait_log("reset", Duration::from_secs(2)),
            "reset after the request over TLS {version}: {r:?}"
        );
    }
    let r = https(ok13, "1.3");
    assert!(r.ok() && r.body == "ok\n", "an answer, then close: {r:?}");
    for (slow, version) in [(slow12, "1.2"), (slow13, "1.3")] {
        slow_response(rec, edge(lab, Family::V4), slow, || https(slow, version));
    }
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn tls_request_failures_agree() {
    if !require_root("tls_request_failures_agree") {
        return;
    }
    // 520/524 inside TLS: the request and the response are encrypted, and
    // both sides tell them apart from the same records.
    let lab = &Lab::new("dtls520");
    let certs = Certs::new(lab);
    let leaf = certs.signed(GOOD, &[GOOD]);
    let start = |port, behavior, version| {
        let tls = BackendTls {
            leaf: leaf.clone(),
            version,
        };
        Backend::start_tls(lab, port, behavior, &tls)
    };
    let close12 = &start(9441, Behavior::Close, "1.2");
    let close13 = &start(9442, Behavior::Close, "1.3");
    let reset12 = &start(9443, Behavior::Reset, "1.2");
    let reset13 = &start(9444, Behavior::Reset, "1.3");
    let ok13 = &start(9445, Behavior::Slow(Duration::ZERO), "1.3");
    let slow12 = &start(9446, Behavior::Slow(SLOW_BY), "1.2");
    let slow13 = &start(9447, Behavior::Slow(SLOW_BY), "1.3");
    let rec = Recording::start_with(
        lab,
        Tap::OriginVeth,
        "9441,9442,9443,9444,9445,9446,9447",
        Some(RESPONSE_TIMEOUT),
    );
    failing_tls_clients(
        lab,
        &rec,
        [close12, close13, reset12, reset13, ok13, slow12, slow13],
    );
    let e4 = edge(lab, Family::V4);
    let runs = rec.finish(&[
        (e4, 9441),
        (e4, 9442),
        (e4, 9443),
        (e4, 9444),
        (e4, 9446),
        (e4, 9447),
    ]);
    // SCHEMA.md: told apart by TLS 1.2 record types, confidence high; by
    // TLS 1.3 record lengths (the Finished, the tickets), medium.
    let encrypted = |version: &'static str| {
        let (negotiated, confidence) = match version {
            "1.2" => ("TLS1.2", "high"),
            _ => ("TLS1.3", "medium"),
        };
        move |f: &Value| {
            assert!(
                f["confidence"] == confidence
                    && f["tls"]["negotiated_version"] == negotiated
                    && f["http"]["method"].is_null(),
                "want TLS {version}, confidence {confidence}, an encrypted request: {f}"
            );
        }
    };
    for (port, cause, version) in [
        (9441, "closed_without_response", "1.2"),
        (9442, "closed_without_response", "1.3"),
        (9443, "reset_after_request", "1.2"),
        (9444, "reset_after_request", "1.3"),
        (9446, "response_timeout", "1.2"),
        (9447, "response_timeout", "1.3"),
    ] {
        expect_pairs(&runs, e4, port, cause, 1, encrypted(version));
    }
    assert!(
        runs.pairs(e4, 9445).is_empty(),
        "a finding for the answered TLS 1.3 request\n{}",
        runs.context()
    );
}
