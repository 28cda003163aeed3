//! The side-by-side part of `cargo xtask bench`: the lab's nginx under two
//! loads (new HTTP connections, `Connection: close`; keep-alive requests),
//! in rounds that alternate nothing attached, tcpdump writing the watched
//! port to a file, and origin-tracer with default flags and with
//! `--no-payload`; ratios to nothing attached (min / median / max), ring-
//! buffer records per connection and per request, the agent's CPU time per
//! connection and per request, the programs' time per packet (`bpf_stats`)
//! and the agent's RSS. A round of the agent counts only if its own summary
//! shows it watched the load (99% of the client's connections or requests
//! counted healthy, no finding).

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
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use integration_tests::{Agent, Lab, Nginx};

use crate::bench::{bpf_run_stats, proc_cpu_rss};

const PHASE: Duration = Duration::from_secs(3);
const ROUNDS: usize = 5;
/// The peer as an operator would run it, kept unchanged across versions so
/// that runs stay comparable: every packet of the watched port to a file.
const TCPDUMP: [&str; 6] = ["-n", "-i", "{iface}", "-w", "{file}", "tcp port 80"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Load {
    /// A new connection per request (`Connection: close`).
    Connections,
    /// Requests on kept-alive connections.
    KeepAlive,
}

impl Load {
    fn name(self) -> &'static str {
        match self {
            Load::Connections => "new HTTP connections/s",
            Load::KeepAlive => "keep-alive requests/s",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Observer {
    Nothing,
    Tcpdump,
    Agent,
    AgentNoPayload,
}

const OBSERVERS: [Observer; 4] = [
    Observer::Nothing,
    Observer::Tcpdump,
    Observer::Agent,
    Observer::AgentNoPayload,
];

impl Observer {
    fn name(self) -> &'static str {
        match self {
            Observer::Nothing => "nothing attached",
            Observer::Tcpdump => "tcpdump -w",
            Observer::Agent => "origin-tracer",
            Observer::AgentNoPayload => "origin-tracer --no-payload",
        }
    }
}

/// Run `load` for `PHASE` from the edge namespace: (requests done,
/// connections opened, seconds).
fn drive(lab: &Lab, target: SocketAddr, load: Load) -> Result<(u64, u64, f64)> {
    let ns = fs::File::open(Path::new("/var/run/netns").join(lab.edge.name()))?;
    let handle = std::thread::spawn(move || -> Result<(u64, u64, f64)> {
        // SAFETY: setns on this thread only, with a valid namespace fd.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        let start = Instant::now();
        let (mut done, mut connections) = (0u64, 0u64);
        let mut buf = [0u8; 4096];
        while start.elapsed() < PHASE {
            let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
            connections += 1;
            s.set_nodelay(true)?;
            if load == Load::Connections {
                s.write_all(b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")?;
                while s.read(&mut buf)? > 0 {}
                done += 1;
                continue;
            }
            // nginx closes a connection after 1000 requests: open another.
            for _ in 0..1000 {
                if start.elapsed() >= PHASE {
                    break;
                }
                s.write_all(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n")?;
                if !read_response(&mut s, &mut buf)? {
                    break;
                }
                done += 1;
            }
        }
        Ok((done, connections, start.elapsed().as_secs_f64()))
    });
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("client thread panicked"))?
}

/// Read one response with a `Content-Length`; false if the server closed.
fn read_response(s: &mut TcpStream, buf: &mut [u8]) -> Result<bool> {
    let mut got = Vec::new();
    loop {
        let n = s.read(buf)?;
        if n == 0 {
            return Ok(false);
        }
        got.extend_from_slice(&buf[..n]);
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .context("a response without Content-Length")?;
        if got.len() >= end + 4 + length {
            return Ok(true);
        }
    }
}

/// One measured phase.
struct Phase {
    rate: f64,
    done: u64,
    connections: u64,
    /// The agent's: CPU seconds, RSS KiB, its summary.
    agent: Option<(f64, u64, serde_json::Value)>,
    /// `bpf_stats` of our TC programs: (ns, runs).
    bpf: (u64, u64),
}

fn phase(bin: &Path, lab: &Lab, target: SocketAddr, load: Load, who: Observer) -> Result<Phase> {
    let edge = lab.edge_ranges();
    let mut args = vec!["--format", "json", "-p", "80", "--edge-ranges", &edge];
    if who == Observer::AgentNoPayload {
        args.push("--no-payload");
    }
    let file = lab.dir().join("bench.pcap");
    let mut tcpdump = None;
    let mut agent = None;
    match who {
        Observer::Nothing => {}
        Observer::Tcpdump => {
            let file_arg = file.to_string_lossy().into_owned();
            let args: Vec<String> = TCPDUMP
                .iter()
                .map(|a| {
                    a.replace("{iface}", &lab.origin_veth)
                        .replace("{file}", &file_arg)
                })
                .collect();
            let mut cmd = lab.origin.command("tcpdump");
            cmd.args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            tcpdump = Some(cmd.spawn().context("starting tcpdump")?);
            // tcpdump opens its socket within a few ms.
            std::thread::sleep(Duration::from_millis(500));
        }
        Observer::Agent | Observer::AgentNoPayload => {
            let mut a = Agent::start_with(bin, lab, &args, false);
            a.wait_start(Duration::from_secs(20));
            agent = Some(a);
        }
    }
    let cpu0 = agent.as_ref().map_or(0.0, |a| proc_cpu_rss(a.pid()).0);
    let (t0, c0) = bpf_run_stats();
    let (done, connections, secs) = drive(lab, target, load)?;
    let (t1, c1) = bpf_run_stats();
    let agent = agent.map(|mut a| {
        let (cpu1, rss) = proc_cpu_rss(a.pid());
        let lines = a.stop(libc::SIGINT);
        let summary = lines
            .iter()
            .find(|l| l["type"] == "summary")
            .cloned()
            .unwrap_or_default();
        (cpu1 - cpu0, rss, summary)
    });
    if let Some(mut t) = tcpdump {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(i32::try_from(t.id())?, libc::SIGINT) };
        let _ = t.wait();
        let _ = fs::remove_file(&file);
    }
    Ok(Phase {
        rate: done as f64 / secs,
        done,
        connections,
        agent,
        bpf: (t1 - t0, c1 - c0),
    })
}

/// Did the agent's summary count the load it watched (99% of the
/// connections healthy, and of the requests where it reads payload; no
/// finding)?
fn watched(p: &Phase, who: Observer) -> bool {
    let Some((_, _, s)) = &p.agent else {
        return true;
    };
    let count = |key: &str| s[key].as_u64().unwrap_or(0) as f64;
    let requests =
        who == Observer::AgentNoPayload || count("healthy_requests") >= 0.99 * p.done as f64;
    s["findings_total"] == 0
        && count("healthy_handshakes") >= 0.99 * p.connections as f64
        && requests
}

fn spread(v: &mut [f64]) -> String {
    if v.is_empty() {
        return "no valid round".into();
    }
    v.sort_by(f64::total_cmp);
    format!(
        "x{:.3} (x{:.3} .. x{:.3})",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1]
    )
}

pub fn run(bin: &Path) -> Result<()> {
    let lab = Lab::new("peers");
    let _nginx = Nginx::start(&lab, &[80], None);
    let target = SocketAddr::new(lab.origin_v4.into(), 80);
    drive(&lab, target, Load::Connections)?; // warm-up, not counted
    let stats_was = fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap_or_default();
    let _ = fs::write("/proc/sys/kernel/bpf_stats_enabled", "1");
    println!(
        "\nSide by side: the lab's nginx, {ROUNDS} rounds of {}s phases, observers alternating; \
         median (min .. max) of each ratio to nothing attached in the same round",
        PHASE.as_secs()
    );
    println!("  tcpdump: tcpdump {}", TCPDUMP.join(" "));
    for load in [Load::Connections, Load::KeepAlive] {
        let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); OBSERVERS.len()];
        let mut last: Option<Phase> = None;
        let mut invalid = 0;
        for round in 0..ROUNDS {
            let mut phases = Vec::new();
            // Rotate the order so that no observer always runs first.
            for i in 0..OBSERVERS.len() {
                let who = OBSERVERS[(i + round) % OBSERVERS.len()];
                phases.push((who, phase(bin, &lab, target, load, who)?));
            }
            let base = phases
                .iter()
                .find(|(w, _)| *w == Observer::Nothing)
                .map_or(1.0, |(_, p)| p.rate.max(1.0));
            for (who, p) in phases {
                let i = OBSERVERS.iter().position(|o| *o == who).unwrap_or(0);
                if watched(&p, who) {
                    ratios[i].push(p.rate / base);
                } else {
                    invalid += 1;
                }
                if who == Observer::Agent {
                    last = Some(p);
                }
            }
        }
        println!("\n  {}:", load.name());
        for (who, r) in OBSERVERS.iter().zip(ratios.iter_mut()).skip(1) {
            println!("    {:<28} {}", who.name(), spread(r));
        }
        if invalid > 0 {
            println!("    ({invalid} agent rounds did not count the load and were left out)");
        }
        if let Some(p) = last {
            report(&p);
        }
    }
    let _ = fs::write("/proc/sys/kernel/bpf_stats_enabled", stats_was.trim());
    Ok(())
}

/// The last default-flags round: what the agent did for the load.
fn report(p: &Phase) {
    let Some((cpu, rss, s)) = &p.agent else {
        return;
    };
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    let done = p.done.max(1) as f64;
    let records = n("events_received") + n("snapshots_received");
    println!(
        "    origin-tracer, last round: {} requests; {} ring-buffer records ({:.3} per request: \
         {} events, {} snapshots); {} handshakes and {} requests counted in the kernel, \
         {} connections handed over; {:.2} us of agent CPU per request; RSS {} KiB",
        p.done,
        records,
        records as f64 / done,
        n("events_received"),
        n("snapshots_received"),
        s["in_kernel"]["handshakes"],
        s["in_kernel"]["requests"],
        s["in_kernel"]["handed_over"],
        cpu * 1e6 / done,
        rss
    );
    if p.bpf.1 > 0 {
        println!(
            "    TC programs (bpf_stats): {:.0} ns per packet over {} packets",
            p.bpf.0 as f64 / p.bpf.1 as f64,
            p.bpf.1
        );
    }
}
