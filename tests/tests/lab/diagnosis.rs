//! The agent names each TCP-level failure of an edge connection: a real
//! nginx, real faults, real curl clients in the lab, one lab per test.

use std::net::IpAddr;
use std::thread::sleep;
use std::time::Duration;

use integration_tests::session::{findings_for, finish, start_agent, FINDING_WAIT};
use integration_tests::verdict::{
    assert_cause, assert_evidence, evidence_items, findings, is_finding_for, kernel_names_drops,
    summary,
};
use integration_tests::{require_root, Agent, Curl, Family, Firewall, Lab, Nginx, Proc, Source};
use serde_json::Value;

/// Waits for the finding of a connection from the edge address of `family`
/// to `dport`; panics with the agent's transcript if none comes.
fn wait_finding(agent: &Agent, lab: &Lab, family: Family, dport: u16) -> Value {
    let src = lab.client_addr(family, Source::Edge);
    agent
        .wait_for(|l| is_finding_for(l, src, dport), FINDING_WAIT)
        .unwrap_or_else(|| {
            panic!(
                "no finding for {src} -> port {dport} within {FINDING_WAIT:?}\n{}",
                agent.transcript()
            )
        })
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn healthy_requests_make_no_findings() {
    if !require_root("healthy_requests_make_no_findings") {
        return;
    }
    let lab = Lab::new("healthy");
    let _nginx = Nginx::start(&lab, &[80], None);
    let agent = start_agent(&lab, &["--ports", "80"]);
    for _ in 0..3 {
        let r = lab.curl(&Curl::to(80));
        assert!(r.ok(), "{r:?}");
    }
    let lines = finish(agent);
    assert!(findings(&lines).is_empty(), "findings for healthy requests");
    let healthy = summary(&lines)["healthy_handshakes"].as_u64().unwrap_or(0);
    assert!(healthy >= 3, "healthy_handshakes {healthy}, want >= 3");
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn closed_port_is_no_listener() {
    if !require_root("closed_port_is_no_listener") {
        return;
    }
    let lab = Lab::new("closed");
    // nginx on 80, and on 81 for loopback only (a server bound to
    // 127.0.0.1 by mistake); nothing at all on 82.
    let servers = format!(
        "  server {{\n{}    return 200 \"ok\\n\";\n  }}\n  server {{\n    listen 127.0.0.1:81;\n    return 200 \"ok\\n\";\n  }}\n",
        Nginx::listen(&lab, 80, "")
    );
    let _nginx = Nginx::start_servers(&lab, &[80], &servers);
    let agent = start_agent(&lab, &["--ports", "80,81,82"]);
    for port in [81, 82] {
        let r = lab.curl(&Curl::to(port));
        assert_eq!(r.code, Some(7), "{r:?}");
        wait_finding(&agent, &lab, Family::V4, port);
    }
    let lines = finish(agent);
    // Live, the finding says who does listen on the port, and where.
    let on = |port| findings_for(&lines, IpAddr::V4(lab.edge_v4), port)[0].clone();
    let f81 = on(81);
    let listeners = f81["listeners"].as_array().cloned().unwrap_or_default();
    assert!(
        !listeners.is_empty()
            && listeners.iter().all(|l| l["address"] == "127.0.0.1"
                && l["process"] == "nginx"
                && l["pid"].is_u64()),
        "the loopback-only nginx: {f81}"
    );
    assert!(
        f81["hint"]
            .as_str()
            .is_some_and(|h| h.contains("listens only on 127.0.0.1:81 (nginx")),
        "{f81}"
    );
    let f82 = on(82);
    assert_eq!(f82["listeners"], serde_json::json!([]), "{f82}");
    assert!(
        f82["hint"]
            .as_str()
            .is_some_and(|h| h.starts_with("nothing listens on port 82 on this host")),
        "{f82}"
    );
    let found = findings_for(&lines, IpAddr::V4(lab.edge_v4), 81);
    assert_eq!(found.len(), 1, "one connection, one finding: {found:?}");
    let f = found[0];
    assert_cause(f, "no_listener", "ipv4", &lines);
    let confidence = if kernel_names_drops(&lines) {
        "high"
    } else {
        "medium"
    };
    assert_eq!(f["confidence"], confidence, "{f}");
    assert_eq!(f["flow"]["dst"], lab.origin_v4.to_string());
    assert_evidence(f, &["syn_in", "rst_out"]);
}

/// One firewall fault on port 80 (nginx listens): the finding's cause.
fn firewall_case(tag: &str, rule: Firewall, cause: &str, family: Family) -> (Value, Vec<Value>) {
    let lab = Lab::new(tag);
    let _nginx = Nginx::start(&lab, &[80], None);
    lab.firewall(rule, 80);
    let agent = start_agent(&lab, &["--ports", "80"]);
    let mut client = Curl::to(80);
    if family == Family::V6 {
        client = client.v6();
    }
    let r = lab.curl(&client);
    assert!(!r.ok(), "{rule:?} let the connection through: {r:?}");
    wait_finding(&agent, &lab, family, 80);
    let lines = finish(agent);
    let found = findings_for(&lines, lab.client_addr(family, Source::Edge), 80);
    assert_eq!(found.len(), 1, "one connection, one finding: {found:?}");
    let f = found[0].clone();
    assert_cause(&f, cause, family.as_str(), &lines);
    (f, lines)
}

fn assert_netfilter_drop(f: &Value) {
    let drops = evidence_items(f, "kernel_drop");
    assert!(
        drops.iter().any(|d| d["reason"] == "NETFILTER_DROP"),
        "no kernel_drop NETFILTER_DROP in the evidence: {f}"
    );
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn nft_drop_is_firewall_drop() {
    if !require_root("nft_drop_is_firewall_drop") {
        return;
    }
    let (f, _) = firewall_case("nftdrop", Firewall::NftDrop, "firewall_drop", Family::V4);
    assert_netfilter_drop(&f);
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn nft_reject_with_reset_is_firewall_reject() {
    if !require_root("nft_reject_with_reset_is_firewall_reject") {
        return;
    }
    let (f, _) = firewall_case(
        "nftrst",
        Firewall::NftRejectReset,
        "firewall_reject",
        Family::V4,
    );
    assert_evidence(&f, &["syn_in", "rst_out"]);
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn nft_reject_with_icmp_is_firewall_reject() {
    if !require_root("nft_reject_with_icmp_is_firewall_reject") {
        return;
    }
    let (f, _) = firewall_case(
        "nfticmp",
        Firewall::NftRejectIcmp,
        "firewall_reject",
        Family::V4,
    );
    assert_evidence(&f, &["syn_in", "icmp_unreach_out"]);
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn iptables_drop_and_reject_are_named() {
    if !require_root("iptables_drop_and_reject_are_named") {
        return;
    }
    let lab = Lab::new("iptables");
    let _nginx = Nginx::start(&lab, &[80, 81], None);
    lab.firewall(Firewall::IptablesDrop, 80);
    lab.firewall(Firewall::IptablesRejectReset, 81);
    let agent = start_agent(&lab, &["--ports", "80,81"]);
    assert_eq!(lab.curl(&Curl::to(80)).code, Some(28));
    assert_eq!(lab.curl(&Curl::to(81)).code, Some(7));
    wait_finding(&agent, &lab, Family::V4, 80);
    wait_finding(&agent, &lab, Family::V4, 81);
    let lines = finish(agent);
    let edge = IpAddr::V4(lab.edge_v4);
    let drop = findings_for(&lines, edge, 80);
    let reject = findings_for(&lines, edge, 81);
    assert_eq!(
        (drop.len(), reject.len()),
        (1, 1),
        "one finding per connection"
    );
    assert_cause(drop[0], "firewall_drop", "ipv4", &lines);
    assert_netfilter_drop(drop[0]);
    assert_cause(reject[0], "firewall_reject", "ipv4", &lines);
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn full_accept_queue_is_listen_overflow() {
    if !require_root("full_accept_queue_is_listen_overflow") {
        return;
    }
    let lab = Lab::new("overflow");
    let nginx = Nginx::start(&lab, &[80], Some(1));
    nginx.hang();
    let agent = start_agent(&lab, &["--ports", "80"]);
    let results = lab.curl_parallel(&Curl::to(80).connect_timeout(Duration::from_secs(4)), 6);
    assert!(
        results.iter().any(|r| !r.ok()),
        "every request got through: {results:?}"
    );
    let src = IpAddr::V4(lab.edge_v4);
    agent
        .wait_for(
            |l| is_finding_for(l, src, 80) && l["cause"] == "listen_overflow",
            FINDING_WAIT,
        )
        .unwrap_or_else(|| panic!("no listen_overflow finding\n{}", agent.transcript()));
    let lines = finish(agent);
    let found = findings_for(&lines, src, 80);
    assert!(
        found.iter().all(|f| f["class"] == "522"),
        "a SYN to a full queue is never refused, so no 521: {found:?}"
    );
    let overflow = found
        .iter()
        .find(|f| f["cause"] == "listen_overflow")
        .expect("found above");
    assert_cause(overflow, "listen_overflow", "ipv4", &lines);
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn lost_synacks_are_synack_unacked() {
    if !require_root("lost_synacks_are_synack_unacked") {
        return;
    }
    let lab = Lab::new("retpath");
    let _nginx = Nginx::start(&lab, &[80], None);
    lab.break_return_path();
    let agent = start_agent(&lab, &["--ports", "80"]);
    let r = lab.curl(&Curl::to(80).connect_timeout(Duration::from_secs(4)));
    assert_eq!(r.code, Some(28), "{r:?}");
    let f = wait_finding(&agent, &lab, Family::V4, 80);
    let lines = finish(agent);
    assert_cause(&f, "synack_unacked", "ipv4", &lines);
    assert_evidence(&f, &["syn_in", "synack_out", "synack_retransmit"]);
}

/// A listener on `[::]:PORT` that also takes IPv4 (`IPV6_V6ONLY` off, as
/// Apache, Node and Go listen); it never accepts.
const DUAL_STACK: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1])))
s.listen(16)
time.sleep(60)
"#;

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn an_ipv4_edge_on_a_dual_stack_socket_keeps_its_kernel_evidence() {
    if !require_root("an_ipv4_edge_on_a_dual_stack_socket_keeps_its_kernel_evidence") {
        return;
    }
    let lab = Lab::new("dualstack");
    let mut cmd = lab.origin.command("python3");
    cmd.args(["-c", DUAL_STACK, "8081"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _server = Proc::spawn("dual-stack listener", &mut cmd);
    let listening = (0..250).any(|_| {
        sleep(Duration::from_millis(20));
        lab.origin.run_ok("ss", &["-Hltn"]).contains(":8081 ")
    });
    assert!(listening, "the dual-stack listener did not start");
    // The socket-level events (the kernel's SYN-ACK retransmits) carry
    // IPv4-mapped addresses; they must reach the IPv4 flow.
    lab.break_return_path();
    let agent = start_agent(&lab, &["--ports", "8081"]);
    let r = lab.curl(&Curl::to(8081).connect_timeout(Duration::from_secs(4)));
    assert_eq!(r.code, Some(28), "{r:?}");
    let f = wait_finding(&agent, &lab, Family::V4, 8081);
    let lines = finish(agent);
    assert_cause(&f, "synack_unacked", "ipv4", &lines);
    assert_evidence(&f, &["syn_in", "synack_out", "synack_retransmit"]);
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn ipv6_closed_port_and_drop_are_named() {
    if !require_root("ipv6_closed_port_and_drop_are_named") {
        return;
    }
    let lab = Lab::new("ipv6");
    let _nginx = Nginx::start(&lab, &[80], None);
    lab.firewall(Firewall::NftDrop, 80);
    let agent = start_agent(&lab, &["--ports", "80,81"]);
    assert_eq!(lab.curl(&Curl::to(81).v6()).code, Some(7));
    assert_eq!(lab.curl(&Curl::to(80).v6()).code, Some(28));
    wait_finding(&agent, &lab, Family::V6, 81);
    wait_finding(&agent, &lab, Family::V6, 80);
    let lines = finish(agent);
    let edge = IpAddr::V6(lab.edge_v6);
    let closed = findings_for(&lines, edge, 81);
    let dropped = findings_for(&lines, edge, 80);
    assert_eq!(
        (closed.len(), dropped.len()),
        (1, 1),
        "one finding per connection"
    );
    assert_cause(closed[0], "no_listener", "ipv6", &lines);
    assert_evidence(closed[0], &["syn_in", "rst_out"]);
    assert_cause(dropped[0], "firewall_drop", "ipv6", &lines);
    assert_netfilter_drop(dropped[0]);
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn non_edge_sources_are_ignored() {
    if !require_root("non_edge_sources_are_ignored") {
        return;
    }
    let lab = Lab::new("nonedge");
    let _nginx = Nginx::start(&lab, &[80], None);
    lab.firewall(Firewall::NftDrop, 80);
    let agent = start_agent(&lab, &["--ports", "80,81"]);
    let other = |c: Curl| c.source(Source::NonEdge);
    assert_eq!(lab.curl(&other(Curl::to(81))).code, Some(7));
    assert_eq!(lab.curl(&other(Curl::to(81).v6())).code, Some(7));
    assert_eq!(lab.curl(&other(Curl::to(80))).code, Some(28));
    // Past --syn-timeout (3 s) of the dropped SYN, so that a finding would
    // have been written.
    sleep(Duration::from_secs(3));
    let lines = finish(agent);
    assert!(findings(&lines).is_empty(), "findings for non-edge sources");
    assert_eq!(summary(&lines)["findings_total"], 0);
}
