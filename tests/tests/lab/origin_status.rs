//! The origin's own 5xx (`origin_error_status`, class = the status): nginx
//! in front of an upstream that is down (the 502 of a PHP site whose PHP-FPM died, checked
//! live and offline), and nginx answering 503s at full rate, which must
//! give a bounded number of lines and exact counts in the summary.

use std::net::IpAddr;
use std::time::Duration;

use integration_tests::differential::Recording;
use integration_tests::session::{findings_for, finish, start_agent};
use integration_tests::tls::EdgeCurl;
use integration_tests::verdict::summary;
use integration_tests::{require_root, Family, Lab, Nginx, Source, Tap};
use serde_json::Value;

fn edge(lab: &Lab) -> IpAddr {
    lab.client_addr(Family::V4, Source::Edge)
}

/// nginx on `port` doing `body` (a location's directives) for every request.
fn nginx(lab: &Lab, port: u16, body: &str) -> Nginx {
    let server = format!(
        "  server {{\n{}    location / {{ {body} }}\n  }}\n",
        Nginx::listen(lab, port, "")
    );
    Nginx::start_servers(lab, &[port], &server)
}

fn status_count(line: &Value, status: &str) -> u64 {
    line["origin_statuses"][status].as_u64().unwrap_or(0)
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn an_upstream_that_is_down_is_the_origins_own_502() {
    if !require_root("an_upstream_that_is_down_is_the_origins_own_502") {
        return;
    }
    let lab = Lab::new("status502");
    // Nothing listens on the upstream's port: nginx answers 502 itself.
    let _nginx = nginx(&lab, 8081, "proxy_pass http://127.0.0.1:9;");
    let rec = Recording::start(&lab, Tap::OriginVeth, "8081");
    let r = EdgeCurl::http(8081)
        .args(&["-o", "/dev/null", "-w", "%{http_code}"])
        .run(&lab);
    assert_eq!((r.code, r.body.as_str()), (Some(0), "502"), "{r:?}");
    let runs = rec.finish(&[(edge(&lab), 8081)]);
    let (live, offline) = runs.pair(edge(&lab), 8081);
    for f in [&live, &offline] {
        assert!(
            f["cause"] == "origin_error_status"
                && f["class"] == "502"
                && f["http"]["status"] == 502
                && f["http"]["request_index"] == 1
                && f["count"] == 1,
            "want the origin's own 502: {f}\n{}",
            runs.context()
        );
        assert!(f["hint"].as_str().unwrap_or("").contains("upstream"), "{f}");
    }
    for lines in [&runs.live, &runs.offline] {
        let s = summary(lines);
        assert_eq!(status_count(s, "502"), 1, "{s}");
        assert_eq!(s["findings"]["origin_error_status"], 1, "{s}");
    }
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn a_flood_of_503s_gives_bounded_lines_and_exact_counts() {
    if !require_root("a_flood_of_503s_gives_bounded_lines_and_exact_counts") {
        return;
    }
    let lab = Lab::new("status503");
    let _nginx = nginx(&lab, 8082, "return 503;");
    let agent = start_agent(&lab, &["--ports", "8082"]);
    let mut sent = 0u64;
    for _ in 0..3 {
        let r = EdgeCurl::http(8082)
            .args(&["-s", "-o", "/dev/null"])
            .requests(100)
            .max_time(Duration::from_secs(20))
            .run(&lab);
        assert_eq!(r.code, Some(0), "{r:?}");
        sent += 100;
    }
    let lines = finish(agent);
    let found = findings_for(&lines, edge(&lab), 8082);
    // The run is shorter than one 10 s window: the first 503 at once, the
    // rest in one line when the run ends.
    assert!(
        !found.is_empty() && found.len() <= 2,
        "{} lines for {sent} 503s: {found:#?}",
        found.len()
    );
    let counted: u64 = found.iter().map(|f| f["count"].as_u64().unwrap_or(0)).sum();
    assert_eq!(counted, sent, "the lines stand for every 503: {found:#?}");
    assert!(found.iter().all(|f| f["class"] == "503"), "{found:#?}");
    let s = summary(&lines);
    assert_eq!(status_count(s, "503"), sent, "{s}");
    assert_eq!(s["findings"]["origin_error_status"], sent, "{s}");
}
