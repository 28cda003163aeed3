//! A checker for origin-tracer's output, schema version 1 (docs/SCHEMA.md and
//! docs/schema-v1.json): required fields and their types per line `type`,
//! known causes, classes, events and evidence item shapes, the findings'
//! `tls` and `http` objects, `cert_check` lines, the summary's `timing` and
//! `pcap`, the `analyze` forms (`source`, `inconclusive`, the capture's
//! `start` and `summary`), plus checks across a whole run, live or `analyze`
//! (first line `start`, last `summary`, counts agree, one source throughout).
//!
//! Every line is also validated against docs/schema-v1.json itself by an
//! independent JSON Schema validator (the `jsonschema` crate), so a line the
//! published schema rejects fails even where the tables here would pass it.
//!
//! The tables here are kept equal to schema-v1.json by unit tests; the checks
//! of the payload objects and `cert_check` are in `payload`, those of the
//! summary in `summary`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use serde_json::Value;

mod payload;
mod summary;

/// The JSON type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    String,
    /// A non-negative integer.
    Integer,
    /// An integer that may be negative.
    Signed,
    /// `true` or `false`.
    Boolean,
    /// An array.
    Array,
    /// An object.
    Object,
    /// A string or null.
    StringOrNull,
    /// A non-negative integer or null.
    IntegerOrNull,
    /// An integer (maybe negative) or null.
    SignedOrNull,
    /// An object or null.
    ObjectOrNull,
}

impl Kind {
    /// How error messages name it.
    pub fn json_name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Integer => "non-negative integer",
            Kind::Signed => "integer",
            Kind::Boolean => "boolean",
            Kind::Array => "array",
            Kind::Object => "object",
            Kind::StringOrNull => "string or null",
            Kind::IntegerOrNull => "non-negative integer or null",
            Kind::SignedOrNull => "integer or null",
            Kind::ObjectOrNull => "object or null",
        }
    }

    /// The JSON Schema `type` of it: one name, or a name and `null`.
    pub fn json_types(self) -> &'static [&'static str] {
        match self {
            Kind::String => &["string"],
            Kind::Integer | Kind::Signed => &["integer"],
            Kind::Boolean => &["boolean"],
            Kind::Array => &["array"],
            Kind::Object => &["object"],
            Kind::StringOrNull => &["string", "null"],
            Kind::IntegerOrNull | Kind::SignedOrNull => &["integer", "null"],
            Kind::ObjectOrNull => &["object", "null"],
        }
    }

    /// Whether it is an integer that may not be negative.
    pub fn non_negative(self) -> bool {
        matches!(self, Kind::Integer | Kind::IntegerOrNull)
    }

    fn matches(self, v: &Value) -> bool {
        match self {
            Kind::String => v.is_string(),
            Kind::Integer => v.is_u64(),
            Kind::Signed => v.is_i64() || v.is_u64(),
            Kind::Boolean => v.is_boolean(),
            Kind::Array => v.is_array(),
            Kind::Object => v.is_object(),
            Kind::StringOrNull => v.is_string() || v.is_null(),
            Kind::IntegerOrNull => v.is_u64() || v.is_null(),
            Kind::SignedOrNull => v.is_i64() || v.is_u64() || v.is_null(),
            Kind::ObjectOrNull => v.is_object() || v.is_null(),
        }
    }
}

/// The schema version described here.
pub const SCHEMA_VERSION: u64 = 1;

/// Line types.
pub const LINE_TYPES: [&str; 7] = [
    "start",
    "finding",
    "event",
    "inconclusive",
    "cert_check",
    "loss",
    "summary",
];

/// Values of the optional `source` field: the live agent's, `analyze`'s.
pub const SOURCES: [&str; 2] = ["kernel", "capture"];

/// The `source` of `analyze` lines.
pub const CAPTURE: &str = "capture";

