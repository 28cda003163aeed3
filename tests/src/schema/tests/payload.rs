//! The fields SCHEMA.md added with the TLS and HTTP causes: the findings'
//! `tls` and `http` objects, payload evidence, `cert_check` lines, the
//! summary's `timing` and `pcap`, and `inconclusive` lines that waited for a
//! response; good lines pass, bad ones are named.

use serde_json::{json, Value};

use super::{
    fails, fails_beyond, run_fails, sample_capture_start, sample_capture_summary, sample_start,
    sample_summary, TS,
};
use crate::schema::{causes, check_line, check_run, class_of};

fn flow() -> Value {
    json!({"src": "198.18.7.1", "sport": 40002, "dst": "198.18.7.2", "dport": 443, "family": "ipv4"})
}

fn sample_tls_finding() -> Value {
    json!({"type": "finding", "schema_version": 1, "ts": TS, "source": "kernel",
        "class": "525", "cause": "tls_alert_from_origin", "confidence": "high", "flow": flow(),
        "evidence": [{"t_us": 0, "event": "syn_in"}, {"t_us": 30, "event": "synack_out"},
            {"t_us": 60, "event": "ack_in"},
            {"t_us": 90, "event": "client_hello_in", "detail": "sni=example.com offers TLS1.3,TLS1.2"},
            {"t_us": 400, "event": "tls_alert_out", "detail": "fatal handshake_failure"},
            {"t_us": 401, "event": "fin_out"}],
        "hint": "the origin's TLS stack refused the handshake",
        "tls": {"sni": "example.com", "offered_versions": ["TLS1.3", "TLS1.2"],
            "negotiated_version": null,
            "alert": {"level": "fatal", "description": "handshake_failure", "from": "origin"}}})
}

fn sample_http_finding() -> Value {
    json!({"type": "finding", "schema_version": 1, "ts": TS, "source": "kernel",
        "class": "520", "cause": "headers_too_large", "confidence": "high", "flow": flow(),
        "evidence": [{"t_us": 0, "event": "syn_in"}, {"t_us": 30, "event": "synack_out"},
            {"t_us": 60, "event": "ack_in"},
            {"t_us": 90, "event": "request_in", "detail": "GET"},
            {"t_us": 900, "event": "response_out", "detail": "200"}],
        "hint": "trim large headers",
        "http": {"method": "GET", "path": "/big/headers", "status": 200, "header_bytes": 20_000}})
}

fn sample_cert_check() -> Value {
    json!({"type": "cert_check", "schema_version": 1, "ts": TS, "sni": "example.com",
        "addr": "198.18.7.2", "port": 443, "ok": true, "problems": [],
        "subject": "CN=example.com", "issuer": "CN=Example CA", "san": ["example.com", "www.example.com"],
        "not_before": "2026-01-01T00:00:00Z", "not_after": "2027-01-01T00:00:00Z",
        "days_until_expiry": 40})
}

/// A live summary counting `counts` findings by cause.
fn summary_of(counts: &[(&str, u64)]) -> Value {
    let mut s = sample_summary(0);
    for (cause, n) in counts {
        s["findings"][*cause] = json!(n);
    }
    s["findings_total"] = json!(counts.iter().map(|(_, n)| n).sum::<u64>());
    s
}

fn with(mut line: Value, edit: impl FnOnce(&mut Value)) -> Value {
    edit(&mut line);
    line
}

fn passes(line: &Value) {
    assert_eq!(check_line(line), Vec::<String>::new(), "{line}");
}

