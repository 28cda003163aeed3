//! No-root tests: the checker accepts good lines and runs (live and
//! `analyze`); the generated schema alone rejects every bad line a schema
//! can describe, and the checks beyond it name the rest. The payload objects,
//! `cert_check`, `timing` and `pcap` are tried in `tests/payload.rs`, real
//! `analyze` runs of the shared captures in `tests/captures.rs`.

use serde_json::{json, Value};

use super::*;

mod captures;
mod payload;

const TS: &str = "2026-11-21T16:00:00.123456Z";

pub(crate) fn sample_start() -> Value {
    json!({"type": "start", "schema_version": 1, "ts": TS, "version": "0.1.0",
        "kernel": "6.18.0", "attach_mode": "tcx",
        "interfaces": [{"name": "eth0", "ifindex": 2}], "ports": [80, 443],
        "edge_prefixes": {"ipv4": 15, "ipv6": 7}, "all_sources": false,
        "syn_timeout_ms": 15000, "response_timeout_ms": 100_000, "ack_timeout_ms": 90_000,
        "probes": [{"name": "tc_ingress", "status": "attached"},
                   {"name": "tcp:tcp_send_reset", "status": "skipped", "reason": "not in this kernel"}],
        "stale_removed": []})
}

pub(crate) fn sample_finding() -> Value {
    json!({"type": "finding", "schema_version": 1, "ts": TS, "source": "kernel", "class": "521",
        "cause": "no_listener", "confidence": "high",
        "flow": {"src": "198.18.7.1", "sport": 40000, "dst": "198.18.7.2", "dport": 81, "family": "ipv4"},
        "evidence": [{"t_us": 0, "event": "syn_in"},
                     {"t_us": 20, "event": "kernel_drop", "reason": "NO_SOCKET", "direction": "in", "segment": "SYN"},
                     {"t_us": 31, "event": "rst_out"}],
        "hint": "nothing listens on port 81"})
}

pub(crate) fn sample_capture_start() -> Value {
    json!({"type": "start", "schema_version": 1, "ts": TS, "source": "capture",
        "capture_file": "/tmp/edge.pcapng", "version": "0.1.0", "kernel": "6.18.0",
        "attach_mode": "none", "interfaces": [], "ports": [80, 443],
        "edge_prefixes": {"ipv4": 15, "ipv6": 7}, "all_sources": false,
        "syn_timeout_ms": 3000, "response_timeout_ms": 100_000, "ack_timeout_ms": 90_000, "probes": [], "stale_removed": []})
}

pub(crate) fn sample_capture_finding() -> Value {
    let mut f = sample_finding();
    f["source"] = json!("capture");
    f["confidence"] = json!("medium");
    f["evidence"] = json!([{"t_us": 0, "event": "syn_in"}, {"t_us": 31, "event": "rst_out"}]);
    f
}

pub(crate) fn sample_inconclusive() -> Value {
    json!({"type": "inconclusive", "schema_version": 1, "ts": TS, "source": "capture",
        "flow": {"src": "2001:db8:7::1", "sport": 40001, "dst": "2001:db8:7::2", "dport": 443, "family": "ipv6"},
        "evidence": [{"t_us": 0, "event": "syn_in"}, {"t_us": 1_000_000, "event": "syn_in"}],
        "watched_ms": 1200, "needed_ms": 3000,
        "reason": "the capture ends 1200 ms after this connection's first SYN, before --syn-timeout (3000 ms): no verdict"})
}

/// The summary of an `analyze` run with `findings` `no_listener` findings and
/// `pending` inconclusive connections.
pub(crate) fn sample_capture_summary(findings: u64, pending: u64) -> Value {
    let mut s = sample_summary(findings);
    s["source"] = json!("capture");
    s["pending_at_exit"] = json!(pending);
    s["capture"] = json!({"file": "/tmp/edge.pcapng", "packets": 40,
        "packets_skipped": {"unsupported_link_type": 2}, "damage": null});
    s
}

