//! Installs, on Debian or Ubuntu, the real programs the lab drives, saying
//! what it installs; nothing is installed when everything is present.

use std::{path::Path, process::Command};

use anyhow::{bail, Result};

/// (program, Debian package).
const LAB_TOOLS: &[(&str, &str)] = &[
    ("nginx", "nginx-light"),
    ("nft", "nftables"),
    ("iptables", "iptables"),
    ("ip", "iproute2"),
    ("tc", "iproute2"),
    ("bpftool", "bpftool"),
    ("curl", "curl"),
    ("openssl", "openssl"),
    ("setpriv", "util-linux"),
    ("python3", "python3"),
    ("tcpdump", "tcpdump"),
    ("tshark", "tshark"),
];

/// Whether `program` is installed in one of the usual directories.
pub fn have(program: &str) -> bool {
    [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ]
    .iter()
    .any(|d| Path::new(d).join(program).exists())
}

pub fn ensure_lab_tools() -> Result<()> {
    let mut missing: Vec<&str> = LAB_TOOLS
        .iter()
        .filter(|(p, _)| !have(p))
        .map(|(_, pkg)| *pkg)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install("lab tools", &missing)?;
    // Debian starts nginx on install; the lab runs its own instances.
    let _ = Command::new("systemctl").args(["stop", "nginx"]).status();
    let _ = Command::new("systemctl")
        .args(["disable", "nginx"])
        .status();
    Ok(())
}

/// Installs the packages of the programs of `tools` (program, package)
/// that are missing, for `what`.
fn ensure_tools(what: &str, tools: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(p, _)| !have(p))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(what, &missing)
}

/// qemu (TCG), kmod (depmod, modprobe for the guest's module tree), xz.
pub fn ensure_vm_tools() -> Result<()> {
    ensure_tools(
        "the kernel matrix's tools",
        &[
            ("qemu-system-x86_64", "qemu-system-x86"),
            ("depmod", "kmod"),
            ("xz", "xz-utils"),
            ("dpkg", "dpkg"),
        ],
    )
}

/// tshark, for `cargo xtask bench-analyze` to compare against.
pub fn ensure_tshark() -> Result<()> {
    if have("tshark") {
        return Ok(());
    }
    // DEBIAN_FRONTEND=noninteractive answers wireshark-common's "may
    // non-superusers capture?" prompt with its default (no).
    apt_install("tshark (for the comparison)", &["tshark"])
}

/// bpftrace and iperf3, the side-by-side bench's peer and bulk load
/// (`cargo xtask bench`); not lab tools, so the tests never install them.
pub fn ensure_bench_tools() -> Result<()> {
    // iperf3's package asks whether to start a daemon; noninteractive
    // takes its default (no): the bench runs its own server in the lab.
    ensure_tools(
        "the bench's peer and bulk load (bpftrace, iperf3)",
        &[("bpftrace", "bpftrace"), ("iperf3", "iperf3")],
    )
}

fn apt_install(what: &str, packages: &[&str]) -> Result<()> {
    if !have("apt-get") {
        bail!(
            "missing {what} ({}) and no apt-get to install them",
            packages.join(" ")
        );
    }
    eprintln!(
        "xtask: installing {what} with apt-get: {}",
        packages.join(" ")
    );
    let update = Command::new("apt-get").args(["update", "-q"]).status()?;
    if !update.success() {
        bail!("apt-get update failed");
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()?;
    if !status.success() {
        bail!("apt-get install {} failed", packages.join(" "));
    }
    Ok(())
}
