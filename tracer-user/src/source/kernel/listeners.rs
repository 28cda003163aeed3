//! Who does listen on a port, for a `no_listener` finding: the listening
//! sockets of /proc/net/tcp{,6} (every local address) and the processes
//! that hold them (/proc/PID/fd links `socket:[INODE]`), as `ss -tlnp`
//! shows. Read by hand, not with a crate: two small text tables and a
//! directory walk, done only when such a finding is written and kept for a
//! few seconds per port.

use std::{
    collections::HashMap,
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// One listening socket on the port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listening {
    pub addr: IpAddr,
    pub inode: u64,
    /// (pid, command name) of a process holding it, when found.
    pub process: Option<(u32, String)>,
}

/// How long a port's answer is kept (a burst of refused SYNs reads the
/// tables once).
const KEEP_NS: u64 = 5_000_000_000;
/// Most processes whose descriptors are read per lookup.
const MAX_PROCESSES: usize = 20_000;

/// The listening sockets of a /proc/net/tcp or tcp6 text on `port`:
/// (address, inode).
pub fn parse(text: &str, port: u16) -> Vec<(IpAddr, u64)> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some("0A"), Some(inode)) =
            (cols.get(1), cols.get(3).copied(), cols.get(9))
        else {
            continue;
        };
        let Some((addr, p)) = local.rsplit_once(':') else {
            continue;
        };
        if u16::from_str_radix(p, 16).ok() != Some(port) {
            continue;
        }
        if let (Some(addr), Ok(inode)) = (address(addr), inode.parse()) {
            out.push((addr, inode));
        }
    }
    out
}

/// A /proc/net address: 32-bit words in hex, each as the host stores it
/// (little-endian here).
fn address(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| {
        hex.get(i * 8..i * 8 + 8)
            .and_then(|w| u32::from_str_radix(w, 16).ok())
            .map(u32::to_le_bytes)
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// The processes holding the sockets `inodes`: inode -> (pid, comm).
fn holders(inodes: &[u64]) -> HashMap<u64, (u32, String)> {
    let mut found = HashMap::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in procs.filter_map(Result::ok).take(MAX_PROCESSES) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.filter_map(Result::ok) {
            let Ok(link) = fs::read_link(fd.path()) else {
                continue;
            };
            let inode = link
                .to_str()
                .and_then(|l| l.strip_prefix("socket:["))
                .and_then(|l| l.strip_suffix(']'))
                .and_then(|i| i.parse::<u64>().ok());
            if let Some(inode) = inode.filter(|i| inodes.contains(i) && !found.contains_key(i)) {
                let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                found.insert(inode, (pid, comm.trim().to_owned()));
            }
        }
        if found.len() == inodes.len() {
            break;
        }
    }
    found
}

/// Listeners by port, read at most once per [`KEEP_NS`].
#[derive(Debug, Default)]
pub struct Listeners {
    kept: HashMap<u16, (u64, Vec<Listening>)>,
}

impl Listeners {
    /// What listens on `port` now (`now_ns`: the monotonic clock); `None`
    /// when /proc/net/tcp cannot be read.
    pub fn on(&mut self, port: u16, now_ns: u64) -> Option<Vec<Listening>> {
        if let Some((at, l)) = self.kept.get(&port) {
            if now_ns.saturating_sub(*at) < KEEP_NS {
                return Some(l.clone());
            }
        }
        let v4 = fs::read_to_string("/proc/net/tcp").ok()?;
        let v6 = fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
        let mut sockets = parse(&v4, port);
        sockets.extend(parse(&v6, port));
        let inodes: Vec<u64> = sockets.iter().map(|(_, i)| *i).collect();
        let procs = if inodes.is_empty() {
            HashMap::new()
        } else {
            holders(&inodes)
        };
        let l: Vec<Listening> = sockets
            .into_iter()
            .map(|(addr, inode)| Listening {
                addr,
                inode,
                process: procs.get(&inode).cloned(),
            })
            .collect();
        if self.kept.len() > 1_024 {
            self.kept.clear();
        }
        self.kept.insert(port, (now_ns, l.clone()));
        Some(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0200007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 99 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5151 1 0000000000000000 100 0 0 10 0
   1: B80D0120000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5252 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn listening_sockets_on_a_port_with_their_addresses() {
        assert_eq!(
            parse(TCP, 8080),
            vec![("127.0.0.1".parse().unwrap(), 4242)],
            "the established socket on 8080 is no listener"
        );
        assert_eq!(parse(TCP, 80), vec![("0.0.0.0".parse().unwrap(), 77)]);
        assert!(parse(TCP, 443).is_empty());
        assert_eq!(
            parse(TCP6, 8080),
            vec![
                ("::1".parse().unwrap(), 5151),
                ("2001:db8::1".parse().unwrap(), 5252)
            ]
        );
        assert!(parse("garbage\n 0: zz:zz zz 0A\n", 80).is_empty());
    }
}