#[test]
fn good_payload_findings_pass() {
    passes(&sample_tls_finding());
    passes(&sample_http_finding());
    // Without --show-path there is no path; before a response, nulls.
    passes(&with(sample_http_finding(), |l| {
        l["cause"] = json!("response_timeout");
        l["class"] = json!("524");
        l["http"] = json!({"method": "POST", "status": null, "header_bytes": null});
    }));
    passes(&with(sample_http_finding(), |l| {
        l["cause"] = json!("malformed_response");
        l["http"] = json!({"method": "GET", "status": null, "header_bytes": null, "path": "*"});
    }));
    // A header block that did not end: the bytes seen, at least 16 KiB.
    passes(&with(sample_http_finding(), |l| {
        l["http"]["header_bytes"] = json!(16_384);
    }));
    passes(&with(sample_tls_finding(), |l| {
        l["cause"] = json!("not_tls");
        l["tls"]["sni"] = Value::Null;
        l["tls"]["alert"] = Value::Null;
        l["evidence"][4] = json!({"t_us": 400, "event": "data_out", "detail": "not TLS: <!DOCTYP"});
    }));
    passes(&with(sample_tls_finding(), |l| {
        l["cause"] = json!("edge_rejected_certificate");
        l["class"] = json!("526");
        l["tls"]["negotiated_version"] = json!("TLS1.2");
        l["tls"]["alert"] = json!({"level": "fatal", "description": "unknown_ca", "from": "edge"});
        l["evidence"][4] = json!({"t_us": 400, "event": "server_hello_out", "detail": "TLS1.2"});
        l["evidence"][5] =
            json!({"t_us": 900, "event": "tls_alert_in", "detail": "fatal unknown_ca"});
    }));
    passes(&with(sample_tls_finding(), |l| {
        l["cause"] = json!("edge_aborted_after_certificate");
        l["class"] = json!("526");
        l["confidence"] = json!("low");
        l["tls"]["alert"] = Value::Null;
        l["tls"]["offered_versions"] = json!([]);
    }));
    // Every other payload event name, as an event line (--events all).
    for event in ["data_in", "request_in", "response_out", "tls_alert_in"] {
        passes(
            &json!({"type": "event", "schema_version": 1, "ts": TS, "source": "kernel", "event": event,
            "detail": "x", "flow": flow()}),
        );
    }
}

#[test]
fn bad_tls_findings_are_named() {
    let tls = sample_tls_finding;
    let http = sample_http_finding;
    let no = |mut l: Value, field: &str| {
        l.as_object_mut().expect("object").remove(field);
        l
    };
    fails(
        &no(tls(), "tls"),
        "a 525 finding (tls_alert_from_origin) without its `tls`",
    );
    fails(
        &no(http(), "http"),
        "a 520 finding (headers_too_large) without its `http`",
    );
    fails(
        &with(no(http(), "http"), |l| {
            l["cause"] = json!("response_timeout");
            l["class"] = json!("524");
        }),
        "a 524 finding (response_timeout) without its `http`",
    );
    fails(
        &with(tls(), |l| l["tls"]["alert"]["from"] = json!("edge")),
        "`tls_alert_from_origin` needs an alert from the origin",
    );
    fails(
        &with(tls(), |l| l["tls"]["alert"] = Value::Null),
        "`tls_alert_from_origin` needs an alert from the origin, got null",
    );
    fails(
        &with(tls(), |l| {
            l["cause"] = json!("edge_rejected_certificate");
            l["class"] = json!("526");
        }),
        "`edge_rejected_certificate` needs an alert from the edge",
    );
    fails(
        &with(tls(), |l| l["tls"]["alert"]["from"] = json!("client")),
        "`client` is not one of",
    );
    fails(
        &with(tls(), |l| {
            l["tls"]["alert"]
                .as_object_mut()
                .expect("object")
                .remove("level");
        }),
        "missing `level`",
    );
    fails(
        &with(tls(), |l| l["tls"]["sni"] = json!("")),
        "`sni` is empty",
    );
    fails(
        &with(tls(), |l| l["tls"]["sni"] = json!(7)),
        "`sni` should be string or null",
    );
    fails(
        &with(tls(), |l| l["tls"]["offered_versions"] = json!("TLS1.3")),
        "`offered_versions` should be array",
    );
    fails(
        &with(tls(), |l| l["tls"]["offered_versions"] = json!([772])),
        "772 is not a version name",
    );
    fails(
        &with(tls(), |l| l["tls"] = json!({"sni": null})),
        "missing `negotiated_version`",
    );
    fails(
        &with(tls(), |l| l["tls"] = json!("TLS1.3")),
        "`tls` should be object",
    );
}

