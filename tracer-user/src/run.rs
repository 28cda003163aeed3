//! The live agent: start-up checks, attach, then one loop that moves kernel
//! events through the diagnoser to the sink until a signal, `--duration` or a
//! closed output ends it; then detach and write the summary.

use std::{collections::HashMap, time::Duration};

use anyhow::{Context, Result};
use serde_json::{json, Value};
use tokio::{
    io::{unix::AsyncFd, Interest},
    signal::unix::{signal, SignalKind},
    time::MissedTickBehavior,
};
use tracer_ebpf::counter;

use crate::{
    capture::decode,
    certwatch::CertWatch,
    cli::{EventsMode, Settings},
    clock::{monotonic_ns, WallClock},
    diagnose::{self, Diagnoser},
    event::{self, Event},
    evidence_pcap::PcapEvidence,
    finding::{evidence_fields, flow_json, EvidenceKind, SCHEMA_VERSION},
    kernel::{self, attach, btf::Btf, procnet::OverflowPoller},
    report,
    sink::Sink,
};

const TICK: Duration = Duration::from_millis(50);
const POLL_COUNTERS_NS: u64 = 200_000_000;
const CHECK_LOSS_NS: u64 = 1_000_000_000;

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Run the agent until it is told to stop.
pub fn run(s: Settings) -> Result<()> {
    kernel::preflight()?;
    let ifaces = kernel::interfaces(&s.ifaces)?;
    let btf = Btf::from_sys_fs().context("reading the kernel's BTF")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(live(s, &ifaces, btf))
}

#[derive(Default)]
struct Totals {
    events: u64,
    decode_errors: u64,
    lost_reported: u64,
}

async fn live(s: Settings, ifaces: &[attach::Iface], btf: Btf) -> Result<()> {
    // Catch SIGINT/SIGTERM before attaching: a signal during start-up then
    // ends the run through the same clean detach.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut kernel = attach::attach(&s, ifaces, &btf)?;
    drop(btf);
    assert!(
        std::env::var_os("ORIGIN_TRACER_TEST_PANIC").is_none_or(|v| v != "after-attach"),
        "ORIGIN_TRACER_TEST_PANIC=after-attach: testing cleanup after a panic"
    );
    let clock = WallClock::new();
    let started = monotonic_ns();
    let sink = Sink::stdout(s.format, s.output_buffer);
    let mut poller = OverflowPoller::new(&s.ports);
    sink.emit_wait(&start_line(
        &s,
        ifaces,
        &kernel,
        &poller,
        &clock.rfc3339(started),
    ));

    let ring = kernel.events.take().context("ring buffer already taken")?;
    // SAFETY: the AsyncFd owns the ring buffer, so its fd stays open for as
    // long as it is registered.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("watching the ring buffer: {e}"))?;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stop_at = s.duration.map(|d| tokio::time::Instant::now() + d);
    let evidence = match &s.write_pcap {
        None => None,
        Some(path) => {
            let keep = s.syn_timeout + Duration::from_secs(30);
            Some(PcapEvidence::create(
                path,
                s.write_pcap_max_mib << 20,
                keep,
                clock,
            )?)
        }
    };
    let certs = if s.check_certs {
        Some(CertWatch::start(s.cert_check_interval)?)
    } else {
        None
    };
    let mut p = Pipeline {
        certs,
        diag: Diagnoser::new(diag_config(&s, !s.no_payload)),
        continuation: HashMap::new(),
        payload: !s.no_payload,
        sink,
        clock,
        all_events: s.events == EventsMode::All,
        totals: Totals::default(),
        evidence,
    };
    let (mut last_poll, mut last_loss_check) = (started, started);

    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            () = async { tokio::time::sleep_until(stop_at.unwrap_or_else(tokio::time::Instant::now)).await },
                if stop_at.is_some() => break,
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                p.drain(guard.get_inner_mut(), &kernel.names);
                guard.clear_ready();
            }
            _ = tick.tick() => {
                // A wake-up lost between draining and clearing readiness
                // costs at most one tick.
                p.drain(ring.get_mut(), &kernel.names);
                let now = monotonic_ns();
                if now - last_poll >= POLL_COUNTERS_NS {
                    last_poll = now;
                    if let Some(o) = poller.poll(now) {
                        if p.all_events {
                            p.sink.emit(&overflow_event_line(&o, &p.clock));
                        }
                        p.diag.on_event(&Event::ListenOverflow(o));
                    }
                }
                p.decide(now);
                if now - last_loss_check >= CHECK_LOSS_NS {
                    last_loss_check = now;
                    report_loss(&kernel, &p.sink, &p.clock, now, &mut p.totals);
                }
                if p.sink.is_closed() {
                    break;
                }
            }
        }
    }

    shut_down(p, kernel, ring, started);
    Ok(())
}

