//! Cloudflare's second 522: the handshake completes, then the origin never
//! acknowledges the edge's request. A real nft rule drops the edge's data
//! segments on a watched port (the handshake passes); curl resends its
//! request until it gives up; the agent, with a short `--ack-timeout`,
//! names `request_unacked` with the kernel's drop as evidence.

use integration_tests::session::{findings_for, finish, start_agent};
use integration_tests::verdict::evidence_items;
use integration_tests::{require_root, Curl, Family, Firewall, Lab, Nginx, Source};
use std::time::Duration;

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn a_request_dropped_after_the_handshake_is_request_unacked() {
    if !require_root("a_request_dropped_after_the_handshake_is_request_unacked") {
        return;
    }
    let lab = Lab::new("unacked");
    let _nginx = Nginx::start(&lab, &[80], None);
    lab.firewall(Firewall::NftDropData, 80);
    let agent = start_agent(
        &lab,
        &[
            "--ports",
            "80",
            "--ack-timeout",
            "2s",
            "--response-timeout",
            "30s",
        ],
    );
    let mut curl = Curl::to(80);
    curl.max_time = Duration::from_secs(4);
    let r = lab.curl(&curl);
    assert_eq!(r.code, Some(28), "the request goes unanswered: {r:?}");
    let lines = finish(agent);
    let src = lab.client_addr(Family::V4, Source::Edge);
    let found = findings_for(&lines, src, 80);
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = found[0];
    assert!(
        f["cause"] == "request_unacked" && f["class"] == "522" && f["confidence"] == "high",
        "want 522 request_unacked (high: the kernel dropped it): {f}"
    );
    let drops = evidence_items(f, "kernel_drop");
    assert!(
        drops.iter().any(|d| d["reason"] == "NETFILTER_DROP"),
        "the firewall's drop of the request is the evidence: {f}"
    );
    assert!(f["hint"].as_str().unwrap_or("").contains("firewall"), "{f}");
}
