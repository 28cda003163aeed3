//! `--write-pcap`: the packets of the connections that ended in a finding,
//! and only those, land in a pcapng file that tcpdump reads and that
//! `origin-tracer analyze` diagnoses the same way.

use std::time::Duration;

use integration_tests::agent::agent_bin;
use integration_tests::backends::{Backend, Behavior};
use integration_tests::netns::run_bounded;
use integration_tests::{require_root, Agent, Curl, Family, Lab, Nginx, Source};
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

/// Secrets planted in requests (cookie, authorization, query string) and in
/// a response (`Set-Cookie`) of connections that end in findings.
const SECRETS: [&str; 4] = [
    "ot-cookie-7d1e9a",
    "ot-bearer-52c0f4",
    "ot-token-a93b11",
    "ot-setcookie-0e64d8",
];

fn curl_with_secrets(lab: &Lab, port: u16) -> bool {
    let url = format!(
        "http://{}:{port}/account?token={}",
        lab.origin_addr(Family::V4),
        SECRETS[2]
    );
    lab.run_curl(
        lab.client_addr(Family::V4, Source::Edge),
        (Duration::from_secs(2), Duration::from_secs(4)),
        &[
            "-H".into(),
            format!("Cookie: session={}", SECRETS[0]),
            "-H".into(),
            format!("Authorization: Bearer {}", SECRETS[1]),
            url,
        ],
    )
    .ok()
}

fn holds(bytes: &[u8], secret: &str) -> bool {
    bytes.windows(secret.len()).any(|w| w == secret.as_bytes())
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn secrets_never_leave_the_agent() {
    if !require_root("secrets_never_leave_the_agent") {
        return;
    }
    let lab = Lab::new("secret");
    let _closes = Backend::start(&lab, 8080, Behavior::Close);
    let cookie = format!("sid={}", SECRETS[3]);
    let _big = Backend::start(&lab, 8081, Behavior::HeadersWithCookie(20_000, cookie));
    let file = lab.dir().join("evidence.pcapng");
    let file_arg = file.display().to_string();
    let mut agent = Agent::start_debug(&lab, &["--ports", "8080,8081", "--write-pcap", &file_arg]);
    agent.wait_start(Duration::from_secs(20));
    assert!(
        !curl_with_secrets(&lab, 8080),
        "the origin closes without a response"
    );
    curl_with_secrets(&lab, 8081);
    for cause in ["closed_without_response", "headers_too_large"] {
        agent
            .wait_for(|v| v["cause"] == cause, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no {cause} finding: {:#?}", agent.lines()));
    }
    let lines = agent.stop(libc::SIGINT);
    let stdout = lines.iter().fold(String::new(), |mut out, l| {
        out.push_str(&l.to_string());
        out.push('\n');
        out
    });
    let stderr = agent.stderr();
    let evidence = std::fs::read(&file).expect("the evidence file");
    for secret in SECRETS {
        assert!(!stdout.contains(secret), "{secret} in stdout:\n{stdout}");
        assert!(
            !stderr.contains(secret),
            "{secret} in the debug log:\n{stderr}"
        );
        assert!(!holds(&evidence, secret), "{secret} in the evidence file");
    }
    let pcap = &lines.last().expect("summary")["pcap"];
    assert_eq!(pcap["flows_written"], 2, "{pcap}");
    assert_eq!(pcap["payload"], "masked", "{pcap}");
    assert!(pcap["packets_masked"].as_u64() >= Some(2), "{pcap}");

    tshark_reads_masked_packets(&file_arg);
}

/// tshark reads the file: both flows, the rewritten packets say so and none
/// has a bad checksum (the others keep theirs as captured: on a veth the
/// hook sees the partial checksums offload would complete).
fn tshark_reads_masked_packets(file_arg: &str) {
    let read = run_bounded(
        std::process::Command::new("tshark").args([
            "-r",
            file_arg,
            "-o",
            "tcp.check_checksum:TRUE",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "tcp.port",
            "-e",
            "tcp.checksum.status",
            "-e",
            "frame.comment",
        ]),
        Duration::from_secs(20),
    );
    assert!(read.success(), "tshark cannot read it: {}", read.stderr);
    let rows: Vec<Vec<&str>> = read
        .stdout
        .lines()
        .map(|l| l.split('|').collect())
        .collect();
    for port in ["8080", "8081"] {
        assert!(
            rows.iter().any(|r| r[0].split(',').any(|p| p == port)),
            "no packet of port {port}:\n{}",
            read.stdout
        );
    }
    let rewritten: Vec<&Vec<&str>> = rows
        .iter()
        .filter(|r| r.get(2).is_some_and(|c| c.contains("origin-tracer")))
        .collect();
    assert!(
        rewritten
            .iter()
            .any(|r| r[2].contains("masked: ") && r[2].contains("cookie (")),
        "{}",
        read.stdout
    );
    assert!(
        rewritten.iter().any(|r| r[2].contains("set-cookie")),
        "{}",
        read.stdout
    );
    assert!(
        rewritten.iter().all(|r| r[1] != "0"),
        "a rewritten packet with a bad checksum:\n{}",
        read.stdout
    );
    assert!(
        rewritten.iter().any(|r| r[1] == "1"),
        "no rewritten packet whose checksum tshark verified:\n{}",
        read.stdout
    );
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn raw_evidence_keeps_the_bytes_and_warns() {
    if !require_root("raw_evidence_keeps_the_bytes_and_warns") {
        return;
    }
    let lab = Lab::new("rawpcap");
    let _closes = Backend::start(&lab, 8080, Behavior::Close);
    let raw = lab.dir().join("raw.pcapng");
    let raw_arg = raw.display().to_string();
    let mut agent = Agent::start(
        &lab,
        &[
            "--ports",
            "8080",
            "--write-pcap",
            &raw_arg,
            "--write-pcap-raw",
        ],
    );
    agent.wait_start(Duration::from_secs(20));
    curl_with_secrets(&lab, 8080);
    agent
        .wait_for(|v| v["type"] == "finding", Duration::from_secs(10))
        .expect("a finding");
    let lines = agent.stop(libc::SIGINT);
    assert_eq!(lines.last().expect("summary")["pcap"]["payload"], "raw");
    assert!(
        agent.stderr().contains("--write-pcap-raw"),
        "{}",
        agent.stderr()
    );
    let evidence = std::fs::read(&raw).expect("the raw evidence file");
    assert!(holds(&evidence, SECRETS[0]), "the raw file keeps the bytes");
}
