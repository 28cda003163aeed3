//! Live and offline agree: for each TCP-level failure the live tests produce,
//! tcpdump records the origin while the live agent watches, then
//! `origin-tracer analyze` reads the capture. Every live finding must appear
//! offline for the same connection with the same class, and the offline cause
//! must be the live one or its packet-only counterpart (docs/SCHEMA.md, "What a
//! capture can and cannot tell"); no finding may appear on one side only.
//! One lab per test.
//!
//! A capture ends at its last packet, not when tcpdump stopped: so that it
//! demonstrably covers `--syn-timeout` after the last SYN, each recording
//! ends with a marker connection from a non-edge address to an unwatched
//! port, which the agent ignores.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::thread::sleep;
use std::time::{Duration, Instant};

use integration_tests::agent::render;
use integration_tests::capture::analyze;
use integration_tests::verdict::{
    assert_one_finding_per_flow, assert_schema, evidence_events, findings, flow_is, is_finding_for,
    summary,
};
use integration_tests::{
    require_root, Agent, Curl, Family, Firewall, Lab, Nginx, Source, Tap, Tcpdump,
};
use serde_json::Value;

const START_WAIT: Duration = Duration::from_secs(20);
const FINDING_WAIT: Duration = Duration::from_secs(15);
/// The agent's `--syn-timeout` ([`Agent::start`]) and analyze's.
const SYN_TIMEOUT: Duration = Duration::from_secs(3);
const SYN_TIMEOUT_ARG: &str = "3s";
/// Not watched: the marker connection at the end of a recording.
const MARKER_PORT: u16 = 9;

/// Evidence events made from packets (TC in the kernel, the capture
/// offline); the others are kernel-only.
const PACKET_EVENTS: [&str; 8] = [
    "syn_in",
    "ack_in",
    "rst_in",
    "fin_in",
    "synack_out",
    "rst_out",
    "fin_out",
    "icmp_unreach_out",
];

/// A live agent and a tcpdump watching the same origin.
struct Recording<'a> {
    lab: &'a Lab,
    ports: String,
    tcpdump: Tcpdump,
    agent: Agent,
}

