//! The live agent: start-up checks, attach, then one loop that moves kernel
//! events through the diagnoser to the sink until a signal, `--duration` or a
//! closed output ends it; then detach and write the summary.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::{
    io::{unix::AsyncFd, Interest},
    signal::unix::{signal, SignalKind},
    time::MissedTickBehavior,
};
use tracer_ebpf::{counter, handover};

use crate::{
    certcheck::watch::CertWatch,
    cli::Settings,
    clock::{monotonic_ns, WallClock},
    output::{
        line::{AttachMode, HandedOverBy, InKernel, Line, Source},
        lines::{self, Attached},
        pcap::PcapEvidence,
        summary::Extra,
    },
    pipeline::Pipeline,
    source::kernel::{
        self, attach,
        btf::Btf,
        procnet::OverflowPoller,
        quiet::{self as attach_quiet, Quiet},
        records::{self, KernelNames},
        snapshots::Snapshots,
    },
};

const TICK: Duration = Duration::from_millis(50);
const POLL_COUNTERS_NS: u64 = 200_000_000;
const CHECK_LOSS_NS: u64 = 1_000_000_000;

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
    let mut poller = OverflowPoller::new(&s.ports);
    let mut p = pipeline(&s, clock)?;
    p.emit_wait(&start_line(
        &s,
        ifaces,
        &kernel,
        &poller,
        p.clock().rfc3339(started),
    ));

    let ring = kernel.events.take().context("ring buffer already taken")?;
    // SAFETY: the AsyncFd owns the ring buffer, so its fd stays open for as
    // long as it is registered.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("watching the ring buffer: {e}"))?;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stop_at = s.duration.map(|d| tokio::time::Instant::now() + d);
    let mut r = Reader {
        snapshots: Snapshots::default(),
        payload: !s.no_payload,
        overdue: 0,
        evicted_warned: 0,
    };
    let (mut last_poll, mut last_loss_check, mut last_sweep) = (started, started, started);
    let (sweep_every, waits) = sweep_plan(&s);

    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            () = async { tokio::time::sleep_until(stop_at.unwrap_or_else(tokio::time::Instant::now)).await },
                if stop_at.is_some() => break,
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                r.drain(guard.get_inner_mut(), &kernel.names, &kernel.quiet, &mut p);
                guard.clear_ready();
            }
            _ = tick.tick() => {
                // A wake-up lost between draining and clearing readiness
                // costs at most one tick.
                r.drain(ring.get_mut(), &kernel.names, &kernel.quiet, &mut p);
                let now = monotonic_ns();
                if now - last_poll >= POLL_COUNTERS_NS {
                    last_poll = now;
                    if let Some(o) = poller.poll(now) {
                        p.on_overflow(o);
                    }
                }
                if now - last_sweep >= sweep_every {
                    last_sweep = now;
                    for h in kernel.quiet.take_overdue(now, waits) {
                        r.overdue += 1;
                        r.history(&h, &kernel.quiet, &mut p);
                    }
                }
                p.decide(now);
                if now - last_loss_check >= CHECK_LOSS_NS {
                    last_loss_check = now;
                    let counters = kernel.counters();
                    p.report_loss(counters[counter::RINGBUF_LOST as usize], now);
                    // Cheap: more flows than the map holds were never removed.
                    let forgotten = evicted(&counters, u64::from(tracer_ebpf::FLOW_CAPACITY));
                    if forgotten > r.evicted_warned {
                        r.evicted_warned = forgotten;
                        tracing::warn!(
                            "the kernel's flow map ({} connections) is full: at least {forgotten} connections were forgotten, their later packets are not followed (a SYN flood?); the summary counts them",
                            tracer_ebpf::FLOW_CAPACITY
                        );
                    }
                }
                if p.is_closed() {
                    break;
                }
            }
        }
    }

    shut_down(p, &mut r, kernel, ring, started);
    Ok(())
}

/// How often the flow map is swept for quiet flows past their deadline
/// (a quarter of the shorter timeout, 100 ms to 5 s), and how long they may
/// wait: taken over one sweep before the deadline, the diagnoser decides
/// them on time.
fn sweep_plan(s: &Settings) -> (u64, attach_quiet::Waits) {
    let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let (syn, response) = (ns(s.syn_timeout), ns(s.response_timeout));
    let every = (syn.min(response) / 4).clamp(100_000_000, 5_000_000_000);
    let waits = attach_quiet::Waits {
        handshake_ns: syn.saturating_sub(every),
        request_ns: response.saturating_sub(every),
    };
    (every, waits)
}

/// The pipeline, with the evidence file and cert checks the flags ask for.
fn pipeline(s: &Settings, clock: WallClock) -> Result<Pipeline> {
    let evidence = match &s.write_pcap {
        None => None,
        Some(path) => {
            let keep = s.syn_timeout + Duration::from_secs(30);
            if s.write_pcap_raw {
                eprintln!(
                    "origin-tracer: warning: --write-pcap-raw: {} will hold payload as captured, \
                     cookies, credentials, query strings and bodies included; do not hand it on",
                    path.display()
                );
            }
            Some(PcapEvidence::create(
                path,
                s.write_pcap_max_mib << 20,
                keep,
                clock,
                (s.write_pcap_raw, s.show_path),
            )?)
        }
    };
    let certs = if s.check_certs {
        Some(CertWatch::start(s.cert_check_interval)?)
    } else {
        None
    };
    Ok(Pipeline::new(s, Source::Kernel, clock, !s.no_payload)
        .with_evidence(evidence)
        .with_cert_checks(certs))
}

