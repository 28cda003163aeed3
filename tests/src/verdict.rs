//! Helpers to pick apart an agent run: its findings, its summary, the flows
//! and evidence of findings, and common assertions on them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::Value;

use crate::agent::render;
use crate::schema;

/// The `finding` lines.
pub fn findings(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|l| l["type"] == "finding").collect()
}

/// The `summary` line; panics (with the run) if there is none.
pub fn summary(lines: &[Value]) -> &Value {
    lines
        .iter()
        .rev()
        .find(|l| l["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary line in:\n{}", render(lines)))
}

/// Whether the run's kernel names its drops (`skb:kfree_skb` attached without
/// `limits`: drop reasons, Linux 5.17): what makes a closed port `high`
/// rather than `medium` (the packets alone).
pub fn kernel_names_drops(lines: &[Value]) -> bool {
    let start = lines
        .iter()
        .find(|l| l["type"] == "start")
        .unwrap_or_else(|| panic!("no start line in:\n{}", render(lines)));
    start["probes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p["name"] == "skb:kfree_skb" && p["status"] == "attached" && p["limits"].is_null())
}

/// The event names of a finding's evidence, in order.
pub fn evidence_events(finding: &Value) -> Vec<&str> {
    finding["evidence"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["event"].as_str())
        .collect()
}

/// The evidence items of `finding` named `event`.
pub fn evidence_items<'a>(finding: &'a Value, event: &str) -> Vec<&'a Value> {
    finding["evidence"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["event"] == event)
        .collect()
}

/// Whether a line is a finding for a connection from `src` to `dport`.
pub fn is_finding_for(line: &Value, src: IpAddr, dport: u16) -> bool {
    line["type"] == "finding" && flow_is(&line["flow"], src, dport)
}

/// Whether `flow` goes from `src` to origin port `dport`.
pub fn flow_is(flow: &Value, src: IpAddr, dport: u16) -> bool {
    flow["dport"] == dport
        && flow["src"]
            .as_str()
            .and_then(|s| s.parse::<IpAddr>().ok())
            .is_some_and(|a| a == src)
}

/// Panics, with the run, unless it passes [`schema::check_run`].
pub fn assert_schema(lines: &[Value]) {
    let errors = schema::check_run(lines);
    assert!(
        errors.is_empty(),
        "output does not follow schema v1:\n{}\n---- run ----\n{}",
        errors.join("\n"),
        render(lines)
    );
}

/// Panics unless every request of every flow (src, sport, dst, dport,
/// `http.request_index`) has at most one finding.
pub fn assert_one_finding_per_request(lines: &[Value]) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for f in findings(lines) {
        let fl = &f["flow"];
        let key = format!(
            "{}:{} -> {}:{} request {}",
            fl["src"], fl["sport"], fl["dst"], fl["dport"], f["http"]["request_index"]
        );
        *seen.entry(key).or_default() += 1;
    }
    let dup: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dup.is_empty(),
        "more than one finding for a request: {dup:?}\n---- run ----\n{}",
        render(lines)
    );
}

/// Panics unless `finding` has `cause`, its class and `family`.
pub fn assert_cause(finding: &Value, cause: &str, family: &str, lines: &[Value]) {
    let class = schema::class_of(cause).unwrap_or("?");
    assert!(
        finding["cause"] == cause
            && finding["class"] == class
            && finding["flow"]["family"] == family,
        "want {class}/{cause} over {family}, got {finding}\n---- run ----\n{}",
        render(lines)
    );
}

/// Panics unless `finding`'s evidence has every event of `events`.
pub fn assert_evidence(finding: &Value, events: &[&str]) {
    let have = evidence_events(finding);
    let missing: Vec<_> = events.iter().filter(|e| !have.contains(e)).collect();
    assert!(missing.is_empty(), "evidence lacks {missing:?}: {finding}");
}
