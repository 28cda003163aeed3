//! The side-by-side part of `cargo xtask bench`: the lab's nginx (plain and
//! TLS 1.3) and an iperf3 server under five loads ([`loads`]), in rounds
//! that alternate the observers ([`observers`]): nothing attached, tcpdump
//! writing the watched port to a file, a bpftrace script on the agent's
//! former tracepoints, origin-tracer with default flags and with
//! `--no-payload`. Per load: ratios to nothing attached (min / median /
//! max), ring-buffer records per connection and per request, each
//! observer's CPU time, the programs' time per packet (`bpf_stats`), RSS;
//! at the end a markdown table for the README.
//!
//! An agent round counts only if its own summary shows it watched the load
//! (99% of the client's connections, and of the requests where it reads
//! payload, counted healthy; no finding), except for the bulk load, where
//! iperf3's control and data connections are not HTTP: there a round counts
//! if the agent ran through the whole phase. `BENCH_ROUNDS` overrides the
//! number of rounds (for development).

#![expect(
    clippy::cast_precision_loss,
    reason = "rates and ratios of counts, far below 2^52"
)]

mod bpf;
mod client;
mod loads;
mod observers;
mod report;
mod tls_client;

pub use client::{main as client_main, ClientArgs};

use std::{fs, net::IpAddr, path::Path, time::Duration};

use anyhow::{Context, Result};
use integration_tests::{
    tls::{http_server, start_nginx, Certs, TlsServer},
    Lab, Proc,
};

use crate::deps::have;
use loads::{Done, Load, Target, LOADS};
use observers::{attach, NotRun, Observed, Observer, OBSERVERS};

const PHASE: Duration = Duration::from_secs(3);
const WARM_UP: Duration = Duration::from_secs(1);
const ROUNDS: usize = 5;
/// The name on the origin's certificate (and the client's SNI).
const TLS_NAME: &str = "origin.lab";

/// One measured phase.
pub struct Phase {
    pub done: Done,
    pub seen: Observed,
    pub startup: Duration,
}

/// Every round of one load, per observer (in [`OBSERVERS`] order).
pub struct LoadResult {
    pub load: Load,
    /// Ratios to nothing attached of the rounds that count (for nothing
    /// attached: its rates).
    pub ratios: Vec<Vec<f64>>,
    /// Why an observer did not run at all.
    pub not_run: Vec<Option<String>>,
    /// Rounds left out (the agent's summary did not count the load).
    pub left_out: Vec<usize>,
    /// The last phase of each observer.
    pub last: Vec<Option<Phase>>,
}

/// Did the observer watch the load through the phase (for the agent: did
/// its summary count it)?
fn watched(load: Load, who: Observer, p: &Phase) -> bool {
    if !p.seen.alive {
        return false;
    }
    if !who.is_agent() || load == Load::Bulk {
        return true;
    }
    let Some(s) = &p.seen.summary else {
        return false;
    };
    let count = |key: &str| s[key].as_u64().unwrap_or(0) as f64;
    let requests = who == Observer::AgentNoPayload
        || count("healthy_requests") >= 0.99 * p.done.requests as f64;
    s["findings_total"] == 0
        && count("healthy_handshakes") >= 0.99 * p.done.connections as f64
        && requests
}

/// What the loads need besides the lab: nginx (plain, TLS 1.3), iperf3.
struct Servers {
    _nginx: integration_tests::Nginx,
    _iperf3: Option<Proc>,
    target: Target,
}

