//! The summary line, shared by the live agent and capture analysis, and the
//! one counter type the pipeline keeps for it.

use super::line::{
    CaptureReport, FindingCounts, InKernel, Line, PcapReport, Source, Summary, SCHEMA_VERSION,
};
use crate::diagnose::Stats;

/// What the source, the pipeline and the sink counted (the diagnoser's own
/// counts are its [`Stats`]).
#[derive(Debug, Default)]
pub struct Counts {
    /// Kernel records that could not be decoded (logged, not in the line).
    pub decode_errors: u64,
    pub duration_ms: u64,
    pub events_received: u64,
    pub snapshots_received: u64,
    pub events_lost: u64,
    pub kernel_read_errors: u64,
    pub flows_untracked: u64,
    pub pending_at_exit: u64,
    pub lines_dropped: u64,
    /// The live agent: what the kernel counted itself.
    pub in_kernel: Option<InKernel>,
}

/// The parts of the summary only one source has.
#[derive(Debug, Default)]
pub struct Extra {
    /// `analyze`: `capture`.
    pub source: Option<Source>,
    /// `--write-pcap`.
    pub pcap: Option<PcapReport>,
    /// `analyze`: what the capture held.
    pub capture: Option<CaptureReport>,
}

/// The schema v1 `summary` line.
pub fn summary(stats: &Stats, c: &Counts, ts: String, extra: Extra) -> Line {
    Line::Summary(Box::new(Summary {
        schema_version: SCHEMA_VERSION,
        ts: ts.into(),
        source: extra.source,
        duration_ms: c.duration_ms,
        findings: FindingCounts(stats.findings.clone()),
        findings_total: stats.findings.values().sum(),
        healthy_handshakes: stats.healthy_handshakes,
        healthy_requests: stats.healthy_requests,
        in_kernel: c.in_kernel,
        events_received: c.events_received,
        snapshots_received: c.snapshots_received,
        events_lost: c.events_lost,
        kernel_read_errors: c.kernel_read_errors,
        flows_untracked: c.flows_untracked,
        flows_evicted: stats.flows_evicted,
        pending_at_exit: c.pending_at_exit,
        lines_dropped: c.lines_dropped,
        timing: stats.timing.clone(),
        origin_statuses: stats
            .origin_statuses
            .iter()
            .map(|(s, n)| (s.to_string(), *n))
            .collect(),
        encrypted_responses: stats.encrypted_responses,
        per_request_off: stats.per_request_off,
        pcap: extra.pcap,
        capture: extra.capture,
    }))
}