#[test]
fn bad_http_findings_are_named() {
    let http = sample_http_finding;
    fails(
        &with(http(), |l| l["http"]["path"] = json!("/search?q=secret")),
        "has a query string",
    );
    fails(
        &with(http(), |l| l["http"]["header_bytes"] = json!(16_383)),
        "16383 for headers_too_large, want at least 16384",
    );
    fails(
        &with(http(), |l| l["http"]["header_bytes"] = Value::Null),
        "null for headers_too_large",
    );
    fails(
        &with(http(), |l| l["http"]["status"] = json!(42)),
        "42 is not an HTTP status",
    );
    fails(
        &with(http(), |l| l["http"]["status"] = json!("200")),
        "`status` should be non-negative integer or null",
    );
    fails(
        &with(http(), |l| l["http"]["method"] = json!("")),
        "`method` is empty",
    );
    fails(
        &with(http(), |l| {
            l["http"] = json!({"method": "GET", "status": 200});
        }),
        "missing `header_bytes`",
    );
    fails(
        &with(http(), |l| l["evidence"][3]["detail"] = json!(3)),
        "`detail` should be string",
    );
    fails(
        &with(http(), |l| {
            l["evidence"][3]["event"] = json!("http_request");
        }),
        "`http_request` is not one of",
    );
}

#[test]
fn good_cert_checks_pass() {
    passes(&sample_cert_check());
    // Expired yesterday; expiring today (0 days left) is not yet expired.
    passes(&with(sample_cert_check(), |l| {
        l["ok"] = json!(false);
        l["problems"] = json!(["expired", "hostname_mismatch"]);
        l["days_until_expiry"] = json!(-1);
    }));
    passes(&with(sample_cert_check(), |l| {
        l["days_until_expiry"] = json!(0);
    }));
    passes(&with(sample_cert_check(), |l| {
        l["ok"] = json!(false);
        l["problems"] = json!(["expired"]);
        l["days_until_expiry"] = json!(0);
        l["addr"] = json!("2001:db8:7::2");
        l["not_after"] = json!("2026-11-21T10:00:00.5+01:00");
    }));
    // The handshake failed: nothing is known about the certificate.
    passes(
        &json!({"type": "cert_check", "schema_version": 1, "ts": TS, "sni": "example.com",
        "addr": "198.18.7.2", "port": 8443, "ok": false, "problems": ["handshake_failed"],
        "subject": null, "issuer": null, "san": [], "not_before": null, "not_after": null,
        "days_until_expiry": null, "error": "received fatal alert: handshake_failure"}),
    );
}

#[test]
fn bad_cert_checks_are_named() {
    let c = sample_cert_check;
    fails(
        &with(c(), |l| l["problems"] = json!(["self_signed"])),
        "true with problems [\"self_signed\"]",
    );
    fails(
        &with(c(), |l| l["ok"] = json!(false)),
        "false with problems []",
    );
    fails(
        &with(c(), |l| {
            l["ok"] = json!(false);
            l["problems"] = json!(["revoked"]);
        }),
        "`revoked` is not one of",
    );
    fails(
        &with(c(), |l| {
            l["ok"] = json!(false);
            l["problems"] = json!(["self_signed", "self_signed"]);
        }),
        "`self_signed` is named twice",
    );
    fails(
        &with(c(), |l| {
            l["ok"] = json!(false);
            l["problems"] = json!(["hostname_mismatch"]);
            l["days_until_expiry"] = json!(-3);
        }),
        "days_until_expiry -3 but `expired` is not a problem",
    );
    fails(
        &with(c(), |l| {
            l["ok"] = json!(false);
            l["problems"] = json!(["expired"]);
        }),
        "`expired` with 40 days until expiry",
    );
    fails(
        &with(c(), |l| l["not_after"] = json!("Jan  1 00:00:00 2027 GMT")),
        "`not_after` `Jan  1 00:00:00 2027 GMT` is not RFC 3339",
    );
    fails(
        &with(c(), |l| l["days_until_expiry"] = json!("40")),
        "`days_until_expiry` should be integer or null",
    );
    fails(
        &with(c(), |l| l["subject"] = json!(1)),
        "`subject` should be string or null",
    );
    fails(
        &with(c(), |l| l["addr"] = json!("origin.example")),
        "is not an IP address",
    );
    fails(&with(c(), |l| l["port"] = json!(0)), "0 is not a port");
    fails(
        &with(c(), |l| l["ok"] = json!("yes")),
        "`ok` should be boolean",
    );
    fails(
        &with(c(), |l| l["san"] = json!([""])),
        "\"\" is not a DNS name",
    );
    fails(
        &with(c(), |l| l["error"] = json!(5)),
        "`error` should be string",
    );
    fails(
        &with(c(), |l| {
            l.as_object_mut().expect("object").remove("san");
        }),
        "cert_check: missing `san`",
    );
}

