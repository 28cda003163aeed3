//! Real output follows schema v1 (docs/SCHEMA.md): every line of a run with
//! findings (and with `--events all`) passes the checker, and `start` says
//! what was attached.

use std::thread::sleep;
use std::time::Duration;

use integration_tests::agent::render;
use integration_tests::session::{start_agent, FINDING_WAIT};
use integration_tests::verdict::{assert_schema, findings, is_finding_for};
use integration_tests::{require_root, Curl, Firewall, Lab, Nginx};
use serde_json::Value;

/// A run with a closed port (81) and a dropped SYN (80), from both families.
fn run_with_findings(tag: &str, extra: &[&str]) -> (Lab, Vec<Value>) {
    let lab = Lab::new(tag);
    let nginx = Nginx::start(&lab, &[80], None);
    lab.firewall(Firewall::NftDrop, 80);
    let mut args = vec!["--ports", "80,81"];
    args.extend_from_slice(extra);
    let mut agent = start_agent(&lab, &args);
    assert_eq!(lab.curl(&Curl::to(81)).code, Some(7));
    assert_eq!(lab.curl(&Curl::to(81).v6()).code, Some(7));
    assert_eq!(lab.curl(&Curl::to(80)).code, Some(28));
    let edge = std::net::IpAddr::V4(lab.edge_v4);
    agent
        .wait_for(|l| is_finding_for(l, edge, 80), FINDING_WAIT)
        .unwrap_or_else(|| panic!("no finding for the dropped SYN\n{}", agent.transcript()));
    sleep(Duration::from_millis(300));
    let lines = agent.stop(libc::SIGINT);
    drop(nginx);
    (lab, lines)
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn a_run_with_findings_follows_the_schema() {
    if !require_root("a_run_with_findings_follows_the_schema") {
        return;
    }
    let (lab, lines) = run_with_findings("schema", &[]);
    assert_schema(&lines);
    assert!(
        findings(&lines).len() >= 3,
        "want 3 findings:\n{}",
        render(&lines)
    );
    let start = &lines[0];
    let names: Vec<&str> = start["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert!(
        names.contains(&lab.origin_veth.as_str()),
        "interfaces {names:?} lack {}",
        lab.origin_veth
    );
    for probe in ["tc_ingress", "tc_egress"] {
        let p = start["probes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == probe)
            .unwrap_or_else(|| panic!("no probe {probe} in {start}"));
        assert_eq!(p["status"], "attached", "{p}");
    }
    assert_eq!(start["ports"], serde_json::json!([80, 81]), "{start}");
    assert_eq!(
        start["edge_prefixes"],
        serde_json::json!({"ipv4": 1, "ipv6": 1}),
        "{start}"
    );
    assert_eq!(start["syn_timeout_ms"], 3000, "{start}");
    assert_eq!(start["all_sources"], false, "{start}");
    assert_eq!(start["stale_removed"], serde_json::json!([]), "{start}");
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn raw_events_follow_the_schema() {
    if !require_root("raw_events_follow_the_schema") {
        return;
    }
    let (_lab, lines) = run_with_findings("events", &["--events", "all"]);
    assert_schema(&lines);
    let events: Vec<&Value> = lines.iter().filter(|l| l["type"] == "event").collect();
    for want in ["syn_in", "rst_out", "kernel_drop"] {
        assert!(
            events.iter().any(|e| e["event"] == want),
            "no `{want}` event line:\n{}",
            render(&lines)
        );
    }
}