/// Every cause with the class the edge shows for it.
pub const CAUSES: [(&str, &str); 17] = [
    ("no_listener", "521"),
    ("firewall_reject", "521"),
    ("firewall_drop", "522"),
    ("listen_overflow", "522"),
    ("synack_unacked", "522"),
    ("kernel_drop", "522"),
    ("syn_unanswered", "522"),
    ("tls_alert_from_origin", "525"),
    ("tls_closed_during_handshake", "525"),
    ("not_tls", "525"),
    ("edge_rejected_certificate", "526"),
    ("edge_aborted_after_certificate", "526"),
    ("reset_after_request", "520"),
    ("closed_without_response", "520"),
    ("headers_too_large", "520"),
    ("malformed_response", "520"),
    ("response_timeout", "524"),
];

/// Classes whose findings are about TLS: they carry a `tls` object.
pub const TLS_CLASSES: [&str; 2] = ["525", "526"];

/// Classes whose findings are about HTTP: they carry an `http` object.
pub const HTTP_CLASSES: [&str; 2] = ["520", "524"];

/// Causes named by an alert, with whom `tls.alert` must be `from`.
pub const ALERT_CAUSES: [(&str, &str); 2] = [
    ("tls_alert_from_origin", "origin"),
    ("edge_rejected_certificate", "edge"),
];

/// The size of a response header block Cloudflare accepts: a
/// `headers_too_large` finding's `http.header_bytes` is at least this.
pub const HEADER_LIMIT: u64 = 16 * 1024;

/// Finding confidences.
pub const CONFIDENCES: [&str; 3] = ["high", "medium", "low"];

/// Evidence event names.
pub const EVENTS: [&str; 22] = [
    "syn_in",
    "ack_in",
    "rst_in",
    "fin_in",
    "synack_out",
    "rst_out",
    "fin_out",
    "icmp_unreach_out",
    "kernel_drop",
    "kernel_send_reset",
    "kernel_recv_reset",
    "synack_retransmit",
    "state_change",
    "listen_overflow_counter",
    "client_hello_in",
    "server_hello_out",
    "tls_alert_in",
    "tls_alert_out",
    "request_in",
    "response_out",
    "data_in",
    "data_out",
];

/// `start.attach_mode` values (`none`: `analyze`, nothing attached).
pub const ATTACH_MODES: [&str; 3] = ["tcx", "netlink", "none"];

/// Optional fields of `start` lines (`analyze` writes both).
pub const START_OPTIONAL: [(&str, Kind); 2] =
    [("source", Kind::String), ("capture_file", Kind::String)];

/// Optional fields of `summary` lines (`analyze` writes `source` and
/// `capture`, `--write-pcap` `pcap`).
pub const SUMMARY_OPTIONAL: [(&str, Kind); 3] = [
    ("source", Kind::String),
    ("capture", Kind::Object),
    ("pcap", Kind::Object),
];

/// Fields of `summary.capture`.
pub const CAPTURE_FIELDS: [(&str, Kind); 4] = [
    ("file", Kind::String),
    ("packets", Kind::Integer),
    ("packets_skipped", Kind::Object),
    ("damage", Kind::StringOrNull),
];

/// Keys of `summary.timing`: latencies of healthy connections.
pub const TIMINGS: [&str; 3] = [
    "syn_to_synack",
    "client_hello_to_server_hello",
    "request_to_first_byte",
];

/// Fields of each non-null `summary.timing` entry.
pub const PERCENTILE_FIELDS: [(&str, Kind); 4] = [
    ("count", Kind::Integer),
    ("p50_us", Kind::Integer),
    ("p90_us", Kind::Integer),
    ("p99_us", Kind::Integer),
];

/// Fields of `summary.pcap` (`--write-pcap`).
pub const PCAP_FIELDS: [(&str, Kind); 5] = [
    ("file", Kind::String),
    ("flows_written", Kind::Integer),
    ("packets_written", Kind::Integer),
    ("packets_not_written", Kind::Integer),
    ("complete", Kind::Boolean),
];

/// Optional fields of `finding` lines.
pub const FINDING_OPTIONAL: [(&str, Kind); 2] = [("tls", Kind::Object), ("http", Kind::Object)];

/// Fields of a finding's `tls` object.
pub const TLS_FIELDS: [(&str, Kind); 4] = [
    ("sni", Kind::StringOrNull),
    ("offered_versions", Kind::Array),
    ("negotiated_version", Kind::StringOrNull),
    ("alert", Kind::ObjectOrNull),
];

