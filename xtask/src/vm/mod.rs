//! `cargo xtask vm-test`: the kernel matrix. Each of Debian's kernels
//! ([`kernels::MATRIX`]) boots in qemu ([`guest`]) with the host's root
//! read-only, and inside it the release agent starts once on its own (the
//! start line: probes attached or skipped and why, the attach mode, each
//! program's verified instruction count) and then a smoke set of the real
//! lab scenarios runs (the lab test binary, in network namespaces inside the
//! guest). It fails on a start-up error, a probe skipped that the kernel
//! has, a program that needs more than half the verifier's limit, or a lab
//! scenario whose verdict is wrong or missing.

mod guest;
mod kernels;

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// Most instructions a program may need anywhere in the matrix: half the
/// verifier's limit.
const MAX_VERIFIED: u64 = 500_000;

/// The lab scenarios run in every guest.
const SMOKE: [&str; 6] = [
    "diagnosis::healthy_requests_make_no_findings",
    "diagnosis::closed_port_is_no_listener",
    "diagnosis::nft_drop_is_firewall_drop",
    "diagnosis::nft_reject_with_icmp_is_firewall_reject",
    "tls_http::tls13_only_origin_refuses_tls12_edge_with_protocol_version",
    "tls_http::origin_resetting_after_request_is_reset_after_request",
];

/// What each kernel of the matrix has and lacks, as its start line must
/// say it: one table, checked against every guest's start line.
struct Expect {
    label: &'static str,
    /// TCX links (6.6), else netlink tc filters.
    tcx: bool,
    /// The kernel reports verified instruction counts (5.16).
    verified_insns: bool,
    /// Probes attached with a `limits` note.
    limited: &'static [&'static str],
}

const EXPECT: [Expect; 3] = [
    Expect {
        label: "6.1",
        tcx: false,
        verified_insns: true,
        limited: &[],
    },
    Expect {
        label: "6.12",
        tcx: true,
        verified_insns: true,
        limited: &[],
    },
    // No drop reasons in skb:kfree_skb (5.17): netfilter drops by caller.
    Expect {
        label: "5.10",
        tcx: false,
        verified_insns: false,
        limited: &["skb:kfree_skb"],
    },
];

/// The kernels run without `--kernel`: the whole matrix.
const DEFAULT: [&str; 3] = ["6.1", "6.12", "5.10"];

/// How long one guest may take, boot to power-off.
const GUEST_LIMIT: Duration = Duration::from_mins(8);

