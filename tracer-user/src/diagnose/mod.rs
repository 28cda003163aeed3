//! The diagnoser: a bounded per-connection table fed with [`Event`]s, that
//! names the cause of every failed edge handshake. Pure: no I/O, time is
//! injected (`CLOCK_MONOTONIC` ns), so it runs the same on live kernel events,
//! on captures and in unit tests.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

pub mod finding;
pub mod payload;
mod rules;
pub mod timing;

use crate::source::{
    event::{Event, Flow, FlowEvent, FlowEventKind, ListenOverflow},
    names::{DropReason, TcpState},
};
use finding::{hint, Cause, Confidence, Evidence, EvidenceKind, Finding};
use payload::App;
use rules::{classify, classify_app, is_routine_drop, is_syn};
pub use timing::Timing;

const NS_PER_MS: u64 = 1_000_000;

/// Tunables; every threshold is configurable (tests shrink them).
#[derive(Clone, Debug)]
pub struct Config {
    /// How long a SYN may wait for a completed handshake (Cloudflare: 15 s).
    pub syn_timeout_ns: u64,
    /// How long to wait after a decisive event (RST, drop, ICMP) for the
    /// rest of the kernel's evidence before deciding.
    pub settle_ns: u64,
    /// How long a decided or healthy flow is remembered, so that
    /// retransmissions add no second finding.
    pub linger_ns: u64,
    /// Most flows tracked at once; the oldest is evicted beyond it.
    pub max_flows: usize,
    /// Most evidence items kept per flow.
    pub max_evidence: usize,
    /// How long a request may wait for a first response byte (Cloudflare: 100 s).
    pub response_timeout_ns: u64,
    /// Payload events will come (snapshots on, or a capture): established
    /// connections are followed until their first response.
    pub payload: bool,
    /// Keep the request's URL path (`--show-path`).
    pub keep_path: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            syn_timeout_ns: 15_000 * NS_PER_MS,
            settle_ns: 300 * NS_PER_MS,
            linger_ns: 60_000 * NS_PER_MS,
            max_flows: 100_000,
            max_evidence: 32,
            response_timeout_ns: 100_000 * NS_PER_MS,
            payload: true,
            keep_path: false,
        }
    }
}

/// A connection without a verdict yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub flow: Flow,
    /// When its first SYN was seen.
    pub first_ns: u64,
    /// Since when it waits: its first SYN, or its request.
    pub waiting_since_ns: u64,
    /// It waits for a response to a request (else for its handshake).
    pub for_response: bool,
    pub evidence: Vec<Evidence>,
}

/// Counters for the summary line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub findings: BTreeMap<Cause, u64>,
    pub healthy_handshakes: u64,
    /// Flows dropped from a full table before a verdict.
    pub flows_evicted: u64,
    /// Latencies of healthy connections.
    pub timing: Timing,
}

/// Evidence of a full accept queue.
#[derive(Clone, Copy, Debug)]
struct Overflow {
    queue: Option<(u16, u32)>,
}

/// Where a connection is, from its first SYN to its verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    /// The handshake has not completed.
    #[default]
    Handshake,
    /// The handshake completed; no verdict yet.
    Established,
    /// It worked (or closed) after its handshake without a cause to name.
    Healthy,
    /// A finding was written for it (in its handshake or after).
    Reported,
}

#[derive(Debug, Default)]
struct FlowState {
    /// Initial sequence number of the edge's SYN.
    isn: Option<u32>,
    first_ns: u64,
    last_ns: u64,
    evidence: Vec<Evidence>,
    synack: u32,
    synack_retrans: u32,
    phase: Phase,
    rst_out: bool,
    send_reset: bool,
    icmp: bool,
    /// Reason the kernel gave for dropping the edge's SYN (or handshake ACK).
    drop_in: Option<DropReason>,
    /// Reason the kernel gave for dropping the origin's SYN-ACK.
    drop_out: Option<DropReason>,
    /// The overflow counter rose while the SYN waited; with the listener's
    /// (port, accept queue) when it could be read.
    listen_overflow: Option<Overflow>,
    decide_at: Option<u64>,
    /// When the first SYN-ACK left.
    synack_ns: Option<u64>,
    /// After the handshake: what the payload said, and who closed.
    app: App,
    fin_out: bool,
    rst_out_late: bool,
    /// Sequence numbers of the origin's first FIN and first RST after the
    /// handshake, and its SYN-ACK's: did it send bytes that were not seen?
    fin_out_seq: Option<u32>,
    rst_out_seq: Option<u32>,
    origin_isn: Option<u32>,
    fin_in: bool,
    rst_in: bool,
    /// Latencies measured on this connection, counted once it is healthy.
    latency: Latency,
}

