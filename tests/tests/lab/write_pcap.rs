//! `--write-pcap`: the packets of the connections that ended in a finding,
//! and only those, land in a pcapng file that tcpdump reads and that
//! `origin-tracer analyze` diagnoses the same way.

use std::time::Duration;

use integration_tests::agent::agent_bin;
use integration_tests::netns::run_bounded;
use integration_tests::{require_root, Agent, Curl, Lab, Nginx};
use serde_json::Value;

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn failed_connections_are_written_and_read_back() {
    if !require_root("failed_connections_are_written_and_read_back") {
        return;
    }
    let lab = Lab::new("wpcap");
    let _nginx = Nginx::start(&lab, &[80], None);
    let file = lab.dir().join("evidence.pcapng");
    let file_arg = file.display().to_string();
    let mut agent = Agent::start(&lab, &["--ports", "80,81", "--write-pcap", &file_arg]);
    agent.wait_start(Duration::from_secs(20));
    assert!(lab.curl(&Curl::to(80)).ok());
    assert!(!lab.curl(&Curl::to(81)).ok());
    let finding = agent
        .wait_for(|v| v["type"] == "finding", Duration::from_secs(10))
        .expect("a finding for the closed port");
    let lines = agent.stop(libc::SIGINT);
    let summary = lines.last().expect("summary");
    assert_eq!(summary["pcap"]["flows_written"], 1, "{summary}");
    assert_eq!(summary["pcap"]["complete"], true);

    let read = run_bounded(
        std::process::Command::new("tcpdump").args(["-nr", &file_arg]),
        Duration::from_secs(10),
    );
    assert!(read.success(), "tcpdump cannot read it: {}", read.stderr);
    assert!(read.stdout.lines().count() >= 2, "{}", read.stdout);

    let out = run_bounded(
        std::process::Command::new(agent_bin()).args([
            "analyze",
            &file_arg,
            "--format",
            "json",
            "--ports",
            "80,81",
            "--edge-ranges",
            &lab.edge_ranges(),
        ]),
        Duration::from_secs(10),
    );
    assert!(out.success(), "{}", out.stderr);
    let offline: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let found: Vec<&Value> = offline.iter().filter(|l| l["type"] == "finding").collect();
    assert_eq!(found.len(), 1, "{offline:#?}");
    assert_eq!(found[0]["flow"], finding["flow"], "the same connection");
    assert_eq!(found[0]["cause"], "no_listener");
    assert_eq!(found[0]["source"], "capture");
    // Only the failed connection was written: no healthy handshake in the file.
    assert_eq!(offline.last().unwrap()["healthy_handshakes"], 0);
}
