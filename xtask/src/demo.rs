//! `cargo xtask demo`: one throwaway lab, a real nginx, and the origin broken
//! in every way origin-tracer knows; the agent's lines are shown as they come
//! and a table at the end says which failure it named for each scenario.
//! Everything is removed at the end, also on error or Ctrl-C.

use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use integration_tests::backends::{Backend, BackendTls, Behavior};
use integration_tests::tls::{
    filler_headers, http_server, start_nginx, Certs, EdgeCurl, TlsServer,
};
use integration_tests::verdict::is_finding_for;
use integration_tests::{interrupted, Agent, Curl, Family, Firewall, Lab, Nginx, Source};
use serde_json::Value;

/// How long to wait for a scenario's finding (the SYN timeout is 3 s).
const FINDING_WAIT: Duration = Duration::from_secs(10);

/// One scenario's outcome for the closing table.
struct Row {
    scenario: &'static str,
    expected: &'static str,
    found: String,
}

impl Row {
    fn ok(&self) -> bool {
        self.found == self.expected
    }
}

/// Runs the demo with the agent binary `agent_bin`.
pub fn run(agent_bin: &Path) -> Result<()> {
    integration_tests::install_interrupt_handler();
    // The lab reports trouble by panicking; show it as one line and let the
    // drops tear the lab down.
    let previous_hook = panic::take_hook();
    panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        eprintln!("demo: {msg}");
    }));
    let result = panic::catch_unwind(AssertUnwindSafe(|| demo(agent_bin)));
    panic::set_hook(previous_hook);
    match result {
        Ok(r) => r,
        Err(_) if interrupted() => bail!("demo interrupted; the lab is removed"),
        Err(_) => bail!("demo failed (see above); the lab is removed"),
    }
}

/// A fault the scenario injects before its request and removes after.
#[derive(Clone, Copy)]
enum Fault {
    None,
    Firewall(Firewall),
    ReturnPath,
    /// A second nginx on the port with backlog=1 and its workers stopped.
    HungNginx,
}

/// A scenario with one request from the edge and one expected finding.
struct Step {
    title: &'static str,
    scenario: &'static str,
    expected: &'static str,
    fault: Fault,
    client: Curl,
    /// How many identical requests at once.
    parallel: usize,
}

fn steps() -> [Step; 6] {
    [
        Step {
            title: "2. Nothing listens on port 81",
            scenario: "closed port 81",
            expected: "521 no_listener",
            fault: Fault::None,
            client: Curl::to(81),
            parallel: 1,
        },
        Step {
            title: "3. nft drops SYNs to port 80 (`tcp dport 80 drop`)",
            scenario: "nft DROP on 80",
            expected: "522 firewall_drop",
            fault: Fault::Firewall(Firewall::NftDrop),
            client: Curl::to(80),
            parallel: 1,
        },
        Step {
            title: "4. nft rejects SYNs to port 80 (`reject with tcp reset`)",
            scenario: "nft REJECT on 80",
            expected: "521 firewall_reject",
            fault: Fault::Firewall(Firewall::NftRejectReset),
            client: Curl::to(80),
            parallel: 1,
        },
        Step {
            title: "5. A hung nginx (workers stopped) with backlog=1 on port 8080",
            scenario: "hung nginx, full backlog",
            expected: "522 listen_overflow",
            fault: Fault::HungNginx,
            client: Curl::to(8080).connect_timeout(Duration::from_secs(3)),
            parallel: 6,
        },
        Step {
            title: "6. The return path is broken (SYN-ACKs to the edge are lost)",
            scenario: "broken return path",
            expected: "522 synack_unacked",
            fault: Fault::ReturnPath,
            client: Curl::to(80).connect_timeout(Duration::from_secs(4)),
            parallel: 1,
        },
        Step {
            title: "7. IPv6: nothing listens on port 81",
            scenario: "IPv6 closed port 81",
            expected: "521 no_listener",
            fault: Fault::None,
            client: Curl::to(81).v6(),
            parallel: 1,
        },
    ]
}

