//! The diagnoser: a bounded per-connection table fed with [`Event`]s, that
//! names the cause of every failed edge handshake. Pure: no I/O, time is
//! injected (`CLOCK_MONOTONIC` ns), so it runs the same on live kernel events,
//! on captures and in unit tests.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::{
    event::{Event, Flow, FlowEvent, FlowEventKind, ListenOverflow},
    finding::{hint, Cause, Confidence, Evidence, EvidenceKind, Finding},
};

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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            syn_timeout_ns: 15_000 * NS_PER_MS,
            settle_ns: 300 * NS_PER_MS,
            linger_ns: 60_000 * NS_PER_MS,
            max_flows: 100_000,
            max_evidence: 32,
        }
    }
}

/// A connection without a verdict yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub flow: Flow,
    /// When its first SYN was seen.
    pub first_ns: u64,
    pub evidence: Vec<Evidence>,
}

/// Counters for the summary line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub findings: BTreeMap<Cause, u64>,
    pub healthy_handshakes: u64,
    /// Flows dropped from a full table before a verdict.
    pub flows_evicted: u64,
}

/// Evidence of a full accept queue.
#[derive(Clone, Copy, Debug)]
struct Overflow {
    queue: Option<(u16, u32)>,
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
    established: bool,
    /// A finding was written for this flow.
    reported: bool,
    rst_out: bool,
    send_reset: bool,
    icmp: bool,
    /// Reason the kernel gave for dropping the edge's SYN (or handshake ACK).
    drop_in: Option<String>,
    /// Reason the kernel gave for dropping the origin's SYN-ACK.
    drop_out: Option<String>,
    /// The overflow counter rose while the SYN waited; with the listener's
    /// (port, accept queue) when it could be read.
    listen_overflow: Option<Overflow>,
    decide_at: Option<u64>,
}

impl FlowState {
    fn settled(&self) -> bool {
        self.established || self.reported
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
}

impl Diagnoser {
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            flows: HashMap::new(),
            order: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Connections still in their handshake, without a verdict.
    pub fn pending(&self) -> usize {
        self.flows.values().filter(|f| !f.settled()).count()
    }

