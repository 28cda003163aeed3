//! `origin-tracer analyze FILE`: a capture through the same pipeline as the
//! live agent, on the capture's own clock, without root. A connection still
//! waiting when the capture ends is inconclusive, not timed out.

use std::collections::BTreeMap;

use crate::{
    cli::Settings,
    clock::{monotonic_ns, WallClock},
    output::{
        line::{CaptureReport, Source},
        lines::{self, Attached},
        summary::Extra,
    },
    pipeline::Pipeline,
    source::capture::{
        decode::{self, Skip},
        packets::Packetizer,
        reader,
    },
};
use anyhow::Result;

/// Decide at most this often in capture time (the live agent ticks every 50 ms).
const TICK_NS: u64 = 50_000_000;

/// The capture's clock and what it held that is not an event.
#[derive(Default)]
struct CaptureClock {
    first_ns: Option<u64>,
    last_ns: u64,
    next_tick: u64,
}

impl CaptureClock {
    /// A packet's time; packets without one (pcapng simple packets) keep the
    /// last, and time never runs backwards.
    fn advance(&mut self, ts_ns: u64) -> u64 {
        let ts = if ts_ns == 0 {
            self.last_ns
        } else {
            ts_ns.max(self.last_ns)
        };
        self.first_ns.get_or_insert(ts);
        self.last_ns = ts;
        ts
    }

    /// Whether decisions are due at `ts`.
    fn tick_due(&mut self, ts: u64) -> bool {
        let due = ts >= self.next_tick;
        if due {
            self.next_tick = ts + TICK_NS;
        }
        due
    }
}

/// Analyze `file`; the findings, inconclusive connections and the summary go to stdout.
pub fn run(s: &Settings, file: &std::path::Path) -> Result<()> {
    // Capture timestamps are Unix time already.
    let mut p = Pipeline::new(s, Source::Capture, WallClock::with_offset(0), true);
    let name = file.display().to_string();
    let settle_ns = u64::try_from(s.settle.as_nanos()).unwrap_or(u64::MAX);
    let mut packets = Packetizer::new(
        s.ranges.clone(),
        s.all_sources,
        &s.ports,
        tracer_ebpf::FLOW_CAPACITY as usize,
    );
    let mut clock = CaptureClock::default();
    let mut skipped: BTreeMap<Skip, u64> = BTreeMap::new();
    let start = || {
        // The start line is stamped with the time of the run, not the capture's.
        let now = WallClock::new().rfc3339(monotonic_ns());
        lines::start(s, &Attached::Capture { file: &name }, now)
    };
    let mut started = false;
    let read = reader::read(file, |pkt| {
        if !started {
            p.emit_wait(&start());
            started = true;
        }
        let ts = clock.advance(pkt.ts_ns);
        // Decide what was due before this packet, as the live agent would have.
        if clock.tick_due(ts) {
            p.decide(ts);
        }
        match decode::decode(pkt.link, pkt.data) {
            Err(skip) => *skipped.entry(skip).or_default() += 1,
            Ok(None) => {}
            Ok(Some(d)) => {
                for ev in packets.on_packet(ts, &d) {
                    p.on_event(ev);
                }
            }
        }
    });
    let end = match read {
        Ok(end) => end,
        Err(e) => {
            p.abandon();
            return Err(e.into());
        }
    };
    if !started {
        p.emit_wait(&start());
    }
    // No more evidence can come: what waited only for the settle time is
    // decided; what waits for --syn-timeout beyond the capture is inconclusive.
    let last = clock.last_ns;
    for pending in p.settle(last + settle_ns) {
        let ts = p.clock().rfc3339(last);
        p.emit(&lines::inconclusive(pending, last, s, ts));
    }
    p.counts.duration_ms = last.saturating_sub(clock.first_ns.unwrap_or(last)) / 1_000_000;
    p.finish(
        last + settle_ns,
        Extra {
            capture: Some(CaptureReport {
                file: name.clone(),
                packets: end.packets,
                packets_skipped: skipped,
                damage: end.damage.clone(),
            }),
            ..Extra::default()
        },
    );
    if let Some(why) = &end.damage {
        eprintln!(
            "origin-tracer: {name}: {why}; analysed the {} packets before it",
            end.packets
        );
    }
    Ok(())
}
