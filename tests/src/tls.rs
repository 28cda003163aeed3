//! TLS in the lab: a test CA and leaf certificates made by openssl (valid,
//! expired, for the wrong name, self-signed), nginx TLS server blocks, and
//! TLS clients on the edge side: curl over https, `openssl s_client`, and a
//! Python client that aborts a TLS 1.3 handshake after the origin's
//! certificate without sending an alert in the clear.
//!
//! The faults are all made by real nginx (nginx 1.22's `ssl_protocols`,
//! `ssl_ciphers`, `ssl_reject_handshake`) and real OpenSSL clients, so no
//! `openssl s_server` is needed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::lab::{CurlResult, Family, Lab, Source};
use crate::netns::{host_ok, run_bounded, Outcome};
use crate::nginx::Nginx;

/// The subject of the lab's test CA.
pub const CA_NAME: &str = "origin-tracer lab test CA";

/// A certificate and its key, both PEM files in the lab's directory.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The certificate's common name.
    pub name: String,
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, unencrypted).
    pub key: PathBuf,
}

/// The lab's test CA (ECDSA P-256) in `<lab dir>/certs`, and the leaves it
/// signs: a CA of its own, so not trusted by anything but the clients told
/// to trust it (`--cacert`).
#[derive(Debug)]
pub struct Certs {
    dir: PathBuf,
    /// The CA certificate, for clients' `--cacert` / `-CAfile`.
    pub ca: PathBuf,
    ca_key: PathBuf,
    conf: PathBuf,
}

impl Certs {
    /// Makes the CA.
    pub fn new(lab: &Lab) -> Certs {
        let dir = lab.dir().join("certs");
        std::fs::create_dir_all(dir.join("issued")).expect("create certs dir");
        std::fs::write(dir.join("index.txt"), "").expect("write index.txt");
        std::fs::write(dir.join("serial"), "1000\n").expect("write serial");
        let d = dir.display();
        // `openssl ca` is used (not `x509 -req`) because OpenSSL 3.0 can set
        // a validity period in the past only there (-startdate/-enddate).
        let conf = dir.join("ca.cnf");
        std::fs::write(
            &conf,
            format!(
                "[ca]\ndefault_ca = lab\n[lab]\ndatabase = {d}/index.txt\n\
                 serial = {d}/serial\nnew_certs_dir = {d}/issued\n\
                 default_md = sha256\npolicy = any\nunique_subject = no\n\
                 [any]\ncommonName = supplied\n"
            ),
        )
        .expect("write ca.cnf");
        let ca = dir.join("ca.pem");
        let ca_key = dir.join("ca.key");
        self_signed_p256(
            &ca_key,
            &ca,
            CA_NAME,
            &[
                "basicConstraints=critical,CA:TRUE",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Certs {
            dir,
            ca,
            ca_key,
            conf,
        }
    }

    /// A leaf for `name` signed by the CA, valid from a day ago for 30
    /// days, with the DNS names `sans`.
    pub fn signed(&self, name: &str, sans: &[&str]) -> Leaf {
        let start = utc_date("1 day ago");
        let end = utc_date("30 days");
        self.issue(name, sans, &start, &end)
    }

    /// A leaf for `name` signed by the CA that expired long ago (valid in
    /// January 2020 only).
    pub fn expired(&self, name: &str, sans: &[&str]) -> Leaf {
        self.issue(name, sans, "20200101000000Z", "20200201000000Z")
    }

    /// A self-signed certificate for `name` with the DNS names `sans`.
    pub fn self_signed(&self, name: &str, sans: &[&str]) -> Leaf {
        let leaf = self.paths(name);
        self_signed_p256(&leaf.key, &leaf.cert, name, &[&san_line(sans)]);
        leaf
    }

    fn paths(&self, name: &str) -> Leaf {
        let file: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        Leaf {
            name: name.to_owned(),
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
        }
    }

    fn issue(&self, name: &str, sans: &[&str], start: &str, end: &str) -> Leaf {
        let leaf = self.paths(name);
        let csr = leaf.cert.with_extension("csr");
        let ext = leaf.cert.with_extension("ext");
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &path(&leaf.key),
            "-out",
            &path(&csr),
            "-subj",
            &format!("/CN={name}"),
        ]);
        std::fs::write(
            &ext,
            format!(
                "{}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                 extendedKeyUsage=serverAuth\n",
                san_line(sans)
            ),
        )
        .expect("write extensions");
        openssl(&[
            "ca",
            "-batch",
            "-notext",
            "-config",
            &path(&self.conf),
            "-cert",
            &path(&self.ca),
            "-keyfile",
            &path(&self.ca_key),
            "-in",
            &path(&csr),
            "-out",
            &path(&leaf.cert),
            "-startdate",
            start,
            "-enddate",
            end,
            "-extfile",
            &path(&ext),
        ]);
        leaf
    }
}