pub(crate) fn sample_summary(findings: u64) -> Value {
    let mut counts = serde_json::Map::new();
    for cause in causes() {
        counts.insert(cause.to_owned(), json!(0));
    }
    counts.insert("no_listener".to_owned(), json!(findings));
    json!({"type": "summary", "schema_version": 1, "ts": TS, "duration_ms": 1000,
        "findings": counts,
        "findings_total": findings, "healthy_handshakes": 3, "healthy_requests": 2,
        "events_received": 9, "snapshots_received": 4,
        "events_lost": 0, "kernel_read_errors": 0, "flows_untracked": 0, "flows_evicted": 0,
        "pending_at_exit": 0,
        "timing": {"syn_to_synack": {"count": 3, "p50_us": 40, "p90_us": 55, "p99_us": 60},
            "client_hello_to_server_hello": null, "request_to_first_byte": null},
        "origin_statuses": {}, "encrypted_responses": 0, "per_request_off": {"http2": 0, "upgraded": 0},
        "in_kernel": {"handshakes": 2, "requests": 1, "tls_requests": 0, "http2_connections": 0,
            "handed_over": 1, "handed_over_by": {"reset": 1, "syn_resent": 0, "synack_resent": 0,
            "icmp": 0, "tcp_event": 0, "drop": 0, "closed_waiting": 0, "payload": 0, "overdue": 0},
            "flows_evicted": 0},
        "lines_dropped": 0})
}

#[test]
fn good_lines_pass() {
    for line in [sample_start(), sample_finding(), sample_summary(1)] {
        assert_eq!(check_line(&line), Vec::<String>::new(), "{line}");
    }
    let event = json!({"type": "event", "schema_version": 1, "ts": TS, "source": "kernel", "event": "icmp_unreach_out",
        "icmp": {"type": 3, "code": 3, "name": "port-unreachable"},
        "flow": {"src": "2001:db8:7::1", "sport": 1, "dst": "2001:db8:7::2", "dport": 80, "family": "ipv6"}});
    assert_eq!(check_line(&event), Vec::<String>::new());
    let loss = json!({"type": "loss", "schema_version": 1, "ts": TS, "events_lost": 3, "events_lost_total": 5});
    assert_eq!(check_line(&loss), Vec::<String>::new());
    let overflow = json!({"type": "event", "schema_version": 1, "ts": TS, "source": "kernel",
        "event": "listen_overflow_counter", "count": 2, "queue": {"port": 80, "accept_queue": 1}});
    assert_eq!(check_line(&overflow), Vec::<String>::new());
    let run = [sample_start(), sample_finding(), sample_summary(1)];
    assert_eq!(check_run(&run), Vec::<String>::new());
    let mut live = sample_finding();
    live["source"] = json!("kernel");
    assert_eq!(check_line(&live), Vec::<String>::new());
}

#[test]
fn good_capture_lines_and_runs_pass() {
    for line in [
        sample_capture_start(),
        sample_capture_finding(),
        sample_inconclusive(),
        sample_capture_summary(1, 1),
    ] {
        assert_eq!(check_line(&line), Vec::<String>::new(), "{line}");
    }
    let mut damaged = sample_capture_summary(0, 0);
    damaged["capture"]["damage"] = json!("damaged record: truncated");
    damaged["capture"]["packets_skipped"] = json!({});
    assert_eq!(check_line(&damaged), Vec::<String>::new());
    let run = [
        sample_capture_start(),
        sample_capture_finding(),
        sample_inconclusive(),
        sample_capture_summary(1, 1),
    ];
    assert_eq!(check_run(&run), Vec::<String>::new());
    // An empty capture: start and summary only.
    let run = [sample_capture_start(), sample_capture_summary(0, 0)];
    assert_eq!(check_run(&run), Vec::<String>::new());
}

/// The generated schema alone rejects the line; `what` says what it breaks
/// (the checker's message, which also names it).
fn fails(line: &Value, what: &str) {
    assert!(
        !published_schema().is_valid(line),
        "docs/schema-v1.json accepts a line that breaks {what:?}: {line}"
    );
    assert!(!check_line(line).is_empty(), "{line}");
}