/// Take what the kernel still holds, detach, and write the summary.
fn shut_down(
    mut p: Pipeline,
    mut kernel: attach::Kernel,
    mut ring: AsyncFd<aya::maps::RingBuf<aya::maps::MapData>>,
    started: u64,
) {
    // Whatever the kernel already handed over still counts.
    p.drain(ring.get_mut(), &kernel.names);
    let now = monotonic_ns();
    p.decide(now);
    p.diag.count_open_healthy();
    report_loss(&kernel, &p.sink, &p.clock, now, &mut p.totals);
    let counters = kernel.counters();
    drop(ring);
    kernel.detach();
    if p.totals.decode_errors > 0 {
        tracing::warn!(
            "{} kernel records could not be decoded",
            p.totals.decode_errors
        );
    }
    let mut summary = summary_line(
        &p.diag,
        &p.totals,
        &counters,
        p.sink.dropped(),
        now - started,
        &p.clock.rfc3339(now),
    );
    if let Some(evidence) = p.evidence.take() {
        summary["pcap"] = evidence.finish();
    }
    if let Some(c) = p.certs.take() {
        // Checks still running when the agent stops are worth their few seconds.
        for check in c.finish(Duration::from_secs(6)) {
            p.sink.emit(&check.to_json(&p.clock.rfc3339(now)));
        }
    }
    p.sink.emit_wait(&summary);
    p.sink.finish();
}

/// The diagnoser's settings, shared with `analyze`.
pub fn diag_config(s: &Settings, payload: bool) -> diagnose::Config {
    diagnose::Config {
        syn_timeout_ns: duration_ns(s.syn_timeout),
        settle_ns: duration_ns(s.settle),
        max_flows: s.max_flows,
        response_timeout_ns: duration_ns(s.response_timeout),
        payload,
        keep_path: s.show_path,
        ..diagnose::Config::default()
    }
}

/// Kernel records in, lines out: the stages of the live agent after the ring buffer.
struct Pipeline {
    diag: Diagnoser,
    sink: Sink,
    clock: WallClock,
    all_events: bool,
    totals: Totals,
    /// `--write-pcap`.
    evidence: Option<PcapEvidence>,
    /// `--check-certs`.
    certs: Option<CertWatch>,
    /// Snapshots become payload events.
    payload: bool,
    /// Where the next chunk of a long packet continues: per (flow,
    /// outbound), (offset in the packet, sequence number there).
    continuation: HashMap<(event::Flow, bool), (u32, u32)>,
}

impl Pipeline {
    /// The TCP payload in a snapshot chunk, as a payload event.
    fn payload_event(&mut self, snap: &event::PacketSnap) -> Option<event::FlowEvent> {
        let key = (snap.flow, snap.outbound);
        let (seq, bytes) = if snap.offset == 0 {
            let link = if snap.l2_len == 14 {
                pcap_file::DataLink::ETHERNET
            } else {
                pcap_file::DataLink::RAW
            };
            let Ok(Some(d)) = decode::decode(link, &snap.data) else {
                return None;
            };
            let decode::Transport::Tcp { seq, payload, .. } = d.transport else {
                return None;
            };
            let end = u32::try_from(snap.data.len()).ok()?;
            let after = seq.wrapping_add(u32::try_from(payload.len()).ok()?);
            self.continuation.insert(key, (end, after));
            (seq, payload.to_vec())
        } else {
            let (at, seq) = self.continuation.remove(&key)?;
            if at != snap.offset {
                return None;
            }
            let end = snap.offset + u32::try_from(snap.data.len()).ok()?;
            self.continuation.insert(
                key,
                (end, seq.wrapping_add(u32::try_from(snap.data.len()).ok()?)),
            );
            (seq, snap.data.clone())
        };
        if self.continuation.len() > 65_536 {
            self.continuation.clear();
        }
        (!bytes.is_empty()).then_some(event::FlowEvent {
            ts_ns: snap.ts_ns,
            flow: snap.flow,
            kind: event::FlowEventKind::Payload {
                outbound: snap.outbound,
                bytes,
            },
            seq,
        })
    }