#[test]
fn good_timing_and_pcap_pass() {
    passes(&with(sample_summary(0), |l| {
        l["timing"] = json!({"syn_to_synack": null, "client_hello_to_server_hello": null,
            "request_to_first_byte": null});
    }));
    passes(&with(sample_summary(0), |l| {
        l["timing"]["request_to_first_byte"] =
            json!({"count": 1, "p50_us": 0, "p90_us": 0, "p99_us": 0});
        l["pcap"] = json!({"file": "/tmp/evidence.pcap", "flows_written": 2,
            "packets_written": 9, "packets_not_written": 0, "complete": true,
            "payload": "masked", "packets_masked": 2});
    }));
    passes(&with(sample_summary(0), |l| {
        l["pcap"] = json!({"file": "/tmp/evidence.pcap", "flows_written": 0,
            "packets_written": 0, "packets_not_written": 4, "complete": false,
            "payload": "raw", "packets_masked": 0});
    }));
}

#[test]
fn bad_timing_and_pcap_are_named() {
    let s = || sample_summary(0);
    fails_beyond(
        &with(s(), |l| l["timing"]["syn_to_synack"]["p90_us"] = json!(70)),
        "percentiles out of order: p50 40, p90 70, p99 60",
    );
    fails_beyond(
        &with(s(), |l| l["timing"]["syn_to_synack"]["p50_us"] = json!(56)),
        "percentiles out of order",
    );
    fails(
        &with(s(), |l| l["timing"]["syn_to_synack"]["count"] = json!(0)),
        "want null when there was no sample",
    );
    fails(
        &with(s(), |l| {
            l["timing"]["syn_to_synack"]
                .as_object_mut()
                .expect("object")
                .remove("p99_us");
        }),
        "summary.timing.syn_to_synack: missing `p99_us`",
    );
    fails(
        &with(s(), |l| {
            l["timing"]
                .as_object_mut()
                .expect("object")
                .remove("request_to_first_byte");
        }),
        "summary.timing: missing `request_to_first_byte`",
    );
    fails(
        &with(s(), |l| {
            l["timing"]["client_hello_to_server_hello"] = json!(12);
        }),
        "should be an object or null",
    );
    fails(
        &with(s(), |l| l["timing"] = json!([])),
        "`timing` should be object",
    );
    let pcap = json!({"file": "/tmp/e.pcap", "flows_written": 2, "packets_written": 9,
        "packets_not_written": 3, "complete": true, "payload": "masked", "packets_masked": 0});
    fails(
        &with(s(), |l| l["pcap"] = pcap.clone()),
        "complete, yet 3 packets were not written",
    );
    fails_beyond(
        &with(s(), |l| {
            l["pcap"] = pcap.clone();
            l["pcap"]["complete"] = json!(false);
            l["pcap"]["flows_written"] = json!(10);
        }),
        "10 flows written with 9 packets",
    );
    fails(
        &with(s(), |l| {
            l["pcap"] = pcap.clone();
            l["pcap"]
                .as_object_mut()
                .expect("object")
                .remove("complete");
        }),
        "summary.pcap: missing `complete`",
    );
    fails(
        &with(s(), |l| {
            l["pcap"] = pcap.clone();
            l["pcap"]["complete"] = json!(false);
            l["pcap"]["payload"] = json!("partly");
        }),
        "summary.pcap.payload is masked or raw",
    );
    fails(
        &with(s(), |l| l["pcap"] = json!("e.pcap")),
        "`pcap` should be object",
    );
}

