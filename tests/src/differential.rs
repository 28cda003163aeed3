//! Live and offline verdicts on the same connections: tcpdump records the
//! origin while the live agent watches, then `origin-tracer analyze` reads
//! the capture, and the two runs are compared connection by connection.
//!
//! Every live finding must appear offline for the same connection with the
//! same class. Causes that rest on kernel evidence become their packet-only
//! counterpart (docs/SCHEMA.md, "What a capture can and cannot tell"); causes
//! read from payload bytes (TLS and HTTP) must be equal, with the same
//! confidence and the same `tls` and `http` objects. No finding may appear
//! on one side only.
//!
//! A capture ends at its last packet, not when tcpdump stopped: so that it
//! demonstrably covers every timeout after the last connection, each
//! recording ends with a marker connection from a non-edge address to an
//! unwatched port, which the agent ignores.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::agent::{render, Agent};
use crate::capture::{analyze, Tap, Tcpdump};
use crate::lab::{Curl, Lab, Source};
use crate::verdict::{
    assert_one_finding_per_request, assert_schema, evidence_events, findings, flow_is, summary,
};

/// How long the agent may take to attach.
pub const START_WAIT: Duration = Duration::from_secs(20);
/// How long a live finding may take after its client returned.
pub const FINDING_WAIT: Duration = Duration::from_secs(15);
/// The agent's `--syn-timeout` ([`Agent::start`]) and analyze's.
pub const SYN_TIMEOUT: Duration = Duration::from_secs(3);
const SYN_TIMEOUT_ARG: &str = "3s";
/// Not watched: the marker connection at the end of a recording.
pub const MARKER_PORT: u16 = 9;

/// Evidence events made from packets (TC in the kernel, the capture
/// offline); the others are kernel-only.
pub const PACKET_EVENTS: [&str; 16] = [
    "syn_in",
    "ack_in",
    "rst_in",
    "fin_in",
    "synack_out",
    "rst_out",
    "fin_out",
    "icmp_unreach_out",
    "client_hello_in",
    "server_hello_out",
    "tls_alert_in",
    "tls_alert_out",
    "request_in",
    "response_out",
    "data_in",
    "data_out",
];

/// SCHEMA.md's table "What a capture can and cannot tell": live cause
/// (`firewall_reject` told apart by how it rejected) -> cause from a capture.
const COUNTERPARTS: [(&str, &str); 9] = [
    ("no_listener", "no_listener"),
    // The capture shows the edge resending its request, not the kernel's
    // drop of it (so offline is medium where live may be high).
    ("request_unacked", "request_unacked"),
    // A firewall's RST looks like the stack's.
    ("firewall_reject by RST", "no_listener"),
    ("firewall_reject by ICMP", "firewall_reject"),
    ("firewall_drop", "syn_unanswered"),
    ("listen_overflow", "syn_unanswered"),
    ("kernel_drop", "syn_unanswered"),
    ("synack_unacked", "synack_unacked"),
    ("syn_unanswered", "syn_unanswered"),
];

/// Causes after the handshake: read from the payload bytes of both
/// directions, live and offline alike, so offline must say the same.
pub const PAYLOAD_CAUSES: [&str; 12] = [
    "tls_alert_from_origin",
    "tls_closed_during_handshake",
    "not_tls",
    "edge_rejected_certificate",
    "edge_aborted_after_certificate",
    "reset_after_request",
    "closed_without_response",
    "headers_too_large",
    "malformed_response",
    "response_timeout",
    "keepalive_race",
    "origin_error_status",
];

/// The offline cause a live finding must become.
pub fn offline_cause(live: &Value) -> Option<&'static str> {
    let cause = live["cause"].as_str()?;
    if let Some(same) = PAYLOAD_CAUSES.iter().find(|c| **c == cause) {
        return Some(same);
    }
    let mut cause = cause.to_owned();
    if cause == "firewall_reject" {
        let icmp = evidence_events(live).contains(&"icmp_unreach_out");
        cause.push_str(if icmp { " by ICMP" } else { " by RST" });
    }
    COUNTERPARTS
        .iter()
        .find(|(l, _)| *l == cause)
        .map(|(_, o)| *o)
}

/// A live agent and a tcpdump watching the same origin.
pub struct Recording<'a> {
    lab: &'a Lab,
    ports: String,
    response_timeout: Option<Duration>,
    tcpdump: Tcpdump,
    agent: Agent,
}

