//! Tests of the lab itself, without the agent: each fault really breaks
//! connections the way the agent's tests expect, and a lab leaves nothing
//! behind.

use std::time::{Duration, Instant};

use integration_tests::netns::host;
use integration_tests::{require_root, Curl, Firewall, Lab, Nginx, Source};

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn lab_serves_both_families_from_both_sources() {
    if !require_root("lab_serves_both_families_from_both_sources") {
        return;
    }
    let lab = Lab::new("labok");
    let _nginx = Nginx::start(&lab, &[80], None);
    for source in [Source::Edge, Source::NonEdge] {
        for c in [
            Curl::to(80).source(source),
            Curl::to(80).v6().source(source),
        ] {
            let r = lab.curl(&c);
            assert!(r.ok() && r.body == "ok\n", "{c:?}: {r:?}");
        }
    }
    let closed = lab.curl(&Curl::to(81));
    assert_eq!(closed.code, Some(7), "closed port: {closed:?}");
    assert_eq!(lab.curl(&Curl::to(81).v6()).code, Some(7));
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn firewall_faults_break_connections() {
    if !require_root("firewall_faults_break_connections") {
        return;
    }
    let lab = Lab::new("labfw");
    let _nginx = Nginx::start(&lab, &[80], None);
    // Linux clients ignore an ICMPv6 unreachable for a SYN that was not
    // retransmitted yet: IPv6 refusal by ICMP takes ~1 s.
    let quick = Curl::to(80).connect_timeout(Duration::from_millis(1500));
    for (rule, code) in [
        (Firewall::NftDrop, 28),
        (Firewall::NftRejectReset, 7),
        (Firewall::NftRejectIcmp, 7),
        (Firewall::IptablesDrop, 28),
        (Firewall::IptablesRejectReset, 7),
    ] {
        lab.firewall(rule, 80);
        for c in [quick, quick.v6()] {
            let r = lab.curl(&c);
            assert_eq!(r.code, Some(code), "{rule:?} {c:?}: {r:?}");
        }
        lab.clear_firewall();
        assert!(lab.curl(&quick).ok(), "after clearing {rule:?}");
    }
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn broken_return_path_times_out_and_can_be_restored() {
    if !require_root("broken_return_path_times_out_and_can_be_restored") {
        return;
    }
    let lab = Lab::new("labrp");
    let _nginx = Nginx::start(&lab, &[80], None);
    let quick = Curl::to(80).connect_timeout(Duration::from_secs(1));
    lab.break_return_path();
    assert_eq!(lab.curl(&quick).code, Some(28));
    assert_eq!(lab.curl(&quick.v6()).code, Some(28));
    // The non-edge addresses are not affected.
    assert!(lab.curl(&quick.source(Source::NonEdge)).ok());
    let retrans = lab.origin.run_ok(
        "nstat",
        &["-az", "TcpExtTCPSynRetrans", "TcpExtTCPTimeouts"],
    );
    lab.restore_return_path();
    assert!(lab.curl(&quick).ok(), "restored; {retrans}");
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn hung_nginx_overflows_its_listen_queue() {
    if !require_root("hung_nginx_overflows_its_listen_queue") {
        return;
    }
    let lab = Lab::new("labov");
    let nginx = Nginx::start(&lab, &[80], Some(1));
    assert!(lab.curl(&Curl::to(80)).ok());
    nginx.hang();
    let overflows = || -> u64 {
        let out = lab
            .origin
            .run_ok("nstat", &["-az", "TcpExtListenOverflows"]);
        out.lines()
            .find(|l| l.starts_with("TcpExtListenOverflows"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let before = overflows();
    let results = lab.curl_parallel(&Curl::to(80).connect_timeout(Duration::from_secs(2)), 6);
    assert!(results.iter().any(|r| !r.ok()), "{results:?}");
    assert!(overflows() > before, "TcpExtListenOverflows did not rise");
    nginx.stop();
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn a_dropped_lab_leaves_nothing() {
    if !require_root("a_dropped_lab_leaves_nothing") {
        return;
    }
    let (names, dir) = {
        let lab = Lab::new("labgone");
        let _nginx = Nginx::start(&lab, &[80], None);
        lab.firewall(Firewall::NftDrop, 81);
        (
            [lab.edge.name().to_owned(), lab.origin.name().to_owned()],
            lab.dir().to_owned(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let list = host("ip", &["netns", "list"]).stdout;
        let left: Vec<_> = names.iter().filter(|n| list.contains(n.as_str())).collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "namespaces left: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!dir.exists(), "{} left", dir.display());
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn a_panicking_test_leaves_nothing() {
    if !require_root("a_panicking_test_leaves_nothing") {
        return;
    }
    let mut names = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::new("labpanic");
        let _nginx = Nginx::start(&lab, &[80], None);
        names.push(lab.origin.name().to_owned());
        names.push(lab.edge.name().to_owned());
        panic!("on purpose");
    }));
    assert!(result.is_err());
    let list = host("ip", &["netns", "list"]).stdout;
    for n in &names {
        assert!(!list.contains(n.as_str()), "{n} left after a panic");
    }
    // No process of the lab survives (nginx ran in it).
    let ps = host("ps", &["-eo", "args"]).stdout;
    assert!(
        !ps.contains("otl-labpanic"),
        "a process of the lab survives:\n{ps}"
    );
}