/// Fields of a non-null `tls.alert`.
pub const TLS_ALERT_FIELDS: [(&str, Kind); 3] = [
    ("level", Kind::String),
    ("description", Kind::String),
    ("from", Kind::String),
];

/// Values of `tls.alert.from`.
pub const ALERT_FROM: [&str; 2] = ["origin", "edge"];

/// Fields of a finding's `http` object.
pub const HTTP_FIELDS: [(&str, Kind); 3] = [
    ("method", Kind::StringOrNull),
    ("status", Kind::IntegerOrNull),
    ("header_bytes", Kind::IntegerOrNull),
];

/// Optional fields of the `http` object (`path`: `--show-path` only).
pub const HTTP_OPTIONAL: [(&str, Kind); 1] = [("path", Kind::String)];

/// `cert_check.problems` values.
pub const CERT_PROBLEMS: [&str; 6] = [
    "expired",
    "not_yet_valid",
    "hostname_mismatch",
    "self_signed",
    "untrusted_issuer",
    "handshake_failed",
];

/// Optional fields of `cert_check` lines.
pub const CERT_CHECK_OPTIONAL: [(&str, Kind); 1] = [("error", Kind::String)];

/// Keys of `summary.capture.packets_skipped`.
pub const SKIP_REASONS: [&str; 3] = ["truncated_headers", "unsupported_link_type", "malformed"];

/// `start.probes[].status` values.
pub const PROBE_STATUSES: [&str; 2] = ["attached", "skipped"];

/// Fields every line has.
pub const COMMON: [(&str, Kind); 3] = [
    ("type", Kind::String),
    ("schema_version", Kind::Integer),
    ("ts", Kind::String),
];

/// The required fields of a line of `line_type`, besides [`COMMON`].
pub fn required_fields(line_type: &str) -> &'static [(&'static str, Kind)] {
    use Kind::{Array, Boolean, Integer, Object, SignedOrNull, String, StringOrNull};
    match line_type {
        "start" => &[
            ("version", String),
            ("kernel", String),
            ("attach_mode", String),
            ("interfaces", Array),
            ("ports", Array),
            ("edge_prefixes", Object),
            ("all_sources", Boolean),
            ("syn_timeout_ms", Integer),
            ("response_timeout_ms", Integer),
            ("probes", Array),
            ("stale_removed", Array),
        ],
        "finding" => &[
            ("class", String),
            ("cause", String),
            ("confidence", String),
            ("flow", Object),
            ("evidence", Array),
            ("hint", String),
        ],
        "event" => &[("event", String)],
        "inconclusive" => &[
            ("source", String),
            ("flow", Object),
            ("evidence", Array),
            ("watched_ms", Integer),
            ("needed_ms", Integer),
            ("reason", String),
        ],
        "cert_check" => &[
            ("sni", String),
            ("addr", String),
            ("port", Integer),
            ("ok", Boolean),
            ("problems", Array),
            ("subject", StringOrNull),
            ("issuer", StringOrNull),
            ("san", Array),
            ("not_before", StringOrNull),
            ("not_after", StringOrNull),
            ("days_until_expiry", SignedOrNull),
        ],
        "loss" => &[("events_lost", Integer), ("events_lost_total", Integer)],
        "summary" => &[
            ("duration_ms", Integer),
            ("findings", Object),
            ("findings_total", Integer),
            ("healthy_handshakes", Integer),
            ("events_received", Integer),
            ("events_lost", Integer),
            ("kernel_read_errors", Integer),
            ("flows_untracked", Integer),
            ("flows_evicted", Integer),
            ("pending_at_exit", Integer),
            ("timing", Object),
            ("lines_dropped", Integer),
        ],
        _ => &[],
    }
}

/// Optional fields of evidence items (and event lines) with their types.
pub const EVIDENCE_OPTIONAL: [(&str, Kind); 10] = [
    ("reason", Kind::String),
    ("direction", Kind::String),
    ("segment", Kind::String),
    ("icmp", Kind::Object),
    ("from", Kind::String),
    ("to", Kind::String),
    ("count", Kind::Integer),
    ("queue", Kind::Object),
    ("repeat", Kind::Integer),
    ("detail", Kind::String),
];

