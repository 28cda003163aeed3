//! `cargo xtask bench`: what the agent costs, measured as ratios within one
//! run (never as pass/fail timings in tests).
//! 1. Per-packet cost of the TC programs by frame class, through
//!    `BPF_PROG_TEST_RUN`, relative to a frame they leave at the first check.
//! 2. The lab's nginx side by side with the peers an operator would use
//!    instead ([`crate::peers`]).
//! 3. A SYN flood from spoofed edge sources ([`crate::flood`]).

#![expect(
    clippy::cast_precision_loss,
    reason = "rates and ratios of counts, far below 2^52"
)]

use std::{fs, path::Path};

use anyhow::{Context, Result};
use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use clap::Parser;
use etherparse::PacketBuilder;
use tracer_user::{
    cli::Args,
    source::kernel::{attach::load_configured, records::KernelNames},
};

const REPEAT: u32 = 1_000_000;

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

pub(crate) fn proc_cpu_rss(pid: i32) -> (f64, u64) {
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

/// The parts of the bench, each runnable alone (`--only`).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Per-packet cost of the TC programs (`BPF_PROG_TEST_RUN`).
    Packets,
    /// The lab's nginx side by side with tcpdump and bpftrace.
    Peers,
    /// The SYN flood.
    Flood,
}

/// Runs the parts wanted with the agent `bin`; `client` (the xtask built in
/// release) drives the side-by-side loads.
pub fn run(bin: &Path, client: Option<&Path>, only: &[Part]) -> Result<()> {
    let wanted = |p: Part| only.is_empty() || only.contains(&p);
    if wanted(Part::Packets) {
        per_packet()?;
    }
    if wanted(Part::Peers) {
        crate::peers::run(bin, client.context("no load client built")?)?;
    }
    if wanted(Part::Flood) {
        crate::flood::run(bin, proc_cpu_rss)?;
    }
    Ok(())
}
