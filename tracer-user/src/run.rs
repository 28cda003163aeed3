//! The live agent: start-up checks, attach, then one loop that moves kernel
//! events through the diagnoser to the sink until a signal, `--duration` or a
//! closed output ends it; then detach and write the summary.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use tokio::{
    io::{unix::AsyncFd, Interest},
    signal::unix::{signal, SignalKind},
    time::MissedTickBehavior,
};
use tracer_ebpf::counter;

use crate::{
    cli::{EventsMode, Settings},
    clock::{monotonic_ns, WallClock},
    diagnose::{self, Diagnoser},
    event::{self, Event},
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
    let mut diag = Diagnoser::new(diag_config(&s));
    let all_events = s.events == EventsMode::All;
    let mut totals = Totals::default();
    let (mut last_poll, mut last_loss_check) = (started, started);

    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            () = async { tokio::time::sleep_until(stop_at.unwrap_or_else(tokio::time::Instant::now)).await },
                if stop_at.is_some() => break,
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), &kernel.names, &mut diag, &sink, &clock, all_events, &mut totals);
                guard.clear_ready();
            }
            _ = tick.tick() => {
                // A wake-up lost between draining and clearing readiness
                // costs at most one tick.
                drain(ring.get_mut(), &kernel.names, &mut diag, &sink, &clock, all_events, &mut totals);
                let now = monotonic_ns();
                if now - last_poll >= POLL_COUNTERS_NS {
                    last_poll = now;
                    if let Some(o) = poller.poll(now) {
                        if all_events {
                            sink.emit(&overflow_event_line(&o, &clock));
                        }
                        diag.on_event(&Event::ListenOverflow(o));
                    }
                }
                decide(&mut diag, now, &sink, &clock);
                if now - last_loss_check >= CHECK_LOSS_NS {
                    last_loss_check = now;
                    report_loss(&kernel, &sink, &clock, now, &mut totals);
                }
                if sink.is_closed() {
                    break;
                }
            }
        }
    }

    // Whatever the kernel already handed over still counts.
    drain(
        ring.get_mut(),
        &kernel.names,
        &mut diag,
        &sink,
        &clock,
        all_events,
        &mut totals,
    );
    let now = monotonic_ns();
    decide(&mut diag, now, &sink, &clock);
    report_loss(&kernel, &sink, &clock, now, &mut totals);
    let counters = kernel.counters();
    drop(ring);
    kernel.detach();
    if totals.decode_errors > 0 {
        tracing::warn!(
            "{} kernel records could not be decoded",
            totals.decode_errors
        );
    }
    let summary = summary_line(
        &diag,
        &totals,
        &counters,
        sink.dropped(),
        now - started,
        &clock.rfc3339(now),
    );
    sink.emit_wait(&summary);
    sink.finish();
    Ok(())
}

fn diag_config(s: &Settings) -> diagnose::Config {
    diagnose::Config {
        syn_timeout_ns: duration_ns(s.syn_timeout),
        settle_ns: duration_ns(s.settle),
        max_flows: s.max_flows,
        ..diagnose::Config::default()
    }
}

/// Let the diagnoser decide what is due and write the findings.
fn decide(diag: &mut Diagnoser, now: u64, sink: &Sink, clock: &WallClock) {
    for f in diag.tick(now) {
        sink.emit(&f.to_json(&clock.rfc3339(f.ts_ns), "kernel"));
    }
}

fn drain(
    ring: &mut aya::maps::RingBuf<aya::maps::MapData>,
    names: &event::KernelNames,
    diag: &mut Diagnoser,
    sink: &Sink,
    clock: &WallClock,
    all_events: bool,
    totals: &mut Totals,
) {
    while let Some(item) = ring.next() {
        totals.events += 1;
        let decoded = event::read_raw(&item).and_then(|raw| event::decode(&raw, names));
        match decoded {
            Ok(ev) => {
                if all_events {
                    let mut m = serde_json::Map::new();
                    m.insert("type".into(), json!("event"));
                    m.insert("schema_version".into(), json!(SCHEMA_VERSION));
                    m.insert("ts".into(), json!(clock.rfc3339(ev.ts_ns)));
                    evidence_fields(&EvidenceKind::Flow(ev.kind.clone()), &mut m);
                    m.insert("flow".into(), flow_json(&ev.flow));
                    sink.emit(&Value::Object(m));
                }
                diag.on_event(&Event::Flow(ev));
            }
            Err(e) => {
                if totals.decode_errors == 0 {
                    tracing::warn!("undecodable kernel record: {e}");
                }
                totals.decode_errors += 1;
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