/// The class of `cause`, if it is a known cause.
pub fn class_of(cause: &str) -> Option<&'static str> {
    CAUSES
        .iter()
        .find(|(c, _)| *c == cause)
        .map(|(_, class)| *class)
}

struct Errors(Vec<String>);

impl Errors {
    fn push(&mut self, at: &str, msg: impl std::fmt::Display) {
        self.0.push(format!("{at}: {msg}"));
    }

    fn fields(&mut self, at: &str, obj: &Value, fields: &[(&str, Kind)]) {
        for (name, kind) in fields {
            match obj.get(*name) {
                None => self.push(at, format_args!("missing `{name}`")),
                Some(v) if !kind.matches(v) => self.push(
                    at,
                    format_args!("`{name}` should be {}: {v}", kind.json_name()),
                ),
                Some(_) => {}
            }
        }
    }

    fn one_of(&mut self, at: &str, v: &Value, allowed: &[&str]) {
        if let Some(s) = v.as_str() {
            if !allowed.contains(&s) {
                self.push(at, format_args!("`{s}` is not one of {allowed:?}"));
            }
        }
    }
}

/// docs/schema-v1.json, compiled once.
fn published_schema() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let schema: Value = serde_json::from_str(include_str!("../../docs/schema-v1.json"))
            .expect("docs/schema-v1.json is JSON");
        jsonschema::draft202012::new(&schema).expect("docs/schema-v1.json is a valid schema")
    })
}

/// Checks one line; returns what is wrong (empty when valid).
pub fn check_line(line: &Value) -> Vec<String> {
    let mut e = Errors(Vec::new());
    for error in published_schema().iter_errors(line) {
        e.push(
            "docs/schema-v1.json",
            format_args!("{error} (at `{}`)", error.instance_path()),
        );
    }
    if !line.is_object() {
        e.push("line", format_args!("not a JSON object: {line}"));
        return e.0;
    }
    e.fields("line", line, &COMMON);
    if line
        .get("schema_version")
        .is_some_and(|v| v != SCHEMA_VERSION)
    {
        e.push(
            "line",
            format_args!("schema_version {} is not 1", line["schema_version"]),
        );
    }
    if let Some(ts) = line["ts"].as_str() {
        if !is_timestamp(ts) {
            e.push(
                "ts",
                format_args!("`{ts}` is not RFC 3339 UTC with microseconds"),
            );
        }
    }
    let Some(t) = line["type"].as_str() else {
        return e.0;
    };
    if !LINE_TYPES.contains(&t) {
        e.push("type", format_args!("unknown line type `{t}`"));
        return e.0;
    }
    if let Some(source) = line.get("source") {
        if source.is_string() {
            e.one_of(&format!("{t}.source"), source, &SOURCES);
        } else {
            e.push(t, format_args!("`source` should be a string: {source}"));
        }
    }
    e.fields(t, line, required_fields(t));
    match t {
        "start" => check_start(&mut e, line),
        "finding" => check_finding(&mut e, line),
        "event" => {
            check_evidence_fields(&mut e, "event", line);
            // The listen-overflow counter is host-wide: no connection, no flow.
            let host_wide = line["event"] == "listen_overflow_counter";
            match line.get("flow") {
                Some(_) if host_wide => e.push("event.flow", "a host-wide event has no `flow`"),
                Some(flow) => check_flow(&mut e, "event.flow", flow),
                None if !host_wide => e.push("event", "missing `flow`"),
                None => {}
            }
        }
        "inconclusive" => check_inconclusive(&mut e, line),
        "cert_check" => payload::check_cert_check(&mut e, line),
        "summary" => summary::check_summary(&mut e, line),
        _ => {}
    }
    e.0
}

fn is_capture(line: &Value) -> bool {
    line.get("source").is_some_and(|s| s == CAPTURE)
}

