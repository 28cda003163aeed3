//! Host counters from /proc/net: `TcpExtListenOverflows` and the accept
//! queues of listening sockets, the kernel's only trace of a SYN dropped
//! because a listener's accept queue is full (recent kernels drop it without
//! a `kfree_skb` reason).

use std::fs;

use crate::source::event::ListenOverflow;

/// Value of `TcpExt: ListenOverflows` in a /proc/net/netstat text.
pub fn listen_overflows(netstat: &str) -> Option<u64> {
    let mut lines = netstat.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let (Some(("TcpExt", names)), Some(("TcpExt", values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        let index = names
            .split_whitespace()
            .position(|n| n == "ListenOverflows")?;
        return values.split_whitespace().nth(index)?.parse().ok();
    }
    None
}

/// Listening sockets with a non-empty accept queue in a /proc/net/tcp{,6}
/// text: (local port, queue length).
pub fn listener_queues(tcp: &str) -> Vec<(u16, u32)> {
    let mut out = Vec::new();
    for line in tcp.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state), Some(queues)) = (cols.get(1), cols.get(3), cols.get(4))
        else {
            continue;
        };
        // 0A = TCP_LISTEN; for listeners rx_queue is the accept queue length.
        if *state != "0A" {
            continue;
        }
        let port = local
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        let rx = queues
            .split_once(':')
            .and_then(|(_, rx)| u32::from_str_radix(rx, 16).ok());
        if let (Some(port), Some(rx)) = (port, rx) {
            if rx > 0 {
                out.push((port, rx));
            }
        }
    }
    out
}

/// Samples the counter and reports each rise, with the queues then.
#[derive(Debug, Default)]
pub struct OverflowPoller {
    last: Option<u64>,
    ports: Vec<u16>,
}

impl OverflowPoller {
    pub fn new(ports: &[u16]) -> Self {
        let mut p = Self {
            last: None,
            ports: ports.to_vec(),
        };
        p.last = Self::read_counter();
        p
    }

    fn read_counter() -> Option<u64> {
        fs::read_to_string("/proc/net/netstat")
            .ok()
            .as_deref()
            .and_then(listen_overflows)
    }

    /// Whether the counter can be read at all (reported at start-up).
    pub fn available(&self) -> bool {
        self.last.is_some()
    }

    pub fn poll(&mut self, now_ns: u64) -> Option<ListenOverflow> {
        let value = Self::read_counter()?;
        let previous = self.last.replace(value)?;
        if value <= previous {
            return None;
        }
        let mut queues = Vec::new();
        for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Ok(text) = fs::read_to_string(file) {
                queues.extend(
                    listener_queues(&text)
                        .into_iter()
                        .filter(|(p, _)| self.ports.contains(p)),
                );
            }
        }
        queues.sort_unstable();
        queues.dedup_by_key(|q| q.0);
        Some(ListenOverflow {
            ts_ns: now_ns,
            count: value - previous,
            queues,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listen_overflows() {
        let text = "TcpExt: SyncookiesSent SyncookiesRecv ListenOverflows ListenDrops\nTcpExt: 0 0 12 12\nIpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(listen_overflows(text), Some(12));
        assert_eq!(listen_overflows("IpExt: A\nIpExt: 1\n"), None);
        assert_eq!(
            listen_overflows("TcpExt: ListenOverflows\nTcpExt: x\n"),
            None
        );
        assert_eq!(listen_overflows(""), None);
    }

    #[test]
    fn reads_listener_queues() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0212C6C6:1F90 00000000:0000 0A 00000001:00000002 00:00000000 00000000     0        0 1 1 0000 100 0 0 10 0\n   1: 0212C6C6:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000 100 0 0 10 0\n   2: 0212C6C6:0050 0112C6C6:9C40 01 00000000:00000005 00:00000000 00000000     0        0 3 1 0000 100 0 0 10 0\n garbage\n";
        assert_eq!(listener_queues(text), vec![(8080, 2)]);
    }
}