fn demo(bin: &Path) -> Result<()> {
    let started = Instant::now();
    headline("Setting up the lab");
    let lab = Lab::new("demo");
    println!(
        "  edge netns {} ({}, {}), origin netns {} ({}, {}, veth {})",
        lab.edge.name(),
        lab.edge_v4,
        lab.edge_v6,
        lab.origin.name(),
        lab.origin_v4,
        lab.origin_v6,
        lab.origin_veth
    );
    let nginx = Nginx::start(&lab, &[80], None);
    println!("  nginx listens on port 80; nothing listens on 81");
    println!("  after the handshake (ports 8443-8448): a TLS 1.3-only nginx, plain HTTP where TLS is expected,");
    println!("  nginx sending a 20 KiB response header, an application that closes after reading the request,");
    println!("  one that resets after reading an HTTPS request (TLS 1.3: request and response encrypted),");
    println!("  and one that answers two requests on a kept-alive connection and resets the third");
    let ranges = lab.edge_ranges();
    let args = [
        "--format",
        "json",
        "--edge-ranges",
        &ranges,
        "--ports",
        "80,81,8080,8443,8444,8445,8446,8447,8448",
        "--syn-timeout",
        "3s",
    ];
    println!("  starting: origin-tracer {}", args.join(" "));
    let mut agent = Agent::start_echoing(bin, &lab, &args, "  agent│ ");
    agent.wait_start(Duration::from_secs(20));

    let mut rows = vec![healthy(&agent, &lab)];
    for step in steps() {
        check()?;
        rows.push(scenario(&agent, &lab, &step));
    }
    rows.extend(after_the_handshake(&agent, &lab)?);

    headline("Stopping the agent (SIGINT): its summary is the last line");
    let lines = agent.stop(libc::SIGINT);
    drop(nginx);
    print_table(&rows, &lines, started.elapsed());
    let wrong = rows.iter().filter(|r| !r.ok()).count();
    if wrong > 0 {
        bail!("{wrong} scenario(s) were not named as expected");
    }
    Ok(())
}

fn healthy(agent: &Agent, lab: &Lab) -> Row {
    headline("1. A healthy request");
    let mark = agent.mark();
    show_curl(lab, &Curl::to(80));
    sleep(Duration::from_millis(800));
    let found = agent
        .wait_for_since(mark, |l| l["type"] == "finding", Duration::ZERO)
        .map_or_else(|| "no finding".to_owned(), |f| describe(&f));
    Row {
        scenario: "healthy request",
        expected: "no finding",
        found,
    }
}

/// Injects the step's fault, sends its requests, waits for the finding of
/// those connections (the expected one if there are several), explains it
/// and removes the fault.
fn scenario(agent: &Agent, lab: &Lab, step: &Step) -> Row {
    headline(step.title);
    let port = step.client.port;
    let hung = match step.fault {
        Fault::None => None,
        Fault::Firewall(rule) => {
            lab.firewall(rule, port);
            None
        }
        Fault::ReturnPath => {
            lab.break_return_path();
            None
        }
        Fault::HungNginx => {
            let nginx = Nginx::start(lab, &[port], Some(1));
            nginx.hang();
            Some(nginx)
        }
    };
    let src = lab.client_addr(step.client.family, Source::Edge);
    let mark = agent.mark();
    if step.parallel > 1 {
        let results = lab.curl_parallel(&step.client, step.parallel);
        let failed = results.iter().filter(|r| !r.ok()).count();
        println!(
            "  {} parallel curls from edge {src} to port {port}: {failed} failed",
            step.parallel
        );
    } else {
        show_curl(lab, &step.client);
    }
    let ours = |l: &Value| is_finding_for(l, src, port);
    let found = agent
        .wait_for_since(
            mark,
            |l| ours(l) && describe(l) == step.expected,
            FINDING_WAIT,
        )
        .or_else(|| agent.wait_for_since(mark, ours, Duration::ZERO))
        .map_or_else(|| "nothing".to_owned(), |f| explain(&f));
    match step.fault {
        Fault::None => {}
        Fault::Firewall(_) => lab.clear_firewall(),
        Fault::ReturnPath => lab.restore_return_path(),
        Fault::HungNginx => drop(hung),
    }
    Row {
        scenario: step.scenario,
        expected: step.expected,
        found,
    }
}

