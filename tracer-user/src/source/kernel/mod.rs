//! The kernel stage: start-up checks, interface discovery, the running
//! kernel's layouts (tracefs, BTF), loading/attaching the programs and the
//! host counters from /proc/net.

pub mod attach;
pub mod btf;
mod kallsyms;
pub mod layout;
pub mod listeners;
pub mod procnet;
pub mod quiet;
pub mod records;
pub mod snapshots;
mod stale;
pub mod tracefs;
pub mod verifier;

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

/// Interfaces of this network namespace, from the kernel (netlink through
/// `if_nameindex`), not from /sys, which may show another namespace's view.
fn all_interfaces() -> Vec<(String, u32)> {
    let mut out = Vec::new();
    // SAFETY: if_nameindex returns an array terminated by a zero entry,
    // freed with if_freenameindex.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return out;
        }
        let mut p = list;
        while (*p).if_index != 0 && !(*p).if_name.is_null() {
            let name = std::ffi::CStr::from_ptr((*p).if_name)
                .to_string_lossy()
                .into_owned();
            out.push((name, (*p).if_index));
            p = p.add(1);
        }
        libc::if_freenameindex(list);
    }
    out
}

/// (flags, ARPHRD type) of an interface, through ioctls on a socket of this
/// namespace.
fn flags_and_type(name: &str) -> Option<(u32, u16)> {
    if name.len() >= libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: plain socket/ioctl calls on a zeroed ifreq with a NUL-terminated name.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src.cast_signed();
        }
        // Each value is copied out before the next ioctl reuses the union.
        let flags = if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) == 0 {
            Some(req.ifr_ifru.ifru_flags.cast_unsigned())
        } else {
            None
        };
        let hw = if libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req) == 0 {
            Some(req.ifr_ifru.ifru_hwaddr.sa_family)
        } else {
            None
        };
        libc::close(fd);
        Some((u32::from(flags?), hw.unwrap_or(0)))
    }
}

fn iface(name: &str, known: &[(String, u32)]) -> Result<Iface> {
    let Some((_, ifindex)) = known.iter().find(|(n, _)| n == name) else {
        bail!("interface {name:?} does not exist (see `ip link`)");
    };
    // ARPHRD_ETHER (1) and ARPHRD_LOOPBACK (772) carry an Ethernet header in TC;
    // tunnels and ARPHRD_NONE devices start at the IP header.
    let l2_len = match flags_and_type(name).map(|(_, t)| t) {
        Some(1 | 772) => 14,
        _ => 0,
    };
    Ok(Iface {
        name: name.to_owned(),
        ifindex: *ifindex,
        l2_len,
    })
}

/// The named interfaces, or every interface that is up except lo.
pub fn interfaces(names: &[String]) -> Result<Vec<Iface>> {
    let known = all_interfaces();
    if !names.is_empty() {
        let mut out: Vec<Iface> = names
            .iter()
            .map(|n| iface(n, &known))
            .collect::<Result<_>>()?;
        out.sort_by_key(|i| i.ifindex);
        out.dedup_by_key(|i| i.ifindex);
        return Ok(out);
    }
    let up = |n: &str| flags_and_type(n).is_some_and(|(f, _)| f & (libc::IFF_UP as u32) != 0);
    let out: Vec<Iface> = known
        .iter()
        .filter(|(n, _)| n != "lo" && up(n))
        .map(|(n, _)| iface(n, &known))
        .collect::<Result<_>>()?;
    if out.is_empty() {
        bail!("no interface is up besides lo: name one with --iface");
    }
    Ok(out)
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
