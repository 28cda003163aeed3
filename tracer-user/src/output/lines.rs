//! The schema's lines other than findings, cert checks and the summary, each
//! built in one place for both sources: `start`, `event` (`--events all`),
//! `loss` and `inconclusive`.

use serde_json::{json, Map, Value};

use crate::{
    cli::Settings,
    diagnose::{
        finding::{evidence_fields, flow_json, Evidence, EvidenceKind, SCHEMA_VERSION},
        Pending,
    },
    source::{event::Flow, kernel::attach::Probe},
};

/// Where the events came from: the `source` field of every line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The live agent's kernel programs.
    Kernel,
    /// `analyze`: a packet capture.
    Capture,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Kernel => "kernel",
            Source::Capture => "capture",
        }
    }
}

/// What the start line says was attached.
pub enum Attached<'a> {
    /// The live agent: attach mode, interfaces (name, ifindex), probes,
    /// leftovers of an earlier run removed.
    Kernel {
        mode: &'a str,
        interfaces: Vec<(&'a str, u32)>,
        probes: &'a [Probe],
        stale_removed: &'a [String],
    },
    /// `analyze FILE`: nothing attached.
    Capture { file: &'a str },
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The `start` line.
pub fn start(s: &Settings, attached: &Attached<'_>, ts: &str) -> Value {
    let mut v = json!({
        "type": "start",
        "schema_version": SCHEMA_VERSION,
        "ts": ts,
        "version": env!("CARGO_PKG_VERSION"),
        "kernel": crate::source::kernel::kernel_release(),
        "ports": s.ports,
        "edge_prefixes": {"ipv4": s.ranges.v4().count(), "ipv6": s.ranges.v6().count()},
        "all_sources": s.all_sources,
        "syn_timeout_ms": millis(s.syn_timeout),
        "response_timeout_ms": millis(s.response_timeout),
    });
    match attached {
        Attached::Kernel {
            mode,
            interfaces,
            probes,
            stale_removed,
        } => {
            v["attach_mode"] = json!(mode);
            v["interfaces"] = interfaces
                .iter()
                .map(|(name, ifindex)| json!({"name": name, "ifindex": ifindex}))
                .collect();
            v["probes"] = probes
                .iter()
                .map(|p| match &p.reason {
                    None => json!({"name": p.name, "status": "attached"}),
                    Some(r) => json!({"name": p.name, "status": "skipped", "reason": r}),
                })
                .collect();
            v["stale_removed"] = json!(stale_removed);
        }
        Attached::Capture { file } => {
            v["source"] = json!(Source::Capture.as_str());
            v["capture_file"] = json!(file);
            v["attach_mode"] = json!("none");
            v["interfaces"] = json!([]);
            v["probes"] = json!([]);
            v["stale_removed"] = json!([]);
        }
    }
    v
}

/// An `event` line (`--events all`); `flow` is absent for host-wide
/// observations (the listen-overflow counter).
pub fn event(ts: &str, source: Source, what: &EvidenceKind, flow: Option<&Flow>) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), json!("event"));
    m.insert("schema_version".into(), json!(SCHEMA_VERSION));
    m.insert("ts".into(), json!(ts));
    m.insert("source".into(), json!(source.as_str()));
    evidence_fields(what, &mut m);
    if let Some(flow) = flow {
        m.insert("flow".into(), flow_json(flow));
    }
    Value::Object(m)
}

/// A `loss` line: ring-buffer records the kernel could not hand over.
pub fn loss(ts: &str, lost: u64, lost_total: u64) -> Value {
    json!({
        "type": "loss",
        "schema_version": SCHEMA_VERSION,
        "ts": ts,
        "events_lost": lost,
        "events_lost_total": lost_total,
    })
}

/// An `inconclusive` line: a connection still waiting when the capture ended.
pub fn inconclusive(p: &Pending, end_ns: u64, s: &Settings, ts: &str) -> Value {
    let watched_ms = end_ns.saturating_sub(p.waiting_since_ns) / 1_000_000;
    let (needed, what, flag) = if p.for_response {
        (s.response_timeout, "its request", "--response-timeout")
    } else {
        (s.syn_timeout, "its first SYN", "--syn-timeout")
    };
    let needed_ms = millis(needed);
    json!({
        "type": "inconclusive",
        "schema_version": SCHEMA_VERSION,
        "ts": ts,
        "source": Source::Capture.as_str(),
        "flow": flow_json(&p.flow),
        "watched_ms": watched_ms,
        "needed_ms": needed_ms,
        "evidence": p.evidence.iter().map(Evidence::to_json).collect::<Vec<_>>(),
        "reason": format!(
            "the capture ends {watched_ms} ms after {what}, before {flag} ({needed_ms} ms): no verdict"
        ),
    })
}
