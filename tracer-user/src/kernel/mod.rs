//! The kernel stage: start-up checks, interface discovery, the running
//! kernel's layouts (tracefs, BTF), loading/attaching the programs and the
//! host counters from /proc/net.

pub mod attach;
pub mod btf;
pub mod layout;
pub mod procnet;
pub mod tracefs;

use std::{fs, path::Path};

use anyhow::{bail, Result};

use attach::Iface;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Effective capabilities from a /proc/self/status text.
fn effective_caps(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

fn has(caps: u64, cap: u32) -> bool {
    caps & (1u64 << cap) != 0
}

/// Missing privileges, named; `None` when the agent can load and attach.
pub fn missing_privileges(status: &str) -> Option<String> {
    let caps = effective_caps(status).unwrap_or(0);
    let admin = has(caps, CAP_SYS_ADMIN);
    let mut missing = Vec::new();
    if !(has(caps, CAP_BPF) || admin) {
        missing.push("CAP_BPF");
    }
    if !(has(caps, CAP_PERFMON) || admin) {
        missing.push("CAP_PERFMON");
    }
    if !has(caps, CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    (!missing.is_empty()).then(|| {
        format!(
            "origin-tracer must run as root: it needs {} to load and attach eBPF programs (try `sudo origin-tracer ...`)",
            missing.join(", ")
        )
    })
}

/// Refuse early, with one clear line, what cannot work.
pub fn preflight() -> Result<()> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(why) = missing_privileges(&status) {
        bail!(why);
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!("this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): origin-tracer needs a kernel built with CONFIG_DEBUG_INFO_BTF=y");
    }
    Ok(())
}

fn read_trim(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

fn iface(name: &str) -> Result<Iface> {
    let dir = Path::new("/sys/class/net").join(name);
    if name.is_empty() || name.contains('/') || !dir.exists() {
        bail!("interface {name:?} does not exist (see `ip link`)");
    }
    let Some(ifindex) = read_trim(&dir.join("ifindex")).and_then(|s| s.parse().ok()) else {
        bail!("cannot read the index of interface {name:?}");
    };
    // ARPHRD_ETHER (1) and ARPHRD_LOOPBACK (772) carry an Ethernet header in TC;
    // tunnels and ARPHRD_NONE devices start at the IP header.
    let l2_len = match read_trim(&dir.join("type")).as_deref() {
        Some("1" | "772") => 14,
        _ => 0,
    };
    Ok(Iface {
        name: name.to_owned(),
        ifindex,
        l2_len,
    })
}

fn is_up(name: &str) -> bool {
    read_trim(&Path::new("/sys/class/net").join(name).join("flags"))
        .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok())
        .is_some_and(|flags| flags & (libc::IFF_UP as u32) != 0)
}

/// The named interfaces, or every interface that is up except lo.
pub fn interfaces(names: &[String]) -> Result<Vec<Iface>> {
    if !names.is_empty() {
        let mut out: Vec<Iface> = names.iter().map(|n| iface(n)).collect::<Result<_>>()?;
        out.dedup_by_key(|i| i.ifindex);
        return Ok(out);
    }
    let mut all: Vec<String> = fs::read_dir("/sys/class/net")?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "lo" && is_up(n))
        .collect();
    all.sort();
    if all.is_empty() {
        bail!("no interface is up besides lo: name one with --iface");
    }
    all.iter().map(|n| iface(n)).collect()
}

/// `uname -r`.
pub fn kernel_release() -> String {
    read_trim(Path::new("/proc/sys/kernel/osrelease")).unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privileges_are_named() {
        let root = "Name:\tx\nCapEff:\t000001ffffffffff\n";
        assert_eq!(missing_privileges(root), None);
        let nobody = "CapEff:\t0000000000000000\n";
        let why = missing_privileges(nobody).unwrap();
        assert!(
            why.contains("root") && why.contains("CAP_BPF") && why.contains("CAP_NET_ADMIN"),
            "{why}"
        );
        // CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN without CAP_SYS_ADMIN is enough.
        let caps = (1u64 << 39) | (1u64 << 38) | (1u64 << 12);
        assert_eq!(missing_privileges(&format!("CapEff:\t{caps:016x}\n")), None);
        assert!(missing_privileges("").is_some());
    }

    #[test]
    fn unknown_interfaces_are_refused() {
        let err = interfaces(&["nosuch0".into()]).unwrap_err().to_string();
        assert!(
            err.contains("nosuch0") && err.contains("does not exist"),
            "{err}"
        );
        assert!(interfaces(&["../lo".into()]).is_err());
    }
}
