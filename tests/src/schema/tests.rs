//! No-root tests: the checker's tables equal docs/schema-v1.json, and the
//! checker accepts good lines and runs (live and `analyze`) and names what is
//! wrong with bad ones. The payload objects, `cert_check`, `timing` and
//! `pcap` are tried in `tests/payload.rs`, real `analyze` runs of the shared
//! captures in `tests/captures.rs`.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::*;

mod captures;
mod payload;

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

/// `p`, or the definition its `$ref` names.
fn resolve<'a>(schema: &'a Value, p: &'a Value) -> &'a Value {
    match p["$ref"].as_str().and_then(|r| r.strip_prefix("#/$defs/")) {
        Some(r) => resolve(schema, def(schema, r)),
        None => p,
    }
}

/// The JSON types a property schema allows.
fn types_of(schema: &Value, p: &Value) -> Vec<String> {
    let p = resolve(schema, p);
    match &p["type"] {
        Value::String(t) => return vec![t.clone()],
        Value::Array(_) => return strings(&p["type"]).into_iter().collect(),
        _ => {}
    }
    if let Some(values) = p["enum"].as_array() {
        assert!(values.iter().all(Value::is_string), "mixed enum {p}");
        return vec!["string".to_owned()];
    }
    match &p["const"] {
        Value::Number(_) => vec!["integer".to_owned()],
        Value::String(_) => vec!["string".to_owned()],
        other => panic!("cannot tell the type of {other}"),
    }
}

/// Asserts that the property schema `p` has the JSON types of `kind`, and a
/// `minimum` of at least 0 exactly when `kind` is non-negative.
fn assert_kind(schema: &Value, p: &Value, kind: Kind, what: &str) {
    let mut want: Vec<String> = kind.json_types().iter().map(|t| (*t).to_owned()).collect();
    want.sort();
    assert_eq!(types_of(schema, p), want, "type of {what}");
    if kind.json_types().contains(&"integer") {
        // A `const` is its own minimum.
        let p = resolve(schema, p);
        let minimum = p["minimum"].as_i64().or_else(|| p["const"].as_i64());
        assert_eq!(
            minimum.is_some_and(|m| m >= 0),
            kind.non_negative(),
            "minimum of {what}: {minimum:?}"
        );
    }
}

/// Asserts that `$defs/name` requires exactly `required`, has no other
/// properties than those and `optional`, and types them all as they say.
fn assert_object(schema: &Value, name: &str, required: &[(&str, Kind)], optional: &[(&str, Kind)]) {
    let d = def(schema, name);
    assert_eq!(
        strings(&d["required"]),
        names(required),
        "required fields of {name}"
    );
    let mut all = names(required);
    all.extend(names(optional));
    let props: BTreeSet<String> = d["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .cloned()
        .collect();
    assert_eq!(props, all, "fields of {name}");
    for (field, kind) in required.iter().chain(optional) {
        assert_kind(
            schema,
            &d["properties"][*field],
            *kind,
            &format!("{name}.{field}"),
        );
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
    assert_eq!(finding["oneOf"].as_array().map(Vec::len), Some(6));
}

/// The `then` of the `allOf` branch of `$defs/finding` whose `if` is on
/// `field` with `value` (a `const` or an `enum`).
fn finding_rule<'a>(schema: &'a Value, field: &str, value: &Value) -> &'a Value {
    let finding = def(schema, "finding");
    let rules = finding["allOf"].as_array().expect("finding allOf");
    let rule = rules
        .iter()
        .find(|r| {
            let cond = &r["if"]["properties"][field];
            cond["const"] == *value || cond["enum"] == *value
        })
        .unwrap_or_else(|| panic!("no finding rule if {field} is {value}"));
    assert_eq!(strings(&rule["if"]["required"]), set(&[field]), "{rule}");
    &rule["then"]
}