fn servers(lab: &Lab, client: &Path) -> Result<Servers> {
    let certs = Certs::new(lab);
    let leaf = certs.signed(TLS_NAME, &[TLS_NAME]);
    let nginx = start_nginx(
        lab,
        &[loads::HTTP_PORT, loads::TLS_PORT],
        &[
            http_server(lab, loads::HTTP_PORT, &[]),
            TlsServer::new(loads::TLS_PORT, &leaf)
                .protocols("TLSv1.3")
                .block(lab),
        ],
    );
    let iperf3 = have("iperf3").then(|| {
        let mut cmd = lab.origin.command("iperf3");
        cmd.args(["-s", "-p", &loads::IPERF_PORT.to_string()])
            .args(["-B", &lab.origin_v4.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        Proc::spawn("iperf3 -s", &mut cmd)
    });
    if iperf3.is_some() {
        wait_listening(lab, loads::IPERF_PORT)?;
    }
    Ok(Servers {
        _nginx: nginx,
        _iperf3: iperf3,
        target: Target {
            origin: IpAddr::V4(lab.origin_v4),
            edge: IpAddr::V4(lab.edge_v4),
            ca: certs.ca.clone(),
            name: TLS_NAME,
            client: client.to_path_buf(),
        },
    })
}

fn wait_listening(lab: &Lab, port: u16) -> Result<()> {
    for _ in 0..250 {
        let ss = lab.origin.run_ok("ss", &["-Hltn"]);
        if ss.contains(&format!(":{port} ")) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("iperf3 -s does not listen on {port} after 5 s")
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// `kernel.bpf_stats_enabled` on while the bench runs, as it was after.
struct BpfStats(String);

impl BpfStats {
    fn enable() -> BpfStats {
        let was = fs::read_to_string(BPF_STATS).unwrap_or_default();
        let _ = fs::write(BPF_STATS, "1");
        BpfStats(was)
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = fs::write(BPF_STATS, self.0.trim());
    }
}

fn rounds() -> usize {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|r| *r > 0)
        .unwrap_or(ROUNDS)
}

/// Runs the side-by-side part with the agent `bin`, the loads driven by
/// `client` (the xtask built in release, `bench-client`).
pub fn run(bin: &Path, client: &Path) -> Result<()> {
    let lab = Lab::new("peers");
    let servers = servers(&lab, client)?;
    let target = &servers.target;
    let _stats = BpfStats::enable();
    let rounds = rounds();
    println!(
        "\nSide by side: the lab's nginx and iperf3, {rounds} rounds of {}s phases, observers \
         alternating; median (min .. max) of each ratio to nothing attached in the same round",
        PHASE.as_secs()
    );
    for line in observers::command_lines() {
        println!("  {line}");
    }
    println!(
        "  (each watches the load's port: 80 plain HTTP, 443 TLS 1.3, {} iperf3; the agent \
         gets `-p PORT`)",
        loads::IPERF_PORT
    );
    println!(
        "  iperf3: iperf3 {} (edge namespace; server `iperf3 -s -p {}` in the origin)",
        loads::iperf3_args(target, PHASE.as_secs()).join(" "),
        loads::IPERF_PORT
    );
    let mut bpftrace_broken = (!have("bpftrace")).then(|| "bpftrace is not installed".to_owned());
    let mut results = Vec::new();
    for load in LOADS {
        if load == Load::Bulk && !have("iperf3") {
            println!("\n  {}: not run (iperf3 is not installed)", load.name());
            continue;
        }
        loads::drive(&lab, target, load, WARM_UP).context("warm-up")?;
        let r = run_load(bin, &lab, target, load, rounds, &mut bpftrace_broken)?;
        report::load(&r);
        results.push(r);
    }
    report::table(&results);
    Ok(())
}

fn run_load(
    bin: &Path,
    lab: &Lab,
    target: &Target,
    load: Load,
    rounds: usize,
    bpftrace_broken: &mut Option<String>,
) -> Result<LoadResult> {
    let n = OBSERVERS.len();
    let mut r = LoadResult {
        load,
        ratios: vec![Vec::new(); n],
        not_run: vec![None; n],
        left_out: vec![0; n],
        last: (0..n).map(|_| None).collect(),
    };
    for round in 0..rounds {
        let mut phases: Vec<(usize, Phase)> = Vec::new();
        // Rotate the order so that no observer always runs first.
        for k in 0..n {
            let i = (k + round) % n;
            let who = OBSERVERS[i];
            if who == Observer::Bpftrace {
                if let Some(why) = bpftrace_broken {
                    r.not_run[i] = Some(why.clone());
                    continue;
                }
            }
            let attached = match attach(bin, lab, who, load.port()) {
                Ok(a) => a,
                Err(e) if e.downcast_ref::<NotRun>().is_some() => {
                    println!("  bpftrace does not run here, its column is \"not run\": {e}");
                    *bpftrace_broken = Some(e.to_string());
                    r.not_run[i] = Some(e.to_string());
                    continue;
                }
                Err(e) => return Err(e),
            };
            let startup = attached.startup;
            let done = loads::drive(lab, target, load, PHASE)
                .with_context(|| format!("{} with {} attached", load.name(), who.name()))?;
            let seen = attached.stop();
            phases.push((
                i,
                Phase {
                    done,
                    seen,
                    startup,
                },
            ));
        }
        let base = phases
            .iter()
            .find(|(i, _)| OBSERVERS[*i] == Observer::Nothing)
            .map_or(f64::NAN, |(_, p)| p.done.rate);
        for (i, p) in phases {
            if OBSERVERS[i] == Observer::Nothing {
                r.ratios[i].push(p.done.rate);
            } else if watched(load, OBSERVERS[i], &p) && base > 0.0 {
                r.ratios[i].push(p.done.rate / base);
            } else {
                r.left_out[i] += 1;
            }
            r.last[i] = Some(p);
        }
    }
    Ok(r)
}
