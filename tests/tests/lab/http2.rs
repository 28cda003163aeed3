//! HTTP/2 to the origin (Cloudflare's "HTTP/2 to origin": ALPN `h2` over
//! TLS; h2c with prior knowledge on a plain port): real nginx serving curl
//! over HTTP/2, many requests per connection. Frames of many streams are no
//! request/response turns, so no finding may come of them (before HTTP/2
//! was known, the edge's GOAWAY at the end read as an unanswered request);
//! the summary says that requests on these connections were not followed.
//! Live and offline (`analyze` of a capture of the same traffic) agree.

use std::time::Duration;

use integration_tests::differential::Recording;
use integration_tests::tls::{start_nginx, Certs, EdgeCurl, TlsServer};
use integration_tests::tls_origin::GOOD;
use integration_tests::verdict::summary;
use integration_tests::{require_root, Family, Lab, Nginx, Source, Tap};

const TLS13: u16 = 9121;
const TLS12: u16 = 9122;
const H2C: u16 = 9123;

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn http2_connections_make_no_finding_and_are_counted() {
    if !require_root("http2_connections_make_no_finding_and_are_counted") {
        return;
    }
    let lab = Lab::new("http2");
    let leaf = Certs::new(&lab).signed(GOOD, &[GOOD]);
    let h2c = format!(
        "  server {{\n{}    return 200 \"ok\\n\";\n  }}\n",
        Nginx::listen(&lab, H2C, "http2")
    );
    let _nginx = start_nginx(
        &lab,
        &[TLS13, TLS12, H2C],
        &[
            TlsServer::new(TLS13, &leaf).http2().block(&lab),
            TlsServer::new(TLS12, &leaf)
                .http2()
                .protocols("TLSv1.2")
                .block(&lab),
            h2c,
        ],
    );
    let rec = Recording::start_with(
        &lab,
        Tap::OriginVeth,
        &format!("{TLS13},{TLS12},{H2C}"),
        Some(Duration::from_secs(2)),
    );
    let version = ["-w", "%{http_version}\n"];
    // curl 7.88 cannot reuse an h2c connection ("Error in the HTTP2 framing
    // layer" on its second request, with nothing attached): one request
    // per h2c connection, three of them.
    let runs = [
        (EdgeCurl::https(TLS13).args(&["-k", "--http2"]), 10),
        (
            EdgeCurl::https(TLS12).args(&["-k", "--http2", "--tls-max", "1.2"]),
            10,
        ),
        (EdgeCurl::http(H2C).args(&["--http2-prior-knowledge"]), 1),
        (EdgeCurl::http(H2C).args(&["--http2-prior-knowledge"]), 1),
        (EdgeCurl::http(H2C).args(&["--http2-prior-knowledge"]), 1),
    ];
    for (curl, n) in &runs {
        let r = curl.clone().args(&version).requests(*n).run(&lab);
        assert!(r.ok(), "{n} requests over HTTP/2 to {}: {r:?}", curl.port);
        assert_eq!(
            r.body.lines().filter(|l| *l == "2").count(),
            *n,
            "curl spoke HTTP/2 to {}: {r:?}",
            curl.port
        );
    }
    let runs = rec.finish(&[]);
    let edge = lab.client_addr(Family::V4, Source::Edge);
    for port in [TLS13, TLS12, H2C] {
        assert!(
            runs.pairs(edge, port).is_empty(),
            "no finding from HTTP/2 frames on {port}\n{}",
            runs.context()
        );
    }
    for (side, lines) in [("live", &runs.live), ("offline", &runs.offline)] {
        let s = summary(lines);
        assert_eq!(
            s["per_request_off"]["http2"],
            5,
            "{side}: five HTTP/2 connections\n{}",
            runs.context()
        );
        assert_eq!(
            (&s["findings_total"], &s["encrypted_responses"]),
            (&0.into(), &0.into()),
            "{side}: no finding, no frame taken for a response\n{}",
            runs.context()
        );
    }
    // Live, the kernel found them itself: nothing was handed over.
    let live = summary(&runs.live);
    assert_eq!(
        (
            &live["in_kernel"]["http2_connections"],
            &live["in_kernel"]["handed_over"]
        ),
        (&5.into(), &0.into()),
        "{}",
        runs.context()
    );
}