#[test]
fn finding_rules_equal_the_schema() {
    let s = schema();
    // Which classes carry a tls or http object.
    for (classes, field) in [(&TLS_CLASSES, "tls"), (&HTTP_CLASSES, "http")] {
        let then = finding_rule(&s, "class", &json!(classes));
        assert_eq!(strings(&then["required"]), set(&[field]));
        for class in classes {
            assert!(CAUSES.iter().any(|(_, c)| c == class), "class {class}");
        }
    }
    // Every class but 521/522 carries one of them.
    let classes: BTreeSet<&str> = CAUSES.iter().map(|(_, c)| *c).collect();
    let payload: BTreeSet<&str> = TLS_CLASSES.iter().chain(&HTTP_CLASSES).copied().collect();
    let tcp: BTreeSet<&str> = classes.difference(&payload).copied().collect();
    assert_eq!(tcp, BTreeSet::from(["521", "522"]));
    // The causes named by an alert, and whose.
    for (cause, from) in ALERT_CAUSES {
        assert!(
            class_of(cause).is_some_and(|c| TLS_CLASSES.contains(&c)),
            "{cause}"
        );
        let then = finding_rule(&s, "cause", &json!(cause));
        assert_eq!(strings(&then["required"]), set(&["tls"]));
        let alert = &then["properties"]["tls"]["properties"]["alert"];
        assert_eq!(alert["type"], "object", "{cause}: alert not null");
        assert_eq!(alert["properties"]["from"]["const"], from, "{cause}");
    }
    // headers_too_large names a header block of at least the limit.
    let then = finding_rule(&s, "cause", &json!("headers_too_large"));
    assert_eq!(strings(&then["required"]), set(&["http"]));
    let bytes = &then["properties"]["http"]["properties"]["header_bytes"];
    assert_eq!(bytes["type"], "integer");
    assert_eq!(bytes["minimum"], HEADER_LIMIT);
    assert_eq!(
        def(&s, "finding")["allOf"].as_array().map(Vec::len),
        Some(5)
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
    assert_eq!(
        strings(&def(&s, "tls_alert")["properties"]["from"]["enum"]),
        set(&ALERT_FROM)
    );
    let cert = def(&s, "cert_check");
    assert_eq!(
        strings(&cert["properties"]["problems"]["items"]["enum"]),
        set(&CERT_PROBLEMS)
    );
    assert_eq!(cert["properties"]["problems"]["uniqueItems"], true);
    // ok exactly when no problem was found.
    assert_eq!(cert["if"]["properties"]["ok"]["const"], true);
    assert_eq!(cert["then"]["properties"]["problems"]["maxItems"], 0);
    assert_eq!(cert["else"]["properties"]["problems"]["minItems"], 1);
    // A negative days_until_expiry exactly for an expired certificate.
    let rules = cert["allOf"].as_array().expect("cert_check allOf");
    assert_eq!(rules.len(), 2);
    assert_eq!(
        rules[0]["if"]["properties"]["days_until_expiry"]["maximum"],
        -1
    );
    assert_eq!(
        rules[0]["then"]["properties"]["problems"]["contains"]["const"],
        "expired"
    );
    assert_eq!(
        rules[1]["if"]["properties"]["problems"]["contains"]["const"],
        "expired"
    );
    assert_eq!(
        rules[1]["then"]["properties"]["days_until_expiry"]["maximum"],
        0
    );
    // complete only when nothing was left out.
    let pcap = def(&s, "pcap");
    assert_eq!(pcap["if"]["properties"]["complete"]["const"], true);
    assert_eq!(
        pcap["then"]["properties"]["packets_not_written"]["const"],
        0
    );
    // A timing entry has at least one sample.
    assert_eq!(def(&s, "percentiles")["properties"]["count"]["minimum"], 1);
    for name in TIMINGS {
        assert_eq!(
            def(&s, "timing")["properties"][name]["$ref"],
            "#/$defs/percentiles",
            "{name}"
        );
    }
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
        ("finding", &FINDING_OPTIONAL[..]),
        ("cert_check", &CERT_CHECK_OPTIONAL[..]),
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
            assert_kind(&s, p, *kind, &format!("{t}.{field}"));
        }
    }
    // `source` is optional on every line but `inconclusive`.
    assert_eq!(types_of(&s, &s["properties"]["source"]), ["string"]);
    assert!(!COMMON.iter().any(|(f, _)| *f == "source"));
}

