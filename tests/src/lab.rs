//! The lab: an `edge` and an `origin` network namespace joined by a veth
//! pair, with documentation-range addresses only, faults to inject in the
//! origin (firewall rules, a broken return path) and curl as the edge client.
//!
//! Addresses of lab number N (1..=250):
//!
//! | side | IPv4 | IPv6 |
//! |---|---|---|
//! | edge (listed in `--edge-ranges`) | 198.18.N.1 | `2001:db8:N::1` |
//! | edge side, not an edge address | 198.19.N.1 | `2001:db8:ffff:N::1` |
//! | origin | 198.18.N.2 | `2001:db8:N::2` |
//!
//! The origin also has an `ifb` device, `otlvoid0`, up and unused until
//! [`Lab::break_return_path`] routes the edge's addresses into it: the ifb
//! frees what it is given as consumed, without a kernel drop event, like a
//! router beyond the host losing the SYN-ACKs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::netns::{self, host_ok, run_bounded, Netns, Outcome};

/// The origin's device that swallows packets for [`Lab::break_return_path`].
pub const VOID_DEV: &str = "otlvoid0";

static LABS_CREATED: AtomicU32 = AtomicU32::new(0);

/// Address family of a client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The schema's name: `ipv4` or `ipv6`.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

/// Which edge-side address a client connects from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The address listed in `--edge-ranges`.
    Edge,
    /// An address on the edge side that is not in `--edge-ranges`.
    NonEdge,
}

/// A firewall fault in the origin's INPUT path for one TCP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firewall {
    /// nft `tcp dport P drop` (inet table: IPv4 and IPv6).
    NftDrop,
    /// nft `tcp dport P reject with tcp reset`.
    NftRejectReset,
    /// nft `tcp dport P reject with icmpx type port-unreachable`.
    NftRejectIcmp,
    /// `iptables`/`ip6tables -A INPUT -p tcp --dport P -j DROP`.
    IptablesDrop,
    /// `iptables`/`ip6tables ... -j REJECT --reject-with tcp-reset`.
    IptablesRejectReset,
    /// nft `tcp dport P tcp flags & psh == psh drop`: the handshake passes,
    /// the edge's data (its request) is dropped.
    NftDropData,
}

/// One lab; everything is removed on drop.
#[derive(Debug)]
pub struct Lab {
    /// Lab number N, the third octet of its IPv4 addresses.
    pub n: u8,
    /// The edge namespace (clients).
    pub edge: Netns,
    /// The origin namespace (servers, faults, the agent).
    pub origin: Netns,
    /// Edge veth device (in `edge`).
    pub edge_veth: String,
    /// Origin veth device (in `origin`).
    pub origin_veth: String,
    /// 198.18.N.1: the edge address.
    pub edge_v4: Ipv4Addr,
    /// 198.19.N.1: an edge-side address outside `--edge-ranges`.
    pub non_edge_v4: Ipv4Addr,
    /// 198.18.N.2: the origin.
    pub origin_v4: Ipv4Addr,
    /// `2001:db8:N::1`: the edge address.
    pub edge_v6: Ipv6Addr,
    /// `2001:db8:ffff:N::1`: an edge-side address outside `--edge-ranges`.
    pub non_edge_v6: Ipv6Addr,
    /// `2001:db8:N::2`: the origin.
    pub origin_v6: Ipv6Addr,
    dir: TempDir,
}

