//! `cargo xtask bench`: what the agent costs, measured as ratios within one
//! run (never as pass/fail timings in tests).
//! 1. Per-packet cost of the TC programs by frame class, through
//!    `BPF_PROG_TEST_RUN`, relative to a frame they leave at the first check.
//! 2. Connections per second through the lab to a real nginx with the agent
//!    detached / attached / detached again, the programs' own run time from
//!    the kernel's `bpf_stats`, and the agent's CPU time and memory.

#![expect(
    clippy::cast_precision_loss,
    reason = "rates and ratios of counts, far below 2^52"
)]

use std::{
    fs,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    os::fd::AsRawFd,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use clap::Parser;
use etherparse::PacketBuilder;
use integration_tests::{Agent, Lab, Nginx};
use tracer_user::{
    cli::Args,
    source::kernel::{attach::load_configured, records::KernelNames},
};

const REPEAT: u32 = 1_000_000;
const PHASE: Duration = Duration::from_secs(4);

fn frame(src: [u8; 4], dport: u16, syn: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, [198, 18, 9, 2], 64)
        .tcp(40_000, dport, 1, 64_240);
    let b = if syn { b.syn() } else { b.ack(1) };
    let mut v = Vec::new();
    b.write(&mut v, b"GET / HTTP/1.1\r\n\r\n").expect("frame");
    v
}

fn per_packet() -> Result<()> {
    let args = Args::try_parse_from([
        "origin-tracer",
        "--format",
        "json",
        "-p",
        "443",
        "--edge-ranges",
        "198.18.9.1/32",
    ])?;
    let mut ebpf = load_configured(&args.resolve()?, &[], &KernelNames::default())?;
    let prog: &mut SchedClassifier = ebpf
        .program_mut("otr_tc_ingress")
        .context("program")?
        .try_into()?;
    prog.load()?;
    let mut arp = frame([198, 18, 9, 1], 443, true);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    let cases = [
        ("non-IP (ARP): leaves at the first check", arp),
        (
            "TCP to an unwatched port",
            frame([198, 18, 9, 1], 22, false),
        ),
        (
            "watched port, non-edge source",
            frame([203, 0, 113, 9], 443, false),
        ),
        (
            "edge data segment of an untracked flow",
            frame([198, 18, 9, 1], 443, false),
        ),
        (
            "edge SYN: event to the ring buffer",
            frame([198, 18, 9, 1], 443, true),
        ),
    ];
    println!("\nTC ingress program, per packet (BPF_PROG_TEST_RUN, {REPEAT} runs each):");
    let mut base = None;
    for (name, data) in &cases {
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(data);
        opts.repeat = REPEAT;
        let r = prog.test_run(opts)?;
        let ns = r.duration.as_secs_f64() * 1e9;
        let b = *base.get_or_insert(ns);
        println!("  {name:<45} {ns:>7.1} ns   x{:.2}", ns / b);
    }
    println!(
        "  (the ring buffer fills during the SYN case; losses there are counted, as in production)"
    );
    Ok(())
}

/// Connect, send a request, read the answer; as many times as fit in `PHASE`.
fn hammer(lab: &Lab, target: SocketAddr) -> Result<f64> {
    let ns = fs::File::open(Path::new("/var/run/netns").join(lab.edge.name()))?;
    let handle = std::thread::spawn(move || -> Result<f64> {
        // SAFETY: setns on this thread only, with a valid namespace fd.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            anyhow::bail!("setns: {}", std::io::Error::last_os_error());
        }
        let start = Instant::now();
        let mut done = 0u64;
        let mut buf = [0u8; 1024];
        while start.elapsed() < PHASE {
            let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n")?;
            while s.read(&mut buf)? > 0 {}
            done += 1;
        }
        Ok(done as f64 / start.elapsed().as_secs_f64())
    });
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("client thread panicked"))?
}

fn bpf_run_stats() -> (u64, u64) {
    let out = std::process::Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output();
    let Ok(out) = out else { return (0, 0) };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"].as_str().is_some_and(|n| n.starts_with("otr_tc_")))
        .fold((0, 0), |(t, c), p| {
            (
                t + p["run_time_ns"].as_u64().unwrap_or(0),
                c + p["run_cnt"].as_u64().unwrap_or(0),
            )
        })
}

