//! The output side as a log pipeline sees it: a reader that stalls loses
//! nothing, and a reader that goes away (`origin-tracer | head`) ends the
//! agent quietly with status 0.

use std::time::Duration;

use integration_tests::agent::agent_bin;
use integration_tests::netns::run_bounded;
use integration_tests::{require_root, Curl, Lab, Nginx};
use serde_json::Value;

fn agent_cmd(lab: &Lab, shell: &str) -> std::process::Command {
    let mut cmd = lab.origin.command("sh");
    cmd.args(["-c", shell]);
    cmd
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn a_stalled_reader_loses_nothing() {
    if !require_root("a_stalled_reader_loses_nothing") {
        return;
    }
    let lab = Lab::new("slow");
    let _nginx = Nginx::start(&lab, &[80], None);
    // The reader sleeps while far more than a pipe's 64 KiB is written.
    let shell = format!(
        "'{}' --format json --events all --duration 9s --edge-ranges {} | (sleep 7; cat)",
        agent_bin().display(),
        lab.edge_ranges()
    );
    let mut cmd = agent_cmd(&lab, &shell);
    let runner = std::thread::spawn(move || run_bounded(&mut cmd, Duration::from_secs(30)));
    std::thread::sleep(Duration::from_secs(2));
    let mut ok = 0;
    for _ in 0..150 {
        if lab.curl(&Curl::to(80)).ok() {
            ok += 1;
        }
    }
    let out = runner.join().expect("runner");
    assert!(out.success(), "{} {}", out.describe_status(), out.stderr);
    assert!(
        out.stdout.len() > 128 * 1024,
        "only {} bytes: the test did not fill the pipe",
        out.stdout.len()
    );
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let summary = lines.last().expect("summary");
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["lines_dropped"], 0);
    assert_eq!(summary["events_lost"], 0);
    let events = lines.iter().filter(|l| l["type"] == "event").count() as u64;
    assert_eq!(
        summary["events_received"].as_u64(),
        Some(events),
        "every kernel event has its line"
    );
    assert_eq!(
        summary["healthy_handshakes"].as_u64(),
        Some(ok),
        "every connection was followed"
    );
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn a_closed_output_ends_the_agent_quietly() {
    if !require_root("a_closed_output_ends_the_agent_quietly") {
        return;
    }
    let lab = Lab::new("pipe");
    let _nginx = Nginx::start(&lab, &[80], None);
    let shell = format!(
        "( '{}' --format json --events all --duration 60s --edge-ranges {}; echo \"rc=$?\" >&2 ) | head -n 1",
        agent_bin().display(),
        lab.edge_ranges()
    );
    let mut cmd = agent_cmd(&lab, &shell);
    let runner = std::thread::spawn(move || run_bounded(&mut cmd, Duration::from_secs(30)));
    std::thread::sleep(Duration::from_secs(2));
    // Events to write once `head` has gone: the write fails, the agent stops.
    for _ in 0..3 {
        lab.curl(&Curl::to(80));
    }
    let out = runner.join().expect("runner");
    assert!(
        out.status.is_some(),
        "the agent kept running with nobody reading"
    );
    assert_eq!(out.stderr.trim(), "rc=0", "quiet exit with status 0");
    let first: Value = serde_json::from_str(out.stdout.trim()).expect("one JSON line");
    assert_eq!(first["type"], "start");
}