/// One connection's latencies (µs), for [`Timing`].
#[derive(Debug, Default)]
struct Latency {
    syn_to_synack: Option<u64>,
    client_hello_to_server_hello: Option<u64>,
    request_to_first_byte: Option<u64>,
    counted: bool,
}

impl Latency {
    /// Count this healthy connection's latencies, once.
    fn commit(&mut self, timing: &mut Timing) {
        if std::mem::replace(&mut self.counted, true) {
            return;
        }
        for (value, samples) in [
            (self.syn_to_synack, &mut timing.syn_to_synack),
            (
                self.client_hello_to_server_hello,
                &mut timing.client_hello_to_server_hello,
            ),
            (
                self.request_to_first_byte,
                &mut timing.request_to_first_byte,
            ),
        ] {
            if let Some(v) = value {
                samples.add(v);
            }
        }
    }
}

impl FlowState {
    fn settled(&self) -> bool {
        matches!(self.phase, Phase::Healthy | Phase::Reported)
    }

    /// Its handshake completed (whatever came after), and no finding named it.
    fn established_unreported(&self) -> bool {
        matches!(self.phase, Phase::Established | Phase::Healthy)
    }

    fn established(&self) -> bool {
        self.phase == Phase::Established
    }

    /// Still waiting for something that may end in a timeout: the handshake,
    /// or a response to a request.
    fn waiting(&self) -> bool {
        match self.phase {
            Phase::Handshake => true,
            Phase::Established => self.response_due().is_some(),
            Phase::Healthy | Phase::Reported => false,
        }
    }

    /// When a request without a response byte runs out of time.
    fn response_due(&self) -> Option<u64> {
        match (self.app.request_ns, self.app.first_out_ns) {
            (Some(t), None) => Some(t),
            _ => None,
        }
    }

    fn push(&mut self, ts_ns: u64, what: EvidenceKind, max: usize) {
        let t_us = ts_ns.saturating_sub(self.first_ns) / 1_000;
        if let Some(last) = self.evidence.last_mut() {
            if last.what == what {
                last.repeat += 1;
                return;
            }
        }
        if self.evidence.len() < max {
            self.evidence.push(Evidence {
                t_us,
                what,
                repeat: 1,
            });
        }
    }
}

/// Events in, findings out.
#[derive(Debug)]
pub struct Diagnoser {
    cfg: Config,
    flows: HashMap<Flow, FlowState>,
    /// Flows in arrival order, for eviction (stale entries skipped lazily).
    order: VecDeque<(u64, Flow)>,
    stats: Stats,
    /// Server names newly seen in `ClientHello`s: (origin address, port, SNI).
    new_snis: Vec<(std::net::IpAddr, u16, String)>,
    /// Flows without a verdict: the only ones a tick has to look at.
    active: HashSet<Flow>,
    /// When settled flows were last swept out of the table.
    last_sweep_ns: u64,
}

/// How often the table is swept of flows whose linger time is over.
const SWEEP_NS: u64 = 1_000 * NS_PER_MS;

impl Diagnoser {
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            flows: HashMap::new(),
            order: VecDeque::new(),
            stats: Stats::default(),
            new_snis: Vec::new(),
            active: HashSet::new(),
            last_sweep_ns: 0,
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Server names seen for the first time since the last call, with the
    /// origin address and port the edge used (for `--check-certs`).
    pub fn take_new_snis(&mut self) -> Vec<(std::net::IpAddr, u16, String)> {
        std::mem::take(&mut self.new_snis)
    }