/// The script each guest runs (as root, on the overlay of the host's root).
fn script(agent: &Path, lab: &Path) -> String {
    let tests = SMOKE.join(" ");
    format!(
        r#"#!/bin/sh
# Written by cargo xtask vm-test; runs inside the guest.
O=/run/ot/out
ulimit -l unlimited
for m in veth sch_ingress cls_bpf nf_tables nft_reject_inet nft_ct nf_conntrack nft_compat x_tables; do
  modprobe "$m" 2>/dev/null
done
ip netns add vmedge && ip netns add vmorigin
ip link add e0 netns vmedge type veth peer name o0 netns vmorigin
ip -n vmedge addr add 198.18.0.1/24 dev e0; ip -n vmorigin addr add 198.18.0.2/24 dev o0
for ns in vmedge vmorigin; do ip -n $ns link set lo up; done
ip -n vmedge link set e0 up; ip -n vmorigin link set o0 up
timeout 150 nsenter --net=/run/netns/vmorigin {agent} --all-sources --duration 3s --format json > $O/start.json 2> $O/start.err
echo $? > $O/start.rc
for e in skb/kfree_skb tcp/tcp_send_reset tcp/tcp_receive_reset tcp/tcp_retransmit_synack sock/inet_sock_set_state; do
  cat /sys/kernel/tracing/events/$e/format > $O/${{e#*/}}.format 2>/dev/null
done
ip netns del vmedge; ip netns del vmorigin
ORIGIN_TRACER_BIN={agent} timeout 240 {lab} --ignored --test-threads=1 --exact {tests} > $O/smoke.log 2>&1
echo $? > $O/smoke.rc
"#,
        agent = agent.display(),
        lab = lab.display(),
    )
}

/// What one kernel showed.
struct Report {
    label: &'static str,
    release: String,
    lines: Vec<String>,
    failures: Vec<String>,
}

fn read(out: &Path, name: &str) -> String {
    fs::read_to_string(out.join(name)).unwrap_or_default()
}

/// Judge the start line.
fn judge_start(r: &mut Report, out: &Path) {
    let start = read(out, "start.json");
    let Some(line) = start
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["type"] == "start")
    else {
        let err = read(out, "start.err");
        r.failures.push(format!(
            "the agent did not start: {}",
            err.lines().last().unwrap_or("(no stderr)")
        ));
        return;
    };
    let Some(want) = EXPECT.iter().find(|e| e.label == r.label) else {
        r.failures
            .push(format!("no expectations for Linux {}", r.label));
        return;
    };
    let mode = line["attach_mode"].as_str().unwrap_or("?");
    r.lines.push(format!("attach mode {mode}"));
    if mode != if want.tcx { "tcx" } else { "netlink" } {
        r.failures
            .push(format!("attach mode {mode}, want tcx: {}", want.tcx));
    }
    for p in line["probes"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or("?");
        let insns = p["verified_insns"].as_u64();
        let status = p["status"].as_str().unwrap_or("?");
        let note = p["reason"].as_str().or(p["limits"].as_str());
        r.lines.push(format!(
            "  {name:<28} {status:<8} {}{}",
            insns.map_or(String::new(), |n| format!("{n} verified insns")),
            note.map_or(String::new(), |w| format!(" ({w})"))
        ));
        if name.starts_with("proc:") {
            continue;
        }
        if status != "attached" {
            r.failures.push(format!("{name} skipped: {}", p["reason"]));
        }
        if p["limits"].is_string() != want.limited.contains(&name) {
            r.failures.push(format!(
                "{name}: limits {}, want {:?}",
                p["limits"], want.limited
            ));
        }
        if status == "attached" && insns.is_some() != want.verified_insns {
            r.failures.push(format!(
                "{name}: verified_insns {insns:?}, want {}",
                if want.verified_insns {
                    "a count"
                } else {
                    "none (before 5.16)"
                }
            ));
        }
        if insns.is_some_and(|n| n > MAX_VERIFIED) {
            r.failures.push(format!(
                "{name} needs {} verified instructions (more than {MAX_VERIFIED})",
                insns.unwrap_or(0)
            ));
        }
    }
}

/// Judge the smoke set: every scenario ran and passed.
fn judge_smoke(r: &mut Report, out: &Path) {
    let log = read(out, "smoke.log");
    for test in SMOKE {
        let verdict = log
            .lines()
            .find_map(|l| l.strip_prefix(&format!("test {test} ... ")))
            .unwrap_or("missing");
        r.lines.push(format!("  {test:<62} {verdict}"));
        if verdict != "ok" {
            r.failures.push(format!("{test}: {verdict}"));
        }
    }
}

fn one(k: &kernels::Kernel, busybox: &Path, agent: &Path, lab: &Path) -> Result<Report> {
    let initrd = guest::initramfs(k, busybox)?;
    let out = PathBuf::from(format!("{}/runs/{}", kernels::CACHE, k.release));
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out)?;
    let script_path = out.with_file_name(format!("{}.sh", k.release));
    fs::write(&script_path, script(agent, lab))?;
    eprintln!(
        "xtask vm-test: booting {} ({}) under TCG",
        k.label, k.release
    );
    let o = guest::boot(k, &initrd, &script_path, &out, GUEST_LIMIT)?;
    let mut r = Report {
        label: k.label,
        release: k.release.clone(),
        lines: vec![format!("guest ran {:.0} s", o.wall.as_secs_f64())],
        failures: Vec::new(),
    };
    if o.timed_out || o.rc.is_none() {
        let tail: Vec<&str> = o.console.lines().rev().take(15).collect();
        r.failures.push(format!(
            "the guest {} (console: {})",
            if o.timed_out {
                "timed out"
            } else {
                "reported nothing"
            },
            o.out.join("console.log").display()
        ));
        r.lines
            .extend(tail.into_iter().rev().map(|l| format!("  | {l}")));
        return Ok(r);
    }
    judge_start(&mut r, &o.out);
    judge_smoke(&mut r, &o.out);
    Ok(r)
}

/// `cargo xtask vm-test [--kernel LABEL ...]`.
pub fn run(agent: &Path, lab: &Path, only: &[String]) -> Result<()> {
    kernels::update()?;
    let busybox = kernels::busybox()?;
    let mut reports = Vec::new();
    for s in kernels::MATRIX {
        let wanted = if only.is_empty() {
            DEFAULT.contains(&s.label)
        } else {
            only.iter().any(|o| o == s.label)
        };
        if !wanted {
            continue;
        }
        let k =
            kernels::fetch(s).with_context(|| format!("fetching Debian's {} kernel", s.label))?;
        reports.push(one(&k, &busybox, agent, lab)?);
    }
    let mut failed = false;
    for r in &reports {
        println!("\n== Linux {} ({})", r.label, r.release);
        for l in &r.lines {
            println!("{l}");
        }
        for f in &r.failures {
            println!("FAIL {f}");
        }
        failed |= !r.failures.is_empty();
    }
    if failed {
        bail!("the kernel matrix failed (see above)");
    }
    Ok(())
}
