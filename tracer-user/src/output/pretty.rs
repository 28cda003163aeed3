//! Human-readable rendering of the schema's lines (`--format pretty`).

use serde_json::Value;

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn endpoint(flow: &Value, addr: &str, port: &str) -> String {
    let a = s(flow, addr);
    let p = flow.get(port).and_then(Value::as_u64).unwrap_or(0);
    if a.contains(':') {
        format!("[{a}]:{p}")
    } else {
        format!("{a}:{p}")
    }
}

fn flow_text(v: &Value) -> String {
    let f = &v["flow"];
    format!(
        "{} -> {}",
        endpoint(f, "src", "sport"),
        endpoint(f, "dst", "dport")
    )
}

fn evidence_text(e: &Value) -> String {
    let mut t = s(e, "event").to_owned();
    for key in ["reason", "direction", "segment", "detail"] {
        if let Some(x) = e.get(key).and_then(Value::as_str) {
            t.push(' ');
            t.push_str(x);
        }
    }
    if let Some(name) = e.pointer("/icmp/name").and_then(Value::as_str) {
        t.push(' ');
        t.push_str(name);
    }
    if let (Some(from), Some(to)) = (
        e.get("from").and_then(Value::as_str),
        e.get("to").and_then(Value::as_str),
    ) {
        t.push_str(&format!(" {from}->{to}"));
    }
    if let Some(q) = e.pointer("/queue/accept_queue").and_then(Value::as_u64) {
        t.push_str(&format!(" accept_queue={q}"));
    }
    if let Some(t_us) = e.get("t_us").and_then(Value::as_u64) {
        t.push_str(&format!(" +{t_us}us"));
    }
    if let Some(r) = e.get("repeat").and_then(Value::as_u64) {
        t.push_str(&format!(" x{r}"));
    }
    t
}

fn time_of(v: &Value) -> &str {
    let ts = s(v, "ts");
    ts.get(11..23).unwrap_or(ts)
}

fn ports(v: &Value) -> String {
    let list = v["ports"]
        .as_array()
        .map(|p| p.iter().map(ToString::to_string).collect::<Vec<_>>());
    list.unwrap_or_default().join(",")
}

fn prefixes(v: &Value) -> String {
    let all = if v["all_sources"].as_bool() == Some(true) {
        ", all sources"
    } else {
        ""
    };
    format!(
        "{} IPv4 + {} IPv6 edge prefixes{all}",
        v["edge_prefixes"]["ipv4"], v["edge_prefixes"]["ipv6"]
    )
}

fn evidence_list(v: &Value) -> String {
    let items: Vec<String> = v["evidence"]
        .as_array()
        .into_iter()
        .flatten()
        .map(evidence_text)
        .collect();
    items.join(", ")
}

fn start(v: &Value) -> String {
    if s(v, "source") == "capture" {
        return format!(
            "origin-tracer {}: analysing {} for ports {} ({})",
            s(v, "version"),
            s(v, "capture_file"),
            ports(v),
            prefixes(v)
        );
    }
    let ifaces: Vec<&str> = v["interfaces"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["name"].as_str()).collect())
        .unwrap_or_default();
    let probes = v["probes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let attached = probes
        .iter()
        .filter(|p| s(p, "status") == "attached")
        .count();
    let mut out = format!(
        "origin-tracer {} on Linux {}: watching {} ports {} ({}), {attached} probes attached via {}",
        s(v, "version"),
        s(v, "kernel"),
        ifaces.join(","),
        ports(v),
        prefixes(v),
        s(v, "attach_mode"),
    );
    let skipped: Vec<String> = probes
        .iter()
        .filter(|p| s(p, "status") != "attached")
        .map(|p| format!("{} ({})", s(p, "name"), s(p, "reason")))
        .collect();
    if !skipped.is_empty() {
        out.push_str(&format!("\n  skipped: {}", skipped.join("; ")));
    }
    for stale in v["stale_removed"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\n  removed leftover of an earlier run: {}",
            stale.as_str().unwrap_or("")
        ));
    }
    out
}

fn summary(v: &Value) -> String {
    let causes: Vec<String> = v["findings"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, n)| n.as_u64() != Some(0))
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    let causes = if causes.is_empty() {
        String::new()
    } else {
        format!(" ({})", causes.join(", "))
    };
    let head = format!(
        "summary: {} findings{causes}, {} healthy handshakes",
        v["findings_total"], v["healthy_handshakes"]
    );
    if s(v, "source") == "capture" {
        let c = &v["capture"];
        let skipped: u64 = c["packets_skipped"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, n)| n.as_u64())
            .sum();
        let damage = c["damage"]
            .as_str()
            .map(|d| format!("; {d}"))
            .unwrap_or_default();
        return format!(
            "{head}, {} inconclusive, {} packets read, {skipped} skipped{damage}",
            v["pending_at_exit"], c["packets"]
        );
    }
    format!(
        "{head}, {} kernel events, {} lost, {} pending at exit",
        v["events_received"], v["events_lost"], v["pending_at_exit"]
    )
}

/// One human-readable rendering of a schema line.
pub fn render(v: &Value) -> String {
    match s(v, "type") {
        "start" => start(v),
        "finding" => format!(
            "{} {} {} [{}] {}\n    evidence: {}\n    hint: {}",
            time_of(v),
            s(v, "class"),
            s(v, "cause"),
            s(v, "confidence"),
            flow_text(v),
            evidence_list(v),
            s(v, "hint")
        ),
        "inconclusive" => format!(
            "{} inconclusive {}\n    evidence: {}\n    why: {}",
            time_of(v),
            flow_text(v),
            evidence_list(v),
            s(v, "reason")
        ),
        "event" => format!("{} event {} {}", time_of(v), evidence_text(v), flow_text(v)),
        "loss" => format!(
            "{} WARNING: {} kernel events lost (ring buffer full), {} in all",
            time_of(v),
            v["events_lost"],
            v["events_lost_total"]
        ),
        "summary" => summary(v),
        "cert_check" => {
            let problems: Vec<&str> = v["problems"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let verdict = if problems.is_empty() {
                "ok".to_owned()
            } else {
                format!("FAILS Full (strict): {}", problems.join(", "))
            };
            let expiry = v["days_until_expiry"]
                .as_i64()
                .map(|d| format!(", expires in {d} days"))
                .unwrap_or_default();
            format!(
                "{} cert_check {} at {}: {verdict}{expiry}",
                time_of(v),
                s(v, "sni"),
                endpoint(v, "addr", "port")
            )
        }
        _ => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pretty_finding_names_cause_flow_and_hint() {
        let v = json!({"type":"finding","ts":"2026-11-21T16:00:00.123456Z","class":"521","cause":"no_listener",
            "confidence":"high","flow":{"src":"2001:db8::1","sport":4000,"dst":"2001:db8::2","dport":81,"family":"ipv6"},
            "evidence":[{"t_us":0,"event":"syn_in"},{"t_us":30,"event":"kernel_drop","reason":"NO_SOCKET","direction":"in","segment":"SYN"}],
            "hint":"check ss"});
        let p = render(&v);
        assert!(
            p.starts_with(
                "16:00:00.123 521 no_listener [high] [2001:db8::1]:4000 -> [2001:db8::2]:81"
            ),
            "{p}"
        );
        assert!(p.contains("kernel_drop NO_SOCKET in SYN +30us"), "{p}");
        assert!(p.contains("hint: check ss"));
    }
}
