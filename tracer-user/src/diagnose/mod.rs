//! The diagnoser: a bounded per-connection table fed with [`Event`]s, that
//! names the cause of every failed edge connection (`flow`: one
//! connection's state and decisions, `rules`: the causes, [`payload`]: what
//! its first bytes said, [`finding`]: what comes out). Pure: no I/O, time is
//! injected (`CLOCK_MONOTONIC` ns), so it runs the same on live kernel events,
//! on captures and in unit tests.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

mod app_facts;
pub mod finding;
mod flow;
pub mod hint;
pub mod opaque;
pub mod payload;
mod rules;
mod statuses;
mod stream;
pub mod timing;

use crate::source::event::{Event, Flow, FlowEvent, FlowEventKind, ListenOverflow};
use finding::{Cause, Evidence, EvidenceKind, Finding};
use flow::{
    after_handshake_noting_sni, decide_after_handshake, decide_handshake, during_handshake,
    Decision, FlowState, Overflow, Phase,
};
use hint::hint;
pub use opaque::PerRequestOff;
use rules::{is_routine_drop, is_syn};
use statuses::Statuses;
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
    /// How long the edge's request may go unacknowledged (Cloudflare: 90 s).
    pub ack_timeout_ns: u64,
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
            ack_timeout_ns: 90_000 * NS_PER_MS,
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
    /// Requests answered with a 1xx-4xx status (or, over TLS, answered).
    pub healthy_requests: u64,
    /// Flows dropped from a full table before a verdict.
    pub flows_evicted: u64,
    /// Latencies of healthy connections.
    pub timing: Timing,
    /// The origin's own 5xx responses over plain HTTP, by status.
    pub origin_statuses: BTreeMap<u16, u64>,
    /// Responses inside TLS: their status cannot be seen.
    pub encrypted_responses: u64,
    /// Connections whose requests are not followed one by one.
    pub per_request_off: PerRequestOff,
}

/// Events in, findings out.
#[derive(Debug)]
pub struct Diagnoser {
    cfg: Config,
    /// Boxed: the table's buckets stay small (a power of two of them,
    /// `--max-flows` at most in use).
    flows: HashMap<Flow, Box<FlowState>>,
    /// Flows in arrival order, for eviction (stale entries skipped lazily).
    order: VecDeque<(u64, Flow)>,
    stats: Stats,
    /// Server names newly seen in `ClientHello`s: (origin address, port, SNI).
    new_snis: Vec<(std::net::IpAddr, u16, String)>,
    /// Flows without a verdict: the only ones a tick has to look at.
    active: HashSet<Flow>,
    /// When settled flows were last swept out of the table.
    last_sweep_ns: u64,
    /// The origin's 5xx responses and the lines they are owed.
    statuses: Statuses,
    /// The run ends: the next tick writes every line still owed.
    ending: bool,
    /// Recent rises of the overflow counter (within the SYN timeout).
    overflows: Vec<ListenOverflow>,
}

