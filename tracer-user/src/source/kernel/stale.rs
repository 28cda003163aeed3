//! What a killed run may leave behind in netlink mode, and its removal at
//! the next start: our tc filters, and the clsact qdisc a marker file under
//! /run/origin-tracer says that run created (TCX links leave nothing).

use std::{fs, os::unix::fs::MetadataExt, path::PathBuf, process::Command};

use aya::programs::{tc, TcAttachType};
use tracer_ebpf::names;

fn netns_inode() -> u64 {
    fs::metadata("/proc/self/ns/net").map_or(0, |m| m.ino())
}

/// Marks "this run created clsact on IFACE", so that a later run can remove
/// it if this one is killed before it can.
pub(super) fn qdisc_marker(iface: &str) -> PathBuf {
    PathBuf::from(format!(
        "/run/origin-tracer/clsact-{}-{iface}",
        netns_inode()
    ))
}

fn tc_cmd(args: &[&str]) -> Option<String> {
    let out = Command::new("tc").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(super) fn delete_clsact(iface: &str) -> bool {
    tc_cmd(&["qdisc", "del", "dev", iface, "clsact"]).is_some()
}

/// Remove tc filters of ours left by a killed run, and the clsact qdisc it
/// created if nothing else uses it.
pub(super) fn remove_stale(iface: &str) -> Vec<String> {
    let mut removed = Vec::new();
    for (dir, label) in [
        (TcAttachType::Ingress, "ingress"),
        (TcAttachType::Egress, "egress"),
    ] {
        for prog in [names::TC_INGRESS, names::TC_EGRESS] {
            if tc::qdisc_detach_program(iface, dir, prog).is_ok() {
                removed.push(format!("tc filter {prog} on {iface} {label}"));
            }
        }
    }
    let marker = qdisc_marker(iface);
    if marker.exists() {
        let empty = |dir: &str| {
            tc_cmd(&["filter", "show", "dev", iface, dir]).is_some_and(|o| o.trim().is_empty())
        };
        if empty("ingress") && empty("egress") && delete_clsact(iface) {
            removed.push(format!("clsact qdisc on {iface}"));
        }
        let _ = fs::remove_file(marker);
    }
    removed
}
