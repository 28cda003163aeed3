//! The summary line, shared by the live agent and capture analysis, and the
//! one counter type the pipeline keeps for it.

use serde_json::{json, Map, Value};

use crate::diagnose::{
    finding::{Cause, SCHEMA_VERSION},
    Stats,
};

/// What the source, the pipeline and the sink counted (the diagnoser's own
/// counts are its [`Stats`]).
#[derive(Debug, Default)]
pub struct Counts {
    /// Kernel records that could not be decoded (logged, not in the line).
    pub decode_errors: u64,
    pub duration_ms: u64,
    pub events_received: u64,
    pub events_lost: u64,
    pub kernel_read_errors: u64,
    pub flows_untracked: u64,
    pub pending_at_exit: u64,
    pub lines_dropped: u64,
}

/// The schema v1 `summary` line.
pub fn summary(stats: &Stats, c: &Counts, ts: &str) -> Value {
    let findings: Map<String, Value> = Cause::ALL
        .iter()
        .map(|cause| {
            (
                cause.as_str().to_owned(),
                json!(stats.findings.get(cause).copied().unwrap_or(0)),
            )
        })
        .collect();
    json!({
        "type": "summary",
        "schema_version": SCHEMA_VERSION,
        "ts": ts,
        "duration_ms": c.duration_ms,
        "findings": findings,
        "findings_total": stats.findings.values().sum::<u64>(),
        "healthy_handshakes": stats.healthy_handshakes,
        "events_received": c.events_received,
        "events_lost": c.events_lost,
        "kernel_read_errors": c.kernel_read_errors,
        "flows_untracked": c.flows_untracked,
        "flows_evicted": stats.flows_evicted,
        "pending_at_exit": c.pending_at_exit,
        "lines_dropped": c.lines_dropped,
        "timing": stats.timing.to_json(),
    })
}
