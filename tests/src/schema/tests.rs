//! No-root tests: the checker's tables equal docs/schema-v1.json, and the
//! checker accepts good lines and runs (live and `analyze`) and names what is
//! wrong with bad ones.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::*;

const SCHEMA_TEXT: &str = include_str!("../../../docs/schema-v1.json");

fn schema() -> Value {
    serde_json::from_str(SCHEMA_TEXT).expect("docs/schema-v1.json is JSON")
}

fn def<'a>(schema: &'a Value, name: &str) -> &'a Value {
    let d = &schema["$defs"][name];
    assert!(d.is_object(), "schema has no $defs/{name}");
    d
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The property schema of `field` in `d`, looking through `$ref`.
fn property<'a>(schema: &'a Value, d: &'a Value, field: &str) -> Option<&'a Value> {
    if let Some(p) = d["properties"].get(field) {
        return Some(p);
    }
    let r = d["$ref"].as_str()?.strip_prefix("#/$defs/")?;
    property(schema, def(schema, r), field)
}

/// The JSON type a property schema allows.
fn kind_of(schema: &Value, p: &Value) -> String {
    if let Some(t) = p["type"].as_str() {
        return t.to_owned();
    }
    if let Some(r) = p["$ref"].as_str().and_then(|r| r.strip_prefix("#/$defs/")) {
        return kind_of(schema, def(schema, r));
    }
    if let Some(values) = p["enum"].as_array() {
        assert!(values.iter().all(Value::is_string), "mixed enum {p}");
        return "string".to_owned();
    }
    match &p["const"] {
        Value::Number(_) => "integer".to_owned(),
        Value::String(_) => "string".to_owned(),
        other => panic!("cannot tell the type of {other}"),
    }
}

#[test]
fn causes_equal_the_schema_enum() {
    let s = schema();
    let finding = def(&s, "finding");
    let want = strings(&finding["properties"]["cause"]["enum"]);
    let have: BTreeSet<String> = CAUSES.iter().map(|(c, _)| (*c).to_owned()).collect();
    assert_eq!(have, want);
    assert_eq!(
        strings(&finding["properties"]["class"]["enum"]),
        CAUSES.iter().map(|(_, c)| (*c).to_owned()).collect()
    );
    // Each class branch of the schema names exactly the causes of that class.
    for branch in finding["oneOf"].as_array().expect("oneOf") {
        let class = branch["properties"]["class"]["const"]
            .as_str()
            .expect("class");
        let causes = strings(&branch["properties"]["cause"]["enum"]);
        let mine: BTreeSet<String> = CAUSES
            .iter()
            .filter(|(_, c)| *c == class)
            .map(|(cause, _)| (*cause).to_owned())
            .collect();
        assert_eq!(causes, mine, "class {class}");
    }
    // The summary counts every cause.
    assert_eq!(
        strings(&def(&s, "summary")["properties"]["findings"]["required"]),
        want
    );
}