    /// At the end of a run or a capture: connections still open without a
    /// cause, and not waiting for one, count as healthy in the latency
    /// percentiles (a kept-alive TLS connection may never close in view).
    pub fn count_open_healthy(&mut self) {
        let timing = &mut self.stats.timing;
        for f in self.flows.values_mut() {
            if f.established_unreported() && !f.waiting() {
                f.latency.commit(timing);
            }
        }
    }

    /// Connections still in their handshake, without a verdict.
    pub fn pending(&self) -> usize {
        self.flows.values().filter(|f| f.waiting()).count()
    }

    /// Those connections, oldest first: when a capture ends, they are
    /// inconclusive rather than timed out.
    pub fn pending_flows(&self) -> Vec<Pending> {
        let mut out: Vec<Pending> = self
            .flows
            .iter()
            .filter(|(_, f)| f.waiting())
            .map(|(flow, f)| Pending {
                flow: *flow,
                first_ns: f.first_ns,
                waiting_since_ns: f
                    .response_due()
                    .filter(|_| f.established())
                    .unwrap_or(f.first_ns),
                for_response: f.established(),
                evidence: f.evidence.clone(),
            })
            .collect();
        out.sort_by_key(|p| (p.first_ns, p.flow));
        out
    }

    /// Feed one event. Findings come out of [`Diagnoser::tick`].
    pub fn on_event(&mut self, event: &Event) {
        match event {
            Event::Flow(e) => self.on_flow_event(e),
            Event::ListenOverflow(o) => self.on_listen_overflow(o),
        }
    }

    fn on_flow_event(&mut self, e: &FlowEvent) {
        self.apply(e);
        self.after_change(&e.flow);
    }

    /// Keep `active` and the latency percentiles in step with a flow's state.
    fn after_change(&mut self, flow: &Flow) {
        let Some(f) = self.flows.get_mut(flow) else {
            self.active.remove(flow);
            return;
        };
        if f.settled() {
            self.active.remove(flow);
            if f.phase == Phase::Healthy {
                f.latency.commit(&mut self.stats.timing);
            }
        } else {
            self.active.insert(*flow);
        }
    }

    fn apply(&mut self, e: &FlowEvent) {
        let starts_flow = match &e.kind {
            FlowEventKind::SynIn => true,
            FlowEventKind::KernelDrop {
                outbound: false,
                tcp_flags,
                ..
            } => is_syn(*tcp_flags),
            _ => false,
        };
        // The same 4-tuple with a new initial sequence number is a new
        // connection (busy clients reuse ports); the same ISN, a retransmission.
        if starts_flow {
            if let Some(old) = self.flows.get(&e.flow) {
                if old.isn.is_some_and(|isn| isn != e.seq) {
                    self.flows.remove(&e.flow);
                }
            }
        }
        if !self.flows.contains_key(&e.flow) {
            if !starts_flow {
                return;
            }
            self.make_room();
            self.flows.insert(
                e.flow,
                FlowState {
                    isn: Some(e.seq),
                    first_ns: e.ts_ns,
                    last_ns: e.ts_ns,
                    ..FlowState::default()
                },
            );
            self.order.push_back((e.ts_ns, e.flow));
        }
        let cfg = self.cfg.clone();
        let Some(f) = self.flows.get_mut(&e.flow) else {
            return;
        };
        f.last_ns = f.last_ns.max(e.ts_ns);
        let is_payload = matches!(e.kind, FlowEventKind::Payload { .. });
        if !is_payload && !is_routine_drop(f, &e.kind) {
            f.push(
                e.ts_ns,
                EvidenceKind::Flow(e.kind.clone()),
                cfg.max_evidence,
            );
        }
        if f.settled() {
            return;
        }
        if f.established() {
            after_handshake_noting_sni(f, e, &cfg, &mut self.new_snis);
            return;
        }
        during_handshake(f, e, &cfg);
        if f.established() {
            self.stats.healthy_handshakes += 1;
            f.decide_at = None;
            if let Some(t) = f.synack_ns {
                f.latency.syn_to_synack = Some(t.saturating_sub(f.first_ns) / 1_000);
            }
            if !cfg.payload {
                f.phase = Phase::Healthy;
            } else if is_payload {
                after_handshake_noting_sni(f, e, &cfg, &mut self.new_snis);
            }
        }
    }