/// A new P-256 key in `key` and a self-signed certificate for it in `cert`
/// (CN `cn`, 30 days, the extensions `exts`).
fn self_signed_p256(key: &Path, cert: &Path, cn: &str, exts: &[&str]) {
    let (key, cert, subj) = (path(key), path(cert), format!("/CN={cn}"));
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &cert,
        "-days",
        "30",
        "-subj",
        &subj,
    ];
    for e in exts {
        args.extend(["-addext", e]);
    }
    openssl(&args);
}

fn san_line(sans: &[&str]) -> String {
    let names: Vec<String> = sans.iter().map(|s| format!("DNS:{s}")).collect();
    format!("subjectAltName={}", names.join(","))
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn openssl(args: &[&str]) {
    host_ok("openssl", args);
}

/// `date -u -d WHEN` as `YYYYMMDDHHMMSSZ` (for `openssl ca -startdate`).
fn utc_date(when: &str) -> String {
    host_ok("date", &["-u", "-d", when, "+%Y%m%d%H%M%SZ"])
        .trim()
        .to_owned()
}

/// One nginx TLS `server` block on the origin's addresses.
#[derive(Debug, Clone)]
pub struct TlsServer {
    port: u16,
    default_server: bool,
    http2: bool,
    directives: Vec<String>,
}

impl TlsServer {
    /// A TLS server on `port` with `leaf`'s certificate, answering every
    /// request with `200 ok`; TLS 1.2 and 1.3 (nginx 1.22 leaves TLS 1.3
    /// off unless asked).
    pub fn new(port: u16, leaf: &Leaf) -> TlsServer {
        TlsServer {
            port,
            default_server: false,
            http2: false,
            directives: vec![
                format!("ssl_certificate {}", leaf.cert.display()),
                format!("ssl_certificate_key {}", leaf.key.display()),
                "ssl_protocols TLSv1.2 TLSv1.3".to_owned(),
                "return 200 \"ok\\n\"".to_owned(),
            ],
        }
    }

    /// The default server of `port` that refuses every handshake whose SNI
    /// no other server block names (`ssl_reject_handshake on`: nginx sends
    /// a fatal `unrecognized_name` alert).
    pub fn reject_unknown_names(port: u16) -> TlsServer {
        TlsServer {
            port,
            default_server: true,
            http2: false,
            directives: vec![
                "ssl_reject_handshake on".to_owned(),
                // The default server's versions are those of the port.
                "ssl_protocols TLSv1.2 TLSv1.3".to_owned(),
            ],
        }
    }

    /// Only for the SNI `name` (`server_name`).
    #[must_use]
    pub fn name(self, name: &str) -> TlsServer {
        self.directive(&format!("server_name {name}"))
    }

    /// The default server of its port.
    #[must_use]
    pub fn default_server(mut self) -> TlsServer {
        self.default_server = true;
        self
    }

    /// Offering HTTP/2 by ALPN (`listen ... ssl http2`).
    #[must_use]
    pub fn http2(mut self) -> TlsServer {
        self.http2 = true;
        self
    }

    /// `ssl_protocols` (e.g. `TLSv1.3`), replacing TLS 1.2 and 1.3.
    #[must_use]
    pub fn protocols(mut self, protocols: &str) -> TlsServer {
        self.directives.retain(|d| !d.starts_with("ssl_protocols "));
        self.directive(&format!("ssl_protocols {protocols}"))
    }

    /// `ssl_ciphers` (TLS 1.2 cipher suites, OpenSSL names).
    #[must_use]
    pub fn ciphers(self, ciphers: &str) -> TlsServer {
        self.directive(&format!("ssl_ciphers {ciphers}"))
    }

    /// Any other directive, without its `;`.
    #[must_use]
    pub fn directive(mut self, directive: &str) -> TlsServer {
        // Before `return`, which ends the list for readability only.
        let at = self
            .directives
            .iter()
            .position(|d| d.starts_with("return "))
            .unwrap_or(self.directives.len());
        self.directives.insert(at, directive.to_owned());
        self
    }

    /// The `server { ... }` block.
    pub fn block(&self, lab: &Lab) -> String {
        let mut params = "ssl".to_owned();
        if self.http2 {
            params.push_str(" http2");
        }
        if self.default_server {
            params.push_str(" default_server");
        }
        let mut s = format!("  server {{\n{}", Nginx::listen(lab, self.port, &params));
        for d in &self.directives {
            s.push_str(&format!("    {d};\n"));
        }
        s.push_str("  }\n");
        s
    }
}

/// A plain-HTTP nginx `server` block on `port` answering `200 ok`, with
/// `directives` (each without its `;`) before the `return`.
pub fn http_server(lab: &Lab, port: u16, directives: &[String]) -> String {
    let mut s = format!("  server {{\n{}", Nginx::listen(lab, port, ""));
    for d in directives {
        s.push_str(&format!("    {d};\n"));
    }
    s.push_str("    return 200 \"ok\\n\";\n  }\n");
    s
}

/// Starts nginx with `servers` (TLS and plain blocks) listening on `ports`.
pub fn start_nginx(lab: &Lab, ports: &[u16], servers: &[String]) -> Nginx {
    Nginx::start_servers(lab, ports, &servers.concat())
}

/// `add_header` directives that make a response header block of at least
/// `bytes` bytes (headers `X-Filler-NN` of 1000 bytes each).
pub fn filler_headers(bytes: usize) -> Vec<String> {
    let value = "a".repeat(1000);
    (0..bytes.div_ceil(1000))
        .map(|i| format!("add_header X-Filler-{i:02} \"{value}\""))
        .collect()
}

/// curl in the edge namespace from the edge address, over http or https,
/// with whatever extra arguments a scenario needs.
#[derive(Debug, Clone)]
pub struct EdgeCurl {
    /// Address family.
    pub family: Family,
    /// `https` or `http`.
    pub scheme: &'static str,
    /// Origin port.
    pub port: u16,
    /// Host name in the URL (TLS SNI and `Host`), resolved to the origin
    /// with `--resolve`; the origin's address when `None`.
    pub host: Option<String>,
    /// More curl arguments (`-k`, `--tlsv1.2`, `--cacert` ...).
    pub args: Vec<String>,
    /// `--connect-timeout`.
    pub connect_timeout: Duration,
    /// `-m`.
    pub max_time: Duration,
    /// Requests sent, one after the other on one kept-alive connection.
    pub requests: usize,
}

impl EdgeCurl {
    /// `https://<origin>:port/` over IPv4, connect timeout 2 s, at most 4 s;
    /// offering only `http/1.1` by ALPN, as Cloudflare's edge does unless
    /// "HTTP/2 to origin" is on (`--http2` after it offers `h2` too).
    pub fn https(port: u16) -> EdgeCurl {
        EdgeCurl {
            family: Family::V4,
            scheme: "https",
            port,
            host: None,
            args: vec!["--http1.1".to_owned()],
            connect_timeout: Duration::from_secs(2),
            max_time: Duration::from_secs(4),
            requests: 1,
        }
    }

    /// `http://<origin>:port/`.
    pub fn http(port: u16) -> EdgeCurl {
        EdgeCurl {
            scheme: "http",
            ..EdgeCurl::https(port)
        }
    }

    /// Over IPv6.
    #[must_use]
    pub fn v6(self) -> EdgeCurl {
        self.over(Family::V6)
    }

    /// Over `family`.
    #[must_use]
    pub fn over(mut self, family: Family) -> EdgeCurl {
        self.family = family;
        self
    }

    /// With host name `name` (SNI) resolved to the origin.
    #[must_use]
    pub fn host(mut self, name: &str) -> EdgeCurl {
        self.host = Some(name.to_owned());
        self
    }

    /// With more arguments.
    #[must_use]
    pub fn args(mut self, args: &[&str]) -> EdgeCurl {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Sending `n` requests on one connection (curl keeps it alive).
    #[must_use]
    pub fn requests(mut self, n: usize) -> EdgeCurl {
        self.requests = n;
        self
    }

    /// With `-m limit`.
    #[must_use]
    pub fn max_time(mut self, limit: Duration) -> EdgeCurl {
        self.max_time = limit;
        self
    }

    /// Runs it (bounded by `-m` plus 5 s).
    pub fn run(&self, lab: &Lab) -> CurlResult {
        let origin_url = match lab.origin_addr(self.family) {
            std::net::IpAddr::V4(a) => a.to_string(),
            std::net::IpAddr::V6(a) => format!("[{a}]"),
        };
        let url_host = self.host.clone().unwrap_or_else(|| origin_url.clone());
        let mut args = Vec::new();
        if let Some(name) = &self.host {
            args.push("--resolve".to_owned());
            args.push(format!("{name}:{}:{origin_url}", self.port));
        }
        args.extend(self.args.iter().cloned());
        for i in 1..=self.requests.max(1) {
            args.push(format!("{}://{url_host}:{}/{i}", self.scheme, self.port));
        }
        lab.run_curl(
            lab.client_addr(self.family, Source::Edge),
            (self.connect_timeout, self.max_time),
            &args,
        )
    }
}

/// Runs `openssl s_client -connect <origin>:port -bind <edge address>
/// -msg <args>` in the edge namespace with an empty stdin (it ends after
/// the handshake); stdout has the `-msg` trace of the records.
pub fn s_client(lab: &Lab, family: Family, port: u16, args: &[&str]) -> Outcome {
    let (connect, bind) = match family {
        Family::V4 => (
            format!("{}:{port}", lab.origin_v4),
            format!("{}:0", lab.edge_v4),
        ),
        Family::V6 => (
            format!("[{}]:{port}", lab.origin_v6),
            format!("[{}]:0", lab.edge_v6),
        ),
    };
    let mut all = vec!["s_client", "-connect", &connect, "-bind", &bind, "-msg"];
    all.extend_from_slice(args);
    lab.edge.run_with_input("openssl", &all, "")
}

/// How the [`abort_after_certificate`] client ends the connection once it
/// has rejected the origin's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    /// Close (FIN) and send nothing.
    Fin,
    /// Reset (`SO_LINGER` 0).
    Reset,
    /// One application-data record the size of an encrypted alert (what a
    /// client with its handshake keys installed sends), then FIN.
    EncryptedAlert,
}

impl Abort {
    fn as_str(self) -> &'static str {
        match self {
            Abort::Fin => "fin",
            Abort::Reset => "reset",
            Abort::EncryptedAlert => "record",
        }
    }
}

