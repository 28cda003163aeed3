//! Command-line flags (clap) and their resolution into the settings the rest
//! of the agent uses.

use std::{io::IsTerminal, time::Duration};

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::source::ranges::{EdgeRanges, RangeError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per line (schema: docs/SCHEMA.md).
    Json,
    /// Human-readable lines.
    Pretty,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EventsMode {
    /// Findings only.
    Findings,
    /// Findings and every raw kernel event.
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AttachMode {
    /// TCX links where the kernel has them (6.6+), else netlink tc.
    Auto,
    /// TCX links only: nothing can outlive the agent, not even after SIGKILL.
    Tcx,
    /// clsact qdisc + tc filters over netlink (older kernels).
    Netlink,
}

/// Names why connections from CDN edge addresses to this origin fail
/// (Cloudflare 521/522), from the kernel's own evidence.
#[derive(Debug, Parser)]
#[command(name = "origin-tracer", version, about, long_about = None)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Interface to watch (repeatable); default: every interface that is up, except lo.
    #[arg(short = 'i', long = "iface", value_name = "IFACE")]
    pub ifaces: Vec<String>,
    /// Watched origin ports, comma-separated.
    #[arg(
        global = true,
        short = 'p',
        long,
        value_name = "PORTS",
        value_delimiter = ',',
        default_value = "80,443"
    )]
    pub ports: Vec<u16>,
    /// Edge ranges: comma list of CIDRs and/or @FILE (one CIDR a line, '#' comments);
    /// default: Cloudflare's published IPv4 and IPv6 ranges.
    #[arg(
        global = true,
        long,
        value_name = "LIST",
        conflicts_with = "all_sources"
    )]
    pub edge_ranges: Option<String>,
    /// Watch every source address, not only edge ranges.
    #[arg(global = true, long)]
    pub all_sources: bool,
    /// Output format; default: json when stdout is not a terminal, else pretty.
    #[arg(global = true, long, value_enum)]
    pub format: Option<Format>,
    /// Print findings only, or every raw kernel event too.
    #[arg(global = true, long, value_enum, default_value = "findings")]
    pub events: EventsMode,
    /// Stop after this long (e.g. 30s, 5m); default: until SIGINT/SIGTERM.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// How long a SYN may wait for a completed handshake (Cloudflare waits 15 s).
    #[arg(global = true, long, value_name = "DUR", value_parser = parse_duration, default_value = "15s")]
    pub syn_timeout: Duration,
    /// How long to wait for the rest of the kernel's evidence after a RST,
    /// drop or ICMP error before naming the cause.
    #[arg(global = true, long, value_name = "DUR", value_parser = parse_duration, default_value = "300ms")]
    pub settle: Duration,
    /// Also write the packets of every connection that ends in a finding to
    /// this pcapng file (evidence for a hosting provider); live mode only.
    /// Plain HTTP is written without its secrets: credential header values
    /// and query strings masked (same length), bodies left out; TLS as is.
    #[arg(long, value_name = "FILE")]
    pub write_pcap: Option<PathBuf>,
    /// With --write-pcap: write payload bytes as captured, cookies,
    /// credentials, query strings and bodies included.
    #[arg(long, requires = "write_pcap")]
    pub write_pcap_raw: bool,
    /// Largest size of the --write-pcap file, in MiB; later packets are not written (counted).
    #[arg(long, value_name = "MIB", default_value_t = 100)]
    pub write_pcap_max_mib: u64,
    /// How long a request may wait for the first response byte (Cloudflare: 100 s).
    #[arg(global = true, long, value_name = "DUR", value_parser = parse_duration, default_value = "100s")]
    pub response_timeout: Duration,
    /// How long the edge's request may go unacknowledged after the handshake
    /// (Cloudflare's second 522 timer: 90 s).
    #[arg(global = true, long, value_name = "DUR", value_parser = parse_duration, default_value = "90s")]
    pub ack_timeout: Duration,
    /// Include the request's URL path (never its query string) in findings.
    #[arg(global = true, long)]
    pub show_path: bool,
    /// Check the origin's certificate for every SNI the edge asks for, the
    /// way Cloudflare's Full (strict) mode would (one TLS handshake per SNI
    /// per --cert-check-interval, to the address and port the edge used).
    #[arg(long)]
    pub check_certs: bool,
    /// How often one SNI's certificate is checked again.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "5m")]
    pub cert_check_interval: Duration,
    /// TCP-level causes only: no packet snapshots, so no 520/524/525/526
    /// diagnosis (the cheapest mode).
    #[arg(long)]
    pub no_payload: bool,
    /// How to attach the TC programs.
    #[arg(long, value_enum, default_value = "auto")]
    pub attach_mode: AttachMode,
    /// Most connections tracked at once by the agent (oldest evicted, counted).
    #[arg(global = true, long, value_name = "N", default_value_t = 100_000)]
    pub max_flows: usize,
    /// Output lines buffered while the output (a pipe, a log shipper) is slow;
    /// beyond that lines are counted as dropped, never blocking the agent.
    #[arg(global = true, long, value_name = "LINES", default_value_t = 100_000)]
    pub output_buffer: usize,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Diagnose a packet capture (pcap or pcapng) offline, without root, with
    /// the same rules: what the packets alone can tell.
    Analyze {
        /// The capture file (tcpdump -w, Wireshark, ...).
        file: PathBuf,
    },
    /// Print the JSON Schema of the output lines (docs/schema-v1.json) and
    /// exit.
    Schema,
}