fn check_start(e: &mut Errors, line: &Value) {
    e.one_of("start.attach_mode", &line["attach_mode"], &ATTACH_MODES);
    optional_fields(e, "start", line, &START_OPTIONAL);
    if is_capture(line) {
        // analyze: the capture opened, nothing attached.
        if line.get("capture_file").is_none() {
            e.push("start", "`source` is capture but `capture_file` is missing");
        }
        if line["attach_mode"].is_string() && line["attach_mode"] != "none" {
            e.push(
                "start.attach_mode",
                format_args!("{} for a capture, want \"none\"", line["attach_mode"]),
            );
        }
        for field in ["interfaces", "probes", "stale_removed"] {
            if line[field].as_array().is_some_and(|a| !a.is_empty()) {
                e.push(
                    "start",
                    format_args!("`{field}` should be empty for a capture: {}", line[field]),
                );
            }
        }
    } else if line["attach_mode"] == "none" {
        e.push(
            "start.attach_mode",
            "`none` is for `analyze` (source capture) only",
        );
    }
    if line["capture_file"].as_str().is_some_and(str::is_empty) {
        e.push("start.capture_file", "empty");
    }
    for i in line["interfaces"].as_array().into_iter().flatten() {
        e.fields(
            "start.interfaces[]",
            i,
            &[("name", Kind::String), ("ifindex", Kind::Integer)],
        );
    }
    for p in line["ports"].as_array().into_iter().flatten() {
        if !p.as_u64().is_some_and(|p| (1..=65535).contains(&p)) {
            e.push("start.ports[]", format_args!("{p} is not a port"));
        }
    }
    e.fields(
        "start.edge_prefixes",
        &line["edge_prefixes"],
        &[("ipv4", Kind::Integer), ("ipv6", Kind::Integer)],
    );
    for p in line["probes"].as_array().into_iter().flatten() {
        e.fields(
            "start.probes[]",
            p,
            &[("name", Kind::String), ("status", Kind::String)],
        );
        e.one_of("start.probes[].status", &p["status"], &PROBE_STATUSES);
        if p.get("reason").is_some_and(|r| !r.is_string()) {
            e.push("start.probes[].reason", "should be a string");
        }
        if p["status"] == "skipped" && !p["reason"].is_string() {
            e.push(
                "start.probes[]",
                format_args!("skipped probe without reason: {p}"),
            );
        }
    }
    for s in line["stale_removed"].as_array().into_iter().flatten() {
        if !s.is_string() {
            e.push("start.stale_removed[]", format_args!("{s} is not a string"));
        }
    }
}

fn check_finding(e: &mut Errors, line: &Value) {
    if let (Some(class), Some(cause)) = (line["class"].as_str(), line["cause"].as_str()) {
        match class_of(cause) {
            None => e.push("finding.cause", format_args!("unknown cause `{cause}`")),
            Some(want) if want != class => e.push(
                "finding.class",
                format_args!("cause `{cause}` has class {want}, not {class}"),
            ),
            Some(_) => {}
        }
    }
    e.one_of("finding.confidence", &line["confidence"], &CONFIDENCES);
    check_flow(e, "finding.flow", &line["flow"]);
    if line["hint"].as_str().is_some_and(|h| h.trim().is_empty()) {
        e.push("finding.hint", "empty");
    }
    check_evidence(e, "finding.evidence", line);
    optional_fields(e, "finding", line, &FINDING_OPTIONAL);
    if let Some(tls) = line.get("tls").filter(|t| t.is_object()) {
        payload::check_tls(e, tls);
    }
    if let Some(http) = line.get("http").filter(|h| h.is_object()) {
        payload::check_http(e, http);
    }
    payload::check_finding_payload(e, line);
}

fn check_evidence(e: &mut Errors, at: &str, line: &Value) {
    let Some(evidence) = line["evidence"].as_array() else {
        return;
    };
    if evidence.is_empty() {
        e.push(at, "empty");
    }
    let item_at = format!("{at}[]");
    let mut last = 0;
    for item in evidence {
        e.fields(
            &item_at,
            item,
            &[("t_us", Kind::Integer), ("event", Kind::String)],
        );
        check_evidence_fields(e, &item_at, item);
        if let Some(t) = item["t_us"].as_u64() {
            if t < last {
                e.push(&item_at, format_args!("t_us {t} goes back (after {last})"));
            }
            last = t;
        }
    }
}