#[test]
fn nested_objects_equal_the_schema() {
    let s = schema();
    assert_object(&s, "capture", &CAPTURE_FIELDS, &[]);
    assert_object(&s, "tls", &TLS_FIELDS, &[]);
    assert_object(&s, "tls_alert", &TLS_ALERT_FIELDS, &[]);
    assert_object(&s, "http", &HTTP_FIELDS, &HTTP_OPTIONAL);
    assert_object(&s, "percentiles", &PERCENTILE_FIELDS, &[]);
    assert_object(&s, "pcap", &PCAP_FIELDS, &[]);
    let timing: Vec<(&str, Kind)> = TIMINGS.iter().map(|t| (*t, Kind::ObjectOrNull)).collect();
    assert_object(&s, "timing", &timing, &[]);
    // Each finding object is the definition of the same name.
    for field in ["tls", "http"] {
        assert_eq!(
            def(&s, "finding")["properties"][field]["$ref"],
            format!("#/$defs/{field}")
        );
    }
    assert_eq!(
        def(&s, "tls")["properties"]["alert"]["$ref"],
        "#/$defs/tls_alert"
    );
    for field in ["timing", "pcap"] {
        assert_eq!(
            def(&s, "summary")["properties"][field]["$ref"],
            format!("#/$defs/{field}")
        );
    }
    // The path never has a query string.
    assert_eq!(def(&s, "http")["properties"]["path"]["pattern"], "^[^?]*$");
}

#[test]
fn required_fields_and_types_equal_the_schema() {
    let s = schema();
    let common: BTreeSet<String> = COMMON.iter().map(|(f, _)| (*f).to_owned()).collect();
    assert_eq!(strings(&s["required"]), common);
    for (field, kind) in COMMON {
        let p = &s["properties"][field];
        assert_kind(&s, p, kind, &format!("common field {field}"));
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
            assert_kind(&s, p, *kind, &format!("{t}.{field}"));
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
        assert_kind(&s, &fields["properties"][field], kind, field);
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
    let cert = def(&s, "cert_check");
    for field in ["not_before", "not_after"] {
        assert_eq!(
            cert["properties"][field]["$ref"],
            "#/$defs/date_time_or_null"
        );
    }
    assert_eq!(
        def(&s, "date_time_or_null")["pattern"],
        r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
    );
    for good in [
        "2026-11-21T16:00:00Z",
        "2026-11-21T16:00:00.5Z",
        "2026-11-21T16:00:00.123456+01:00",
        "2026-11-21T16:00:00-05:30",
    ] {
        assert!(super::payload::is_rfc3339(good), "{good}");
    }
    for bad in [
        "2026-11-21T16:00:00",
        "2026-11-21T16:00:00.Z",
        "2026-11-21 16:00:00Z",
        "2026-11-21T16:00:00+0100",
        "Nov 21 16:00:00 2026 GMT",
    ] {
        assert!(!super::payload::is_rfc3339(bad), "{bad}");
    }
}

const TS: &str = "2026-11-21T16:00:00.123456Z";

pub(crate) fn sample_start() -> Value {
    json!({"type": "start", "schema_version": 1, "ts": TS, "version": "0.1.0",
        "kernel": "6.18.0", "attach_mode": "tcx",
        "interfaces": [{"name": "eth0", "ifindex": 2}], "ports": [80, 443],
        "edge_prefixes": {"ipv4": 15, "ipv6": 7}, "all_sources": false,
        "syn_timeout_ms": 15000, "response_timeout_ms": 100_000,
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
        "syn_timeout_ms": 3000, "response_timeout_ms": 100_000, "probes": [], "stale_removed": []})
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
    for (cause, _) in CAUSES {
        counts.insert(cause.to_owned(), json!(0));
    }
    counts.insert("no_listener".to_owned(), json!(findings));
    json!({"type": "summary", "schema_version": 1, "ts": TS, "duration_ms": 1000,
        "findings": counts,
        "findings_total": findings, "healthy_handshakes": 3, "events_received": 9,
        "events_lost": 0, "kernel_read_errors": 0, "flows_untracked": 0, "flows_evicted": 0,
        "pending_at_exit": 0,
        "timing": {"syn_to_synack": {"count": 3, "p50_us": 40, "p90_us": 55, "p99_us": 60},
            "client_hello_to_server_hello": null, "request_to_first_byte": null},
        "lines_dropped": 0})
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
    fails(&l, "`damage` should be string or null");
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

/// Regression: `--events all` printed the host-wide listen-overflow counter
/// without a `flow` while the schema required one for every event.
#[test]
fn only_the_host_wide_event_has_no_flow() {
    let mut l = json!({"type": "event", "schema_version": 1, "ts": TS, "event": "syn_in"});
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

/// The published schema is applied too: a line it rejects fails even where
/// the checker's own tables would let it pass.
#[test]
fn the_published_schema_is_applied() {
    let mut l = sample_start();
    l["attach_mode"] = json!(7);
    fails(&l, "docs/schema-v1.json");
}
