//! What a JSON Schema cannot say about one line, checked by hand: numbers of
//! a line that must agree with each other (evidence times never go back, an
//! inconclusive connection was not watched as long as it needed, the
//! summary's total is the sum of its causes, percentiles are in order, an
//! evidence file holds at least a packet per flow, a capture skipped no more
//! packets than it held, an origin's status is its finding's class).

use serde_json::Value;

/// What is wrong with the line beyond its schema.
pub(super) fn check(line: &Value) -> Vec<String> {
    let mut e = Vec::new();
    match line["type"].as_str() {
        Some("finding") => {
            evidence_in_order(&mut e, line);
            origin_status_is_the_class(&mut e, line);
        }
        Some("inconclusive") => {
            evidence_in_order(&mut e, line);
            if let (Some(watched), Some(needed)) =
                (line["watched_ms"].as_u64(), line["needed_ms"].as_u64())
            {
                if watched >= needed {
                    e.push(format!(
                        "inconclusive: watched_ms {watched} covers needed_ms {needed}: that is a verdict, not inconclusive"
                    ));
                }
            }
        }
        Some("summary") => summary(&mut e, line),
        _ => {}
    }
    e
}

/// An `origin_error_status` finding's class is the status it names.
fn origin_status_is_the_class(e: &mut Vec<String>, line: &Value) {
    if line["cause"] != "origin_error_status" {
        return;
    }
    let status = line["http"]["status"].as_u64().map(|s| s.to_string());
    if status.as_deref() != line["class"].as_str() {
        e.push(format!(
            "origin_error_status: class {} is not its http.status {}",
            line["class"], line["http"]["status"]
        ));
    }
}

fn evidence_in_order(e: &mut Vec<String>, line: &Value) {
    let mut last = 0;
    for item in line["evidence"].as_array().into_iter().flatten() {
        if let Some(t) = item["t_us"].as_u64() {
            if t < last {
                e.push(format!("evidence: t_us {t} goes back (after {last})"));
            }
            last = t;
        }
    }
}

fn summary(e: &mut Vec<String>, line: &Value) {
    if let Some(findings) = line["findings"].as_object() {
        let sum: u64 = findings.values().filter_map(Value::as_u64).sum();
        if line["findings_total"].as_u64().is_some_and(|t| t != sum) {
            e.push(format!(
                "summary.findings_total {} is not the sum of `findings` ({sum})",
                line["findings_total"]
            ));
        }
    }
    let k = &line["in_kernel"];
    if let (Some(total), Some(by)) = (k["handed_over"].as_u64(), k["handed_over_by"].as_object()) {
        let sum: u64 = by.values().filter_map(Value::as_u64).sum();
        if total != sum {
            e.push(format!(
                "summary.in_kernel.handed_over {total} is not the sum of `handed_over_by` ({sum})"
            ));
        }
    }
    for (name, p) in line["timing"].as_object().into_iter().flatten() {
        let pct = ["p50_us", "p90_us", "p99_us"].map(|k| p[k].as_u64());
        if let [Some(p50), Some(p90), Some(p99)] = pct {
            if !(p50 <= p90 && p90 <= p99) {
                e.push(format!(
                    "summary.timing.{name}: percentiles out of order: p50 {p50}, p90 {p90}, p99 {p99}"
                ));
            }
        }
    }
    let pcap = &line["pcap"];
    if let (Some(flows), Some(packets)) = (
        pcap["flows_written"].as_u64(),
        pcap["packets_written"].as_u64(),
    ) {
        if flows > packets {
            e.push(format!(
                "summary.pcap: {flows} flows written with {packets} packets"
            ));
        }
    }
    let capture = &line["capture"];
    let skipped: u64 = capture["packets_skipped"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, n)| n.as_u64())
        .sum();
    if capture["packets"].as_u64().is_some_and(|p| skipped > p) {
        e.push(format!(
            "summary.capture: {skipped} packets skipped of {} read",
            capture["packets"]
        ));
    }
}