#[test]
fn enums_equal_the_schema() {
    let s = schema();
    assert_eq!(strings(&s["properties"]["type"]["enum"]), set(&LINE_TYPES));
    assert_eq!(s["properties"]["schema_version"]["const"], SCHEMA_VERSION);
    let fields = def(&s, "evidence_fields");
    assert_eq!(
        strings(&fields["properties"]["event"]["enum"]),
        set(&EVENTS)
    );
    assert_eq!(
        strings(&fields["properties"]["direction"]["enum"]),
        set(&["in", "out"])
    );
    let finding = def(&s, "finding");
    assert_eq!(
        strings(&finding["properties"]["confidence"]["enum"]),
        set(&CONFIDENCES)
    );
    let start = def(&s, "start");
    assert_eq!(
        strings(&start["properties"]["attach_mode"]["enum"]),
        set(&ATTACH_MODES)
    );
    assert_eq!(
        strings(&start["properties"]["probes"]["items"]["properties"]["status"]["enum"]),
        set(&PROBE_STATUSES)
    );
    // A capture's start attaches nothing; a live one attaches something.
    assert_eq!(start["then"]["properties"]["attach_mode"]["const"], "none");
    let live: Vec<&str> = ATTACH_MODES.into_iter().filter(|m| *m != "none").collect();
    assert_eq!(
        strings(&start["else"]["properties"]["attach_mode"]["enum"]),
        set(&live)
    );
    for branch in [&start["if"], &def(&s, "summary")["if"]] {
        assert_eq!(strings(&branch["required"]), set(&["source"]));
        assert_eq!(branch["properties"]["source"]["const"], CAPTURE);
    }
    assert_eq!(strings(&def(&s, "source")["enum"]), set(&SOURCES));
    assert_eq!(s["properties"]["source"]["$ref"], "#/$defs/source");
    assert_eq!(
        def(&s, "inconclusive")["properties"]["source"]["const"],
        CAPTURE
    );
    assert_eq!(
        strings(&def(&s, "capture")["properties"]["packets_skipped"]["propertyNames"]["enum"]),
        set(&SKIP_REASONS)
    );
}

/// The names of `fields`.
fn names(fields: &[(&str, Kind)]) -> BTreeSet<String> {
    fields.iter().map(|(f, _)| (*f).to_owned()).collect()
}

