//! Building the schema's lines from what the pipeline knows, each in one
//! place for both sources: `start`, `finding`, `event` (`--events all`),
//! `loss` and `inconclusive`.

use std::time::Duration;

use super::line::{
    AttachMode, ClassCode, EdgePrefixes, EventLine, FindingLine, Inconclusive, Interface, Line,
    Listener, Loss, ProbeLine, ProbeStatus, Source, Start, SCHEMA_VERSION,
};
use crate::{
    cli::Settings,
    diagnose::{
        finding::{EvidenceKind, Finding},
        Pending,
    },
    source::{
        event::Flow,
        kernel::{attach::Probe, listeners::Listening},
    },
};

/// What the start line says was attached.
pub enum Attached<'a> {
    /// The live agent: attach mode, interfaces (name, ifindex), probes,
    /// leftovers of an earlier run removed.
    Kernel {
        mode: AttachMode,
        interfaces: Vec<(&'a str, u32)>,
        probes: &'a [Probe],
        stale_removed: &'a [String],
    },
    /// `analyze FILE`: nothing attached.
    Capture { file: &'a str },
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The `start` line.
pub fn start(s: &Settings, attached: &Attached<'_>, ts: String) -> Line {
    let mut line = Start {
        schema_version: SCHEMA_VERSION,
        ts: ts.into(),
        source: None,
        capture_file: None,
        version: env!("CARGO_PKG_VERSION"),
        kernel: crate::source::kernel::kernel_release(),
        attach_mode: AttachMode::None,
        interfaces: Vec::new(),
        ports: s.ports.clone(),
        edge_prefixes: EdgePrefixes {
            ipv4: s.ranges.v4().count(),
            ipv6: s.ranges.v6().count(),
        },
        all_sources: s.all_sources,
        syn_timeout_ms: millis(s.syn_timeout),
        response_timeout_ms: millis(s.response_timeout),
        ack_timeout_ms: millis(s.ack_timeout),
        probes: Vec::new(),
        stale_removed: Vec::new(),
    };
    match attached {
        Attached::Kernel {
            mode,
            interfaces,
            probes,
            stale_removed,
        } => {
            line.attach_mode = *mode;
            line.interfaces = interfaces
                .iter()
                .map(|(name, ifindex)| Interface {
                    name: (*name).to_owned(),
                    ifindex: *ifindex,
                })
                .collect();
            line.probes = probes
                .iter()
                .map(|p| ProbeLine {
                    name: p.name.clone(),
                    status: if p.reason.is_some() {
                        ProbeStatus::Skipped
                    } else {
                        ProbeStatus::Attached
                    },
                    reason: p.reason.clone(),
                    limits: p.limits.map(str::to_owned),
                    verified_insns: p.verified_insns,
                })
                .collect();
            line.stale_removed = stale_removed.to_vec();
        }
        Attached::Capture { file } => {
            line.source = Some(Source::Capture);
            line.capture_file = Some((*file).to_owned());
        }
    }
    Line::Start(line)
}

/// A `finding` line; `ts` is the RFC 3339 rendering of the finding's time.
/// `listeners`: live, for `no_listener`, what does listen on the port (its
/// hint then says it).
pub fn finding(f: &Finding, ts: String, source: Source, listeners: Option<&[Listening]>) -> Line {
    let hint = match listeners {
        Some(l) => crate::diagnose::hint::no_listener_seen(&f.flow, l),
        None => f.hint.clone(),
    };
    Line::Finding(Box::new(FindingLine {
        schema_version: SCHEMA_VERSION,
        ts: ts.into(),
        source,
        class: ClassCode(f.class_code()),
        cause: f.cause,
        confidence: f.confidence,
        flow: f.flow,
        count: f.count,
        evidence: f.evidence.clone(),
        hint,
        tls: f.tls.clone(),
        http: f.http.clone(),
        listeners: listeners.map(|l| {
            l.iter()
                .map(|s| Listener {
                    address: s.addr,
                    process: s.process.as_ref().map(|(_, c)| c.clone()),
                    pid: s.process.as_ref().map(|(p, _)| *p),
                })
                .collect()
        }),
    }))
}

/// An `event` line (`--events all`); `flow` is absent for host-wide
/// observations (the listen-overflow counter).
pub fn event(ts: String, source: Source, what: EvidenceKind, flow: Option<Flow>) -> Line {
    Line::Event(EventLine {
        schema_version: SCHEMA_VERSION,
        ts: ts.into(),
        source,
        what,
        flow,
    })
}

/// A `loss` line: ring-buffer records the kernel could not hand over.
pub fn loss(ts: String, lost: u64, lost_total: u64) -> Line {
    Line::Loss(Loss {
        schema_version: SCHEMA_VERSION,
        ts: ts.into(),
        events_lost: lost,
        events_lost_total: lost_total,
    })
}

/// An `inconclusive` line: a connection still waiting when the capture ended.
pub fn inconclusive(p: Pending, end_ns: u64, s: &Settings, ts: String) -> Line {
    let watched_ms = end_ns.saturating_sub(p.waiting_since_ns) / 1_000_000;
    let (needed, what, flag) = if p.for_response {
        (s.response_timeout, "its request", "--response-timeout")
    } else {
        (s.syn_timeout, "its first SYN", "--syn-timeout")
    };
    let needed_ms = millis(needed);
    Line::Inconclusive(Inconclusive {
        schema_version: SCHEMA_VERSION,
        ts: ts.into(),
        source: Source::Capture,
        flow: p.flow,
        watched_ms,
        needed_ms,
        evidence: p.evidence,
        reason: format!(
            "the capture ends {watched_ms} ms after {what}, before {flag} ({needed_ms} ms): no verdict"
        ),
    })
}
