//! The agent detaches without a trace: after SIGINT or SIGTERM in any mode,
//! and after SIGKILL in tcx mode, no program, link, tc filter or clsact
//! qdisc of it is left. In netlink mode a SIGKILL leaves filters behind,
//! which the next start removes and reports.

use std::time::Duration;

use integration_tests::session::START_WAIT;
use integration_tests::{require_root, Agent, Curl, Lab, Leftovers, Nginx};
use serde_json::Value;

/// Freeing programs after their last user is gone is asynchronous.
const FREE_WAIT: Duration = Duration::from_secs(3);

fn start(lab: &Lab, mode: Option<&str>) -> (Agent, Value) {
    let mut args = vec!["--ports", "80"];
    if let Some(mode) = mode {
        args.extend(["--attach-mode", mode]);
    }
    let mut agent = Agent::start(lab, &args);
    let start = agent.wait_start(START_WAIT);
    // Some traffic through the attached programs.
    assert!(lab.curl(&Curl::to(80)).ok());
    (agent, start)
}

fn assert_attached(lab: &Lab, before: &Leftovers, agent: &Agent) -> Leftovers {
    let now = Leftovers::probe(lab).minus(before);
    eprintln!("attached: {now:#?}");
    assert!(
        !now.programs.is_empty(),
        "no otr_ program is loaded while the agent runs: the checks are blind\n{now:?}\n{}",
        agent.transcript()
    );
    now
}

fn assert_clean(lab: &Lab, before: &Leftovers, what: &str) {
    let left = Leftovers::wait_clean(lab, before, FREE_WAIT);
    assert!(left.is_empty(), "left behind after {what}: {left:#?}");
}

fn stop_leaves_nothing(test: &str, signal: i32, mode: Option<&str>) {
    if !require_root(test) {
        return;
    }
    let lab = Lab::new(test);
    let _nginx = Nginx::start(&lab, &[80], None);
    let before = Leftovers::probe(&lab);
    let (mut agent, _) = start(&lab, mode);
    assert_attached(&lab, &before, &agent);
    agent.stop(signal);
    let status = agent.exit_status();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?} after signal {signal}\n{}",
        agent.transcript()
    );
    assert_clean(&lab, &before, &format!("signal {signal}, mode {mode:?}"));
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn sigint_leaves_nothing() {
    stop_leaves_nothing("sigint", libc::SIGINT, None);
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn sigterm_leaves_nothing() {
    stop_leaves_nothing("sigterm", libc::SIGTERM, None);
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn netlink_sigint_leaves_nothing() {
    stop_leaves_nothing("nlsigint", libc::SIGINT, Some("netlink"));
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn tcx_sigkill_leaves_nothing() {
    if !require_root("tcx_sigkill_leaves_nothing") {
        return;
    }
    let lab = Lab::new("tcxkill");
    let _nginx = Nginx::start(&lab, &[80], None);
    let before = Leftovers::probe(&lab);
    let (mut agent, start) = start(&lab, Some("tcx"));
    assert_eq!(start["attach_mode"], "tcx", "{start}");
    let attached = assert_attached(&lab, &before, &agent);
    assert!(
        attached.tc_filters.is_empty() && attached.clsact.is_empty(),
        "tcx mode uses netlink tc filters: {attached:?}"
    );
    assert!(
        attached.links.iter().any(|l| l.contains("otr_tc_")),
        "no BPF link of the TC programs in tcx mode: {attached:?}"
    );
    agent.kill9();
    assert_clean(&lab, &before, "SIGKILL in tcx mode");
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn netlink_sigkill_leftovers_are_removed_by_the_next_start() {
    if !require_root("netlink_sigkill_leftovers_are_removed_by_the_next_start") {
        return;
    }
    let lab = Lab::new("nlkill");
    let _nginx = Nginx::start(&lab, &[80], None);
    let before = Leftovers::probe(&lab);
    let (mut first, start1) = start(&lab, Some("netlink"));
    assert_eq!(start1["attach_mode"], "netlink", "{start1}");
    first.kill9();
    // Filters hold the programs: nothing frees them. This also proves that
    // the test sees tc filters.
    let left = Leftovers::probe(&lab).minus(&before);
    eprintln!("after SIGKILL: {left:#?}");
    assert!(
        left.tc_filters
            .iter()
            .any(|f| f.starts_with(&lab.origin_veth)),
        "SIGKILL in netlink mode left no tc filter on {}: {left:#?}",
        lab.origin_veth
    );
    let (mut second, start2) = start(&lab, Some("netlink"));
    let stale = start2["stale_removed"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !stale.is_empty(),
        "the next start did not report the leftovers: {start2}\n{}",
        second.transcript()
    );
    second.stop(libc::SIGTERM);
    assert_clean(&lab, &before, "SIGTERM after removing stale filters");
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn a_panic_after_attaching_leaves_nothing_in_netlink_mode() {
    if !require_root("a_panic_after_attaching_leaves_nothing_in_netlink_mode") {
        return;
    }
    let lab = Lab::new("panic");
    let before = Leftovers::probe(&lab);
    // The agent's test hook panics right after everything is attached; the
    // unwinding must take the tc filters and the clsact qdisc down with it.
    let edge = lab.edge_ranges();
    let mut cmd = lab
        .origin
        .command(&integration_tests::agent::agent_bin().to_string_lossy());
    cmd.args([
        "--format",
        "json",
        "--attach-mode",
        "netlink",
        "--edge-ranges",
        &edge,
    ])
    .env("ORIGIN_TRACER_TEST_PANIC", "after-attach");
    let out = integration_tests::netns::run_bounded(&mut cmd, Duration::from_secs(20));
    assert_eq!(
        out.code(),
        Some(101),
        "a panic exits with 101: {} {}",
        out.describe_status(),
        out.stderr
    );
    assert!(
        out.stderr.contains("testing cleanup after a panic"),
        "{}",
        out.stderr
    );
    assert_clean(&lab, &before, "a panic in netlink mode");
}