/// The schema cannot say it (numbers that must agree): the checks beyond it
/// name it.
fn fails_beyond(line: &Value, needle: &str) {
    let errors = check_line(line);
    assert!(
        errors.iter().any(|e| e.contains(needle)),
        "want an error containing {needle:?}, got {errors:?} for {line}"
    );
}

#[test]
fn bad_lines_are_named() {
    let mut l = sample_finding();
    l["cause"] = json!("no_lisener");
    fails(&l, "unknown cause");
    let mut l = sample_finding();
    l["class"] = json!("522");
    fails(&l, "has class 521");
    let mut l = sample_finding();
    l["flow"]["family"] = json!("ipv6");
    fails(&l, "is not \"ipv6\"");
    let mut l = sample_finding();
    l["evidence"][1]["t_us"] = json!(-4);
    fails(&l, "t_us");
    let mut l = sample_finding();
    l["evidence"][2]["t_us"] = json!(1);
    fails_beyond(&l, "goes back");
    let mut l = sample_finding();
    l["evidence"][0]["event"] = json!("syn");
    fails(&l, "`syn` is not one of");
    let mut l = sample_finding();
    l["evidence"] = json!([]);
    fails(&l, "evidence: empty");
    let mut l = sample_finding();
    l.as_object_mut().expect("object").remove("hint");
    fails(&l, "missing `hint`");
    let mut l = sample_start();
    l["schema_version"] = json!(2);
    fails(&l, "schema_version 2");
    let mut l = sample_start();
    l["probes"][1]
        .as_object_mut()
        .expect("object")
        .remove("reason");
    fails(&l, "skipped probe without reason");
    let mut l = sample_start();
    l["ts"] = json!("yesterday");
    fails(&l, "not RFC 3339");
    let mut l = sample_summary(1);
    l["findings_total"] = json!(2);
    fails_beyond(&l, "not the sum");
    let mut l = sample_summary(1);
    l["in_kernel"]["handed_over_by"]["reset"] = json!(2);
    fails_beyond(&l, "not the sum of `handed_over_by`");
    let mut l = sample_summary(1);
    l["findings"]
        .as_object_mut()
        .expect("object")
        .remove("kernel_drop");
    fails(&l, "missing count for `kernel_drop`");
    let mut l = sample_summary(1);
    l["findings"]
        .as_object_mut()
        .expect("object")
        .remove("response_timeout");
    fails(&l, "missing count for `response_timeout`");
    let mut l = sample_summary(1);
    l.as_object_mut().expect("object").remove("timing");
    fails(&l, "missing `timing`");
    fails(
        &json!({"type": "hello", "schema_version": 1, "ts": TS}),
        "unknown line type",
    );
    fails(&json!("not json"), "not a JSON object");
    let mut l = sample_finding();
    l["source"] = json!("pcap");
    fails(&l, "`pcap` is not one of");
}

#[test]
fn bad_capture_lines_are_named() {
    let mut l = sample_capture_start();
    l["attach_mode"] = json!("tcx");
    fails(&l, "want \"none\"");
    let mut l = sample_capture_start();
    l["interfaces"] = json!([{"name": "eth0", "ifindex": 2}]);
    fails(&l, "`interfaces` should be empty");
    let mut l = sample_capture_start();
    l.as_object_mut().expect("object").remove("capture_file");
    fails(&l, "`capture_file` is missing");
    let mut l = sample_start();
    l["attach_mode"] = json!("none");
    fails(&l, "`none` is for `analyze`");
    let mut l = sample_inconclusive();
    l["source"] = json!("kernel");
    fails(&l, "only `analyze`");
    let mut l = sample_inconclusive();
    l.as_object_mut().expect("object").remove("needed_ms");
    fails(&l, "missing `needed_ms`");
    let mut l = sample_inconclusive();
    l["watched_ms"] = json!(3000);
    fails_beyond(&l, "that is a verdict");
    let mut l = sample_inconclusive();
    l["evidence"] = json!([]);
    fails(&l, "inconclusive.evidence: empty");
    let mut l = sample_inconclusive();
    l["flow"]["family"] = json!("ipv4");
    fails(&l, "is not \"ipv4\"");
    let mut l = sample_capture_summary(0, 0);
    l.as_object_mut().expect("object").remove("capture");
    fails(&l, "`capture` is missing");
    let mut l = sample_capture_summary(0, 0);
    l["capture"]["damage"] = json!(false);
    fails(&l, "`damage` should be string or null");
    let mut l = sample_capture_summary(0, 0);
    l["capture"]["packets_skipped"] = json!({"checksum": 1});
    fails(&l, "`checksum` is not one of");
    let mut l = sample_capture_summary(0, 0);
    l["capture"]["packets"] = json!(1);
    fails_beyond(&l, "2 packets skipped of 1");
}

