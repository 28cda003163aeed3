//! Checks of what origin-tracer says about the first payload bytes: the
//! findings' `tls` and `http` objects, which causes need them, and the
//! `cert_check` lines of `--check-certs`.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::Value;

use super::{
    class_of, optional_fields, starts_with_date_time, Errors, ALERT_CAUSES, ALERT_FROM,
    CERT_CHECK_OPTIONAL, CERT_PROBLEMS, HEADER_LIMIT, HTTP_CLASSES, HTTP_FIELDS, HTTP_OPTIONAL,
    TLS_ALERT_FIELDS, TLS_CLASSES, TLS_FIELDS,
};

/// A finding's `tls` object.
pub(super) fn check_tls(e: &mut Errors, tls: &Value) {
    e.fields("finding.tls", tls, &TLS_FIELDS);
    for field in ["sni", "negotiated_version"] {
        if tls[field].as_str().is_some_and(str::is_empty) {
            e.push("finding.tls", format_args!("`{field}` is empty: want null"));
        }
    }
    for v in tls["offered_versions"].as_array().into_iter().flatten() {
        if v.as_str().is_none_or(str::is_empty) {
            e.push(
                "finding.tls.offered_versions[]",
                format_args!("{v} is not a version name"),
            );
        }
    }
    if let Some(alert) = tls.get("alert").filter(|a| a.is_object()) {
        e.fields("finding.tls.alert", alert, &TLS_ALERT_FIELDS);
        e.one_of("finding.tls.alert.from", &alert["from"], &ALERT_FROM);
        for field in ["level", "description"] {
            if alert[field].as_str().is_some_and(str::is_empty) {
                e.push("finding.tls.alert", format_args!("`{field}` is empty"));
            }
        }
    }
}

/// A finding's `http` object: never a query string.
pub(super) fn check_http(e: &mut Errors, http: &Value) {
    e.fields("finding.http", http, &HTTP_FIELDS);
    optional_fields(e, "finding.http", http, &HTTP_OPTIONAL);
    if http["method"].as_str().is_some_and(str::is_empty) {
        e.push("finding.http", "`method` is empty: want null");
    }
    if let Some(status) = http["status"].as_u64() {
        if !(100..=999).contains(&status) {
            e.push(
                "finding.http.status",
                format_args!("{status} is not an HTTP status"),
            );
        }
    }
    if let Some(path) = http["path"].as_str() {
        if path.contains('?') {
            e.push(
                "finding.http.path",
                format_args!("`{path}` has a query string, which is never output"),
            );
        }
    }
}

/// The objects a finding's cause calls for: `tls` for TLS (525, 526), `http`
/// for HTTP (520, 524), the alert that names an alert cause, the size of a
/// header block too large.
pub(super) fn check_finding_payload(e: &mut Errors, line: &Value) {
    let Some(cause) = line["cause"].as_str() else {
        return;
    };
    let Some(class) = class_of(cause) else {
        return;
    };
    for (classes, field) in [(&TLS_CLASSES, "tls"), (&HTTP_CLASSES, "http")] {
        if classes.contains(&class) && !line[field].is_object() {
            e.push(
                "finding",
                format_args!("a {class} finding ({cause}) without its `{field}` object"),
            );
        }
    }
    if let Some((_, from)) = ALERT_CAUSES.iter().find(|(c, _)| *c == cause) {
        let alert = &line["tls"]["alert"];
        if line["tls"].is_object() && alert["from"] != *from {
            e.push(
                "finding.tls.alert",
                format_args!("`{cause}` needs an alert from the {from}, got {alert}"),
            );
        }
    }
    if cause == "headers_too_large" && line["http"].is_object() {
        let bytes = &line["http"]["header_bytes"];
        if bytes.as_u64().is_none_or(|n| n < HEADER_LIMIT) {
            e.push(
                "finding.http.header_bytes",
                format_args!("{bytes} for headers_too_large, want at least {HEADER_LIMIT}"),
            );
        }
    }
}

/// A `cert_check` line: `ok` exactly when no problem was found, known
/// problems, RFC 3339 validity bounds, and a negative `days_until_expiry`
/// exactly for an expired certificate (0 on its last, rounded, day).
pub(super) fn check_cert_check(e: &mut Errors, line: &Value) {
    optional_fields(e, "cert_check", line, &CERT_CHECK_OPTIONAL);
    for field in ["sni", "error"] {
        if line[field].as_str().is_some_and(str::is_empty) {
            e.push("cert_check", format_args!("`{field}` is empty"));
        }
    }
    if let Some(addr) = line["addr"].as_str() {
        if addr.parse::<IpAddr>().is_err() {
            e.push(
                "cert_check.addr",
                format_args!("`{addr}` is not an IP address"),
            );
        }
    }
    if line["port"]
        .as_u64()
        .is_some_and(|p| !(1..=65535).contains(&p))
    {
        e.push(
            "cert_check.port",
            format_args!("{} is not a port", line["port"]),
        );
    }
    let mut problems = BTreeSet::new();
    for p in line["problems"].as_array().into_iter().flatten() {
        e.one_of("cert_check.problems[]", p, &CERT_PROBLEMS);
        match p.as_str() {
            None => e.push("cert_check.problems[]", format_args!("{p} is not a string")),
            Some(p) if !problems.insert(p) => {
                e.push("cert_check.problems", format_args!("`{p}` is named twice"));
            }
            Some(_) => {}
        }
    }
    if let (Some(ok), Some(list)) = (line["ok"].as_bool(), line["problems"].as_array()) {
        if ok != list.is_empty() {
            e.push(
                "cert_check.ok",
                format_args!("{ok} with problems {}", line["problems"]),
            );
        }
    }
    for san in line["san"].as_array().into_iter().flatten() {
        if san.as_str().is_none_or(str::is_empty) {
            e.push("cert_check.san[]", format_args!("{san} is not a DNS name"));
        }
    }
    for field in ["not_before", "not_after"] {
        if let Some(t) = line[field].as_str() {
            if !is_rfc3339(t) {
                e.push(
                    "cert_check",
                    format_args!("`{field}` `{t}` is not RFC 3339"),
                );
            }
        }
    }
    if let Some(days) = line["days_until_expiry"].as_i64() {
        let expired = problems.contains("expired");
        if days < 0 && !expired {
            e.push(
                "cert_check",
                format_args!("days_until_expiry {days} but `expired` is not a problem"),
            );
        }
        if days > 0 && expired {
            e.push(
                "cert_check",
                format_args!("`expired` with {days} days until expiry"),
            );
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`: RFC 3339 (upper-case).
pub fn is_rfc3339(t: &str) -> bool {
    if t.len() < 20 || !starts_with_date_time(t.as_bytes()) {
        return false;
    }
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    if rest == "Z" {
        return true;
    }
    let z = rest.as_bytes();
    z.len() == 6
        && (z[0] == b'+' || z[0] == b'-')
        && z[1].is_ascii_digit()
        && z[2].is_ascii_digit()
        && z[3] == b':'
        && z[4].is_ascii_digit()
        && z[5].is_ascii_digit()
}