    fn on_listen_overflow(&mut self, o: &ListenOverflow) {
        let max = self.cfg.max_evidence;
        for flow in &self.active {
            let Some(f) = self.flows.get_mut(flow) else {
                continue;
            };
            let waiting =
                !f.settled() && f.synack == 0 && f.synack_retrans == 0 && f.first_ns <= o.ts_ns;
            let queue = o
                .queues
                .iter()
                .find(|(p, _)| *p == flow.origin_port)
                .copied();
            // A listener with a full queue on another port does not explain this flow.
            if !waiting || (queue.is_none() && !o.queues.is_empty()) {
                continue;
            }
            f.listen_overflow = Some(Overflow { queue });
            f.push(
                o.ts_ns,
                EvidenceKind::ListenOverflowCounter {
                    count: o.count,
                    queue,
                },
                max,
            );
            f.decide_at = Some(o.ts_ns + self.cfg.settle_ns);
        }
    }

    fn make_room(&mut self) {
        while self.flows.len() >= self.cfg.max_flows {
            let Some((first, flow)) = self.order.pop_front() else {
                break;
            };
            if let Some(f) = self.flows.get(&flow) {
                if f.first_ns == first {
                    if !f.settled() {
                        self.stats.flows_evicted += 1;
                    }
                    self.flows.remove(&flow);
                    self.active.remove(&flow);
                }
            }
        }
    }

    /// Decide every flow whose time has come; forget old settled flows.
    pub fn tick(&mut self, now_ns: u64) -> Vec<Finding> {
        let mut out = Vec::new();
        // Only flows without a verdict can have one due.
        let due: Vec<Flow> = self.active.iter().copied().collect();
        for flow in due {
            let Some(f) = self.flows.get_mut(&flow) else {
                continue;
            };
            let decision = if f.settled() {
                None
            } else if f.established() {
                decide_after_handshake(f, now_ns, self.cfg.response_timeout_ns)
            } else {
                decide_handshake(f, now_ns, self.cfg.syn_timeout_ns)
            };
            if let Some(Decision {
                at_ns: decided_at,
                cause,
                confidence,
                detail,
            }) = decision
            {
                f.phase = Phase::Reported;
                *self.stats.findings.entry(cause).or_default() += 1;
                let detail = detail
                    .or_else(|| f.drop_in.as_ref().map(ToString::to_string))
                    .or_else(|| f.drop_out.as_ref().map(ToString::to_string));
                let about_tls = matches!(cause.class(), "525" | "526");
                out.push(Finding {
                    ts_ns: decided_at,
                    flow,
                    cause,
                    confidence,
                    evidence: f.evidence.clone(),
                    hint: hint(cause, &flow, detail.as_deref()),
                    // Also for a 520/524 over TLS: its version, its SNI.
                    tls: f.app.tls_json(),
                    http: if about_tls { None } else { f.app.http_json() },
                });
            }
            self.after_change(&flow);
        }
        if now_ns >= self.last_sweep_ns + SWEEP_NS {
            self.last_sweep_ns = now_ns;
            self.sweep(now_ns);
        }
        out.sort_by_key(|f| (f.evidence.first().map(|e| e.t_us), f.flow));
        out
    }