/// How long a kept-alive connection may sit idle between requests and
/// still be followed (Cloudflare keeps idle origin connections for up to
/// 15 minutes).
const KEEPALIVE_IDLE_NS: u64 = 900_000 * NS_PER_MS;
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
            statuses: Statuses::default(),
            ending: false,
            overflows: Vec::new(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A TLS connection the kernel follows sent this `ClientHello`
    /// (`--check-certs`): its server name joins the ones to check.
    pub fn on_hello(&mut self, flow: &Flow, hello: &[u8]) {
        let sni = crate::proto::tls::scan(hello)
            .client_hello
            .and_then(|c| c.sni);
        if let Some(sni) = sni {
            if self.new_snis.len() < 1_024 {
                self.new_snis.push((flow.origin, flow.origin_port, sni));
            }
        }
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

    /// Add what the kernel counted of quiet connections: healthy handshakes
    /// and requests, and its latency histograms (`HIST_BUCKETS` counts per
    /// measure, in [`tracer_ebpf::measure`] order).
    /// `(requests, tls, http2)`: healthy requests, of them those over TLS,
    /// and the HTTP/2 connections the kernel found.
    pub fn add_kernel_counts(
        &mut self,
        handshakes: u64,
        (requests, tls, http2): (u64, u64, u64),
        hist: &[Vec<u64>],
    ) {
        self.stats.per_request_off.http2 += http2;
        self.stats.healthy_handshakes += handshakes;
        self.stats.healthy_requests += requests;
        self.stats.encrypted_responses += tls;
        let timing = &mut self.stats.timing;
        // In `tracer_ebpf::measure` order.
        for (samples, counts) in [
            &mut timing.syn_to_synack,
            &mut timing.request_to_first_byte,
            &mut timing.client_hello_to_server_hello,
        ]
        .into_iter()
        .zip(hist)
        {
            for (bucket, n) in (0u32..).zip(counts) {
                if *n > 0 {
                    samples.add_bucket(bucket, *n);
                }
            }
        }
    }

    /// The run ends: the next [`Diagnoser::tick`] writes the lines still
    /// owed for the origin's 5xx responses.
    pub fn end(&mut self) {
        self.ending = true;
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
                evidence: f.timeline(),
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
        } else if f.established() && !f.waiting() && f.decide_at.is_none() {
            // A kept-alive connection between requests: nothing is due
            // until its next event, so ticks need not look at it.
            self.active.remove(flow);
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
                Box::new(FlowState {
                    isn: Some(e.seq),
                    first_ns: e.ts_ns,
                    last_ns: e.ts_ns,
                    ..FlowState::default()
                }),
            );
            self.order.push_back((e.ts_ns, e.flow));
        }
        let cfg = self.cfg.clone();
        let Some(f) = self.flows.get_mut(&e.flow) else {
            return;
        };
        f.last_ns = f.last_ns.max(e.ts_ns);
        let is_payload = matches!(e.kind, FlowEventKind::Payload { .. });
        if let FlowEventKind::Resume { tls: Some(t), .. } = &e.kind {
            // What the kernel saw of a TLS handshake: the hellos' evidence.
            let had = f.app.opaque;
            for (ts, what) in f.app.resume_tls(t, e.ts_ns) {
                f.push(ts, what, cfg.max_evidence);
            }
            self.stats.per_request_off.count(had, &f.app);
            // The hellos stay with the connection's later turns.
            f.handshake_evidence = f.evidence.len();
            return;
        }
        if !is_payload && !is_routine_drop(f, &e.kind) {
            f.push(
                e.ts_ns,
                EvidenceKind::Flow(e.kind.clone()),
                cfg.max_evidence,
            );
        }
        if let FlowEventKind::Resume { requests, h2, .. } = &e.kind {
            // The kernel counted the handshake and the answered requests.
            f.kernel_counted = true;
            f.app.resume(*requests, *h2);
            return;
        }
        if f.settled() {
            return;
        }
        if f.established() {
            after_handshake_noting_sni(f, e, &cfg, &mut self.new_snis, &mut self.stats);
            note_status(e, f, &mut self.statuses, &mut self.stats);
            return;
        }
        during_handshake(f, e, &cfg);
        if f.established() {
            f.handshake_evidence = f.evidence.len();
            f.decide_at = None;
            if !f.kernel_counted {
                self.stats.healthy_handshakes += 1;
                if let Some(t) = f.synack_ns {
                    f.latency.syn_to_synack = Some(t.saturating_sub(f.first_ns) / 1_000);
                }
            }
            if !cfg.payload {
                f.phase = Phase::Healthy;
            } else if is_payload || matches!(e.kind, FlowEventKind::FinIn) {
                after_handshake_noting_sni(f, e, &cfg, &mut self.new_snis, &mut self.stats);
                note_status(e, f, &mut self.statuses, &mut self.stats);
            }
        }
    }

    fn on_listen_overflow(&mut self, o: &ListenOverflow) {
        let flows: Vec<Flow> = self.active.iter().copied().collect();
        for flow in flows {
            self.apply_overflow(&flow, o);
        }
        // Flows the kernel hands over later may have waited through it.
        let horizon = o.ts_ns.saturating_sub(self.cfg.syn_timeout_ns);
        self.overflows.retain(|p| p.ts_ns >= horizon);
        if self.overflows.len() < 64 {
            self.overflows.push(o.clone());
        }
    }

    /// A flow the kernel handed over (its history just replayed): the
    /// overflows it waited through count for it too.
    pub fn replayed(&mut self, flow: &Flow) {
        let past = std::mem::take(&mut self.overflows);
        for o in &past {
            self.apply_overflow(flow, o);
        }
        self.overflows = past;
        self.after_change(flow);
    }

    /// The overflow counter rose while this flow's SYN waited unanswered.
    fn apply_overflow(&mut self, flow: &Flow, o: &ListenOverflow) {
        let max = self.cfg.max_evidence;
        let settle = self.cfg.settle_ns;
        let Some(f) = self.flows.get_mut(flow) else {
            return;
        };
        let unanswered = f.synack_ns.is_none_or(|t| t > o.ts_ns) && f.synack_retrans == 0;
        let waiting = f.phase == Phase::Handshake && unanswered && f.first_ns <= o.ts_ns;
        let queue = o
            .queues
            .iter()
            .find(|(p, _)| *p == flow.origin_port)
            .copied();
        // A listener with a full queue on another port does not explain this flow.
        if !waiting || (queue.is_none() && !o.queues.is_empty()) {
            return;
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
        f.decide_at = Some(o.ts_ns + settle);
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
                decide_after_handshake(f, now_ns, &self.cfg)
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
                let about_tls = cause.class().is_tls();
                out.push(Finding {
                    ts_ns: decided_at,
                    flow,
                    cause,
                    confidence,
                    evidence: f.timeline(),
                    hint: hint(cause, &flow, detail.as_deref()),
                    // Also for a 520/524 over TLS: its version, its SNI.
                    tls: f.app.tls_facts(),
                    http: if about_tls { None } else { f.app.http_facts() },
                    count: None,
                });
            }
            self.after_change(&flow);
        }
        out.extend(self.statuses.due(now_ns, std::mem::take(&mut self.ending)));
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
                // A kept-alive connection between requests: its next one
                // is diagnosed too (the table stays bounded by max_flows).
                || (f.phase == Phase::Established && now_ns < f.last_ns + KEEPALIVE_IDLE_NS)
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

/// A 5xx response head the connection's payload just showed: counted, and
/// a line when its status and port's window allows.
fn note_status(e: &FlowEvent, f: &mut FlowState, statuses: &mut Statuses, stats: &mut Stats) {
    if let Some(status) = f.app.error_status.take() {
        // Its latency is not a healthy request's.
        f.latency.request_to_first_byte = None;
        *stats.findings.entry(Cause::OriginErrorStatus).or_default() += 1;
        *stats.origin_statuses.entry(status).or_default() += 1;
        statuses.saw(statuses::finding(e.flow, f, status, e.ts_ns), status);
    }
}

#[cfg(test)]
mod tests;