impl Lab {
    /// Builds a lab; `tag` (a few letters) appears in its namespace names.
    pub fn new(tag: &str) -> Lab {
        netns::remove_stale();
        let count = LABS_CREATED.fetch_add(1, Ordering::SeqCst);
        let n = lab_number(std::process::id(), count);
        let pid = std::process::id();
        let tag: String = tag
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        let base = format!("{}{tag}-{n}-{pid}", netns::PREFIX);
        let dir = TempDir::create(&base);
        let edge = Netns::create(&format!("{base}-e"));
        let origin = Netns::create(&format!("{base}-o"));
        let mut lab = Lab {
            n,
            edge_veth: format!("otl{n}e"),
            origin_veth: format!("otl{n}o"),
            edge_v4: Ipv4Addr::new(198, 18, n, 1),
            non_edge_v4: Ipv4Addr::new(198, 19, n, 1),
            origin_v4: Ipv4Addr::new(198, 18, n, 2),
            edge_v6: v6(0, n, 1),
            non_edge_v6: v6(0xffff, n, 1),
            origin_v6: v6(0, n, 2),
            edge,
            origin,
            dir,
        };
        lab.configure();
        lab
    }

    fn configure(&mut self) {
        let (e, o) = (&self.edge, &self.origin);
        let (ev, ov) = (&self.edge_veth, &self.origin_veth);
        let n = self.n;
        for ns in [e, o] {
            ns.line("sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0");
            ns.line("ip link set lo up");
        }
        // rp_filter off: the broken return path must not drop the SYNs.
        // No ICMP rate limit: every rejected SYN is answered.
        o.line(
            "sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
             net.ipv4.icmp_ratelimit=0 net.ipv6.icmp.ratelimit=0",
        );
        host_ok(
            "ip",
            &[
                "link",
                "add",
                ev,
                "netns",
                e.name(),
                "type",
                "veth",
                "peer",
                "name",
                ov,
                "netns",
                o.name(),
            ],
        );
        e.line(&format!("ip addr add 198.18.{n}.1/24 dev {ev}"));
        e.line(&format!("ip addr add {}/32 dev {ev}", self.non_edge_v4));
        e.line(&format!("ip addr add {}/64 dev {ev} nodad", self.edge_v6));
        e.line(&format!(
            "ip addr add {}/128 dev {ev} nodad",
            self.non_edge_v6
        ));
        o.line(&format!("ip addr add 198.18.{n}.2/24 dev {ov}"));
        o.line(&format!("ip addr add {}/64 dev {ov} nodad", self.origin_v6));
        e.line(&format!("ip link set {ev} up"));
        o.line(&format!("ip link set {ov} up"));
        o.line(&format!("ip route add {}/32 dev {ov}", self.non_edge_v4));
        o.line(&format!(
            "ip -6 route add {}/128 dev {ov}",
            self.non_edge_v6
        ));
        o.line(&format!("ip link add {VOID_DEV} type ifb"));
        o.line(&format!("ip link set {VOID_DEV} up"));
        self.wait_ipv6_ready();
    }

    fn wait_ipv6_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let tentative = [&self.edge, &self.origin].iter().any(|ns| {
                !ns.run_ok("ip", &["-6", "addr", "show", "tentative"])
                    .trim()
                    .is_empty()
            });
            if !tentative {
                return;
            }
            assert!(Instant::now() < deadline, "IPv6 addresses stay tentative");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The agent's `--edge-ranges`: the edge addresses only, so the
    /// non-edge addresses are not edge.
    pub fn edge_ranges(&self) -> String {
        format!("{}/32,{}/128", self.edge_v4, self.edge_v6)
    }

    /// The origin's address of `family`.
    pub fn origin_addr(&self, family: Family) -> IpAddr {
        match family {
            Family::V4 => IpAddr::V4(self.origin_v4),
            Family::V6 => IpAddr::V6(self.origin_v6),
        }
    }

    /// The edge side's client address of `family` and `source`.
    pub fn client_addr(&self, family: Family, source: Source) -> IpAddr {
        match (family, source) {
            (Family::V4, Source::Edge) => IpAddr::V4(self.edge_v4),
            (Family::V4, Source::NonEdge) => IpAddr::V4(self.non_edge_v4),
            (Family::V6, Source::Edge) => IpAddr::V6(self.edge_v6),
            (Family::V6, Source::NonEdge) => IpAddr::V6(self.non_edge_v6),
        }
    }

