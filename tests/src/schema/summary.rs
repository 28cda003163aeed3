//! Checks of the `summary` line: per-cause counts and their total, the
//! `timing` percentiles, `--write-pcap`'s `pcap` and `analyze`'s `capture`.

use serde_json::Value;

use super::{
    is_capture, optional_fields, Errors, CAPTURE_FIELDS, CAUSES, PCAP_FIELDS, PERCENTILE_FIELDS,
    SKIP_REASONS, SUMMARY_OPTIONAL, TIMINGS,
};

pub(super) fn check_summary(e: &mut Errors, line: &Value) {
    optional_fields(e, "summary", line, &SUMMARY_OPTIONAL);
    if is_capture(line) && line.get("capture").is_none() {
        e.push("summary", "`source` is capture but `capture` is missing");
    }
    if let Some(capture) = line.get("capture").filter(|c| c.is_object()) {
        check_capture(e, capture);
    }
    if let Some(timing) = line.get("timing").filter(|t| t.is_object()) {
        check_timing(e, timing);
    }
    if let Some(pcap) = line.get("pcap").filter(|p| p.is_object()) {
        check_pcap(e, pcap);
    }
    let Some(findings) = line["findings"].as_object() else {
        return;
    };
    let mut sum = 0;
    for (cause, _) in CAUSES {
        match findings.get(cause).and_then(Value::as_u64) {
            Some(n) => sum += n,
            None => e.push(
                "summary.findings",
                format_args!("missing count for `{cause}`"),
            ),
        }
    }
    for (cause, n) in findings {
        if !n.is_u64() {
            e.push(
                "summary.findings",
                format_args!("`{cause}`: {n} is not a count"),
            );
        }
    }
    if line["findings_total"].as_u64().is_some_and(|t| t != sum) {
        e.push(
            "summary.findings_total",
            format_args!(
                "{} is not the sum of `findings` ({sum})",
                line["findings_total"]
            ),
        );
    }
}

/// Each latency null, or `{count, p50_us, p90_us, p99_us}` with at least one
/// sample and the percentiles in order.
fn check_timing(e: &mut Errors, timing: &Value) {
    for name in TIMINGS {
        let at = format!("summary.timing.{name}");
        match timing.get(name) {
            None => e.push("summary.timing", format_args!("missing `{name}`")),
            Some(Value::Null) => {}
            Some(p) if p.is_object() => {
                e.fields(&at, p, &PERCENTILE_FIELDS);
                if p["count"] == 0 {
                    e.push(&at, "count 0: want null when there was no sample");
                }
                let pct = ["p50_us", "p90_us", "p99_us"].map(|k| p[k].as_u64());
                if let [Some(p50), Some(p90), Some(p99)] = pct {
                    if !(p50 <= p90 && p90 <= p99) {
                        e.push(
                            &at,
                            format_args!(
                                "percentiles out of order: p50 {p50}, p90 {p90}, p99 {p99}"
                            ),
                        );
                    }
                }
            }
            Some(other) => e.push(&at, format_args!("should be an object or null: {other}")),
        }
    }
}

/// `--write-pcap`: counts, and `complete` only when nothing was left out.
fn check_pcap(e: &mut Errors, pcap: &Value) {
    e.fields("summary.pcap", pcap, &PCAP_FIELDS);
    if pcap["file"].as_str().is_some_and(str::is_empty) {
        e.push("summary.pcap.file", "empty");
    }
    if pcap["complete"] == true && pcap["packets_not_written"].as_u64().is_some_and(|n| n > 0) {
        e.push(
            "summary.pcap",
            format_args!(
                "complete, yet {} packets were not written",
                pcap["packets_not_written"]
            ),
        );
    }
    if let (Some(flows), Some(packets)) = (
        pcap["flows_written"].as_u64(),
        pcap["packets_written"].as_u64(),
    ) {
        if flows > packets {
            e.push(
                "summary.pcap",
                format_args!("{flows} flows written with {packets} packets"),
            );
        }
    }
}

fn check_capture(e: &mut Errors, capture: &Value) {
    e.fields("summary.capture", capture, &CAPTURE_FIELDS);
    if capture["file"].as_str().is_some_and(str::is_empty) {
        e.push("summary.capture.file", "empty");
    }
    let mut skipped = 0;
    for (reason, n) in capture["packets_skipped"].as_object().into_iter().flatten() {
        if !SKIP_REASONS.contains(&reason.as_str()) {
            e.push(
                "summary.capture.packets_skipped",
                format_args!("`{reason}` is not one of {SKIP_REASONS:?}"),
            );
        }
        match n.as_u64() {
            Some(n) => skipped += n,
            None => e.push(
                "summary.capture.packets_skipped",
                format_args!("`{reason}`: {n} is not a count"),
            ),
        }
    }
    if capture["packets"].as_u64().is_some_and(|p| skipped > p) {
        e.push(
            "summary.capture",
            format_args!("{skipped} packets skipped of {} read", capture["packets"]),
        );
    }
}