impl<'a> Recording<'a> {
    /// Starts tcpdump on `tap`, then the agent on `ports`; returns once both
    /// are ready.
    pub fn start(lab: &'a Lab, tap: Tap, ports: &str) -> Recording<'a> {
        Recording::start_with(lab, tap, ports, None)
    }

    /// Like [`Recording::start`], with this `--response-timeout` for the
    /// agent and for `analyze` (their default, 100 s, otherwise).
    pub fn start_with(
        lab: &'a Lab,
        tap: Tap,
        ports: &str,
        response_timeout: Option<Duration>,
    ) -> Recording<'a> {
        let tcpdump = Tcpdump::start(lab, tap, "origin");
        let mut args = vec!["--ports".to_owned(), ports.to_owned()];
        args.extend(response_timeout_args(response_timeout));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut agent = Agent::start(lab, &args);
        agent.wait_start(START_WAIT);
        Recording {
            lab,
            ports: ports.to_owned(),
            response_timeout,
            tcpdump,
            agent,
        }
    }

    /// The live agent, e.g. to wait for a finding while a client still runs.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// Call when the clients have returned: waits for the live findings of
    /// `expect` (edge source, origin port; a pair listed n times wants n
    /// findings), lets the capture run until the longest timeout + 1 s after
    /// the last connection, ends it with the marker connection, stops
    /// tcpdump and the agent, analyzes the capture and compares. Returns
    /// both runs.
    pub fn finish(self, expect: &[(IpAddr, u16)]) -> Runs {
        let last = Instant::now();
        let Recording {
            lab,
            ports,
            response_timeout,
            tcpdump,
            mut agent,
        } = self;
        wait_live_findings(&agent, expect);
        let longest = response_timeout.map_or(SYN_TIMEOUT, |r| r.max(SYN_TIMEOUT));
        let covered = last + longest + Duration::from_secs(1);
        sleep(covered.saturating_duration_since(Instant::now()));
        let marker = lab.curl(&Curl::to(MARKER_PORT).source(Source::NonEdge));
        assert_eq!(marker.code, Some(7), "marker connection: {marker:?}");
        sleep(Duration::from_millis(300));
        let file = tcpdump.path().to_owned();
        let tcpdump_said = tcpdump.stop();
        let live = agent.stop(libc::SIGINT);
        let edge_ranges = lab.edge_ranges();
        let mut args = vec![
            "--edge-ranges".to_owned(),
            edge_ranges,
            "--ports".to_owned(),
            ports.clone(),
            "--syn-timeout".to_owned(),
            SYN_TIMEOUT_ARG.to_owned(),
        ];
        args.extend(response_timeout_args(response_timeout));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (_, offline) = analyze(&file, &args);
        let runs = Runs {
            live,
            offline,
            file,
            ports,
            tcpdump: tcpdump_said.trim().replace('\n', "; "),
        };
        runs.compare();
        runs
    }
}

fn response_timeout_args(response_timeout: Option<Duration>) -> Vec<String> {
    response_timeout
        .map(|d| {
            vec![
                "--response-timeout".to_owned(),
                format!("{}ms", d.as_millis()),
            ]
        })
        .unwrap_or_default()
}

/// Waits until the agent has written, for each (source, port) of
/// `expect`, as many findings as the pair is listed; panics with its
/// transcript if not within [`FINDING_WAIT`].
fn wait_live_findings(agent: &Agent, expect: &[(IpAddr, u16)]) {
    let mut want: BTreeMap<(IpAddr, u16), usize> = BTreeMap::new();
    for pair in expect {
        *want.entry(*pair).or_default() += 1;
    }
    let deadline = Instant::now() + FINDING_WAIT;
    loop {
        crate::check_interrupted();
        let lines = agent.lines();
        let short: Vec<String> = want
            .iter()
            .filter_map(|((src, dport), n)| {
                let have = findings(&lines)
                    .into_iter()
                    .filter(|f| flow_is(&f["flow"], *src, *dport))
                    .count();
                (have < *n).then(|| format!("{have} of {n} for {src} -> port {dport}"))
            })
            .collect();
        if short.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "live findings missing within {FINDING_WAIT:?}: {}\n{}",
            short.join(", "),
            agent.transcript()
        );
        sleep(Duration::from_millis(50));
    }
}