/// Parse `500ms`, `30s`, `5m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {text:?} (try 30s, 500ms, 5m)"))?;
    let secs = match unit {
        "" | "s" => value,
        "ms" => value / 1_000.0,
        "m" => value * 60.0,
        "h" => value * 3_600.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {text:?} (use ms, s, m or h)"
            ))
        }
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
        return Err(format!("duration {text:?} out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Settings resolved from [`Args`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// `None`: live on this host; `Some(file)`: analyze a capture.
    pub capture: Option<PathBuf>,
    pub ifaces: Vec<String>,
    pub ports: Vec<u16>,
    pub ranges: EdgeRanges,
    pub all_sources: bool,
    pub format: Format,
    pub events: EventsMode,
    pub duration: Option<Duration>,
    pub syn_timeout: Duration,
    pub settle: Duration,
    pub attach_mode: AttachMode,
    pub write_pcap: Option<PathBuf>,
    /// `--write-pcap-raw`.
    pub write_pcap_raw: bool,
    pub write_pcap_max_mib: u64,
    pub response_timeout: Duration,
    pub ack_timeout: Duration,
    pub show_path: bool,
    pub no_payload: bool,
    pub check_certs: bool,
    pub cert_check_interval: Duration,
    pub max_flows: usize,
    pub output_buffer: usize,
}

/// A flag value that does not make sense.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// Bad edge ranges.
    #[error(transparent)]
    Ranges(#[from] RangeError),
    /// Port 0 or an empty port list.
    #[error("invalid --ports: {0}")]
    Ports(String),
    /// Flags that cannot go together.
    #[error("{0}")]
    Conflict(&'static str),
    /// A live-only flag given to `analyze`.
    #[error("{0} applies to live mode only, not to `analyze`")]
    LiveOnly(&'static str),
    /// A zero-sized bound.
    #[error("--{0} must be at least 1")]
    Zero(&'static str),
}

impl Args {
    /// Resolve flags into settings; interface names are checked by the kernel stage.
    pub fn resolve(self) -> Result<Settings, UsageError> {
        let ranges = match (&self.edge_ranges, self.all_sources) {
            (_, true) => EdgeRanges::default(),
            (Some(list), false) => EdgeRanges::parse_list(list)?,
            (None, false) => EdgeRanges::cloudflare(),
        };
        let mut ports = self.ports;
        ports.sort_unstable();
        ports.dedup();
        if ports.is_empty() || ports.contains(&0) {
            return Err(UsageError::Ports("ports must be 1-65535".into()));
        }
        if self.max_flows == 0 {
            return Err(UsageError::Zero("max-flows"));
        }
        if self.output_buffer == 0 {
            return Err(UsageError::Zero("output-buffer"));
        }
        if self.check_certs && self.no_payload {
            return Err(UsageError::Conflict(
                "--check-certs needs the ClientHello's SNI: drop --no-payload",
            ));
        }
        let format = self.format.unwrap_or(if std::io::stdout().is_terminal() {
            Format::Pretty
        } else {
            Format::Json
        });
        let capture = match self.command {
            None => None,
            // main prints the schema without resolving anything.
            Some(Command::Schema) => {
                return Err(UsageError::Conflict("`schema` takes no settings"))
            }
            Some(Command::Analyze { file }) => {
                if !self.ifaces.is_empty() {
                    return Err(UsageError::LiveOnly("--iface"));
                }
                if self.duration.is_some() {
                    return Err(UsageError::LiveOnly("--duration"));
                }
                if self.attach_mode != AttachMode::Auto {
                    return Err(UsageError::LiveOnly("--attach-mode"));
                }
                if self.write_pcap.is_some() {
                    return Err(UsageError::LiveOnly("--write-pcap"));
                }
                if self.check_certs {
                    return Err(UsageError::LiveOnly("--check-certs"));
                }
                Some(file)
            }
        };
        Ok(Settings {
            capture,
            ifaces: self.ifaces,
            ports,
            ranges,
            all_sources: self.all_sources,
            format,
            events: self.events,
            duration: self.duration,
            syn_timeout: self.syn_timeout,
            settle: self.settle,
            attach_mode: self.attach_mode,
            write_pcap: self.write_pcap,
            write_pcap_raw: self.write_pcap_raw,
            write_pcap_max_mib: self.write_pcap_max_mib,
            response_timeout: self.response_timeout,
            ack_timeout: self.ack_timeout,
            show_path: self.show_path,
            no_payload: self.no_payload,
            check_certs: self.check_certs,
            cert_check_interval: self.cert_check_interval,
            max_flows: self.max_flows,
            output_buffer: self.output_buffer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("origin-tracer").chain(list.iter().copied()))
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_mins(2));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        for bad in ["", "s", "10x", "-1s", "0s", "1e999"] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = args(&["--format", "json"]).unwrap().resolve().unwrap();
        assert_eq!(s.ports, [80, 443]);
        assert_eq!(s.syn_timeout, Duration::from_secs(15));
        assert_eq!(s.ranges.prefixes.len(), 22);
        assert_eq!(s.events, EventsMode::Findings);
        assert!(s.ifaces.is_empty());
        assert!(s.capture.is_none());
    }

    #[test]
    fn analyze_takes_the_shared_flags_after_the_file() {
        let s = args(&[
            "analyze",
            "x.pcap",
            "--all-sources",
            "-p",
            "443",
            "--syn-timeout",
            "5s",
        ])
        .unwrap()
        .resolve()
        .unwrap();
        assert_eq!(s.capture.as_deref(), Some(std::path::Path::new("x.pcap")));
        assert!(s.all_sources);
        assert_eq!(s.ports, [443]);
        let e = args(&["-i", "eth0", "analyze", "x.pcap"])
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("--iface"), "{e}");
        assert!(args(&["analyze"]).is_err());
    }

    #[test]
    fn flags_parse() {
        let s = args(&[
            "-i",
            "eth0",
            "-i",
            "eth1",
            "-p",
            "443,80,443",
            "--edge-ranges",
            "198.18.0.1/32",
            "--syn-timeout",
            "3s",
        ])
        .unwrap()
        .resolve()
        .unwrap();
        assert_eq!(s.ifaces, ["eth0", "eth1"]);
        assert_eq!(s.ports, [80, 443]);
        assert_eq!(s.ranges.prefixes.len(), 1);
        assert_eq!(s.syn_timeout, Duration::from_secs(3));
        assert!(args(&["--all-sources", "--edge-ranges", "1.2.3.4"]).is_err());
        assert!(args(&["-p", "70000"]).is_err());
        assert!(args(&["-p", "0"]).unwrap().resolve().is_err());
        let bad = args(&["--edge-ranges", "300.1.2.3/8"])
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(bad.to_string().contains("300.1.2.3/8"));
    }
}
