//! The observers of the side-by-side bench, each attached for one phase:
//! nothing, tcpdump writing the watched port to a file, the committed
//! bpftrace script (xtask/bench/peer.bt) on the tracepoints the agent used
//! before, and origin-tracer with default flags and with `--no-payload`;
//! what each cost (CPU, RSS, its BPF programs' run time) and saw.

use std::{
    collections::HashSet,
    fmt, fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use integration_tests::{Agent, Lab, Proc};
use serde_json::Value;

use super::bpf::{perf_progs, progs};
use crate::bench::proc_cpu_rss;

/// How long a peer may take to start, and to exit after SIGINT.
const PEER_LIMIT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Observer {
    Nothing,
    Tcpdump,
    Bpftrace,
    Agent,
    AgentNoPayload,
}

pub const OBSERVERS: [Observer; 5] = [
    Observer::Nothing,
    Observer::Tcpdump,
    Observer::Bpftrace,
    Observer::Agent,
    Observer::AgentNoPayload,
];

impl Observer {
    pub fn name(self) -> &'static str {
        match self {
            Observer::Nothing => "nothing attached",
            Observer::Tcpdump => "tcpdump -w",
            Observer::Bpftrace => "bpftrace",
            Observer::Agent => "origin-tracer",
            Observer::AgentNoPayload => "origin-tracer --no-payload",
        }
    }

    pub fn is_agent(self) -> bool {
        matches!(self, Observer::Agent | Observer::AgentNoPayload)
    }
}

/// The peer as an operator would run it, kept unchanged across versions so
/// that runs stay comparable: every packet of the watched port to a file.
const TCPDUMP: [&str; 6] = ["-n", "-i", "{iface}", "-w", "{file}", "tcp port {port}"];

fn tcpdump_args(iface: &str, file: &str, port: u16) -> Vec<String> {
    TCPDUMP
        .iter()
        .map(|a| {
            a.replace("{iface}", iface)
                .replace("{file}", file)
                .replace("{port}", &port.to_string())
        })
        .collect()
}

/// The committed bpftrace script, run as `bpftrace peer.bt PORT`.
fn bpftrace_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/peer.bt")
}

/// The peers' command lines, for the bench's output.
pub fn command_lines() -> [String; 2] {
    [
        format!(
            "tcpdump {} (in the origin namespace)",
            tcpdump_args("<origin veth>", "<lab dir>/bench.pcap", 80).join(" ")
        ),
        "bpftrace xtask/bench/peer.bt 80 > <lab dir>/bpftrace.out (in the host: \
         tracepoints are global)"
            .to_owned(),
    ]
}

/// bpftrace could not run here: its column says "not run".
#[derive(Debug)]
pub struct NotRun(pub String);

impl fmt::Display for NotRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotRun {}

enum Kind {
    Nothing,
    Tcpdump(Proc),
    Bpftrace(Proc),
    Agent(Agent),
}

/// An observer attached for one phase.
pub struct Attached {
    kind: Kind,
    dir: PathBuf,
    /// Its BPF programs: (id, is a TC program).
    progs: Vec<(u64, bool)>,
    /// How long it took to attach.
    pub startup: Duration,
    cpu0: f64,
    stats0: Vec<(u64, u64)>,
}

/// What an observer cost and saw in one phase.
#[derive(Default)]
pub struct Observed {
    /// CPU seconds during the phase and RSS (KiB) at its end.
    pub cpu: f64,
    pub rss: u64,
    /// It was still running when the load ended.
    pub alive: bool,
    /// The agent's summary.
    pub summary: Option<Value>,
    /// `bpf_stats` of its TC and of its tracepoint programs: (ns, runs).
    pub tc: (u64, u64),
    pub tp: (u64, u64),
    /// bpftrace: event lines written, events it lost.
    pub lines: u64,
    pub lost: u64,
    /// tcpdump's own count line ("N packets dropped by kernel").
    pub note: String,
}