    /// Let the diagnoser decide what is due and write the findings (and
    /// their packets, with --write-pcap).
    fn decide(&mut self, now: u64) {
        for f in self.diag.tick(now) {
            self.sink
                .emit(&f.to_json(&self.clock.rfc3339(f.ts_ns), "kernel"));
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
                self.sink.emit(&check.to_json(&self.clock.rfc3339(now)));
            }
        }
    }

    fn drain(
        &mut self,
        ring: &mut aya::maps::RingBuf<aya::maps::MapData>,
        names: &event::KernelNames,
    ) {
        while let Some(item) = ring.next() {
            if event::is_snapshot(&item) {
                if let Ok(snap) = event::decode_snapshot(&item) {
                    if self.payload {
                        if let Some(ev) = self.payload_event(&snap) {
                            self.diag.on_event(&Event::Flow(ev));
                        }
                    }
                    if let Some(e) = &mut self.evidence {
                        e.add(snap);
                    }
                }
                continue;
            }
            self.totals.events += 1;
            match event::read_raw(&item).and_then(|raw| event::decode(&raw, names)) {
                Ok(ev) => {
                    if self.all_events {
                        let mut m = serde_json::Map::new();
                        m.insert("type".into(), json!("event"));
                        m.insert("schema_version".into(), json!(SCHEMA_VERSION));
                        m.insert("ts".into(), json!(self.clock.rfc3339(ev.ts_ns)));
                        m.insert("source".into(), json!("kernel"));
                        evidence_fields(&EvidenceKind::Flow(ev.kind.clone()), &mut m);
                        m.insert("flow".into(), flow_json(&ev.flow));
                        self.sink.emit(&Value::Object(m));
                    }
                    self.diag.on_event(&Event::Flow(ev));
                }
                Err(e) => {
                    if self.totals.decode_errors == 0 {
                        tracing::warn!("undecodable kernel record: {e}");
                    }
                    self.totals.decode_errors += 1;
                }
            }
        }
    }
}

fn overflow_event_line(o: &event::ListenOverflow, clock: &WallClock) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("type".into(), json!("event"));
    m.insert("schema_version".into(), json!(SCHEMA_VERSION));
    m.insert("ts".into(), json!(clock.rfc3339(o.ts_ns)));
    evidence_fields(
        &EvidenceKind::ListenOverflowCounter {
            count: o.count,
            queue: o.queues.first().copied(),
        },
        &mut m,
    );
    Value::Object(m)
}

fn report_loss(
    kernel: &attach::Kernel,
    sink: &Sink,
    clock: &WallClock,
    now: u64,
    totals: &mut Totals,
) {
    let lost = kernel.counters()[counter::RINGBUF_LOST as usize];
    if lost > totals.lost_reported {
        sink.emit(&json!({
            "type": "loss",
            "schema_version": SCHEMA_VERSION,
            "ts": clock.rfc3339(now),
            "events_lost": lost - totals.lost_reported,
            "events_lost_total": lost,
        }));
        totals.lost_reported = lost;
    }
}

fn start_line(
    s: &Settings,
    ifaces: &[attach::Iface],
    k: &attach::Kernel,
    poller: &OverflowPoller,
    ts: &str,
) -> Value {
    let mut probes: Vec<Value> = k
        .probes
        .iter()
        .map(|p| match &p.reason {
            None => json!({"name": p.name, "status": "attached"}),
            Some(r) => json!({"name": p.name, "status": "skipped", "reason": r}),
        })
        .collect();
    probes.push(if poller.available() {
        json!({"name": "proc:TcpExtListenOverflows", "status": "attached"})
    } else {
        json!({"name": "proc:TcpExtListenOverflows", "status": "skipped", "reason": "/proc/net/netstat has no TcpExt ListenOverflows"})
    });
    json!({
        "type": "start",
        "schema_version": SCHEMA_VERSION,
        "ts": ts,
        "version": env!("CARGO_PKG_VERSION"),
        "kernel": kernel::kernel_release(),
        "attach_mode": k.mode,
        "interfaces": ifaces.iter().map(|i| json!({"name": i.name, "ifindex": i.ifindex})).collect::<Vec<_>>(),
        "ports": s.ports,
        "edge_prefixes": {"ipv4": s.ranges.v4().count(), "ipv6": s.ranges.v6().count()},
        "all_sources": s.all_sources,
        "syn_timeout_ms": u64::try_from(s.syn_timeout.as_millis()).unwrap_or(u64::MAX),
        "response_timeout_ms": u64::try_from(s.response_timeout.as_millis()).unwrap_or(u64::MAX),
        "probes": probes,
        "stale_removed": k.stale_removed,
    })
}

fn summary_line(
    diag: &Diagnoser,
    totals: &Totals,
    counters: &[u64; counter::COUNT as usize],
    lines_dropped: u64,
    elapsed_ns: u64,
    ts: &str,
) -> Value {
    report::summary(
        diag,
        &report::Counts {
            duration_ms: elapsed_ns / 1_000_000,
            events_received: totals.events,
            events_lost: counters[counter::RINGBUF_LOST as usize],
            kernel_read_errors: counters[counter::READ_ERRORS as usize],
            flows_untracked: counters[counter::FLOW_INSERT_ERRORS as usize],
            pending_at_exit: diag.pending() as u64,
            lines_dropped,
        },
        ts,
    )
}