fn start_line(
    s: &Settings,
    ifaces: &[attach::Iface],
    kernel: &attach::Kernel,
    poller: &OverflowPoller,
    ts: String,
) -> Line {
    let mut probes = kernel.probes.clone();
    probes.push(attach::Probe {
        name: "proc:TcpExtListenOverflows".into(),
        attached: poller.available(),
        reason: (!poller.available())
            .then(|| "/proc/net/netstat has no TcpExt ListenOverflows".into()),
        limits: None,
        verified_insns: None,
    });
    lines::start(
        s,
        &Attached::Kernel {
            mode: if kernel.tcx {
                AttachMode::Tcx
            } else {
                AttachMode::Netlink
            },
            interfaces: ifaces
                .iter()
                .map(|i| (i.name.as_str(), i.ifindex))
                .collect(),
            probes: &probes,
            stale_removed: &kernel.stale_removed,
        },
        ts,
    )
}

/// Take what the kernel still holds, detach, and write the summary.
fn shut_down(
    mut p: Pipeline,
    r: &mut Reader,
    mut kernel: attach::Kernel,
    mut ring: AsyncFd<aya::maps::RingBuf<aya::maps::MapData>>,
    started: u64,
) {
    // Whatever the kernel already handed over still counts.
    r.drain(ring.get_mut(), &kernel.names, &kernel.quiet, &mut p);
    let now = monotonic_ns();
    p.settle(now);
    let counters = kernel.counters();
    p.report_loss(counters[counter::RINGBUF_LOST as usize], now);
    p.add_kernel_counts(
        InKernel {
            handshakes: counters[counter::HANDSHAKES as usize],
            requests: counters[counter::REQUESTS as usize],
            tls_requests: counters[counter::TLS_REQUESTS as usize],
            http2_connections: counters[counter::HTTP2 as usize],
            handed_over: counters[counter::LOUD_FLOWS as usize] + r.overdue,
            handed_over_by: handed_over_by(&counters, r.overdue),
            flows_evicted: evicted(&counters, kernel.quiet.live_flows()),
        },
        &kernel.quiet.histograms(),
    );
    drop(ring);
    kernel.detach();
    if p.counts.decode_errors > 0 {
        tracing::warn!(
            "{} kernel records could not be decoded",
            p.counts.decode_errors
        );
    }
    p.counts.duration_ms = (now - started) / 1_000_000;
    p.counts.kernel_read_errors = counters[counter::READ_ERRORS as usize];
    p.counts.flows_untracked = counters[counter::FLOW_INSERT_ERRORS as usize];
    p.finish(now, Extra::default());
}

/// The ring buffer's records into the pipeline.
struct Reader {
    snapshots: Snapshots,
    /// Snapshots become payload events.
    payload: bool,
    /// Quiet flows taken over by the sweep (past their wait).
    overdue: u64,
    /// The flow map evictions last warned about.
    evicted_warned: u64,
}

/// Flows the kernel's map forgot: recorded, neither removed nor still
/// there (`live` of them; with the map's capacity for `live`, the fewest
/// that can have been, without reading the map).
fn evicted(c: &[u64; counter::COUNT as usize], live: u64) -> u64 {
    let (new, gone) = (
        c[counter::FLOWS_NEW as usize],
        c[counter::FLOWS_GONE as usize],
    );
    new.saturating_sub(gone).saturating_sub(live)
}

/// The kernel's hand-over counts by reason, and the sweep's.
fn handed_over_by(c: &[u64; counter::COUNT as usize], overdue: u64) -> HandedOverBy {
    let at = |why: u32| c[(counter::HANDED_OVER + why) as usize];
    HandedOverBy {
        reset: at(handover::RESET),
        syn_resent: at(handover::SYN_RESENT),
        synack_resent: at(handover::SYNACK_RESENT),
        icmp: at(handover::ICMP),
        tcp_event: at(handover::TCP_EVENT),
        drop: at(handover::DROP),
        closed_waiting: at(handover::CLOSED_WAITING),
        payload: at(handover::PAYLOAD),
        overdue,
    }
}

impl Reader {
    fn drain(
        &mut self,
        ring: &mut aya::maps::RingBuf<aya::maps::MapData>,
        names: &KernelNames,
        quiet: &Quiet,
        p: &mut Pipeline,
    ) {
        while let Some(item) = ring.next() {
            if records::is_history(&item) {
                match records::read_history(&item) {
                    Ok(h) => self.history(&h, quiet, p),
                    Err(e) => p.undecodable(&e),
                }
                continue;
            }
            if records::is_hello(&item) {
                // `--check-certs`: a quiet TLS connection's server name.
                match records::read_hello(&item) {
                    Ok((flow, hello)) => p.on_hello(&flow, &hello),
                    Err(e) => p.undecodable(&e),
                }
                continue;
            }
            if records::is_snapshot(&item) {
                p.counts.snapshots_received += 1;
                if let Ok(snap) = records::decode_snapshot(&item) {
                    if self.payload {
                        if let Some(ev) = self.snapshots.payload_event(&snap) {
                            p.on_payload(ev);
                        }
                    }
                    p.keep_snapshot(snap);
                }
                continue;
            }
            match records::read_raw(&item).and_then(|raw| records::decode(&raw, names)) {
                Ok(ev) => p.on_event(ev),
                Err(e) => p.undecodable(&e),
            }
        }
    }

    /// A quiet flow's history (from the ring, or taken over from the map):
    /// one kernel event, the events it stands for into the diagnoser.
    fn history(&mut self, h: &tracer_ebpf::History, quiet: &Quiet, p: &mut Pipeline) {
        match records::decode_history(h, quiet.hello_of(h)) {
            Ok(events) => p.on_history(events, self.payload),
            Err(e) => p.undecodable(&e),
        }
    }
}