/// Attaches `who` to watch `port`; returns once it watches.
pub fn attach(bin: &Path, lab: &Lab, who: Observer, port: u16) -> Result<Attached> {
    let before: HashSet<u64> = progs().iter().map(|p| p.id).collect();
    let started = Instant::now();
    let dir = lab.dir().to_path_buf();
    let kind = match who {
        Observer::Nothing => Kind::Nothing,
        Observer::Tcpdump => Kind::Tcpdump(tcpdump(lab, port)?),
        Observer::Bpftrace => Kind::Bpftrace(bpftrace(&dir, port)?),
        Observer::Agent | Observer::AgentNoPayload => {
            let edge = lab.edge_ranges();
            let port = port.to_string();
            let mut args = vec!["--format", "json", "-p", &port, "--edge-ranges", &edge];
            if who == Observer::AgentNoPayload {
                args.push("--no-payload");
            }
            let mut a = Agent::start_with(bin, lab, &args, false);
            a.wait_start(PEER_LIMIT);
            Kind::Agent(a)
        }
    };
    let startup = started.elapsed();
    let progs = match &kind {
        Kind::Nothing | Kind::Tcpdump(_) => Vec::new(),
        Kind::Bpftrace(p) => perf_progs(p.pid())
            .into_iter()
            .map(|id| (id, false))
            .collect(),
        Kind::Agent(_) => progs()
            .into_iter()
            .filter(|p| !before.contains(&p.id) && p.name.starts_with("otr_"))
            .map(|p| (p.id, p.tc))
            .collect(),
    };
    let mut a = Attached {
        kind,
        dir,
        progs,
        startup,
        cpu0: 0.0,
        stats0: Vec::new(),
    };
    a.mark();
    Ok(a)
}

fn tcpdump(lab: &Lab, port: u16) -> Result<Proc> {
    let file = lab.dir().join("bench.pcap");
    let err = lab.dir().join("tcpdump.err");
    let mut cmd = lab.origin.command("tcpdump");
    cmd.args(tcpdump_args(
        &lab.origin_veth,
        &file.to_string_lossy(),
        port,
    ))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(fs::File::create(&err)?);
    let mut p = Proc::spawn("tcpdump", &mut cmd);
    wait_until(&mut p, "tcpdump", &err, || {
        fs::read_to_string(&err).is_ok_and(|s| s.contains("listening on"))
    })
    .map_err(anyhow::Error::msg)?;
    Ok(p)
}

fn bpftrace(dir: &Path, port: u16) -> Result<Proc> {
    let script = bpftrace_script();
    let text = fs::read_to_string(&script).with_context(|| script.display().to_string())?;
    let probes = text
        .lines()
        .filter(|l| l.starts_with("tracepoint:"))
        .count();
    let err = dir.join("bpftrace.err");
    let mut cmd = Command::new("bpftrace");
    cmd.arg(&script)
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(fs::File::create(dir.join("bpftrace.out"))?)
        .stderr(fs::File::create(&err)?);
    let mut p = Proc::spawn("bpftrace", &mut cmd);
    // "Attaching N probes..." comes before the probes are attached (and in
    // 0.17 on stdout): wait until the kernel lists them under its pid.
    let pid = p.pid();
    wait_until(&mut p, "bpftrace", &err, || perf_progs(pid).len() >= probes)
        .map_err(|why| anyhow::Error::new(NotRun(why)))?;
    Ok(p)
}