    /// Forget flows whose linger time is over (settled flows linger so that
    /// retransmissions stay quiet); established ones forgotten without a
    /// cause count as healthy in the latency percentiles.
    fn sweep(&mut self, now_ns: u64) {
        let linger = self.cfg.linger_ns;
        let timeout = self.cfg.syn_timeout_ns;
        let response_timeout = self.cfg.response_timeout_ns;
        let timing = &mut self.stats.timing;
        self.flows.retain(|_, f| {
            let keep = now_ns < f.last_ns + linger
                || (f.phase == Phase::Handshake && now_ns < f.first_ns + timeout)
                || f.response_due()
                    .is_some_and(|t| !f.settled() && now_ns < t + response_timeout);
            if !keep && f.established_unreported() {
                f.latency.commit(timing);
            }
            keep
        });
        let flows = &self.flows;
        self.active.retain(|flow| flows.contains_key(flow));
        if self.order.len() > 2 * self.flows.len() + 1024 {
            self.order
                .retain(|(first, flow)| flows.get(flow).is_some_and(|f| f.first_ns == *first));
        }
    }
}

/// An event of a connection still in its handshake.
fn during_handshake(f: &mut FlowState, e: &FlowEvent, cfg: &Config) {
    let decide_soon = Some(e.ts_ns + cfg.settle_ns);
    match &e.kind {
        // Payload before the handshake completed (a capture may order
        // the edge's ACK and first data closely): it counts as completed.
        FlowEventKind::AckIn | FlowEventKind::Payload { .. } => f.phase = Phase::Established,
        FlowEventKind::StateChange {
            from: TcpState::SynRecv,
            to: TcpState::Established,
        } => {
            f.phase = Phase::Established;
        }
        FlowEventKind::SynAckOut => {
            f.synack += 1;
            f.synack_ns.get_or_insert(e.ts_ns);
            f.origin_isn.get_or_insert(e.seq);
        }
        FlowEventKind::SynAckRetransmit => f.synack_retrans += 1,
        FlowEventKind::RstOut => {
            f.rst_out = true;
            f.decide_at = decide_soon;
        }
        FlowEventKind::KernelSendReset { .. } => f.send_reset = true,
        FlowEventKind::IcmpUnreachOut { .. } => {
            f.icmp = true;
            f.decide_at = decide_soon;
        }
        FlowEventKind::KernelDrop {
            reason,
            outbound: false,
            tcp_flags,
        } => {
            // A duplicate SYN is dropped once the request socket has
            // answered it, and NOT_SPECIFIED says nothing: neither decides.
            let answered = f.synack > 0 || f.synack_retrans > 0;
            let first_syn = is_syn(*tcp_flags) && !answered;
            let overflow = *reason == DropReason::TcpListenOverflow;
            if *reason != DropReason::NotSpecified && (first_syn || overflow) {
                f.drop_in = Some(reason.clone());
                f.decide_at = decide_soon;
            }
        }
        FlowEventKind::KernelDrop {
            reason,
            outbound: true,
            ..
        } => f.drop_out = Some(reason.clone()),
        _ => {}
    }
}

/// A verdict on one flow.
struct Decision {
    /// When its evidence was complete (not when the caller ticked).
    at_ns: u64,
    cause: Cause,
    confidence: Confidence,
    /// What the hint should name (a TLS alert, a header size, how records
    /// were told apart); else the kernel's drop reason is used.
    detail: Option<String>,
}

/// A handshake whose time has come.
fn decide_handshake(f: &mut FlowState, now_ns: u64, syn_timeout_ns: u64) -> Option<Decision> {
    let timeout_at = f.first_ns + syn_timeout_ns;
    let timed_out = now_ns >= timeout_at;
    let due = f.decide_at.is_some_and(|t| now_ns >= t);
    if !timed_out && !due {
        return None;
    }
    // A finding is dated when its evidence was complete, not when the
    // caller happened to tick (a sparse capture ticks late).
    let decided_at = match f.decide_at {
        Some(t) if due => t.min(now_ns),
        _ => timeout_at.min(now_ns),
    };
    f.decide_at = None;
    classify(f, timed_out).map(|(cause, confidence)| Decision {
        at_ns: decided_at,
        cause,
        confidence,
        detail: None,
    })
}

