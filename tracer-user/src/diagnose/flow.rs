//! One connection's state in the diagnoser and how each event moves it: its
//! phase, what the kernel and the payload said, and the two decisions (in
//! its handshake, after it) that turn that state into a verdict.

use super::{
    finding::{Cause, Confidence, Evidence, EvidenceKind, PayloadEvent},
    payload::App,
    rules::{classify, classify_app, is_syn},
    Config, Stats, Timing,
};
use crate::source::{
    event::FlowEvent,
    event::FlowEventKind,
    names::{DropReason, TcpState},
};

/// A connection's application layer, allocated when first written: the
/// flows of a SYN flood never get one, and the table holds `--max-flows`
/// of them (an `App` is ~500 bytes, the rest of a flow ~300).
#[derive(Debug, Default)]
pub(super) struct LazyApp(Option<Box<App>>);

impl std::ops::Deref for LazyApp {
    type Target = App;
    fn deref(&self) -> &App {
        static EMPTY: std::sync::OnceLock<App> = std::sync::OnceLock::new();
        self.0
            .as_deref()
            .unwrap_or_else(|| EMPTY.get_or_init(App::default))
    }
}

impl std::ops::DerefMut for LazyApp {
    fn deref_mut(&mut self) -> &mut App {
        self.0.get_or_insert_with(Box::default)
    }
}

/// Evidence of a full accept queue.
#[derive(Clone, Copy, Debug)]
pub(super) struct Overflow {
    pub(super) queue: Option<(u16, u32)>,
}

/// Where a connection is, from its first SYN to its verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Phase {
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
pub(super) struct FlowState {
    /// Initial sequence number of the edge's SYN.
    pub(super) isn: Option<u32>,
    pub(super) first_ns: u64,
    pub(super) last_ns: u64,
    pub(super) evidence: Vec<Evidence>,
    pub(super) synack: u32,
    pub(super) synack_retrans: u32,
    pub(super) phase: Phase,
    pub(super) rst_out: bool,
    pub(super) send_reset: bool,
    pub(super) icmp: bool,
    /// Reason the kernel gave for dropping the edge's SYN (or handshake ACK).
    pub(super) drop_in: Option<DropReason>,
    /// Reason the kernel gave for dropping the origin's SYN-ACK.
    pub(super) drop_out: Option<DropReason>,
    /// The overflow counter rose while the SYN waited; with the listener's
    /// (port, accept queue) when it could be read.
    pub(super) listen_overflow: Option<Overflow>,
    pub(super) decide_at: Option<u64>,
    /// When the first SYN-ACK left.
    pub(super) synack_ns: Option<u64>,
    /// After the handshake: what the payload said, and who closed.
    pub(super) app: LazyApp,
    pub(super) fin_out: bool,
    pub(super) rst_out_late: bool,
    /// Sequence numbers of the origin's first FIN and first RST after the
    /// handshake, and its SYN-ACK's: did it send bytes that were not seen?
    pub(super) fin_out_seq: Option<u32>,
    pub(super) rst_out_seq: Option<u32>,
    pub(super) origin_isn: Option<u32>,
    pub(super) fin_in: bool,
    pub(super) rst_in: bool,
    /// The edge's request began after the origin's FIN: the two crossed
    /// (the origin's keep-alive timeout ran out as the edge reused it).
    pub(super) request_after_fin_out: bool,
    /// The kernel dropped an edge segment of the current request, and why.
    pub(super) data_drop: Option<DropReason>,
    /// The edge closed (FIN or RST) before the origin did, while the origin
    /// was silent: whatever the origin does after, the edge had given up.
    pub(super) edge_closed_first: bool,
    /// When the edge closed.
    pub(super) edge_closed_ns: Option<u64>,
    /// Latencies measured on this connection, counted once it is healthy.
    pub(super) latency: Latency,
    /// Evidence items of the handshake: a later turn's evidence replaces
    /// what came after them.
    pub(super) handshake_evidence: usize,
    /// The kernel followed it quietly first and counted its handshake.
    pub(super) kernel_counted: bool,
}

/// One connection's latencies (µs), for [`Timing`].
#[derive(Debug, Default)]
pub(super) struct Latency {
    pub(super) syn_to_synack: Option<u64>,
    pub(super) client_hello_to_server_hello: Option<u64>,
    pub(super) request_to_first_byte: Option<u64>,
    pub(super) counted: bool,
}