    /// The lab's temporary directory (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// Names of the origin's interfaces other than `lo`.
    pub fn origin_interfaces(&self) -> Vec<String> {
        let out = self.origin.run_ok("ip", &["-j", "link", "show"]);
        let links: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        links
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["ifname"].as_str())
            .filter(|name| *name != "lo")
            .map(str::to_owned)
            .collect()
    }

    /// Adds a firewall fault for TCP `port` in the origin.
    pub fn firewall(&self, rule: Firewall, port: u16) {
        let verdict = match rule {
            Firewall::NftDrop => "drop",
            Firewall::NftRejectReset => "reject with tcp reset",
            Firewall::NftRejectIcmp => "reject with icmpx type port-unreachable",
            Firewall::NftDropData => "tcp flags & psh == psh drop",
            Firewall::IptablesDrop | Firewall::IptablesRejectReset => {
                let port = port.to_string();
                let mut args = vec!["-A", "INPUT", "-p", "tcp", "--dport", &port, "-j"];
                if rule == Firewall::IptablesDrop {
                    args.push("DROP");
                } else {
                    args.extend(["REJECT", "--reject-with", "tcp-reset"]);
                }
                self.origin.run_ok("iptables", &args);
                self.origin.run_ok("ip6tables", &args);
                return;
            }
        };
        let script = format!(
            "add table inet otl\n\
             add chain inet otl input {{ type filter hook input priority 0; policy accept; }}\n\
             add rule inet otl input tcp dport {port} {verdict}\n"
        );
        let out = self.origin.run_with_input("nft", &["-f", "-"], &script);
        assert!(
            out.success(),
            "nft -f failed: {}\n{script}",
            out.stderr.trim()
        );
    }

    /// Removes every firewall fault ([`Lab::firewall`]).
    pub fn clear_firewall(&self) {
        // Each may fail because there is nothing to remove.
        let _ = self.origin.run("nft", &["delete", "table", "inet", "otl"]);
        let _ = self.origin.run("iptables", &["-F", "INPUT"]);
        let _ = self.origin.run("ip6tables", &["-F", "INPUT"]);
    }

    /// Routes the origin's replies to the edge addresses into the void
    /// device: SYNs arrive, SYN-ACKs are lost beyond the host.
    pub fn break_return_path(&self) {
        self.origin
            .line(&format!("ip route add {}/32 dev {VOID_DEV}", self.edge_v4));
        self.origin.line(&format!(
            "ip -6 route add {}/128 dev {VOID_DEV}",
            self.edge_v6
        ));
    }

    /// Undoes [`Lab::break_return_path`].
    pub fn restore_return_path(&self) {
        self.origin
            .line(&format!("ip route del {}/32 dev {VOID_DEV}", self.edge_v4));
        self.origin.line(&format!(
            "ip -6 route del {}/128 dev {VOID_DEV}",
            self.edge_v6
        ));
    }

    /// Runs curl in the edge namespace as `client` says.
    pub fn curl(&self, client: &Curl) -> CurlResult {
        let url = match self.origin_addr(client.family) {
            IpAddr::V4(a) => format!("http://{a}:{}/", client.port),
            IpAddr::V6(a) => format!("http://[{a}]:{}/", client.port),
        };
        self.run_curl(
            self.client_addr(client.family, client.source),
            (client.connect_timeout, client.max_time),
            &[url],
        )
    }

    /// curl in the edge namespace from `src`, with (`--connect-timeout`, `-m`)
    /// `limits` and then `args` (the URL last); bounded by `-m` plus 5 s.
    pub fn run_curl(
        &self,
        src: IpAddr,
        limits: (Duration, Duration),
        args: &[String],
    ) -> CurlResult {
        let (connect, max_time) = limits;
        let src = src.to_string();
        let connect = format!("{:.1}", connect.as_secs_f64());
        let max = format!("{:.1}", max_time.as_secs_f64());
        let mut cmd = self.edge.command("curl");
        cmd.args([
            "-sS",
            "-g",
            "--noproxy",
            "*",
            "--interface",
            &src,
            "--connect-timeout",
            &connect,
            "-m",
            &max,
        ])
        .args(args);
        let out: Outcome = run_bounded(&mut cmd, max_time + Duration::from_secs(5));
        CurlResult {
            code: out.code(),
            body: out.stdout,
            stderr: out.stderr,
        }
    }

    /// Runs `count` identical curls at once; returns when all have ended.
    pub fn curl_parallel(&self, client: &Curl, count: usize) -> Vec<CurlResult> {
        thread::scope(|s| {
            let handles: Vec<_> = (0..count).map(|_| s.spawn(|| self.curl(client))).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("curl thread panicked"))
                .collect()
        })
    }
}

