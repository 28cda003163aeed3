//! `cargo xtask bench-analyze`: how fast `origin-tracer analyze` reads a large
//! capture, next to `tshark -q -z conv,tcp` on the same file, and that its
//! memory is bounded by the flow table, not by the size of the file.
//!
//! A synthetic capture (etherparse frames, pcap-file writer) of many
//! connections seen at the origin, IPv4 and IPv6, spread over minutes: most
//! healthy handshakes with a request and a response, some refused with a RST
//! (closed port), some SYNs never answered. The same traffic rate over twice
//! the time makes a file twice as large with the same number of connections
//! in flight.

#![expect(
    clippy::cast_precision_loss,
    reason = "rates and ratios of counts, far below 2^52"
)]

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    fs::File,
    io::BufWriter,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapPacket, PcapWriter};

/// Connections per second of capture time.
const RATE: u64 = 900;
/// Capture time of the base file; the large file lasts twice as long.
const BASE_SECS: u64 = 180;
const RUNS: usize = 3;
/// A smaller `--max-flows` than the default 100,000: memory follows it.
const SMALL_TABLE: &str = "10000";
/// 2026-01-01T00:00:00Z.
const EPOCH_NS: u64 = 1_767_225_600 * 1_000_000_000;
const ORIGIN_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const ORIGIN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// xorshift64*: reproducible traffic without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn u32(&mut self) -> u32 {
        u32::try_from(self.next() >> 32).expect("32 bits")
    }
}

#[derive(Clone, Copy)]
enum Fate {
    Healthy,
    Refused,
    Unanswered,
}

/// One connection, seen at the origin.
struct Conn {
    edge: IpAddr,
    origin: IpAddr,
    edge_port: u16,
    port: u16,
}

impl Conn {
    /// One frame of this connection.
    fn frame(&self, from_edge: bool, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        const EDGE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
        const ORIGIN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
        let (src, dst, sport, dport, smac, dmac) = if from_edge {
            (
                self.edge,
                self.origin,
                self.edge_port,
                self.port,
                EDGE_MAC,
                ORIGIN_MAC,
            )
        } else {
            (
                self.origin,
                self.edge,
                self.port,
                self.edge_port,
                ORIGIN_MAC,
                EDGE_MAC,
            )
        };
        let b = PacketBuilder::ethernet2(smac, dmac);
        let b = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => b.ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => b.ipv6(s.octets(), d.octets(), 64),
            _ => unreachable!("one family per connection"),
        };
        let mut b = b.tcp(sport, dport, seq, 64_240);
        if flags & SYN != 0 {
            b = b.syn();
        }
        if flags & ACK != 0 {
            b = b.ack(ack);
        }
        if flags & PSH != 0 {
            b = b.psh();
        }
        if flags & FIN != 0 {
            b = b.fin();
        }
        if flags & RST != 0 {
            b = b.rst();
        }
        let mut v = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut v, payload).expect("frame");
        v
    }
}

fn payloads(port: u16) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    if port == 443 {
        // TLS records: a ClientHello-sized request, a ServerHello flight.
        let rec = |kind: u8, len: usize| {
            let mut v = vec![0x16, 0x03, 0x03];
            v.extend_from_slice(&u16::try_from(len).expect("record").to_be_bytes());
            v.push(kind);
            v.resize(5 + len, 0x5a);
            v
        };
        (rec(1, 512), rec(2, 1200), rec(11, 900))
    } else {
        let req = b"GET /index.html HTTP/1.1\r\nHost: origin.example\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n".to_vec();
        let mut head =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2048\r\n\r\n".to_vec();
        head.resize(1200, b'x');
        (req, head, vec![b'y'; 900])
    }
}