fn check_inconclusive(e: &mut Errors, line: &Value) {
    if line["source"].is_string() && !is_capture(line) {
        e.push(
            "inconclusive.source",
            format_args!(
                "{}: only `analyze` (capture) writes inconclusive lines",
                line["source"]
            ),
        );
    }
    check_flow(e, "inconclusive.flow", &line["flow"]);
    check_evidence(e, "inconclusive.evidence", line);
    if line["reason"].as_str().is_some_and(|r| r.trim().is_empty()) {
        e.push("inconclusive.reason", "empty");
    }
    if let (Some(watched), Some(needed)) = (line["watched_ms"].as_u64(), line["needed_ms"].as_u64())
    {
        if watched >= needed {
            e.push(
                "inconclusive",
                format_args!(
                    "watched_ms {watched} covers needed_ms {needed}: that is a verdict, not inconclusive"
                ),
            );
        }
    }
}

fn optional_fields(e: &mut Errors, at: &str, line: &Value, fields: &[(&str, Kind)]) {
    for (name, kind) in fields {
        if let Some(v) = line.get(*name) {
            if !kind.matches(v) {
                e.push(
                    at,
                    format_args!("`{name}` should be {}: {v}", kind.json_name()),
                );
            }
        }
    }
}

fn check_evidence_fields(e: &mut Errors, at: &str, item: &Value) {
    e.one_of(at, &item["event"], &EVENTS);
    if item.get("t_us").is_some_and(|t| !t.is_u64()) {
        e.push(at, "`t_us` should be a non-negative integer");
    }
    optional_fields(e, at, item, &EVIDENCE_OPTIONAL);
    e.one_of(at, &item["direction"], &["in", "out"]);
    if let Some(icmp) = item.get("icmp") {
        e.fields(
            at,
            icmp,
            &[
                ("type", Kind::Integer),
                ("code", Kind::Integer),
                ("name", Kind::String),
            ],
        );
    }
    if let Some(queue) = item.get("queue") {
        e.fields(
            at,
            queue,
            &[("port", Kind::Integer), ("accept_queue", Kind::Integer)],
        );
    }
    if item
        .get("repeat")
        .is_some_and(|r| r.as_u64().is_some_and(|r| r < 2))
    {
        e.push(at, "`repeat` is only written when more than 1");
    }
}

