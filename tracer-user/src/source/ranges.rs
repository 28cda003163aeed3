//! Edge address ranges: the built-in Cloudflare lists, CIDR parsing and range
//! files in the format of cloudflare.com/ips-v4 (one CIDR a line, `#` comments).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

/// Cloudflare's published IPv4 ranges (cloudflare.com/ips-v4).
pub const CLOUDFLARE_V4: &[&str] = &[
    "173.245.48.0/20",
    "103.21.244.0/22",
    "103.22.200.0/22",
    "103.31.4.0/22",
    "141.101.64.0/18",
    "108.162.192.0/18",
    "190.93.240.0/20",
    "188.114.96.0/20",
    "197.234.240.0/22",
    "198.41.128.0/17",
    "162.158.0.0/15",
    "104.16.0.0/13",
    "104.24.0.0/14",
    "172.64.0.0/13",
    "131.0.72.0/22",
];

/// Cloudflare's published IPv6 ranges (cloudflare.com/ips-v6).
pub const CLOUDFLARE_V6: &[&str] = &[
    "2400:cb00::/32",
    "2606:4700::/32",
    "2803:f800::/32",
    "2405:b500::/32",
    "2405:8100::/32",
    "2a06:98c0::/29",
    "2c0f:f248::/32",
];

/// One CIDR prefix, host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// Why a range could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RangeError {
    /// A value that is not `ADDRESS` or `ADDRESS/LEN`.
    #[error("invalid CIDR {value:?}: {why}")]
    Cidr { value: String, why: String },
    /// A bad line in a range file.
    #[error("{file}:{line}: invalid CIDR {value:?}: {why}")]
    FileLine {
        file: String,
        line: usize,
        value: String,
        why: String,
    },
    /// The range file could not be read.
    #[error("cannot read range file {file}: {why}")]
    File { file: String, why: String },
    /// The list ended up empty.
    #[error("no edge ranges given (use --all-sources to watch every source)")]
    Empty,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl Cidr {
    /// Parse `ADDRESS/LEN` or a bare address (a host route).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len {
            None => max,
            Some(l) => {
                let n: u8 = l
                    .parse()
                    .map_err(|_| format!("prefix length {l:?} is not a number"))?;
                if n > max {
                    return Err(format!("prefix length {n} exceeds {max}"));
                }
                n
            }
        };
        Ok(Self {
            addr: mask(addr, prefix_len),
            prefix_len,
        })
    }

    /// Does the prefix contain `ip`?
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix_len) == self.addr
            }
            _ => false,
        }
    }
}

fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

/// The resolved edge ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EdgeRanges {
    pub prefixes: Vec<Cidr>,
}

impl EdgeRanges {
    /// Cloudflare's published lists.
    pub fn cloudflare() -> Self {
        let prefixes = CLOUDFLARE_V4
            .iter()
            .chain(CLOUDFLARE_V6)
            .map(|c| Cidr::parse(c).expect("built-in ranges are valid"))
            .collect();
        Self { prefixes }
    }

    /// Parse a `--edge-ranges` value: comma-separated CIDRs and `@FILE`s.
    pub fn parse_list(list: &str) -> Result<Self, RangeError> {
        let mut prefixes = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some(file) = item.strip_prefix('@') {
                prefixes.extend(read_file(Path::new(file))?);
            } else {
                prefixes.push(Cidr::parse(item).map_err(|why| RangeError::Cidr {
                    value: item.into(),
                    why,
                })?);
            }
        }
        prefixes.sort_unstable();
        prefixes.dedup();
        if prefixes.is_empty() {
            return Err(RangeError::Empty);
        }
        Ok(Self { prefixes })
    }

    pub fn v4(&self) -> impl Iterator<Item = &Cidr> {
        self.prefixes.iter().filter(|c| c.addr.is_ipv4())
    }

    pub fn v6(&self) -> impl Iterator<Item = &Cidr> {
        self.prefixes.iter().filter(|c| c.addr.is_ipv6())
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.prefixes.iter().any(|c| c.contains(ip))
    }
}

/// Parse the text of a range file; `file` names it in errors.
pub fn parse_file_text(file: &str, text: &str) -> Result<Vec<Cidr>, RangeError> {
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let cidr = Cidr::parse(line).map_err(|why| RangeError::FileLine {
            file: file.into(),
            line: index + 1,
            value: line.into(),
            why,
        })?;
        out.push(cidr);
    }
    Ok(out)
}

fn read_file(path: &Path) -> Result<Vec<Cidr>, RangeError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| RangeError::File {
        file: name.clone(),
        why: e.to_string(),
    })?;
    parse_file_text(&name, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_masks() {
        let c = Cidr::parse("198.18.5.77/24").unwrap();
        assert_eq!(c.to_string(), "198.18.5.0/24");
        assert!(c.contains("198.18.5.1".parse().unwrap()));
        assert!(!c.contains("198.18.6.1".parse().unwrap()));
        assert!(!c.contains("2001:db8::1".parse().unwrap()));
        assert_eq!(Cidr::parse("2001:db8::1").unwrap().prefix_len, 128);
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
    }

    #[test]
    fn rejects_bad_cidrs() {
        for bad in [
            "300.1.2.3/8",
            "1.2.3.4/33",
            "2001:db8::/129",
            "1.2.3.4/x",
            "",
            "foo",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad} accepted");
        }
        let err = EdgeRanges::parse_list("198.18.0.0/15,300.1.2.3/8").unwrap_err();
        assert!(err.to_string().contains("300.1.2.3/8"), "{err}");
    }

    #[test]
    fn builtin_lists_match_cloudflare() {
        let r = EdgeRanges::cloudflare();
        assert_eq!(r.v4().count(), 15);
        assert_eq!(r.v6().count(), 7);
        assert!(r.contains("104.16.1.1".parse().unwrap()));
        assert!(r.contains("2606:4700::1111".parse().unwrap()));
        assert!(!r.contains("198.18.0.1".parse().unwrap()));
    }

    #[test]
    fn range_file_names_the_bad_line() {
        let text =
            "# Cloudflare\n173.245.48.0/20\n\n103.21.244.0/22 # trailing comment\nnot-a-cidr\n";
        let err = parse_file_text("ips-v4", text).unwrap_err();
        assert_eq!(
            err,
            RangeError::FileLine {
                file: "ips-v4".into(),
                line: 5,
                value: "not-a-cidr".into(),
                why: "\"not-a-cidr\" is not an IP address".into()
            }
        );
        let ok = parse_file_text("f", "173.245.48.0/20\n# c\n2400:cb00::/32\n").unwrap();
        assert_eq!(ok.len(), 2);
    }

    #[test]
    fn list_mixes_files_and_cidrs() {
        let dir = std::env::temp_dir().join(format!("otr-ranges-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ips");
        std::fs::write(&file, "198.18.0.0/24\n").unwrap();
        let r = EdgeRanges::parse_list(&format!("@{},2001:db8::/32", file.display())).unwrap();
        assert_eq!(r.prefixes.len(), 2);
        let missing = EdgeRanges::parse_list("@/nonexistent/otr").unwrap_err();
        assert!(matches!(missing, RangeError::File { .. }));
        assert_eq!(
            EdgeRanges::parse_list(" , ").unwrap_err(),
            RangeError::Empty
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