/// After the handshake: a decisive payload fact, a close, or a request
/// that ran out of time.
fn decide_after_handshake(
    f: &mut FlowState,
    now_ns: u64,
    response_timeout_ns: u64,
) -> Option<Decision> {
    let deadline = f.response_due().map(|t| t + response_timeout_ns);
    let timed_out = deadline.is_some_and(|d| now_ns >= d);
    let due = f.decide_at.is_some_and(|t| now_ns >= t);
    if !timed_out && !due {
        return None;
    }
    let decided_at = match (f.decide_at, deadline) {
        (Some(t), _) if due => t.min(now_ns),
        (_, Some(d)) => d.min(now_ns),
        _ => now_ns,
    };
    f.decide_at = None;
    if let Some((cause, confidence, detail)) = classify_app(f, timed_out) {
        return Some(Decision {
            at_ns: decided_at,
            cause,
            confidence,
            detail,
        });
    }
    // Closed, or answered, without a cause: nothing more to wait for.
    if f.fin_out
        || f.rst_out_late
        || f.fin_in
        || f.rst_in
        || f.app.response_ok()
        || f.app.tls_answered()
    {
        f.phase = Phase::Healthy;
    }
    None
}

/// [`after_handshake`], noting a server name its `ClientHello` revealed.
fn after_handshake_noting_sni(
    f: &mut FlowState,
    e: &FlowEvent,
    cfg: &Config,
    snis: &mut Vec<(std::net::IpAddr, u16, String)>,
) {
    let had = f.app.client_hello.is_some();
    after_handshake(f, e, cfg);
    if !had {
        if let Some(sni) = f.app.client_hello.as_ref().and_then(|c| c.sni.clone()) {
            if snis.len() < 1_024 {
                snis.push((e.flow.origin, e.flow.origin_port, sni));
            }
        }
    }
}

/// An event of an established connection.
fn after_handshake(f: &mut FlowState, e: &FlowEvent, cfg: &Config) {
    let decide_soon = Some(e.ts_ns + cfg.settle_ns);
    match &e.kind {
        FlowEventKind::Payload { outbound, bytes } => {
            let had_server_hello = f.app.server_hello.is_some();
            let had_response = f.app.first_out_ns.is_some();
            let had_request = f.app.request_ns.is_some();
            let facts = f
                .app
                .on_payload(e.ts_ns, *outbound, e.seq, bytes, cfg.keep_path);
            let decisive = !facts.is_empty()
                && (f.app.alerts.iter().any(|a| {
                    a.from_origin
                        || crate::diagnose::payload::is_certificate_alert(a.alert.description)
                }) || f.app.not_tls
                    || f.app.not_http()
                    || f.app.oversized_headers().is_some());
            for fact in facts {
                f.push(e.ts_ns, fact, cfg.max_evidence);
            }
            if let (false, Some(sh), Some(ch)) = (
                had_server_hello,
                f.app.server_hello_ns,
                f.app.client_hello_ns,
            ) {
                f.latency.client_hello_to_server_hello = Some(sh.saturating_sub(ch) / 1_000);
            }
            if let (false, Some(first), Some(req)) = (
                had_response && had_request,
                f.app.first_out_ns,
                f.app.request_ns,
            ) {
                if first >= req && f.app.response_timing_reliable() {
                    f.latency.request_to_first_byte = Some((first - req) / 1_000);
                }
            }
            if decisive {
                f.decide_at = decide_soon;
            } else if f.app.response_ok() || f.app.tls_answered() || f.app.records.lost {
                f.phase = Phase::Healthy;
            }
        }
        FlowEventKind::FinOut => {
            f.fin_out = true;
            f.fin_out_seq.get_or_insert(e.seq);
            f.decide_at = decide_soon;
        }
        FlowEventKind::RstOut => {
            f.rst_out_late = true;
            f.rst_out_seq.get_or_insert(e.seq);
            f.decide_at = decide_soon;
        }
        FlowEventKind::FinIn => {
            f.fin_in = true;
            f.decide_at = decide_soon;
        }
        FlowEventKind::RstIn => {
            f.rst_in = true;
            f.decide_at = decide_soon;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