/// Frames of one connection starting at `t0` (ns), with their timestamps.
fn connection(rng: &mut Rng, t0: u64, fate: Fate, c: &Conn, out: &mut Vec<(u64, Vec<u8>)>) {
    let e = rng.u32();
    let o = rng.u32();
    out.push((t0, c.frame(true, SYN, e, 0, &[])));
    match fate {
        Fate::Refused => {
            let reply = c.frame(false, RST | ACK, 0, e.wrapping_add(1), &[]);
            out.push((t0 + 20_000, reply));
        }
        Fate::Unanswered => {
            out.push((t0 + 1_000_000_000, c.frame(true, SYN, e, 0, &[])));
            out.push((t0 + 3_000_000_000, c.frame(true, SYN, e, 0, &[])));
        }
        Fate::Healthy => {
            let rtt = 2_000_000 + rng.below(38_000_000);
            let think = 1_000_000 + rng.below(49_000_000);
            let (req, r1, r2) = payloads(c.port);
            let len = |p: &[u8]| u32::try_from(p.len()).expect("segment size");
            let (lq, l1, l2) = (len(&req), len(&r1), len(&r2));
            let (e1, o1) = (e.wrapping_add(1), o.wrapping_add(1));
            let t = t0 + rtt;
            out.push((t0 + 30_000, c.frame(false, SYN | ACK, o, e1, &[])));
            out.push((t, c.frame(true, ACK, e1, o1, &[])));
            out.push((t + 10_000, c.frame(true, PSH | ACK, e1, o1, &req)));
            let e2 = e1.wrapping_add(lq);
            out.push((t + 50_000, c.frame(false, ACK, o1, e2, &[])));
            let t = t + think;
            out.push((t, c.frame(false, ACK, o1, e2, &r1)));
            let o2 = o1.wrapping_add(l1);
            out.push((t + 20_000, c.frame(false, PSH | ACK, o2, e2, &r2)));
            let o3 = o2.wrapping_add(l2);
            let t = t + rtt;
            out.push((t, c.frame(true, ACK, e2, o3, &[])));
            out.push((t + 1_000_000, c.frame(true, FIN | ACK, e2, o3, &[])));
            let (e3, o4) = (e2.wrapping_add(1), o3.wrapping_add(1));
            out.push((t + 1_040_000, c.frame(false, FIN | ACK, o3, e3, &[])));
            out.push((t + 1_000_000 + rtt, c.frame(true, ACK, e3, o4, &[])));
        }
    }
}

#[derive(Default)]
struct Synth {
    packets: u64,
    bytes: u64,
    healthy: u64,
    refused: u64,
    unanswered: u64,
}

/// The capture being written, counting what it holds.
struct Out {
    writer: PcapWriter<BufWriter<File>>,
    synth: Synth,
}

impl Out {
    fn put(&mut self, ts_ns: u64, data: &[u8]) -> Result<()> {
        let len = u32::try_from(data.len()).expect("frame size");
        self.writer
            .write_packet(&PcapPacket::new(Duration::from_nanos(ts_ns), len, data))?;
        self.synth.packets += 1;
        self.synth.bytes += u64::from(len) + 16;
        Ok(())
    }
}

fn edge_address(v6: bool, bits: u64) -> (IpAddr, IpAddr) {
    if v6 {
        let mut a = [0u8; 16];
        a[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0x00, 0x0e]);
        a[8..].copy_from_slice(&bits.to_be_bytes());
        (IpAddr::V6(a.into()), IpAddr::V6(ORIGIN_V6))
    } else {
        // 198.18.0.0/15, the benchmarking range.
        let [hi, mid, lo, ..] = bits.to_be_bytes();
        let edge = Ipv4Addr::new(198, 18 + (hi & 1), mid, lo | 1);
        (IpAddr::V4(edge), IpAddr::V4(ORIGIN_V4))
    }
}