    /// Those connections, oldest first: when a capture ends, they are
    /// inconclusive rather than timed out.
    pub fn pending_flows(&self) -> Vec<Pending> {
        let mut out: Vec<Pending> = self
            .flows
            .iter()
            .filter(|(_, f)| !f.settled())
            .map(|(flow, f)| Pending {
                flow: *flow,
                first_ns: f.first_ns,
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
        let max = self.cfg.max_evidence;
        let settle = self.cfg.settle_ns;
        let Some(f) = self.flows.get_mut(&e.flow) else {
            return;
        };
        f.last_ns = f.last_ns.max(e.ts_ns);
        if !is_duplicate_syn_drop(f, &e.kind) {
            f.push(e.ts_ns, EvidenceKind::Flow(e.kind.clone()), max);
        }
        if f.settled() {
            return;
        }
        let decide_soon = Some(e.ts_ns + settle);
        match &e.kind {
            FlowEventKind::AckIn => f.established = true,
            FlowEventKind::StateChange { from, to }
                if from == "TCP_SYN_RECV" && to == "TCP_ESTABLISHED" =>
            {
                f.established = true;
            }
            FlowEventKind::SynAckOut => f.synack += 1,
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
                if reason != "NOT_SPECIFIED" && (first_syn || reason.contains("LISTEN_OVERFLOW")) {
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
        if f.established {
            self.stats.healthy_handshakes += 1;
        }
    }

    fn on_listen_overflow(&mut self, o: &ListenOverflow) {
        let max = self.cfg.max_evidence;
        for (flow, f) in &mut self.flows {
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
                }
            }
        }
    }

    /// Decide every flow whose time has come; forget old settled flows.
    pub fn tick(&mut self, now_ns: u64) -> Vec<Finding> {
        let mut out = Vec::new();
        for (flow, f) in &mut self.flows {
            if f.settled() {
                continue;
            }
            let timeout_at = f.first_ns + self.cfg.syn_timeout_ns;
            let timed_out = now_ns >= timeout_at;
            let due = f.decide_at.is_some_and(|t| now_ns >= t);
            if !timed_out && !due {
                continue;
            }
            // A finding is dated when its evidence was complete, not when
            // the caller happened to tick (a sparse capture ticks late).
            let decided_at = match f.decide_at {
                Some(t) if due => t.min(now_ns),
                _ => timeout_at.min(now_ns),
            };
            f.decide_at = None;
            if let Some((cause, confidence)) = classify(f, timed_out) {
                f.reported = true;
                *self.stats.findings.entry(cause).or_default() += 1;
                out.push(Finding {
                    ts_ns: decided_at,
                    flow: *flow,
                    cause,
                    confidence,
                    evidence: f.evidence.clone(),
                    hint: hint(cause, flow, f.drop_in.as_deref().or(f.drop_out.as_deref())),
                });
            }
        }
        let linger = self.cfg.linger_ns;
        let timeout = self.cfg.syn_timeout_ns;
        // Settled flows linger so retransmissions stay quiet; unsettled ones
        // cannot outlive their timeout by much (they are decided above).
        self.flows.retain(|_, f| {
            now_ns < f.last_ns + linger || (!f.settled() && now_ns < f.first_ns + timeout)
        });
        if self.order.len() > 2 * self.flows.len() + 1024 {
            let flows = &self.flows;
            self.order
                .retain(|(first, flow)| flows.get(flow).is_some_and(|f| f.first_ns == *first));
        }
        out.sort_by_key(|f| (f.evidence.first().map(|e| e.t_us), f.flow));
        out
    }
}

/// The kernel frees a retransmitted SYN once its request socket has answered
/// (it re-sends the SYN-ACK instead) without a reason: routine, not evidence,
/// and it would read like a drop cause.
fn is_duplicate_syn_drop(f: &FlowState, kind: &FlowEventKind) -> bool {
    matches!(kind, FlowEventKind::KernelDrop { reason, outbound: false, tcp_flags }
        if reason == "NOT_SPECIFIED" && is_syn(*tcp_flags) && (f.synack > 0 || f.synack_retrans > 0))
}

fn is_syn(flags: u8) -> bool {
    u32::from(flags) & tracer_ebpf::tcp_flag::SYN != 0
        && u32::from(flags) & tracer_ebpf::tcp_flag::ACK == 0
}

/// The rules. `None` while the evidence is not conclusive yet.
fn classify(f: &FlowState, timed_out: bool) -> Option<(Cause, Confidence)> {
    use Cause::{
        FirewallDrop, FirewallReject, KernelDrop, ListenOverflow, NoListener, SynUnanswered,
        SynackUnacked,
    };
    use Confidence::{High, Medium};
    if f.established {
        return None;
    }
    let drop = f.drop_in.as_deref();
    if drop.is_some_and(|r| r.contains("LISTEN_OVERFLOW")) {
        return Some((ListenOverflow, High));
    }
    if f.icmp {
        return Some((FirewallReject, High));
    }
    if f.rst_out || f.send_reset {
        return Some(match drop {
            Some("NETFILTER_DROP") if !f.send_reset => (FirewallReject, High),
            _ if f.send_reset || drop == Some("NO_SOCKET") => (NoListener, High),
            // A RST and no word from the kernel: the packets alone say "closed port".
            _ => (NoListener, Medium),
        });
    }
    match drop {
        Some("NO_SOCKET") => return Some((NoListener, High)),
        Some("NETFILTER_DROP") => return Some((FirewallDrop, High)),
        Some(_) => return Some((KernelDrop, High)),
        None => {}
    }
    if let Some(overflow) = f.listen_overflow {
        if f.synack == 0 && f.synack_retrans == 0 {
            return Some((
                ListenOverflow,
                if overflow.queue.is_some() {
                    High
                } else {
                    Medium
                },
            ));
        }
    }
    if !timed_out {
        return None;
    }
    // Retransmitted SYN-ACKs: seen by the kernel, or on the wire (a capture).
    if f.synack_retrans > 0 || f.synack >= 2 {
        return Some((SynackUnacked, High));
    }
    if f.synack > 0 {
        return Some((SynackUnacked, Medium));
    }
    Some((SynUnanswered, Medium))
}

#[cfg(test)]
#[path = "diagnose_tests.rs"]
mod tests;
