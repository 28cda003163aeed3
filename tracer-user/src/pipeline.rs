//! The one pipeline both sources feed: events in, decisions on the source's
//! clock, lines out. It owns the diagnoser (configured from the settings),
//! the sink, the counters and the optional evidence file and cert checks;
//! [`crate::run`] adds only signals, the ring buffer and timers, and
//! [`crate::analyze`] only the file, the capture clock and its inconclusive
//! lines.

use std::time::Duration;

use crate::{
    certcheck::watch::CertWatch,
    cli::{EventsMode, Settings},
    clock::WallClock,
    diagnose::{
        self,
        finding::{Cause, EvidenceKind},
        Diagnoser, Pending,
    },
    output::{
        line::{Line, Source},
        lines,
        pcap::PcapEvidence,
        sink::Sink,
        summary::{self, Counts, Extra},
    },
    source::{
        event::{Event, FlowEvent, ListenOverflow},
        kernel::listeners::Listeners,
    },
};

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The diagnoser's settings; `payload`: whether payload events will come.
pub fn diag_config(s: &Settings, payload: bool) -> diagnose::Config {
    diagnose::Config {
        syn_timeout_ns: duration_ns(s.syn_timeout),
        settle_ns: duration_ns(s.settle),
        max_flows: s.max_flows,
        response_timeout_ns: duration_ns(s.response_timeout),
        ack_timeout_ns: duration_ns(s.ack_timeout),
        payload,
        keep_path: s.show_path,
        ..diagnose::Config::default()
    }
}

/// Events in, lines out.
pub struct Pipeline {
    diag: Diagnoser,
    sink: Sink,
    clock: WallClock,
    source: Source,
    all_events: bool,
    /// What the summary reports of the source and the sink.
    pub counts: Counts,
    /// `--write-pcap`.
    evidence: Option<PcapEvidence>,
    /// `--check-certs`.
    certs: Option<CertWatch>,
    /// Live: who does listen, for `no_listener` findings.
    listeners: Option<Listeners>,
}

impl Pipeline {
    /// A pipeline writing to stdout; `payload`: whether the source delivers
    /// payload bytes (the kernel's snapshots may be turned off).
    pub fn new(s: &Settings, source: Source, clock: WallClock, payload: bool) -> Self {
        Self {
            diag: Diagnoser::new(diag_config(s, payload)),
            sink: Sink::stdout(s.format, s.output_buffer),
            clock,
            source,
            all_events: s.events == EventsMode::All,
            counts: Counts::default(),
            evidence: None,
            certs: None,
            listeners: (source == Source::Kernel).then(Listeners::default),
        }
    }

    /// Write the packets of every connection that ends in a finding.
    #[must_use]
    pub fn with_evidence(mut self, evidence: Option<PcapEvidence>) -> Self {
        self.evidence = evidence;
        self
    }

    /// Check the certificate of every new server name.
    #[must_use]
    pub fn with_cert_checks(mut self, certs: Option<CertWatch>) -> Self {
        self.certs = certs;
        self
    }

    pub fn clock(&self) -> &WallClock {
        &self.clock
    }

    /// A line that must not be dropped (start): waits for room.
    pub fn emit_wait(&self, line: &Line) {
        self.sink.emit_wait(line);
    }

    /// A line that may be dropped (and counted) when the output is slow.
    pub fn emit(&self, line: &Line) {
        self.sink.emit(line);
    }

    /// The reader of the output went away (broken pipe).
    pub fn is_closed(&self) -> bool {
        self.sink.is_closed()
    }

    /// One event of a connection.
    pub fn on_event(&mut self, ev: FlowEvent) {
        self.counts.events_received += 1;
        if self.all_events {
            let what = EvidenceKind::Flow(ev.kind.clone());
            let ts = self.clock.rfc3339(ev.ts_ns);
            self.sink
                .emit(&lines::event(ts, self.source, what, Some(ev.flow)));
        }
        self.diag.on_event(&Event::Flow(ev));
    }

    /// The events a quiet flow's history stands for: one kernel event
    /// (event lines are for `--events all`, which keeps every flow loud);
    /// its request's first bytes only when payload events are wanted.
    pub fn on_history(&mut self, events: Vec<FlowEvent>, payload: bool) {
        self.counts.events_received += 1;
        let Some(flow) = events.first().map(|e| e.flow) else {
            return;
        };
        for ev in events {
            if payload || !matches!(ev.kind, crate::source::event::FlowEventKind::Payload { .. }) {
                self.diag.on_event(&Event::Flow(ev));
            }
        }
        self.diag.replayed(&flow);
    }

    /// A quiet TLS connection's `ClientHello` (`--check-certs`): its
    /// server name, for the checks; the connection stays the kernel's.
    pub fn on_hello(&mut self, flow: &crate::source::event::Flow, hello: &[u8]) {
        self.counts.events_received += 1;
        self.diag.on_hello(flow, hello);
    }