#[test]
fn bad_runs_are_named() {
    let errors = check_run(&[sample_finding(), sample_summary(1)]);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("first line is not `start`")),
        "{errors:?}"
    );
    let errors = check_run(&[sample_start(), sample_summary(2)]);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("2 `no_listener` findings, 0 were written")),
        "{errors:?}"
    );
    let errors = check_run(&[sample_start(), sample_summary(0), sample_finding()]);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("last line is not `summary`")),
        "{errors:?}"
    );
}

fn run_fails(run: &[Value], needle: &str) {
    let errors = check_run(run);
    assert!(
        errors.iter().any(|e| e.contains(needle)),
        "want an error containing {needle:?}, got {errors:?}"
    );
}

#[test]
fn bad_capture_runs_are_named() {
    let start = sample_capture_start;
    run_fails(
        &[start(), sample_inconclusive(), sample_capture_summary(0, 0)],
        "pending_at_exit 0, 1 `inconclusive` lines",
    );
    run_fails(
        &[start(), sample_capture_summary(0, 2)],
        "pending_at_exit 2, 0 `inconclusive`",
    );
    run_fails(
        &[
            start(),
            sample_finding_from("kernel"),
            sample_capture_summary(1, 0),
        ],
        "source \"kernel\" in a run whose source is capture",
    );
    run_fails(
        &[sample_start(), sample_capture_finding(), sample_summary(1)],
        "source \"capture\" in a run whose source is kernel",
    );
    run_fails(
        &[sample_start(), sample_inconclusive(), sample_summary(0)],
        "`inconclusive` lines in a live run",
    );
    run_fails(
        &[start(), sample_summary(0)],
        "the summary of a capture run has source null",
    );
    let mut summary = sample_capture_summary(0, 0);
    summary["capture"]["file"] = json!("/tmp/other.pcap");
    run_fails(&[start(), summary], "is not start's capture_file");
    run_fails(
        &[start(), sample_capture_summary(1, 0)],
        "1 `no_listener` findings, 0 were written",
    );
}

fn sample_finding_from(source: &str) -> Value {
    let mut f = sample_finding();
    f["source"] = json!(source);
    f
}

/// Regression: `--events all` printed the host-wide listen-overflow counter
/// without a `flow` while the schema required one for every event.
#[test]
fn only_the_host_wide_event_has_no_flow() {
    let mut l = json!({"type": "event", "schema_version": 1, "ts": TS, "source": "kernel", "event": "syn_in"});
    fails(&l, "missing `flow`");
    l["event"] = json!("listen_overflow_counter");
    l["count"] = json!(1);
    assert_eq!(check_line(&l), Vec::<String>::new());
    l["flow"] = sample_finding()["flow"].clone();
    fails(&l, "host-wide event has no `flow`");
}

/// Regression: `start.response_timeout_ms` was printed but not in the schema.
#[test]
fn start_names_the_response_timeout() {
    let mut l = sample_start();
    l.as_object_mut().unwrap().remove("response_timeout_ms");
    fails(&l, "missing `response_timeout_ms`");
}