/// Polls `ready` until it holds; why not, if `p` exits or takes too long.
fn wait_until(
    p: &mut Proc,
    what: &str,
    err: &Path,
    mut ready: impl FnMut() -> bool,
) -> std::result::Result<(), String> {
    let deadline = Instant::now() + PEER_LIMIT;
    loop {
        if ready() {
            return Ok(());
        }
        let said = || {
            let text = fs::read_to_string(err).unwrap_or_default();
            // bpftrace's ERROR line, not its source excerpt under it, nor
            // its warning about RLIMIT_MEMLOCK (memory is counted by cgroup
            // on this kernel).
            let lines = || {
                text.lines()
                    .filter(|l| !l.contains("RLIMIT_MEMLOCK") && !l.trim().is_empty())
            };
            lines()
                .find(|l| l.contains("ERROR"))
                .or_else(|| lines().rfind(|l| l.chars().any(char::is_alphanumeric)))
                .unwrap_or("nothing on stderr")
                .trim()
                .to_owned()
        };
        if let Some(status) = p.try_wait() {
            return Err(format!("{what} exited ({status}): {}", said()));
        }
        if Instant::now() > deadline {
            p.kill();
            return Err(format!("{what} not ready after {PEER_LIMIT:?}: {}", said()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Attached {
    pub fn pid(&self) -> Option<i32> {
        match &self.kind {
            Kind::Nothing => None,
            Kind::Tcpdump(p) | Kind::Bpftrace(p) => Some(p.pid()),
            Kind::Agent(a) => Some(a.pid()),
        }
    }

    /// Start of the measured phase: CPU and program counters from here.
    pub fn mark(&mut self) {
        self.cpu0 = self.pid().map_or(0.0, cpu_secs);
        self.stats0 = self.stats();
    }

    fn stats(&self) -> Vec<(u64, u64)> {
        let all = progs();
        self.progs
            .iter()
            .map(|(id, _)| {
                all.iter()
                    .find(|p| p.id == *id)
                    .map_or((0, 0), |p| (p.run_time_ns, p.run_cnt))
            })
            .collect()
    }

    /// Ends the phase: counters, then the observer stopped with SIGINT.
    pub fn stop(mut self) -> Observed {
        let mut o = Observed::default();
        if let Some(pid) = self.pid() {
            o.cpu = (cpu_secs(pid) - self.cpu0).max(0.0);
            o.rss = proc_cpu_rss(pid).1;
        }
        for (((_, tc), now), then) in self.progs.iter().zip(self.stats()).zip(&self.stats0) {
            let sum = if *tc { &mut o.tc } else { &mut o.tp };
            sum.0 += now.0.saturating_sub(then.0);
            sum.1 += now.1.saturating_sub(then.1);
        }
        match &mut self.kind {
            Kind::Nothing => o.alive = true,
            Kind::Tcpdump(p) => {
                o.alive = p.try_wait().is_none();
                stop_peer(p);
                let err = fs::read_to_string(self.dir.join("tcpdump.err")).unwrap_or_default();
                let drops = err.lines().find(|l| l.contains("dropped by kernel"));
                o.note.push_str(drops.unwrap_or_default());
                let _ = fs::remove_file(self.dir.join("bench.pcap"));
            }
            Kind::Bpftrace(p) => {
                o.alive = p.try_wait().is_none();
                stop_peer(p);
                let out = fs::read_to_string(self.dir.join("bpftrace.out")).unwrap_or_default();
                let err = fs::read_to_string(self.dir.join("bpftrace.err")).unwrap_or_default();
                o.lines = out
                    .lines()
                    .filter(|l| {
                        l.split(' ')
                            .next()
                            .is_some_and(|t| t.parse::<u64>().is_ok())
                    })
                    .count() as u64;
                o.lost = out
                    .lines()
                    .chain(err.lines())
                    .filter_map(|l| {
                        l.strip_prefix("Lost ")?
                            .split(' ')
                            .next()?
                            .parse::<u64>()
                            .ok()
                    })
                    .sum::<u64>();
            }
            Kind::Agent(a) => {
                o.alive = a.exit_status().is_none();
                let lines = a.stop(libc::SIGINT);
                o.summary = lines.into_iter().find(|l| l["type"] == "summary");
            }
        }
        o
    }
}

/// CPU seconds of `pid`'s threads from their schedstat (nanoseconds, where
/// /proc/PID/stat counts 10 ms ticks: a quiet observer's few milliseconds
/// a phase would read 0 or 10); threads that end during the phase are lost.
#[expect(clippy::cast_precision_loss, reason = "nanoseconds far below 2^52")]
fn cpu_secs(pid: i32) -> f64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return proc_cpu_rss(pid).0;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| {
            let stat = fs::read_to_string(t.path().join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum();
    ns as f64 / 1e9
}

/// SIGINT, then SIGKILL if it does not exit in time.
fn stop_peer(p: &mut Proc) {
    p.signal(libc::SIGINT);
    if p.wait_timeout(PEER_LIMIT).is_none() {
        p.kill();
    }
}