    /// A kernel record that could not be decoded: counted, the first logged.
    pub fn undecodable(&mut self, e: &dyn std::fmt::Display) {
        self.counts.events_received += 1;
        if self.counts.decode_errors == 0 {
            tracing::warn!("undecodable kernel record: {e}");
        }
        self.counts.decode_errors += 1;
    }

    /// A payload event: not counted as a kernel event, never an event line.
    pub fn on_payload(&mut self, ev: FlowEvent) {
        self.diag.on_event(&Event::Flow(ev));
    }

    /// The host's listen-overflow counter rose.
    pub fn on_overflow(&mut self, o: ListenOverflow) {
        if self.all_events {
            let what = EvidenceKind::ListenOverflowCounter {
                count: o.count,
                queue: o.queues.first().copied(),
            };
            let ts = self.clock.rfc3339(o.ts_ns);
            self.sink.emit(&lines::event(ts, self.source, what, None));
        }
        self.diag.on_event(&Event::ListenOverflow(o));
    }

    /// Keep a kernel snapshot for `--write-pcap`.
    pub fn keep_snapshot(&mut self, snap: crate::source::kernel::records::PacketSnap) {
        if let Some(e) = &mut self.evidence {
            e.add(snap);
        }
    }

    /// What the kernel counted of quiet connections, at the end of a run.
    pub fn add_kernel_counts(&mut self, k: crate::output::line::InKernel, hist: &[Vec<u64>]) {
        self.diag.add_kernel_counts(
            k.handshakes,
            (k.requests, k.tls_requests, k.http2_connections),
            hist,
        );
        self.counts.in_kernel = Some(k);
    }

    /// The kernel lost `lost_total` records so far: say so once per rise.
    pub fn report_loss(&mut self, lost_total: u64, now: u64) {
        if lost_total > self.counts.events_lost {
            let ts = self.clock.rfc3339(now);
            self.sink.emit(&lines::loss(
                ts,
                lost_total - self.counts.events_lost,
                lost_total,
            ));
            self.counts.events_lost = lost_total;
        }
    }

    /// Let the diagnoser decide what is due at `now` and write the findings
    /// (and their packets, with `--write-pcap`) and finished cert checks.
    pub fn decide(&mut self, now: u64) {
        for f in self.diag.tick(now) {
            let listeners = match (&mut self.listeners, f.cause) {
                (Some(l), Cause::NoListener) => l.on(f.flow.origin_port, now),
                _ => None,
            };
            self.sink.emit(&lines::finding(
                &f,
                self.clock.rfc3339(f.ts_ns),
                self.source,
                listeners.as_deref(),
            ));
            if let Some(e) = &mut self.evidence {
                if let Err(err) = e.write_flow(&f.flow) {
                    tracing::warn!("--write-pcap: {err:#}; no more packets are written");
                    self.evidence = None;
                }
            }
        }
        if let Some(e) = &mut self.evidence {
            e.expire(now);
        }
        if let Some(c) = &mut self.certs {
            for (addr, port, sni) in self.diag.take_new_snis() {
                c.saw(addr, port, &sni);
            }
            for check in c.finished() {
                self.sink.emit(&check.to_line(self.clock.rfc3339(now)));
            }
        }
    }

    /// The source has no more to give: decide at `now`, and return the
    /// connections still waiting (oldest first). Open healthy connections
    /// count in the latency percentiles from here on.
    pub fn settle(&mut self, now: u64) -> Vec<Pending> {
        self.diag.end();
        self.decide(now);
        let pending = self.diag.pending_flows();
        self.diag.count_open_healthy();
        self.counts.pending_at_exit = pending.len() as u64;
        pending
    }

    /// Write the summary (with `extra`, the source's own parts, and the
    /// evidence file's report), after the last cert checks; then close the
    /// output.
    pub fn finish(mut self, now: u64, mut extra: Extra) {
        self.counts.lines_dropped = self.sink.dropped();
        let ts = self.clock.rfc3339(now);
        if self.source == Source::Capture {
            extra.source = Some(Source::Capture);
        }
        extra.pcap = self.evidence.take().map(PcapEvidence::finish);
        let line = summary::summary(self.diag.stats(), &self.counts, ts.clone(), extra);
        if let Some(c) = self.certs.take() {
            // Checks still running when the agent stops are worth their few seconds.
            for check in c.finish(Duration::from_secs(6)) {
                self.sink.emit(&check.to_line(ts.clone()));
            }
        }
        self.sink.emit_wait(&line);
        self.sink.finish();
    }

    /// Close the output without a summary (a capture that could not be read).
    pub fn abandon(self) {
        self.sink.finish();
    }
}