impl Latency {
    /// Count this healthy connection's latencies, once.
    pub(super) fn commit(&mut self, timing: &mut Timing) {
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
    pub(super) fn settled(&self) -> bool {
        matches!(self.phase, Phase::Healthy | Phase::Reported)
    }

    /// Its handshake completed (whatever came after), and no finding named it.
    pub(super) fn established_unreported(&self) -> bool {
        matches!(self.phase, Phase::Established | Phase::Healthy)
    }

    pub(super) fn established(&self) -> bool {
        self.phase == Phase::Established
    }

    /// Still waiting for something that may end in a timeout: the handshake,
    /// or a response to a request.
    pub(super) fn waiting(&self) -> bool {
        match self.phase {
            Phase::Handshake => true,
            Phase::Established => self.response_due().is_some(),
            Phase::Healthy | Phase::Reported => false,
        }
    }

    /// The origin neither closed nor sent a byte since the current request
    /// (a TLS `close_notify` is a byte: the edge's close may answer it).
    pub(super) fn origin_silent(&self) -> bool {
        !(self.fin_out || self.rst_out_late) && self.app.out_after_request == 0
    }

    /// The current request shows that the origin did not take it: the edge
    /// sent it again, or the kernel dropped it on the way in.
    pub(super) fn unacked(&self) -> bool {
        // One resend may be a tail-loss probe; two are the edge's RTO.
        self.app.in_retransmits >= 2 || self.data_drop.is_some()
    }

    /// When a request without a response byte runs out of time.
    pub(super) fn response_due(&self) -> Option<u64> {
        match (self.app.request_ns, self.app.first_out_ns) {
            (Some(t), None) => Some(t),
            _ => None,
        }
    }

    /// The evidence in time order (what the kernel kept of a quiet
    /// connection arrives at once, some of it stamped later than what
    /// follows it).
    pub(super) fn timeline(&self) -> Vec<Evidence> {
        let mut v = self.evidence.clone();
        v.sort_by_key(|e| e.t_us);
        v
    }

    pub(super) fn push(&mut self, ts_ns: u64, what: EvidenceKind, max: usize) {
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

/// An event of a connection still in its handshake.
pub(super) fn during_handshake(f: &mut FlowState, e: &FlowEvent, cfg: &Config) {
    let decide_soon = Some(e.ts_ns + cfg.settle_ns);
    match &e.kind {
        // Payload before the handshake completed (a capture may order
        // the edge's ACK and first data closely): it counts as completed.
        // So does the edge's FIN, which proves it took the SYN-ACK (a
        // capture that keeps only SYN, FIN and RST segments lacks the ACK);
        // the FIN is then the established connection's.
        // And the socket's own move to ESTABLISHED.
        FlowEventKind::AckIn
        | FlowEventKind::Payload { .. }
        | FlowEventKind::FinIn
        | FlowEventKind::StateChange {
            from: TcpState::SynRecv,
            to: TcpState::Established,
        } => f.phase = Phase::Established,
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
pub(super) struct Decision {
    /// When its evidence was complete (not when the caller ticked).
    pub(super) at_ns: u64,
    pub(super) cause: Cause,
    pub(super) confidence: Confidence,
    /// What the hint should name (a TLS alert, a header size, how records
    /// were told apart); else the kernel's drop reason is used.
    pub(super) detail: Option<String>,
}

/// A handshake whose time has come.
pub(super) fn decide_handshake(
    f: &mut FlowState,
    now_ns: u64,
    syn_timeout_ns: u64,
) -> Option<Decision> {
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

/// How close to the response deadline an edge's close counts as its own
/// response timer running out (at most a tenth of the timeout).
const EDGE_TIMER_SLACK_NS: u64 = 2_000_000_000;

/// After the handshake: a decisive payload fact, a close, or a request
/// that ran out of time.
pub(super) fn decide_after_handshake(
    f: &mut FlowState,
    now_ns: u64,
    cfg: &Config,
) -> Option<Decision> {
    // A request the origin did not acknowledge (resent, or dropped on the
    // way in) runs out at the ack timeout; any other at the response timeout.
    let ack_deadline = f
        .response_due()
        .filter(|_| f.unacked())
        .map(|t| t + cfg.ack_timeout_ns);
    let ack_timed_out = ack_deadline.is_some_and(|d| now_ns >= d);
    let response_deadline = f.response_due().map(|t| t + cfg.response_timeout_ns);
    // An edge that closes within 2 s of the deadline ran out of the same
    // time (Cloudflare's 100 s timer counts from its own send).
    let slack = EDGE_TIMER_SLACK_NS.min(cfg.response_timeout_ns / 10);
    let edge_timer = response_deadline
        .zip(f.edge_closed_ns)
        .is_some_and(|(d, closed)| closed + slack >= d);
    let timed_out = response_deadline.is_some_and(|d| now_ns >= d) || edge_timer;
    let deadline = match (ack_deadline, response_deadline) {
        (Some(a), Some(r)) => Some(a.min(r)),
        (a, r) => a.or(r),
    };
    let due = f.decide_at.is_some_and(|t| now_ns >= t);
    if !timed_out && !ack_timed_out && !due {
        return None;
    }
    let decided_at = match (f.decide_at, deadline) {
        (Some(t), _) if due => t.min(now_ns),
        (_, Some(d)) => d.min(now_ns),
        _ => now_ns,
    };
    f.decide_at = None;
    if let Some((cause, confidence, detail)) = classify_app(f, timed_out, ack_timed_out) {
        return Some(Decision {
            at_ns: decided_at,
            cause,
            confidence,
            detail,
        });
    }
    // Closed without a cause: nothing more to wait for. (An answered turn
    // waits for the connection's next request.)
    if f.fin_out || f.rst_out_late || f.fin_in || f.rst_in {
        f.phase = Phase::Healthy;
    }
    None
}

/// [`after_handshake`], noting a server name its `ClientHello` revealed.
pub(super) fn after_handshake_noting_sni(
    f: &mut FlowState,
    e: &FlowEvent,
    cfg: &Config,
    snis: &mut Vec<(std::net::IpAddr, u16, String)>,
    stats: &mut Stats,
) {
    let timing = &mut stats.timing;
    let had = f.app.client_hello.is_some();
    let was_opaque = f.app.opaque;
    if let FlowEventKind::Payload { outbound, .. } = &e.kind {
        if f.app.starts_turn(*outbound, e.seq) {
            // The answered turn was healthy (an unhealthy one has a
            // finding and is settled): count its latency, forget its
            // evidence.
            if let Some(us) = f.latency.request_to_first_byte.take() {
                timing.request_to_first_byte.add(us);
            }
            if f.app.requests == 1 {
                // A TLS handshake's evidence stays with the connection.
                f.handshake_evidence = f
                    .evidence
                    .iter()
                    .position(|ev| {
                        matches!(
                            ev.what,
                            EvidenceKind::Payload {
                                event: PayloadEvent::RequestIn,
                                ..
                            }
                        )
                    })
                    .unwrap_or(f.evidence.len());
            }
            // The origin's FIN before this request is part of its story.
            let fin = f.evidence[f.handshake_evidence.min(f.evidence.len())..]
                .iter()
                .find(|ev| matches!(ev.what, EvidenceKind::Flow(FlowEventKind::FinOut)))
                .cloned();
            f.evidence.truncate(f.handshake_evidence);
            f.evidence.extend(fin);
            f.request_after_fin_out = f.fin_out;
            f.data_drop = None;
        }
    }
    if after_handshake(f, e, cfg) {
        stats.encrypted_responses += u64::from(f.app.is_tls());
        // A 5xx is counted by its status instead.
        stats.healthy_requests += u64::from(f.app.error_status.is_none() && f.app.requests > 0);
    }
    stats.per_request_off.count(was_opaque, &f.app);
    if !had {
        if let Some(sni) = f.app.client_hello.as_ref().and_then(|c| c.sni.clone()) {
            if snis.len() < 1_024 {
                snis.push((e.flow.origin, e.flow.origin_port, sni));
            }
        }
    }
}

/// An event of an established connection; true when it answered a turn.
fn after_handshake(f: &mut FlowState, e: &FlowEvent, cfg: &Config) -> bool {
    let decide_soon = Some(e.ts_ns + cfg.settle_ns);
    match &e.kind {
        FlowEventKind::Payload {
            outbound,
            ack,
            bytes,
        } => {
            let had_server_hello = f.app.server_hello.is_some();
            let had_response = f.app.first_out_ns.is_some();
            let had_request = f.app.request_ns.is_some();
            let facts = f
                .app
                .on_payload(e.ts_ns, *outbound, (e.seq, *ack), bytes, cfg.keep_path);
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
            } else if f.app.records.lost {
                f.phase = Phase::Healthy;
            } else if f.app.response_ok() || f.app.tls_answered() {
                // This turn worked; the connection may carry more.
                return f.app.rest();
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
            f.edge_closed_first |= f.origin_silent();
            f.edge_closed_ns.get_or_insert(e.ts_ns);
            f.decide_at = decide_soon;
        }
        FlowEventKind::RstIn => {
            f.rst_in = true;
            f.edge_closed_first |= f.origin_silent();
            f.edge_closed_ns.get_or_insert(e.ts_ns);
            f.decide_at = decide_soon;
        }
        FlowEventKind::KernelDrop {
            reason,
            outbound: false,
            ..
        } if *reason == DropReason::NetfilterDrop => {
            // Other reasons (a duplicate's TCP_OLD_DATA ...) prove nothing.
            f.data_drop = Some(reason.clone());
        }
        _ => {}
    }
    false
}