/// Failures after the handshake: the TLS and HTTP causes (520, 525),
/// 520 also inside TLS.
fn after_the_handshake(agent: &Agent, lab: &Lab) -> Result<Vec<Row>> {
    let certs = Certs::new(lab);
    let leaf = certs.signed("origin.lab.test", &["origin.lab.test"]);
    let servers = [
        TlsServer::new(8443, &leaf).protocols("TLSv1.3").block(lab),
        http_server(lab, 8444, &[]),
        http_server(lab, 8445, &filler_headers(20 * 1024)),
    ];
    let _nginx = start_nginx(lab, &[8443, 8444, 8445], &servers);
    let _app = Backend::start(lab, 8446, Behavior::Close);
    let _kept_alive = Backend::start(lab, 8448, Behavior::KeepAlive(2, Box::new(Behavior::Reset)));
    let tls = BackendTls {
        leaf: leaf.clone(),
        version: "1.3",
    };
    let _tls_app = Backend::start_tls(lab, 8447, Behavior::Reset, &tls);
    let steps = [
        (
            "8. A TLS 1.3-only origin and a TLS 1.2-only edge",
            "TLS 1.3 only vs TLS 1.2",
            "525 tls_alert_from_origin",
            EdgeCurl::https(8443).args(&["-k", "--tlsv1.2", "--tls-max", "1.2"]),
        ),
        (
            "9. Plain HTTP on the port the edge speaks TLS to",
            "HTTP on the TLS port",
            "525 not_tls",
            EdgeCurl::https(8444).args(&["-k"]),
        ),
        (
            "10. nginx sends a 20 KiB response header",
            "20 KiB response header",
            "520 headers_too_large",
            EdgeCurl::http(8445),
        ),
        (
            "11. The application closes the connection after reading the request",
            "closed without response",
            "520 closed_without_response",
            EdgeCurl::http(8446),
        ),
        (
            "12. The application resets an HTTPS connection after reading the request",
            "HTTPS reset after request",
            "520 reset_after_request",
            EdgeCurl::https(8447).args(&["-k", "--tlsv1.3"]),
        ),
        (
            "13. The application resets the third request on a kept-alive connection (curl retries it on a new one)",
            "3rd request, kept-alive",
            "520 reset_after_request",
            EdgeCurl::http(8448).requests(3),
        ),
    ];
    let mut rows = Vec::new();
    for (title, scenario, expected, curl) in steps {
        check()?;
        headline(title);
        let src = lab.client_addr(Family::V4, Source::Edge);
        let mark = agent.mark();
        let r = curl.run(lab);
        println!(
            "  curl from edge {src} to port {}: exit {:?} {}",
            curl.port,
            r.code,
            r.stderr.trim()
        );
        let ours = |l: &Value| is_finding_for(l, src, curl.port);
        let found = agent
            .wait_for_since(mark, |l| ours(l) && describe(l) == expected, FINDING_WAIT)
            .or_else(|| agent.wait_for_since(mark, ours, Duration::ZERO))
            .map_or_else(|| "nothing".to_owned(), |f| explain(&f));
        rows.push(Row {
            scenario,
            expected,
            found,
        });
    }
    Ok(rows)
}

fn show_curl(lab: &Lab, client: &Curl) {
    let src = lab.client_addr(client.family, Source::Edge);
    let dst = lab.origin_addr(client.family);
    let r = lab.curl(client);
    let what = match r.code {
        Some(0) => "ok".to_owned(),
        Some(7) => "exit 7: connection refused".to_owned(),
        Some(28) => "exit 28: timed out".to_owned(),
        Some(c) => format!("exit {c}"),
        None => "killed".to_owned(),
    };
    let family = if client.family == Family::V6 {
        " (IPv6)"
    } else {
        ""
    };
    println!(
        "  curl{family} from edge {src} to {dst} port {}: {what}",
        client.port
    );
}

/// The finding as `521 no_listener`; prints it with the finding's details on stdout.
fn explain(f: &Value) -> String {
    let d = describe(f);
    println!(
        "  => {d} (confidence {}), evidence: {}",
        f["confidence"].as_str().unwrap_or("?"),
        evidence_summary(f)
    );
    if let Some(n) = f["http"]["request_index"].as_u64().filter(|n| *n > 1) {
        println!("     request {n} on its connection");
    }
    if let Some(h) = f["hint"].as_str() {
        println!("     hint: {h}");
    }
    d
}

/// Evidence events in order of first appearance, with kernel reasons and
/// how often each was seen: `syn_in x3, kernel_drop(NETFILTER_DROP), ...`.
fn evidence_summary(f: &Value) -> String {
    let mut seen: Vec<(String, u64)> = Vec::new();
    for item in f["evidence"].as_array().into_iter().flatten() {
        let mut name = item["event"].as_str().unwrap_or("?").to_owned();
        if let Some(reason) = item["reason"].as_str() {
            let _ = write!(name, "({reason})");
        }
        let times = item["repeat"].as_u64().unwrap_or(1);
        match seen.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += times,
            None => seen.push((name, times)),
        }
    }
    seen.iter()
        .map(|(n, c)| {
            if *c > 1 {
                format!("{n} x{c}")
            } else {
                n.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe(f: &Value) -> String {
    format!(
        "{} {}",
        f["class"].as_str().unwrap_or("?"),
        f["cause"].as_str().unwrap_or("?")
    )
}

fn headline(title: &str) {
    println!("\n\x1b[1m== {title}\x1b[0m");
}

fn check() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

fn print_table(rows: &[Row], lines: &[Value], took: Duration) {
    let mut out = String::new();
    let _ = writeln!(out, "\n\x1b[1m== What origin-tracer named\x1b[0m");
    let _ = writeln!(
        out,
        "  {:<26} {:<30} {:<30}",
        "scenario", "expected", "found"
    );
    for r in rows {
        let mark = if r.ok() { "ok" } else { "MISMATCH" };
        let _ = writeln!(
            out,
            "  {:<26} {:<30} {:<30} {mark}",
            r.scenario, r.expected, r.found
        );
    }
    if let Some(s) = lines.iter().rev().find(|l| l["type"] == "summary") {
        let _ = writeln!(
            out,
            "  summary: {} findings, {} healthy handshakes, {} events, {} lost; demo took {:.0} s",
            s["findings_total"],
            s["healthy_handshakes"],
            s["events_received"],
            s["events_lost"],
            took.as_secs_f64()
        );
    }
    print!("{out}");
}