/// A TLS 1.3 client (Python's `ssl` over memory buffers) that sends a real
/// `ClientHello`, reads the origin's flight, checks the certificate against
/// the system's roots with hostname `sni`, and, when it is rejected, ends
/// the connection as `how` says instead of sending the plaintext alert
/// OpenSSL wrote for it. Prints what happened, one line a step.
const ABORT_CLIENT: &str = r#"
import select, socket, ssl, struct, sys, time
host, port, sni, bind, how = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context()
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(inc, out, server_hostname=sni)
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(5)
s.bind((bind, 0))
s.connect((host, port))
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = out.read()
s.sendall(hello)
print("sent ClientHello (%d bytes)" % len(hello))
verdict = "nothing from the origin"
deadline = time.monotonic() + 5
while time.monotonic() < deadline:
    if not select.select([s], [], [], 0.5)[0]:
        continue
    data = s.recv(65536)
    if not data:
        verdict = "origin closed"
        break
    inc.write(data)
    try:
        tls.do_handshake()
        verdict = "handshake completed"
        break
    except ssl.SSLWantReadError:
        pass
    except ssl.SSLCertVerificationError as e:
        verdict = "rejected the certificate: %s" % e.verify_message
        break
print(verdict)
print("withheld the %d-byte alert" % len(out.read()))
if how == "record":
    s.sendall(bytes([0x17, 0x03, 0x03, 0x00, 0x13]) + bytes(range(0x40, 0x53)))
    print("sent a 24-byte application_data record")
if how == "reset":
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
print("closed (%s)" % how)
"#;

/// Runs the aborting TLS 1.3 client from the edge address of `family` to
/// `port` with SNI `sni` (bounded to 15 s). Its stdout says whether it
/// rejected the certificate (`rejected the certificate: ...`).
pub fn abort_after_certificate(
    lab: &Lab,
    family: Family,
    port: u16,
    sni: &str,
    how: Abort,
) -> Outcome {
    let origin = lab.origin_addr(family).to_string();
    let bind = lab.client_addr(family, Source::Edge).to_string();
    let port = port.to_string();
    let mut cmd = lab.edge.command("python3");
    cmd.args(["-c", ABORT_CLIENT, &origin, &port, sni, &bind, how.as_str()]);
    run_bounded(&mut cmd, Duration::from_secs(15))
}
