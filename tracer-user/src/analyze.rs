//! `origin-tracer analyze FILE`: a capture through the same diagnoser as the
//! live agent, on the capture's own clock, without root. A connection still
//! waiting when the capture ends is inconclusive, not timed out.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::{json, Value};

use crate::{
    capture::{decode, packets::Packetizer, reader},
    cli::{EventsMode, Settings},
    clock::WallClock,
    diagnose::{self, Diagnoser},
    event::Event,
    finding::{evidence_fields, flow_json, Evidence, EvidenceKind, SCHEMA_VERSION},
    report,
    sink::Sink,
};

/// Decide at most this often in capture time (the live agent ticks every 50 ms).
const TICK_NS: u64 = 50_000_000;
const SOURCE: &str = "capture";

/// What the capture held, for the summary.
#[derive(Default)]
struct Tally {
    skipped: BTreeMap<&'static str, u64>,
    events: u64,
    first_ns: Option<u64>,
    last_ns: u64,
}

fn start_line(s: &Settings, file: &str) -> Value {
    json!({
        "type": "start",
        "schema_version": SCHEMA_VERSION,
        "ts": crate::clock::WallClock::new().rfc3339(crate::clock::monotonic_ns()),
        "source": SOURCE,
        "capture_file": file,
        "version": env!("CARGO_PKG_VERSION"),
        "kernel": crate::kernel::kernel_release(),
        "attach_mode": "none",
        "interfaces": [],
        "ports": s.ports,
        "edge_prefixes": {"ipv4": s.ranges.v4().count(), "ipv6": s.ranges.v6().count()},
        "all_sources": s.all_sources,
        "syn_timeout_ms": u64::try_from(s.syn_timeout.as_millis()).unwrap_or(u64::MAX),
        "response_timeout_ms": u64::try_from(s.response_timeout.as_millis()).unwrap_or(u64::MAX),
        "probes": [],
        "stale_removed": [],
    })
}

fn inconclusive_line(p: &diagnose::Pending, end_ns: u64, s: &Settings, clock: &WallClock) -> Value {
    let watched_ms = end_ns.saturating_sub(p.waiting_since_ns) / 1_000_000;
    let (needed, what, flag) = if p.for_response {
        (s.response_timeout, "its request", "--response-timeout")
    } else {
        (s.syn_timeout, "its first SYN", "--syn-timeout")
    };
    let needed_ms = u64::try_from(needed.as_millis()).unwrap_or(u64::MAX);
    json!({
        "type": "inconclusive",
        "schema_version": SCHEMA_VERSION,
        "ts": clock.rfc3339(end_ns),
        "source": SOURCE,
        "flow": flow_json(&p.flow),
        "watched_ms": watched_ms,
        "needed_ms": needed_ms,
        "evidence": p.evidence.iter().map(Evidence::to_json).collect::<Vec<_>>(),
        "reason": format!(
            "the capture ends {watched_ms} ms after {what}, before {flag} ({needed_ms} ms): no verdict"
        ),
    })
}

/// Analyze `file`; the findings, inconclusive connections and the summary go to stdout.
pub fn run(s: &Settings, file: &std::path::Path) -> Result<()> {
    let clock = WallClock::with_offset(0); // capture timestamps are Unix time already
    let sink = Sink::stdout(s.format, s.output_buffer);
    let name = file.display().to_string();
    let settle_ns = u64::try_from(s.settle.as_nanos()).unwrap_or(u64::MAX);
    let mut diag = Diagnoser::new(crate::run::diag_config(s, true));
    let mut packets = Packetizer::new(
        s.ranges.clone(),
        s.all_sources,
        &s.ports,
        tracer_ebpf::FLOW_CAPACITY as usize,
    );
    let mut tally = Tally::default();
    let mut next_tick = 0u64;
    let all_events = s.events == EventsMode::All;
    let emit_findings = |diag: &mut Diagnoser, now: u64| {
        for f in diag.tick(now) {
            sink.emit(&f.to_json(&clock.rfc3339(f.ts_ns), SOURCE));
        }
    };
    let mut started = false;
    let read = reader::read(file, |pkt| {
        if !started {
            sink.emit_wait(&start_line(s, &name));
            started = true;
        }
        // Packets without a timestamp (pcapng simple packets) keep the last one.
        let ts = if pkt.ts_ns == 0 {
            tally.last_ns
        } else {
            pkt.ts_ns.max(tally.last_ns)
        };
        tally.first_ns.get_or_insert(ts);
        tally.last_ns = ts;
        // Decide what was due before this packet, as the live agent would have.
        if ts >= next_tick {
            emit_findings(&mut diag, ts);
            next_tick = ts + TICK_NS;
        }
        match decode::decode(pkt.link, pkt.data) {
            Err(skip) => *tally.skipped.entry(skip.as_str()).or_default() += 1,
            Ok(None) => {}
            Ok(Some(d)) => {
                for ev in packets.on_packet(ts, &d) {
                    tally.events += 1;
                    if all_events {
                        sink.emit(&event_line(&ev, &clock));
                    }
                    diag.on_event(&Event::Flow(ev));
                }
            }
        }
    });
    let end = match read {
        Ok(end) => end,
        Err(e) => {
            sink.finish();
            return Err(e.into());
        }
    };
    if !started {
        sink.emit_wait(&start_line(s, &name));
    }
    // No more evidence can come: what waited only for the settle time is
    // decided; what waits for --syn-timeout beyond the capture is inconclusive.
    emit_findings(&mut diag, tally.last_ns + settle_ns);
    let pending = diag.pending_flows();
    diag.count_open_healthy();
    for p in &pending {
        sink.emit(&inconclusive_line(p, tally.last_ns, s, &clock));
    }
    let counts = report::Counts {
        duration_ms: tally
            .last_ns
            .saturating_sub(tally.first_ns.unwrap_or(tally.last_ns))
            / 1_000_000,
        events_received: tally.events,
        pending_at_exit: pending.len() as u64,
        lines_dropped: sink.dropped(),
        ..report::Counts::default()
    };
    let mut summary = report::summary(&diag, &counts, &clock.rfc3339(tally.last_ns + settle_ns));
    summary["source"] = json!(SOURCE);
    summary["capture"] = json!({
        "file": name,
        "packets": end.packets,
        "packets_skipped": tally.skipped,
        "damage": end.damage,
    });
    sink.emit_wait(&summary);
    sink.finish();
    if let Some(why) = &end.damage {
        eprintln!(
            "origin-tracer: {name}: {why}; analysed the {} packets before it",
            end.packets
        );
    }
    Ok(())
}

fn event_line(ev: &crate::event::FlowEvent, clock: &WallClock) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("type".into(), json!("event"));
    m.insert("schema_version".into(), json!(SCHEMA_VERSION));
    m.insert("ts".into(), json!(clock.rfc3339(ev.ts_ns)));
    m.insert("source".into(), json!(SOURCE));
    evidence_fields(&EvidenceKind::Flow(ev.kind.clone()), &mut m);
    m.insert("flow".into(), flow_json(&ev.flow));
    Value::Object(m)
}