fn check_flow(e: &mut Errors, at: &str, flow: &Value) {
    e.fields(
        at,
        flow,
        &[
            ("src", Kind::String),
            ("sport", Kind::Integer),
            ("dst", Kind::String),
            ("dport", Kind::Integer),
            ("family", Kind::String),
        ],
    );
    e.one_of(at, &flow["family"], &["ipv4", "ipv6"]);
    for port in ["sport", "dport"] {
        if flow[port].as_u64().is_some_and(|p| p > 65535) {
            e.push(at, format_args!("`{port}` {} is not a port", flow[port]));
        }
    }
    for addr in ["src", "dst"] {
        let Some(text) = flow[addr].as_str() else {
            continue;
        };
        match text.parse::<IpAddr>() {
            Err(_) => e.push(at, format_args!("`{addr}` {text} is not an IP address")),
            Ok(ip) => {
                let family = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
                if flow["family"].as_str().is_some_and(|f| f != family) {
                    e.push(
                        at,
                        format_args!("`{addr}` {text} is not {}", flow["family"]),
                    );
                }
            }
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`.
fn is_timestamp(ts: &str) -> bool {
    let b = ts.as_bytes();
    b.len() == 27
        && starts_with_date_time(b)
        && b[19] == b'.'
        && b[20..26].iter().all(u8::is_ascii_digit)
        && b[26] == b'Z'
}

/// `b` starts with `YYYY-MM-DDTHH:MM:SS`.
fn starts_with_date_time(b: &[u8]) -> bool {
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    b.len() >= 19
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
}

/// Checks a whole run, live or `analyze`: every line valid, first `start`,
/// last `summary` (`cert_check`, `event`, `loss` ... lines anywhere between),
/// `start` only once, the summary's counts equal the finding lines (unless
/// lines were dropped), every `source` the run's (`capture` when `start` says
/// so, else `kernel`), `inconclusive` lines only from a capture, as many as
/// the summary's `pending_at_exit`, each needing the start's `syn_timeout_ms`
/// or, as its reason says, the response timeout, and the summary's
/// `capture.file` the start's `capture_file`. Returns what is wrong.
pub fn check_run(lines: &[Value]) -> Vec<String> {
    let mut errors = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        for err in check_line(line) {
            errors.push(format!("line {}: {err}\n    {line}", i + 1));
        }
    }
    if lines.first().is_none_or(|l| l["type"] != "start") {
        errors.push("the first line is not `start`".to_owned());
    }
    if lines.last().is_none_or(|l| l["type"] != "summary") {
        errors.push("the last line is not `summary`".to_owned());
    }
    let starts = lines.iter().filter(|l| l["type"] == "start").count();
    let summaries = lines.iter().filter(|l| l["type"] == "summary").count();
    if starts != 1 || summaries != 1 {
        errors.push(format!(
            "{starts} `start` and {summaries} `summary` lines, want 1 each"
        ));
    }
    let capture = lines.first().is_some_and(is_capture);
    let source = if capture { CAPTURE } else { "kernel" };
    for (i, line) in lines.iter().enumerate() {
        if line
            .get("source")
            .is_some_and(|s| s.is_string() && s != source)
        {
            errors.push(format!(
                "line {}: source {} in a run whose source is {source}\n    {line}",
                i + 1,
                line["source"]
            ));
        }
    }
    let inconclusive = lines.iter().filter(|l| l["type"] == "inconclusive").count();
    if !capture && inconclusive > 0 {
        errors.push(format!(
            "{inconclusive} `inconclusive` lines in a live run (analyze only)"
        ));
    }
    if let Some(syn_timeout) = lines.first().and_then(|l| l["syn_timeout_ms"].as_u64()) {
        for (i, line) in lines.iter().enumerate() {
            if line["type"] == "inconclusive" {
                if let Some(err) = needed_mismatch(line, syn_timeout) {
                    errors.push(format!("line {}: {err}\n    {line}", i + 1));
                }
            }
        }
    }
    if let Some(summary) = lines.iter().rev().find(|l| l["type"] == "summary") {
        if capture {
            if !is_capture(summary) {
                errors.push(format!(
                    "the summary of a capture run has source {}, want \"capture\"",
                    summary["source"]
                ));
            }
            if summary["capture"]["file"] != lines[0]["capture_file"] {
                errors.push(format!(
                    "summary capture.file {} is not start's capture_file {}",
                    summary["capture"]["file"], lines[0]["capture_file"]
                ));
            }
        }
        if capture && summary["lines_dropped"] == 0 {
            let pending = summary["pending_at_exit"].as_u64().unwrap_or(0);
            if pending != inconclusive as u64 {
                errors.push(format!(
                    "summary pending_at_exit {pending}, {inconclusive} `inconclusive` lines were written"
                ));
            }
        }
        if summary["lines_dropped"] == 0 {
            let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
            for l in lines.iter().filter(|l| l["type"] == "finding") {
                *seen.entry(l["cause"].as_str().unwrap_or("?")).or_default() += 1;
            }
            for (cause, _) in CAUSES {
                let counted = summary["findings"][cause].as_u64().unwrap_or(0);
                let written = seen.get(cause).copied().unwrap_or(0);
                if counted != written {
                    errors.push(format!(
                        "summary counts {counted} `{cause}` findings, {written} were written"
                    ));
                }
            }
        }
    }
    errors
}

/// What is wrong with an `inconclusive` line's `needed_ms` in a run whose
/// `--syn-timeout` is `syn_timeout` ms: it is that, or the response timeout,
/// which the reason then names.
fn needed_mismatch(line: &Value, syn_timeout: u64) -> Option<String> {
    let needed = line["needed_ms"].as_u64()?;
    let reason = line["reason"].as_str().unwrap_or_default();
    if needed == syn_timeout || reason.to_ascii_lowercase().contains("response") {
        return None;
    }
    Some(format!(
        "inconclusive needed_ms {needed} is neither start's syn_timeout_ms {syn_timeout} nor, by its reason, the response timeout"
    ))
}

#[cfg(test)]
mod tests;