/// Write `secs` seconds of traffic to `path`, frames in timestamp order.
fn synthesize(path: &Path, secs: u64) -> Result<Synth> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = Out {
        writer: PcapWriter::new(BufWriter::with_capacity(1 << 20, file))?,
        synth: Synth::default(),
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Frames not yet written, earliest first (ties in creation order).
    let mut queue: BinaryHeap<Reverse<(u64, u64, Vec<u8>)>> = BinaryHeap::new();
    let mut order = 0u64;
    let mut frames = Vec::new();
    for i in 0..secs * RATE {
        // Evenly spread starts, jittered within one interval.
        let t0 = EPOCH_NS + i * 1_000_000_000 / RATE + rng.below(1_000_000_000 / RATE);
        while queue.peek().is_some_and(|Reverse((ts, _, _))| *ts <= t0) {
            let Reverse((ts, _, data)) = queue.pop().expect("peeked");
            out.put(ts, &data)?;
        }
        let v6 = rng.below(5) == 0;
        let (edge, origin) = edge_address(v6, rng.next());
        let conn = Conn {
            edge,
            origin,
            edge_port: 32_768 + u16::try_from(rng.below(28_000)).expect("port"),
            port: if rng.below(3) == 0 { 80 } else { 443 },
        };
        let fate = match rng.below(100) {
            0..85 => {
                out.synth.healthy += 1;
                Fate::Healthy
            }
            85..93 => {
                out.synth.refused += 1;
                Fate::Refused
            }
            _ => {
                out.synth.unanswered += 1;
                Fate::Unanswered
            }
        };
        connection(&mut rng, t0, fate, &conn, &mut frames);
        for (ts, data) in frames.drain(..) {
            queue.push(Reverse((ts, order, data)));
            order += 1;
        }
    }
    while let Some(Reverse((ts, _, data))) = queue.pop() {
        out.put(ts, &data)?;
    }
    out.writer
        .into_writer()
        .into_inner()
        .map_err(std::io::IntoInnerError::into_error)?;
    Ok(out.synth)
}

/// Wall time and peak RSS (KiB) of one run; stdout and stderr go to files.
fn measure(cmd: &mut Command, out: &Path) -> Result<(Duration, u64)> {
    let stdout = File::create(out)?;
    let stderr = File::create(out.with_extension("err"))?;
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("running {cmd:?}"))?;
    let pid = libc::pid_t::try_from(child.id())?;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet reaped (std only reaps on wait).
    let r = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    let took = start.elapsed();
    if r != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        let err = std::fs::read_to_string(out.with_extension("err")).unwrap_or_default();
        bail!("{cmd:?} failed (wait status {status}): {err}");
    }
    Ok((took, u64::try_from(usage.ru_maxrss).unwrap_or(0)))
}

/// Best wall time and the largest peak RSS of `RUNS` runs.
fn best_of(mut cmd: impl FnMut() -> Command, out: &Path) -> Result<(Duration, u64)> {
    let mut best = Duration::MAX;
    let mut rss = 0;
    for _ in 0..RUNS {
        let (t, r) = measure(&mut cmd(), out)?;
        best = best.min(t);
        rss = rss.max(r);
    }
    Ok((best, rss))
}

/// The summary line of an analysis: its packets, healthy handshakes, findings.
fn check_summary(out: &Path, written: u64) -> Result<String> {
    let text = std::fs::read_to_string(out)?;
    let summary = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "summary")
        .context("origin-tracer printed no summary")?;
    let read = summary["capture"]["packets"].as_u64().unwrap_or(0);
    if read != written || !summary["capture"]["damage"].is_null() {
        bail!("origin-tracer read {read} of {written} packets: {summary}");
    }
    let findings: Vec<String> = summary["findings"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
                .map(|(k, n)| format!("{k} {n}"))
                .collect()
        })
        .unwrap_or_default();
    Ok(format!(
        "{} healthy handshakes, {} flows evicted; findings: {}",
        summary["healthy_handshakes"],
        summary["flows_evicted"],
        if findings.is_empty() {
            "none".into()
        } else {
            findings.join(", ")
        }
    ))
}

/// 1234567 -> "1,234,567".
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

struct Row {
    label: String,
    synth: Synth,
    ours: (Duration, u64),
    /// One run with a smaller flow table.
    small: (Duration, u64),
    tshark: (Duration, u64),
}

