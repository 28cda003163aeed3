//! Live and offline agree: for each TCP-level failure the live tests produce,
//! tcpdump records the origin while the live agent watches, then
//! `origin-tracer analyze` reads the capture. Every live finding must appear
//! offline for the same connection with the same class, and the offline cause
//! must be the live one or its packet-only counterpart (docs/SCHEMA.md, "What a
//! capture can and cannot tell"); no finding may appear on one side only.
//! One lab per test; the recording and the comparison are
//! `integration_tests::differential`'s.

use std::net::IpAddr;
use std::time::Duration;

use integration_tests::agent::render;
use integration_tests::capture::analyze;
use integration_tests::differential::Recording;
use integration_tests::verdict::{assert_schema, evidence_events, findings, summary};
use integration_tests::{require_root, Curl, Family, Firewall, Lab, Nginx, Tap};
use serde_json::Value;

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn healthy_requests_agree() {
    if !require_root("healthy_requests_agree") {
        return;
    }
    let lab = Lab::new("dhealthy");
    let _nginx = Nginx::start(&lab, &[80], None);
    let rec = Recording::start(&lab, Tap::OriginVeth, "80");
    for _ in 0..3 {
        let r = lab.curl(&Curl::to(80));
        assert!(r.ok(), "{r:?}");
        let r = lab.curl(&Curl::to(80).v6());
        assert!(r.ok(), "{r:?}");
    }
    let runs = rec.finish(&[]);
    assert!(findings(&runs.offline).is_empty(), "{}", runs.context());
    let healthy = summary(&runs.offline)["healthy_handshakes"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        healthy >= 6,
        "healthy_handshakes {healthy} offline, want >= 6\n{}",
        runs.context()
    );
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn closed_port_agrees() {
    if !require_root("closed_port_agrees") {
        return;
    }
    let lab = Lab::new("dclosed");
    let _nginx = Nginx::start(&lab, &[80], None);
    let rec = Recording::start(&lab, Tap::OriginVeth, "80,81");
    assert_eq!(lab.curl(&Curl::to(81)).code, Some(7));
    let edge = IpAddr::V4(lab.edge_v4);
    let runs = rec.finish(&[(edge, 81)]);
    runs.expect(edge, 81, "no_listener", "no_listener");
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn nft_drop_agrees() {
    if !require_root("nft_drop_agrees") {
        return;
    }
    let lab = Lab::new("ddrop");
    let _nginx = Nginx::start(&lab, &[80], None);
    lab.firewall(Firewall::NftDrop, 80);
    let rec = Recording::start(&lab, Tap::Any, "80");
    assert_eq!(lab.curl(&Curl::to(80)).code, Some(28));
    let edge = IpAddr::V4(lab.edge_v4);
    let runs = rec.finish(&[(edge, 80)]);
    runs.expect(edge, 80, "firewall_drop", "syn_unanswered");

    // The same capture with a --syn-timeout it does not cover: the dropped
    // connection is inconclusive, not a finding.
    let (_, long) = analyze(
        &runs.file,
        &[
            "--edge-ranges",
            &lab.edge_ranges(),
            "--ports",
            "80",
            "--syn-timeout",
            "60s",
        ],
    );
    assert_schema(&long);
    let inconclusive: Vec<&Value> = long
        .iter()
        .filter(|l| l["type"] == "inconclusive")
        .collect();
    let (live, _) = runs.pair(edge, 80);
    assert!(
        findings(&long).is_empty()
            && inconclusive.len() == 1
            && inconclusive[0]["flow"] == live["flow"]
            && inconclusive[0]["needed_ms"] == 60_000
            && inconclusive[0]["watched_ms"]
                .as_u64()
                .is_some_and(|w| (4_000..60_000).contains(&w)),
        "with --syn-timeout 60s, want the dropped connection inconclusive and no finding:\n{}\n---- live ----\n{}",
        render(&long),
        render(&runs.live)
    );
    assert_eq!(summary(&long)["pending_at_exit"], 1);
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn nft_reject_with_reset_agrees() {
    if !require_root("nft_reject_with_reset_agrees") {
        return;
    }
    let lab = Lab::new("drst");
    let _nginx = Nginx::start(&lab, &[80], None);
    lab.firewall(Firewall::NftRejectReset, 80);
    let rec = Recording::start(&lab, Tap::OriginVeth, "80");
    assert_eq!(lab.curl(&Curl::to(80)).code, Some(7));
    let edge = IpAddr::V4(lab.edge_v4);
    let runs = rec.finish(&[(edge, 80)]);
    // A firewall's RST looks like the stack's on the wire.
    runs.expect(edge, 80, "firewall_reject", "no_listener");
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn nft_reject_with_icmp_agrees() {
    if !require_root("nft_reject_with_icmp_agrees") {
        return;
    }
    let lab = Lab::new("dicmp");
    let _nginx = Nginx::start(&lab, &[80], None);
    lab.firewall(Firewall::NftRejectIcmp, 80);
    let rec = Recording::start(&lab, Tap::Any, "80");
    assert_eq!(lab.curl(&Curl::to(80)).code, Some(7));
    assert_eq!(lab.curl(&Curl::to(80).v6()).code, Some(7));
    let (edge4, edge6) = (IpAddr::V4(lab.edge_v4), IpAddr::V6(lab.edge_v6));
    let runs = rec.finish(&[(edge4, 80), (edge6, 80)]);
    runs.expect(edge4, 80, "firewall_reject", "firewall_reject");
    runs.expect(edge6, 80, "firewall_reject", "firewall_reject");
    let (_, o) = runs.pair(edge4, 80);
    assert!(
        evidence_events(&o).contains(&"icmp_unreach_out"),
        "offline evidence lacks the ICMP error: {o}"
    );
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn full_accept_queue_agrees() {
    if !require_root("full_accept_queue_agrees") {
        return;
    }
    let lab = Lab::new("doverflow");
    let nginx = Nginx::start(&lab, &[80], Some(1));
    nginx.hang();
    let rec = Recording::start(&lab, Tap::OriginVeth, "80");
    let results = lab.curl_parallel(&Curl::to(80).connect_timeout(Duration::from_secs(4)), 6);
    assert!(
        results.iter().any(|r| !r.ok()),
        "every request got through: {results:?}"
    );
    let edge = IpAddr::V4(lab.edge_v4);
    let runs = rec.finish(&[(edge, 80)]);
    let overflow: Vec<&Value> = findings(&runs.live)
        .into_iter()
        .filter(|f| f["cause"] == "listen_overflow")
        .collect();
    assert!(
        !overflow.is_empty(),
        "no live listen_overflow finding\n{}",
        runs.context()
    );
    // compare() matched each of them offline as syn_unanswered.
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn lost_synacks_agree() {
    if !require_root("lost_synacks_agree") {
        return;
    }
    let lab = Lab::new("dretpath");
    let _nginx = Nginx::start(&lab, &[80], None);
    lab.break_return_path();
    // -i any: the SYN-ACKs leave through the void device, not the veth.
    let rec = Recording::start(&lab, Tap::Any, "80");
    let r = lab.curl(&Curl::to(80).connect_timeout(Duration::from_secs(4)));
    assert_eq!(r.code, Some(28), "{r:?}");
    let edge = IpAddr::V4(lab.edge_v4);
    let runs = rec.finish(&[(edge, 80)]);
    runs.expect(edge, 80, "synack_unacked", "synack_unacked");
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn ipv6_closed_port_and_drop_agree() {
    if !require_root("ipv6_closed_port_and_drop_agree") {
        return;
    }
    let lab = Lab::new("dipv6");
    let _nginx = Nginx::start(&lab, &[80], None);
    lab.firewall(Firewall::NftDrop, 80);
    let rec = Recording::start(&lab, Tap::Any, "80,81");
    assert_eq!(lab.curl(&Curl::to(81).v6()).code, Some(7));
    assert_eq!(lab.curl(&Curl::to(80).v6()).code, Some(28));
    let edge = IpAddr::V6(lab.edge_v6);
    let runs = rec.finish(&[(edge, 81), (edge, 80)]);
    runs.expect(edge, 81, "no_listener", "no_listener");
    runs.expect(edge, 80, "firewall_drop", "syn_unanswered");
    let (l, _) = runs.pair(edge, 80);
    assert_eq!(l["flow"]["family"], Family::V6.as_str());
}