fn proc_cpu_rss(pid: i32) -> (f64, u64) {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // SAFETY: no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks: f64 = f.get(11..13).map_or(0.0, |t| {
        t.iter().filter_map(|x| x.parse::<f64>().ok()).sum()
    });
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    (ticks / hz, rss)
}

struct Attached {
    rate: f64,
    cpu_s: f64,
    rss_kib: u64,
    bpf_ns: u64,
    bpf_runs: u64,
    summary: serde_json::Value,
}

fn attached_phase(bin: &Path, lab: &Lab, target: SocketAddr) -> Result<Attached> {
    let edge = lab.edge_ranges();
    let mut agent = Agent::start_with(
        bin,
        lab,
        &["--format", "json", "--edge-ranges", &edge],
        false,
    );
    agent.wait_start(Duration::from_secs(20));
    let (cpu0, _) = proc_cpu_rss(agent.pid());
    let (t0, c0) = bpf_run_stats();
    let rate = hammer(lab, target)?;
    let (t1, c1) = bpf_run_stats();
    let (cpu1, rss_kib) = proc_cpu_rss(agent.pid());
    let lines = agent.stop(libc::SIGINT);
    let summary = lines
        .iter()
        .find(|l| l["type"] == "summary")
        .cloned()
        .unwrap_or_default();
    Ok(Attached {
        rate,
        cpu_s: cpu1 - cpu0,
        rss_kib,
        bpf_ns: t1 - t0,
        bpf_runs: c1 - c0,
        summary,
    })
}

fn end_to_end(bin: &Path) -> Result<()> {
    let lab = Lab::new("bench");
    let _nginx = Nginx::start(&lab, &[80], None);
    let target = SocketAddr::new(lab.origin_v4.into(), 80);
    println!(
        "\nConnections through the lab to nginx (request + response each, {}s phases, alternating):",
        PHASE.as_secs()
    );
    hammer(&lab, target)?; // warm-up, not counted
    let stats_was = fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap_or_default();
    let _ = fs::write("/proc/sys/kernel/bpf_stats_enabled", "1");
    let mut detached = Vec::new();
    let mut attached = Vec::new();
    for _ in 0..2 {
        detached.push(hammer(&lab, target)?);
        println!(
            "  agent detached          {:>8.0} conn/s",
            detached.last().copied().unwrap_or(0.0)
        );
        let a = attached_phase(bin, &lab, target)?;
        println!("  agent attached          {:>8.0} conn/s", a.rate);
        attached.push(a);
    }
    let _ = fs::write("/proc/sys/kernel/bpf_stats_enabled", stats_was.trim());
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let rates: Vec<f64> = attached.iter().map(|a| a.rate).collect();
    println!(
        "  attached / detached: x{:.3}",
        mean(&rates) / mean(&detached)
    );
    let last = attached.last().context("no attached phase")?;
    if last.bpf_runs > 0 {
        println!(
            "  TC programs in the kernel (bpf_stats): {:.0} ns per packet over {} packets",
            last.bpf_ns as f64 / last.bpf_runs as f64,
            last.bpf_runs
        );
    }
    let conns = last.rate * PHASE.as_secs_f64();
    println!(
        "  agent: {:.0} ms CPU for ~{conns:.0} connections ({:.1} us each), RSS {} KiB",
        last.cpu_s * 1e3,
        last.cpu_s * 1e6 / conns.max(1.0),
        last.rss_kib
    );
    let s = &last.summary;
    println!(
        "  agent summary: {} healthy handshakes, {} findings, {} events, {} lost",
        s["healthy_handshakes"], s["findings_total"], s["events_received"], s["events_lost"]
    );
    Ok(())
}

pub fn run(bin: &Path) -> Result<()> {
    per_packet()?;
    end_to_end(bin)?;
    crate::flood::run(bin, proc_cpu_rss)
}