/// A capture's connection that waited for its response when the capture
/// ended (`--response-timeout` 100 s, `--syn-timeout` 3 s).
fn response_inconclusive() -> Value {
    json!({"type": "inconclusive", "schema_version": 1, "ts": TS, "source": "capture",
        "flow": flow(),
        "evidence": [{"t_us": 0, "event": "syn_in"}, {"t_us": 30, "event": "synack_out"},
            {"t_us": 60, "event": "ack_in"}, {"t_us": 90, "event": "request_in", "detail": "GET"}],
        "watched_ms": 2500, "needed_ms": 100_000,
        "reason": "the capture ends 2500 ms after its request, before --response-timeout (100000 ms): no verdict"})
}

#[test]
fn runs_with_payload_lines_pass() {
    let run = [
        sample_start(),
        sample_cert_check(),
        sample_tls_finding(),
        with(sample_cert_check(), |l| l["sni"] = json!("www.example.com")),
        sample_http_finding(),
        summary_of(&[("tls_alert_from_origin", 1), ("headers_too_large", 1)]),
    ];
    assert_eq!(check_run(&run), Vec::<String>::new());
    // Every cause counted once, one finding each.
    let mut run = vec![sample_start()];
    for cause in causes() {
        let class = class_of(cause).expect("every cause has a class");
        let base = match class {
            "525" | "526" => sample_tls_finding(),
            "520" | "524" => sample_http_finding(),
            "502" => with(sample_http_finding(), |l| {
                l["http"]["status"] = json!(502);
                l["count"] = json!(1);
            }),
            _ => super::sample_finding(),
        };
        let from = if cause == "edge_rejected_certificate" {
            "edge"
        } else {
            "origin"
        };
        run.push(with(base, |l| {
            l["cause"] = json!(cause);
            l["class"] = json!(class);
            if l["tls"].is_object() {
                l["tls"]["alert"]["from"] = json!(from);
            }
        }));
    }
    let counts: Vec<(&str, u64)> = causes().into_iter().map(|c| (c, 1)).collect();
    run.push(summary_of(&counts));
    assert_eq!(check_run(&run), Vec::<String>::new());
    // A capture ending while a request waited for its response.
    let run = [
        sample_capture_start(),
        response_inconclusive(),
        sample_capture_summary(0, 1),
    ];
    assert_eq!(check_run(&run), Vec::<String>::new());
}

#[test]
fn bad_runs_with_payload_lines_are_named() {
    run_fails(
        &[
            sample_start(),
            sample_tls_finding(),
            summary_of(&[("not_tls", 1)]),
        ],
        "summary counts 0 `tls_alert_from_origin` findings, 1 were written",
    );
    run_fails(
        &[
            sample_start(),
            sample_cert_check(),
            sample_summary(0),
            sample_cert_check(),
        ],
        "last line is not `summary`",
    );
    run_fails(
        &[sample_cert_check(), sample_start(), sample_summary(0)],
        "first line is not `start`",
    );
    // needed_ms is the SYN timeout, or the response timeout by the reason.
    let wrong = with(response_inconclusive(), |l| {
        l["reason"] = json!("the capture ends 2500 ms after its first SYN: no verdict");
    });
    run_fails(
        &[sample_capture_start(), wrong, sample_capture_summary(0, 1)],
        "needed_ms 100000 is neither start's syn_timeout_ms 3000",
    );
    fails_beyond(
        &with(response_inconclusive(), |l| {
            l["watched_ms"] = json!(100_000);
        }),
        "that is a verdict",
    );
}