fn pps(packets: u64, t: Duration) -> u64 {
    u64::try_from(u128::from(packets) * 1_000_000_000 / t.as_nanos().max(1)).unwrap_or(u64::MAX)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub fn run(bin: &Path) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("otr-bench-analyze-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = bench(bin, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn bench(bin: &Path, dir: &Path) -> Result<()> {
    let mut rows = Vec::new();
    for (label, secs) in [("1x", BASE_SECS), ("2x", 2 * BASE_SECS)] {
        let file: PathBuf = dir.join(format!("bench-{label}.pcap"));
        eprintln!(
            "xtask: synthesizing {} connections over {secs} s of capture time",
            grouped(secs * RATE)
        );
        let started = Instant::now();
        let synth = synthesize(&file, secs)?;
        eprintln!(
            "xtask: {}: {} packets, {:.0} MB ({} healthy, {} refused, {} unanswered) in {:.1} s",
            file.display(),
            grouped(synth.packets),
            synth.bytes as f64 / 1e6,
            grouped(synth.healthy),
            grouped(synth.refused),
            grouped(synth.unanswered),
            started.elapsed().as_secs_f64()
        );
        let out = dir.join("out.json");
        eprintln!("xtask: origin-tracer analyze, {RUNS} runs");
        let analyze = |max_flows: Option<&str>| {
            let mut c = Command::new(bin);
            c.arg("analyze")
                .arg(&file)
                .args(["--format", "json", "--all-sources", "-p", "80,443"]);
            if let Some(n) = max_flows {
                c.args(["--max-flows", n]);
            }
            c
        };
        let ours = best_of(|| analyze(None), &out)?;
        eprintln!("xtask: {label}: {}", check_summary(&out, synth.packets)?);
        eprintln!("xtask: origin-tracer analyze --max-flows {SMALL_TABLE}, 1 run");
        let small = measure(&mut analyze(Some(SMALL_TABLE)), &out)?;
        eprintln!("xtask: {label}: {}", check_summary(&out, synth.packets)?);
        eprintln!("xtask: tshark -z conv,tcp, {RUNS} runs");
        let tshark = best_of(
            || {
                let mut c = Command::new("tshark");
                c.arg("-r").arg(&file).args(["-q", "-z", "conv,tcp"]);
                c
            },
            &dir.join("tshark.txt"),
        )?;
        std::fs::remove_file(&file)?;
        rows.push(Row {
            label: format!("{label} ({secs} s)"),
            synth,
            ours,
            small,
            tshark,
        });
    }
    print_table(&rows);
    Ok(())
}

fn print_table(rows: &[Row]) {
    println!(
        "\norigin-tracer analyze FILE --format json --all-sources -p 80,443  vs  tshark -r FILE -q -z conv,tcp"
    );
    println!(
        "synthetic capture, {RATE} connections/s (85% healthy, 8% refused, 7% unanswered; 20% IPv6);"
    );
    println!("best of {RUNS} runs (--max-flows {SMALL_TABLE}: one run); peak RSS from wait4\n");
    println!(
        "{:<10} {:>11} {:>8}  {:<19} {:>8} {:>12} {:>11}",
        "capture", "packets", "MB", "tool", "time", "packets/s", "peak RSS"
    );
    for r in rows {
        let p = r.synth.packets;
        println!(
            "{:<10} {:>11} {:>8.0}  {:<19} {:>6.2} s {:>12} {:>11}",
            r.label,
            grouped(p),
            r.synth.bytes as f64 / 1e6,
            "origin-tracer",
            r.ours.0.as_secs_f64(),
            grouped(pps(p, r.ours.0)),
            mib(r.ours.1)
        );
        println!(
            "{:<10} {:>11} {:>8}  {:<19} {:>6.2} s {:>12} {:>11}",
            "",
            "",
            "",
            format!("  --max-flows {SMALL_TABLE}"),
            r.small.0.as_secs_f64(),
            grouped(pps(p, r.small.0)),
            mib(r.small.1)
        );
        println!(
            "{:<10} {:>11} {:>8}  {:<19} {:>6.2} s {:>12} {:>11}",
            "",
            "",
            "",
            "tshark",
            r.tshark.0.as_secs_f64(),
            grouped(pps(p, r.tshark.0)),
            mib(r.tshark.1)
        );
    }
    println!();
    for r in rows {
        println!(
            "{}: origin-tracer reads {:.1}x as many packets per second as tshark",
            r.label,
            r.tshark.0.as_secs_f64() / r.ours.0.as_secs_f64()
        );
    }
    if let [a, b] = rows {
        println!(
            "peak RSS for a file {:.1}x as large: origin-tracer {:.2}x, tshark {:.2}x",
            b.synth.packets as f64 / a.synth.packets as f64,
            b.ours.1 as f64 / a.ours.1.max(1) as f64,
            b.tshark.1 as f64 / a.tshark.1.max(1) as f64
        );
    }
}