#[test]
fn optional_fields_equal_the_schema() {
    let s = schema();
    for (t, optional) in [
        ("start", &START_OPTIONAL[..]),
        ("summary", &SUMMARY_OPTIONAL[..]),
    ] {
        let d = def(&s, t);
        let have: BTreeSet<String> = d["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .filter(|k| !required_fields(t).iter().any(|(r, _)| r == k))
            .cloned()
            .collect();
        assert_eq!(have, names(optional), "optional fields of `{t}`");
        for (field, kind) in optional {
            let p = property(&s, d, field).expect("listed above");
            assert_eq!(kind_of(&s, p), kind.json_name(), "type of {t}.{field}");
        }
    }
    let capture = def(&s, "capture");
    let mut want = names(&CAPTURE_FIELDS);
    want.insert("damage".to_owned());
    assert_eq!(strings(&capture["required"]), want);
    for (field, kind) in CAPTURE_FIELDS {
        let p = &capture["properties"][field];
        assert_eq!(kind_of(&s, p), kind.json_name(), "type of capture.{field}");
    }
    assert_eq!(
        capture["properties"]["damage"]["type"],
        json!(["string", "null"])
    );
    // `source` is optional on every line but `inconclusive`.
    assert_eq!(kind_of(&s, &s["properties"]["source"]), "string");
    assert!(!COMMON.iter().any(|(f, _)| *f == "source"));
}

#[test]
fn required_fields_and_types_equal_the_schema() {
    let s = schema();
    let common: BTreeSet<String> = COMMON.iter().map(|(f, _)| (*f).to_owned()).collect();
    assert_eq!(strings(&s["required"]), common);
    for (field, kind) in COMMON {
        let p = &s["properties"][field];
        assert_eq!(kind_of(&s, p), kind.json_name(), "common field {field}");
    }
    for t in LINE_TYPES {
        let d = def(&s, t);
        let mine: BTreeSet<String> = required_fields(t)
            .iter()
            .map(|(f, _)| (*f).to_owned())
            .collect();
        assert_eq!(strings(&d["required"]), mine, "required fields of `{t}`");
        for (field, kind) in required_fields(t) {
            let p = property(&s, d, field)
                .unwrap_or_else(|| panic!("schema has no property {t}.{field}"));
            assert_eq!(kind_of(&s, p), kind.json_name(), "type of {t}.{field}");
        }
    }
    let fields = def(&s, "evidence_fields");
    let optional: BTreeSet<String> = fields["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .filter(|k| *k != "t_us" && *k != "event")
        .cloned()
        .collect();
    assert_eq!(
        optional,
        EVIDENCE_OPTIONAL
            .iter()
            .map(|(f, _)| (*f).to_owned())
            .collect()
    );
    for (field, kind) in EVIDENCE_OPTIONAL {
        assert_eq!(
            kind_of(&s, &fields["properties"][field]),
            kind.json_name(),
            "{field}"
        );
    }
}

#[test]
fn the_timestamp_pattern_matches_the_checker() {
    let s = schema();
    let pattern = def(&s, "timestamp")["pattern"].as_str().expect("pattern");
    assert_eq!(
        pattern,
        r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$"
    );
    assert!(is_timestamp("2026-11-21T16:00:00.123456Z"));
    assert!(!is_timestamp("2026-11-21T16:00:00.123Z"));
    assert!(!is_timestamp("2026-11-21T16:00:00.123456+00:00"));
    assert!(!is_timestamp("2026-11-21 16:00:00.123456Z"));
}

const TS: &str = "2026-11-21T16:00:00.123456Z";

pub(crate) fn sample_start() -> Value {
    json!({"type": "start", "schema_version": 1, "ts": TS, "version": "0.1.0",
        "kernel": "6.18.0", "attach_mode": "tcx",
        "interfaces": [{"name": "eth0", "ifindex": 2}], "ports": [80, 443],
        "edge_prefixes": {"ipv4": 15, "ipv6": 7}, "all_sources": false,
        "syn_timeout_ms": 15000,
        "probes": [{"name": "tc_ingress", "status": "attached"},
                   {"name": "tcp:tcp_send_reset", "status": "skipped", "reason": "not in this kernel"}],
        "stale_removed": []})
}

pub(crate) fn sample_finding() -> Value {
    json!({"type": "finding", "schema_version": 1, "ts": TS, "class": "521",
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
        "syn_timeout_ms": 3000, "probes": [], "stale_removed": []})
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
    json!({"type": "summary", "schema_version": 1, "ts": TS, "duration_ms": 1000,
        "findings": {"no_listener": findings, "firewall_reject": 0, "firewall_drop": 0,
            "listen_overflow": 0, "synack_unacked": 0, "kernel_drop": 0, "syn_unanswered": 0},
        "findings_total": findings, "healthy_handshakes": 3, "events_received": 9,
        "events_lost": 0, "kernel_read_errors": 0, "flows_untracked": 0, "flows_evicted": 0,
        "pending_at_exit": 0, "lines_dropped": 0})
}

#[test]
fn good_lines_pass() {
    for line in [sample_start(), sample_finding(), sample_summary(1)] {
        assert_eq!(check_line(&line), Vec::<String>::new(), "{line}");
    }
    let event = json!({"type": "event", "schema_version": 1, "ts": TS, "event": "icmp_unreach_out",
        "icmp": {"type": 3, "code": 3, "name": "port-unreachable"},
        "flow": {"src": "2001:db8:7::1", "sport": 1, "dst": "2001:db8:7::2", "dport": 80, "family": "ipv6"}});
    assert_eq!(check_line(&event), Vec::<String>::new());
    let loss = json!({"type": "loss", "schema_version": 1, "ts": TS, "events_lost": 3, "events_lost_total": 5});
    assert_eq!(check_line(&loss), Vec::<String>::new());
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

fn fails(line: &Value, needle: &str) {
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
    fails(&l, "goes back");
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
    fails(&l, "not the sum");
    let mut l = sample_summary(1);
    l["findings"]
        .as_object_mut()
        .expect("object")
        .remove("kernel_drop");
    fails(&l, "missing count for `kernel_drop`");
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
    fails(&l, "that is a verdict");
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
    fails(&l, "null or a string");
    let mut l = sample_capture_summary(0, 0);
    l["capture"]["packets_skipped"] = json!({"checksum": 1});
    fails(&l, "`checksum` is not one of");
    let mut l = sample_capture_summary(0, 0);
    l["capture"]["packets"] = json!(1);
    fails(&l, "2 packets skipped of 1");
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