/// A live run and the offline run of its capture.
pub struct Runs {
    /// The live agent's lines.
    pub live: Vec<Value>,
    /// `analyze`'s lines.
    pub offline: Vec<Value>,
    /// The capture.
    pub file: PathBuf,
    /// The watched ports (`--ports`).
    pub ports: String,
    tcpdump: String,
}

impl Drop for Runs {
    /// Keeps the capture of a failing test (the lab's directory goes);
    /// prints both runs with `OTL_TRANSCRIPT=1`.
    fn drop(&mut self) {
        if std::env::var_os("OTL_TRANSCRIPT").is_some() {
            eprintln!("---- differential ----\n{}", self.context());
        }
        if std::thread::panicking() {
            let keep = std::env::temp_dir().join(format!(
                "origin-tracer-differential-{}-{}.pcap",
                std::process::id(),
                self.file
                    .parent()
                    .and_then(|d| d.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ));
            if std::fs::copy(&self.file, &keep).is_ok() {
                eprintln!("capture kept as {}", keep.display());
            }
        }
    }
}

/// (src, sport, dst, dport) of a line's flow.
/// A finding's connection and request (`http.request_index`, 0 if none).
type FlowKey = (String, u64, String, u64, u64);

fn flow_key(line: &Value) -> FlowKey {
    let f = &line["flow"];
    (
        f["src"].as_str().unwrap_or("?").to_owned(),
        f["sport"].as_u64().unwrap_or(0),
        f["dst"].as_str().unwrap_or("?").to_owned(),
        f["dport"].as_u64().unwrap_or(0),
        line["http"]["request_index"].as_u64().unwrap_or(0),
    )
}

/// What differs between a live finding and the offline one of the same
/// connection (empty when they agree).
fn differences(l: &Value, o: &Value) -> Vec<String> {
    let mut why = Vec::new();
    if o["class"] != l["class"] {
        why.push(format!("class {} offline, {} live", o["class"], l["class"]));
    }
    let want = offline_cause(l);
    if o["cause"].as_str() != want {
        why.push(format!(
            "offline cause {}, want {want:?} for live {}",
            o["cause"], l["cause"]
        ));
    }
    if o["cause"] == "no_listener" && o["confidence"] != "medium" {
        why.push(format!(
            "offline no_listener has confidence {}, SCHEMA.md says medium",
            o["confidence"]
        ));
    }
    if l["cause"]
        .as_str()
        .is_some_and(|c| PAYLOAD_CAUSES.contains(&c))
    {
        if o["confidence"] != l["confidence"] {
            why.push(format!(
                "confidence {} offline, {} live",
                o["confidence"], l["confidence"]
            ));
        }
        for field in ["tls", "http"] {
            if o.get(field) != l.get(field) {
                why.push(format!(
                    "`{field}` {} offline, {} live",
                    o.get(field).unwrap_or(&Value::Null),
                    l.get(field).unwrap_or(&Value::Null)
                ));
            }
        }
    }
    let offline_events = evidence_events(o);
    let missing: Vec<&str> = evidence_events(l)
        .into_iter()
        .filter(|e| PACKET_EVENTS.contains(e) && !offline_events.contains(e))
        .collect();
    if !missing.is_empty() {
        why.push(format!(
            "packet evidence {missing:?} seen live is missing offline"
        ));
    }
    why
}

impl Runs {
    /// Both runs follow the schema with their own source, nothing is
    /// inconclusive, and the findings agree connection by connection.
    fn compare(&self) {
        assert_schema(&self.live);
        assert_schema(&self.offline);
        assert_one_finding_per_request(&self.live);
        assert_one_finding_per_request(&self.offline);
        let context = || self.context();
        for f in findings(&self.live) {
            assert_eq!(f["source"], "kernel", "live finding: {f}\n{}", context());
        }
        let start = &self.offline[0];
        assert_eq!(start["source"], "capture", "{}", context());
        assert_eq!(
            start["capture_file"],
            self.file.display().to_string(),
            "{}",
            context()
        );
        for line in &self.offline {
            assert_eq!(
                line["source"],
                "capture",
                "offline line without source capture: {line}\n{}",
                context()
            );
        }
        let inconclusive: Vec<_> = self
            .offline
            .iter()
            .filter(|l| l["type"] == "inconclusive")
            .collect();
        let off_summary = summary(&self.offline);
        assert!(
            inconclusive.is_empty() && off_summary["pending_at_exit"] == 0,
            "the capture covers every timeout after the last connection, yet connections are inconclusive\n{}",
            context()
        );
        let capture = &off_summary["capture"];
        assert!(
            capture["damage"].is_null()
                && capture["packets_skipped"]
                    .as_object()
                    .is_some_and(serde_json::Map::is_empty)
                && capture["packets"].as_u64().is_some_and(|p| p > 0),
            "a clean tcpdump capture, every packet read: {capture}\n{}",
            context()
        );

        let disagreements = self.disagreements();
        assert!(
            disagreements.is_empty(),
            "live and offline disagree:\n{}\n{}",
            disagreements.join("\n"),
            context()
        );
        let healthy = |lines: &[Value]| summary(lines)["healthy_handshakes"].clone();
        assert_eq!(
            healthy(&self.offline),
            healthy(&self.live),
            "healthy handshakes offline and live\n{}",
            context()
        );
    }