impl<'a> Recording<'a> {
    /// Starts tcpdump on `tap`, then the agent on `ports`; returns once both
    /// are ready.
    fn start(lab: &'a Lab, tap: Tap, ports: &str) -> Recording<'a> {
        let tcpdump = Tcpdump::start(lab, tap, "origin");
        let mut agent = Agent::start(lab, &["--ports", ports]);
        agent.wait_start(START_WAIT);
        Recording {
            lab,
            ports: ports.to_owned(),
            tcpdump,
            agent,
        }
    }

    /// Call when the clients have returned: waits for the live finding of
    /// each of `expect` (edge source, origin port), lets the capture run
    /// until `--syn-timeout` + 1 s after the last SYN, ends it with the
    /// marker connection, stops tcpdump and the agent, analyzes the capture
    /// and compares. Returns both runs.
    fn finish(self, expect: &[(IpAddr, u16)]) -> Runs {
        let last_syn = Instant::now();
        let Recording {
            lab,
            ports,
            tcpdump,
            mut agent,
        } = self;
        for (src, dport) in expect {
            agent
                .wait_for(|l| is_finding_for(l, *src, *dport), FINDING_WAIT)
                .unwrap_or_else(|| {
                    panic!(
                        "no live finding for {src} -> port {dport} within {FINDING_WAIT:?}\n{}",
                        agent.transcript()
                    )
                });
        }
        let covered = last_syn + SYN_TIMEOUT + Duration::from_secs(1);
        sleep(covered.saturating_duration_since(Instant::now()));
        let marker = lab.curl(&Curl::to(MARKER_PORT).source(Source::NonEdge));
        assert_eq!(marker.code, Some(7), "marker connection: {marker:?}");
        sleep(Duration::from_millis(300));
        let file = tcpdump.path().to_owned();
        let tcpdump_said = tcpdump.stop();
        let live = agent.stop(libc::SIGINT);
        let (_, offline) = analyze(
            &file,
            &[
                "--edge-ranges",
                &lab.edge_ranges(),
                "--ports",
                &ports,
                "--syn-timeout",
                SYN_TIMEOUT_ARG,
            ],
        );
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

/// A live run and the offline run of its capture.
struct Runs {
    live: Vec<Value>,
    offline: Vec<Value>,
    file: std::path::PathBuf,
    ports: String,
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
type FlowKey = (String, u64, String, u64);

fn flow_key(line: &Value) -> FlowKey {
    let f = &line["flow"];
    (
        f["src"].as_str().unwrap_or("?").to_owned(),
        f["sport"].as_u64().unwrap_or(0),
        f["dst"].as_str().unwrap_or("?").to_owned(),
        f["dport"].as_u64().unwrap_or(0),
    )
}

/// SCHEMA.md's table "What a capture can and cannot tell": live cause
/// (`firewall_reject` told apart by how it rejected) -> cause from a capture.
const COUNTERPARTS: [(&str, &str); 8] = [
    ("no_listener", "no_listener"),
    // A firewall's RST looks like the stack's.
    ("firewall_reject by RST", "no_listener"),
    ("firewall_reject by ICMP", "firewall_reject"),
    ("firewall_drop", "syn_unanswered"),
    ("listen_overflow", "syn_unanswered"),
    ("kernel_drop", "syn_unanswered"),
    ("synack_unacked", "synack_unacked"),
    ("syn_unanswered", "syn_unanswered"),
];

/// The offline cause a live finding must become.
fn offline_cause(live: &Value) -> Option<&'static str> {
    let mut cause = live["cause"].as_str()?.to_owned();
    if cause == "firewall_reject" {
        let icmp = evidence_events(live).contains(&"icmp_unreach_out");
        cause.push_str(if icmp { " by ICMP" } else { " by RST" });
    }
    COUNTERPARTS
        .iter()
        .find(|(l, _)| *l == cause)
        .map(|(_, o)| *o)
}

impl Runs {
    /// Both runs follow the schema with their own source, nothing is
    /// inconclusive, and the findings agree connection by connection.
    fn compare(&self) {
        assert_schema(&self.live);
        assert_schema(&self.offline);
        assert_one_finding_per_flow(&self.live);
        assert_one_finding_per_flow(&self.offline);
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
            "the capture covers --syn-timeout after the last SYN, yet connections are inconclusive\n{}",
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
    fn context(&self) -> String {
        format!(
            "capture {} (ports {}; tcpdump: {})\n---- live ----\n{}\n---- offline ----\n{}",
            self.file.display(),
            self.ports,
            self.tcpdump,
            render(&self.live),
            render(&self.offline)
        )
    }

    /// The live and the offline finding for connections from `src` to
    /// `dport` (exactly one each).
    fn pair(&self, src: IpAddr, dport: u16) -> (Value, Value) {
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
    fn expect(&self, src: IpAddr, dport: u16, live: &str, offline: &str) {
        let (l, o) = self.pair(src, dport);
        assert!(
            l["cause"] == live && o["cause"] == offline,
            "want live {live} and offline {offline} for {src} -> port {dport}:\n  live:    {l}\n  offline: {o}\n{}",
            self.context()
        );
    }
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn healthy_requests_agree() {
    if !require_root("healthy_requests_agree") {
        return;
    }
    let lab = Lab::new("dhealthy");
    let _nginx = Nginx::start(&lab, &[80], None);
    let rec = Recording::start(&lab, Tap::OriginVeth, "80");
    for _ in 0..3 {
        let r = lab.curl(&Curl::to(80));
        assert!(r.ok(), "{r:?}");
        let r = lab.curl(&Curl::to(80).v6());
        assert!(r.ok(), "{r:?}");
    }
    let runs = rec.finish(&[]);
    assert!(findings(&runs.offline).is_empty(), "{}", runs.context());
    let healthy = summary(&runs.offline)["healthy_handshakes"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        healthy >= 6,
        "healthy_handshakes {healthy} offline, want >= 6\n{}",
        runs.context()
    );
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn closed_port_agrees() {
    if !require_root("closed_port_agrees") {
        return;
    }
    let lab = Lab::new("dclosed");
    let _nginx = Nginx::start(&lab, &[80], None);
    let rec = Recording::start(&lab, Tap::OriginVeth, "80,81");
    assert_eq!(lab.curl(&Curl::to(81)).code, Some(7));
    let edge = IpAddr::V4(lab.edge_v4);
    let runs = rec.finish(&[(edge, 81)]);
    runs.expect(edge, 81, "no_listener", "no_listener");
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn nft_drop_agrees() {
    if !require_root("nft_drop_agrees") {
        return;
    }
    let lab = Lab::new("ddrop");
    let _nginx = Nginx::start(&lab, &[80], None);
    lab.firewall(Firewall::NftDrop, 80);
    let rec = Recording::start(&lab, Tap::Any, "80");
    assert_eq!(lab.curl(&Curl::to(80)).code, Some(28));
    let edge = IpAddr::V4(lab.edge_v4);
    let runs = rec.finish(&[(edge, 80)]);
    runs.expect(edge, 80, "firewall_drop", "syn_unanswered");

    // The same capture with a --syn-timeout it does not cover: the dropped
    // connection is inconclusive, not a finding.
    let (_, long) = analyze(
        &runs.file,
        &[
            "--edge-ranges",
            &lab.edge_ranges(),
            "--ports",
            "80",
            "--syn-timeout",
            "60s",
        ],
    );
    assert_schema(&long);
    let inconclusive: Vec<&Value> = long
        .iter()
        .filter(|l| l["type"] == "inconclusive")
        .collect();
    let (live, _) = runs.pair(edge, 80);
    assert!(
        findings(&long).is_empty()
            && inconclusive.len() == 1
            && inconclusive[0]["flow"] == live["flow"]
            && inconclusive[0]["needed_ms"] == 60_000
            && inconclusive[0]["watched_ms"]
                .as_u64()
                .is_some_and(|w| (4_000..60_000).contains(&w)),
        "with --syn-timeout 60s, want the dropped connection inconclusive and no finding:\n{}\n---- live ----\n{}",
        render(&long),
        render(&runs.live)
    );
    assert_eq!(summary(&long)["pending_at_exit"], 1);
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn nft_reject_with_reset_agrees() {
    if !require_root("nft_reject_with_reset_agrees") {
        return;
    }
    let lab = Lab::new("drst");
    let _nginx = Nginx::start(&lab, &[80], None);
    lab.firewall(Firewall::NftRejectReset, 80);
    let rec = Recording::start(&lab, Tap::OriginVeth, "80");
    assert_eq!(lab.curl(&Curl::to(80)).code, Some(7));
    let edge = IpAddr::V4(lab.edge_v4);
    let runs = rec.finish(&[(edge, 80)]);
    // A firewall's RST looks like the stack's on the wire.
    runs.expect(edge, 80, "firewall_reject", "no_listener");
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn nft_reject_with_icmp_agrees() {
    if !require_root("nft_reject_with_icmp_agrees") {
        return;
    }
    let lab = Lab::new("dicmp");
    let _nginx = Nginx::start(&lab, &[80], None);
    lab.firewall(Firewall::NftRejectIcmp, 80);
    let rec = Recording::start(&lab, Tap::Any, "80");
    assert_eq!(lab.curl(&Curl::to(80)).code, Some(7));
    assert_eq!(lab.curl(&Curl::to(80).v6()).code, Some(7));
    let (edge4, edge6) = (IpAddr::V4(lab.edge_v4), IpAddr::V6(lab.edge_v6));
    let runs = rec.finish(&[(edge4, 80), (edge6, 80)]);
    runs.expect(edge4, 80, "firewall_reject", "firewall_reject");
    runs.expect(edge6, 80, "firewall_reject", "firewall_reject");
    let (_, o) = runs.pair(edge4, 80);
    assert!(
        evidence_events(&o).contains(&"icmp_unreach_out"),
        "offline evidence lacks the ICMP error: {o}"
    );
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn full_accept_queue_agrees() {
    if !require_root("full_accept_queue_agrees") {
        return;
    }
    let lab = Lab::new("doverflow");
    let nginx = Nginx::start(&lab, &[80], Some(1));
    nginx.hang();
    let rec = Recording::start(&lab, Tap::OriginVeth, "80");
    let results = lab.curl_parallel(&Curl::to(80).connect_timeout(Duration::from_secs(4)), 6);
    assert!(
        results.iter().any(|r| !r.ok()),
        "every request got through: {results:?}"
    );
    let edge = IpAddr::V4(lab.edge_v4);
    let runs = rec.finish(&[(edge, 80)]);
    let overflow: Vec<&Value> = findings(&runs.live)
        .into_iter()
        .filter(|f| f["cause"] == "listen_overflow")
        .collect();
    assert!(
        !overflow.is_empty(),
        "no live listen_overflow finding\n{}",
        runs.context()
    );
    // compare() matched each of them offline as syn_unanswered.
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn lost_synacks_agree() {
    if !require_root("lost_synacks_agree") {
        return;
    }
    let lab = Lab::new("dretpath");
    let _nginx = Nginx::start(&lab, &[80], None);
    lab.break_return_path();
    // -i any: the SYN-ACKs leave through the void device, not the veth.
    let rec = Recording::start(&lab, Tap::Any, "80");
    let r = lab.curl(&Curl::to(80).connect_timeout(Duration::from_secs(4)));
    assert_eq!(r.code, Some(28), "{r:?}");
    let edge = IpAddr::V4(lab.edge_v4);
    let runs = rec.finish(&[(edge, 80)]);
    runs.expect(edge, 80, "synack_unacked", "synack_unacked");
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn ipv6_closed_port_and_drop_agree() {
    if !require_root("ipv6_closed_port_and_drop_agree") {
        return;
    }
    let lab = Lab::new("dipv6");
    let _nginx = Nginx::start(&lab, &[80], None);
    lab.firewall(Firewall::NftDrop, 80);
    let rec = Recording::start(&lab, Tap::Any, "80,81");
    assert_eq!(lab.curl(&Curl::to(81).v6()).code, Some(7));
    assert_eq!(lab.curl(&Curl::to(80).v6()).code, Some(28));
    let edge = IpAddr::V6(lab.edge_v6);
    let runs = rec.finish(&[(edge, 81), (edge, 80)]);
    runs.expect(edge, 81, "no_listener", "no_listener");
    runs.expect(edge, 80, "firewall_drop", "syn_unanswered");
    let (l, _) = runs.pair(edge, 80);
    assert_eq!(l["flow"]["family"], Family::V6.as_str());
}