fn v6(group3: u16, n: u8, last: u16) -> Ipv6Addr {
    // The lab number is written with the same digits as in IPv4, e.g.
    // 2001:db8:42::1 for lab 42, which reads better than its hex value.
    let n_digits = u16::from_str_radix(&n.to_string(), 16).unwrap_or(u16::from(n));
    if group3 == 0 {
        Ipv6Addr::new(0x2001, 0xdb8, n_digits, 0, 0, 0, 0, last)
    } else {
        Ipv6Addr::new(0x2001, 0xdb8, group3, n_digits, 0, 0, 0, last)
    }
}

/// A lab number in 1..=250 from the owner's pid and a per-process counter.
fn lab_number(pid: u32, count: u32) -> u8 {
    let n = (pid.wrapping_mul(7).wrapping_add(count.wrapping_mul(13))) % 250 + 1;
    u8::try_from(n).unwrap_or(1)
}

/// What one curl said.
#[derive(Debug, Clone)]
pub struct CurlResult {
    /// curl's exit code (0 ok, 7 refused, 28 timeout), `None` if killed.
    pub code: Option<i32>,
    /// Response body.
    pub body: String,
    /// curl's error message.
    pub stderr: String,
}

impl CurlResult {
    /// The request succeeded.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// An edge client request: where from, to which port, how patient.
#[derive(Debug, Clone, Copy)]
pub struct Curl {
    /// Address family.
    pub family: Family,
    /// Edge or non-edge source address.
    pub source: Source,
    /// Origin port.
    pub port: u16,
    /// `--connect-timeout`.
    pub connect_timeout: Duration,
    /// `-m`.
    pub max_time: Duration,
}

impl Curl {
    /// IPv4 from the edge address to `port`, connect timeout 2 s.
    pub fn to(port: u16) -> Curl {
        Curl {
            family: Family::V4,
            source: Source::Edge,
            port,
            connect_timeout: Duration::from_secs(2),
            max_time: Duration::from_secs(4),
        }
    }

    /// Over IPv6.
    #[must_use]
    pub fn v6(mut self) -> Curl {
        self.family = Family::V6;
        self
    }

    /// From `source`.
    #[must_use]
    pub fn source(mut self, source: Source) -> Curl {
        self.source = source;
        self
    }

    /// With this connect timeout (and a total time 2 s longer).
    #[must_use]
    pub fn connect_timeout(mut self, limit: Duration) -> Curl {
        self.connect_timeout = limit;
        self.max_time = limit + Duration::from_secs(2);
        self
    }
}

/// A temporary directory, removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn create(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_numbers_stay_in_range() {
        for pid in [0, 1, 249, 250, 4_000_000, u32::MAX] {
            for count in 0..600 {
                let n = lab_number(pid, count);
                assert!((1..=250).contains(&n), "{pid} {count} -> {n}");
            }
        }
    }

    #[test]
    fn ipv6_addresses_are_documentation_addresses() {
        assert_eq!(v6(0, 42, 1).to_string(), "2001:db8:42::1");
        assert_eq!(v6(0xffff, 250, 1).to_string(), "2001:db8:ffff:250::1");
        assert_eq!(v6(0, 7, 2).to_string(), "2001:db8:7::2");
    }
}