    /// Each live finding against the offline one of the same connection,
    /// and offline findings without a live one: what differs.
    fn disagreements(&self) -> Vec<String> {
        let offline: BTreeMap<FlowKey, &Value> = findings(&self.offline)
            .into_iter()
            .map(|f| (flow_key(f), f))
            .collect();
        let live: BTreeMap<FlowKey, &Value> = findings(&self.live)
            .into_iter()
            .map(|f| (flow_key(f), f))
            .collect();
        let mut disagreements = Vec::new();
        for (key, l) in &live {
            let Some(o) = offline.get(key) else {
                disagreements.push(format!(
                    "live finding with no offline finding:\n  live:    {l}"
                ));
                continue;
            };
            let why = differences(l, o);
            if !why.is_empty() {
                disagreements.push(format!(
                    "{}:\n  live:    {l}\n  offline: {o}",
                    why.join("; ")
                ));
            }
        }
        for (key, o) in &offline {
            if !live.contains_key(key) {
                disagreements.push(format!(
                    "offline finding with no live finding:\n  offline: {o}"
                ));
            }
        }
        disagreements
    }

    /// Both runs and the capture, for failure messages.
    pub fn context(&self) -> String {
        format!(
            "capture {} (ports {}; tcpdump: {})\n---- live ----\n{}\n---- offline ----\n{}",
            self.file.display(),
            self.ports,
            self.tcpdump,
            render(&self.live),
            render(&self.offline)
        )
    }

    /// The live and the offline finding of each connection from `src` to
    /// `dport`, in the order of the edge's ports. After [`Recording::finish`]
    /// compared the runs, every live finding has its offline one.
    pub fn pairs(&self, src: IpAddr, dport: u16) -> Vec<(Value, Value)> {
        let offline: BTreeMap<FlowKey, &Value> = findings(&self.offline)
            .into_iter()
            .map(|f| (flow_key(f), f))
            .collect();
        let mut pairs: Vec<(Value, Value)> = findings(&self.live)
            .into_iter()
            .filter(|f| flow_is(&f["flow"], src, dport))
            .map(|l| {
                let o = offline
                    .get(&flow_key(l))
                    .unwrap_or_else(|| panic!("no offline finding for {l}\n{}", self.context()));
                (l.clone(), (*o).clone())
            })
            .collect();
        pairs.sort_by_key(|(l, _)| l["flow"]["sport"].as_u64());
        pairs
    }

    /// The live and the offline finding for connections from `src` to
    /// `dport` (exactly one each).
    pub fn pair(&self, src: IpAddr, dport: u16) -> (Value, Value) {
        let one = |lines: &[Value], side: &str| -> Value {
            let found: Vec<&Value> = findings(lines)
                .into_iter()
                .filter(|f| flow_is(&f["flow"], src, dport))
                .collect();
            assert_eq!(
                found.len(),
                1,
                "{side}: want one finding for {src} -> port {dport}\n{}",
                self.context()
            );
            found[0].clone()
        };
        (one(&self.live, "live"), one(&self.offline, "offline"))
    }

    /// Panics unless the finding for `src` -> `dport` is `live` live and
    /// `offline` offline.
    pub fn expect(&self, src: IpAddr, dport: u16, live: &str, offline: &str) {
        let (l, o) = self.pair(src, dport);
        assert!(
            l["cause"] == live && o["cause"] == offline,
            "want live {live} and offline {offline} for {src} -> port {dport}:\n  live:    {l}\n  offline: {o}\n{}",
            self.context()
        );
    }
}
