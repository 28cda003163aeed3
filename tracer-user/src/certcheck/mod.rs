//! Certificate check (`--check-certs`): one TLS handshake per SNI to the origin, and whether
//! its certificate would pass Cloudflare's Full (strict) validation.
//!
//! [`check`] makes one handshake to the local address and port the edge used, with the SNI
//! the edge sent. A custom verifier records the chain the server presents and accepts it, so
//! that every problem can be reported rather than only the first; the server's handshake
//! signature is still verified against that certificate. [`evaluate`] then judges the leaf,
//! offline:
//!
//! - `expired` / `not_yet_valid`: `now` against notAfter / notBefore.
//! - `hostname_mismatch`: the SNI is not among the leaf's SAN DNS names (RFC 6125: case-
//!   insensitive, a wildcard only as the whole left-most label and matching exactly one
//!   label; the subject CN is not consulted, as by current validators). An SNI that is an IP
//!   literal is matched against the SAN IP addresses instead.
//! - `self_signed`: the leaf's issuer equals its subject **and** its signature verifies with
//!   its own key. A self-signed leaf is reported as `self_signed` only, never also as
//!   `untrusted_issuer` (the more specific reason wins).
//! - `untrusted_issuer`: the chain as sent does not build to a bundled public root
//!   (`webpki-roots`, no network, no AIA fetching: a missing intermediate shows up here), with
//!   the hostname ignored and validity judged at a time inside the leaf's own validity
//!   window, so that `expired` and `hostname_mismatch` are not also reported as this.
//!   Cloudflare Origin CA certificates are accepted by Full (strict) but are not publicly
//!   trusted; no anchor of that CA is bundled here, so a leaf whose issuer is named
//!   `CloudFlare Origin SSL [ECC ]Certificate Authority` is accepted by that name
//!   ([`Evaluation::cloudflare_origin_ca`]).
//! - `handshake_failed`: no TLS session (refused, closed, timed out, alert, no certificate).
//!   A server that asks for a client certificate (Authenticated Origin Pulls) and then
//!   aborts because this check sent none is not a failure: the edge would have sent one.
//!
//! Limits: TLS 1.2 and 1.3 only (rustls); an origin that speaks only TLS 1.0/1.1 shows as
//! `handshake_failed`. [`Limiter`] keeps this to one check per SNI per interval and a bounded
//! number of checks per interval overall, never a flood.

pub mod watch;

use std::collections::HashMap;
use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use serde_json::{json, Value};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use crate::clock::rfc3339_from_unix_ns;
use crate::diagnose::finding::SCHEMA_VERSION;

/// The leaf's notAfter is in the past.
pub const EXPIRED: &str = "expired";
/// The leaf's notBefore is in the future.
pub const NOT_YET_VALID: &str = "not_yet_valid";
/// The SNI is not covered by the leaf's SAN.
pub const HOSTNAME_MISMATCH: &str = "hostname_mismatch";
/// The leaf signed itself.
pub const SELF_SIGNED: &str = "self_signed";
/// The chain does not build to a public root (nor is it a Cloudflare Origin CA certificate).
pub const UNTRUSTED_ISSUER: &str = "untrusted_issuer";
/// No TLS session could be made, or the server sent no usable certificate.
pub const HANDSHAKE_FAILED: &str = "handshake_failed";

/// Every problem, in the order they are reported.
pub const PROBLEMS: [&str; 6] = [
    HANDSHAKE_FAILED,
    EXPIRED,
    NOT_YET_VALID,
    HOSTNAME_MISMATCH,
    SELF_SIGNED,
    UNTRUSTED_ISSUER,
];

/// Issuer names (OU or CN) of Cloudflare's Origin CA, which Full (strict) trusts.
const CLOUDFLARE_ORIGIN_CA_NAMES: [&str; 2] = [
    "CloudFlare Origin SSL Certificate Authority",
    "CloudFlare Origin SSL ECC Certificate Authority",
];

/// Checks per interval over all SNIs together (new SNIs beyond this wait).
pub const MAX_CHECKS_PER_INTERVAL: usize = 64;

/// What [`evaluate`] found in a chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Names from [`PROBLEMS`], in that order; empty when the certificate would pass.
    pub problems: Vec<&'static str>,
    /// Leaf subject, RFC 4514 style (`CN=example.com, O=...`).
    pub subject: Option<String>,
    /// Leaf issuer, same style.
    pub issuer: Option<String>,
    /// The leaf's SAN DNS names, as written in the certificate.
    pub san: Vec<String>,
    pub not_before_unix: Option<i64>,
    pub not_after_unix: Option<i64>,
    /// Whole days from `now` to notAfter, rounded down: negative once expired.
    pub days_until_expiry: Option<i64>,
    /// The chain did not build to a public root but the leaf's issuer is Cloudflare's Origin
    /// CA by name, which Full (strict) accepts: not reported as `untrusted_issuer`.
    pub cloudflare_origin_ca: bool,
    /// Why the chain did not build to a root (set with `untrusted_issuer`).
    pub chain_error: Option<String>,
    /// Why the chain could not be evaluated at all (set with `handshake_failed`).
    pub error: Option<String>,
}

/// The result of one [`check`]: the `cert_check` line of docs/SCHEMA.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertCheck {
    pub sni: String,
    pub addr: IpAddr,
    pub port: u16,
    /// What the chain showed, plus `handshake_failed` and its `error` when the handshake
    /// itself failed. `chain_error` and `cloudflare_origin_ca` are not in JSON.
    pub eval: Evaluation,
    /// The server asked for a client certificate (e.g. Authenticated Origin Pulls); not in
    /// JSON.
    pub client_cert_requested: bool,
}

impl CertCheck {
    fn new(addr: SocketAddr, sni: &str) -> Self {
        CertCheck {
            sni: sni.to_owned(),
            addr: addr.ip(),
            port: addr.port(),
            eval: Evaluation::default(),
            client_cert_requested: false,
        }
    }

    /// `true` when no problem was found.
    pub fn ok(&self) -> bool {
        self.eval.problems.is_empty()
    }

    /// The schema v1 `cert_check` line; `ts` is the RFC 3339 time of the check.
    pub fn to_json(&self, ts: &str) -> Value {
        let rfc3339 = |secs: i64| rfc3339_from_unix_ns(i128::from(secs) * 1_000_000_000);
        let mut v = json!({
            "type": "cert_check",
            "schema_version": SCHEMA_VERSION,
            "ts": ts,
            "sni": self.sni,
            "addr": self.addr.to_string(),
            "port": self.port,
            "ok": self.ok(),
            "problems": self.eval.problems,
            "subject": self.eval.subject,
            "issuer": self.eval.issuer,
            "san": self.eval.san,
            "not_before": self.eval.not_before_unix.map(rfc3339),
            "not_after": self.eval.not_after_unix.map(rfc3339),
            "days_until_expiry": self.eval.days_until_expiry,
        });
        if let Some(error) = &self.eval.error {
            v["error"] = json!(error);
        }
        v
    }
}

/// One handshake with `sni` to `addr` (each step bounded by `timeout`, the whole by about
/// that), then [`evaluate`] of the chain the server sent, at `now_unix`. Blocking.
pub fn check(addr: SocketAddr, sni: &str, timeout: Duration, now_unix: i64) -> CertCheck {
    let hs = handshake(addr, sni, timeout);
    let mut out = CertCheck::new(addr, sni);
    out.client_cert_requested = hs.client_cert_requested;
    if let Some(chain) = &hs.chain {
        out.eval = evaluate(chain, sni, now_unix);
    }
    if let Err(e) = hs.result {
        // The server aborted after asking for a client certificate we do not have: the edge
        // (Authenticated Origin Pulls) would have sent one, so this is not the origin's fault.
        let client_auth_abort = hs.chain.is_some() && hs.client_cert_requested;
        if !client_auth_abort {
            out.eval.problems.push(HANDSHAKE_FAILED);
            out.eval.error = Some(e);
        }
    } else if hs.chain.is_none() {
        out.eval.problems.push(HANDSHAKE_FAILED);
        out.eval.error = Some("the server sent no certificate".to_owned());
    }
    sort_problems(&mut out.eval.problems);
    out
}

/// [`evaluate_with_anchors`] against the bundled public roots (`webpki-roots`).
pub fn evaluate(chain: &[Vec<u8>], sni: &str, now_unix: i64) -> Evaluation {
    evaluate_with_anchors(chain, sni, now_unix, webpki_roots::TLS_SERVER_ROOTS)
}

/// Judges a DER chain (leaf first, then what the server sent after it) for `sni` at
/// `now_unix`, trusting `anchors`. Pure: no network, no clock.
pub fn evaluate_with_anchors(
    chain: &[Vec<u8>],
    sni: &str,
    now_unix: i64,
    anchors: &[TrustAnchor<'_>],
) -> Evaluation {
    let mut ev = Evaluation::default();
    let Some(leaf_der) = chain.first() else {
        ev.problems.push(HANDSHAKE_FAILED);
        ev.error = Some("the server sent no certificate".to_owned());
        return ev;
    };
    let leaf = match X509Certificate::from_der(leaf_der) {
        Ok((_, leaf)) => leaf,
        Err(e) => {
            ev.problems.push(HANDSHAKE_FAILED);
            ev.error = Some(format!("the leaf certificate does not parse: {e}"));
            return ev;
        }
    };
    ev.subject = Some(leaf.subject().to_string());
    ev.issuer = Some(leaf.issuer().to_string());
    let not_before = leaf.validity().not_before.timestamp();
    let not_after = leaf.validity().not_after.timestamp();
    ev.not_before_unix = Some(not_before);
    ev.not_after_unix = Some(not_after);
    ev.days_until_expiry = Some(not_after.saturating_sub(now_unix).div_euclid(86_400));
    if now_unix > not_after {
        ev.problems.push(EXPIRED);
    }
    if now_unix < not_before {
        ev.problems.push(NOT_YET_VALID);
    }

    let (dns, ips) = san_names(&leaf);
    if !name_matches(&dns, &ips, sni) {
        ev.problems.push(HOSTNAME_MISMATCH);
    }
    ev.san = dns;

    let self_signed =
        leaf.subject().as_raw() == leaf.issuer().as_raw() && leaf.verify_signature(None).is_ok();
    if self_signed {
        ev.problems.push(SELF_SIGNED);
    } else if let Err(e) = chains_to_anchor(chain, not_before, not_after, now_unix, anchors) {
        if e == webpki::Error::UnknownIssuer && is_cloudflare_origin_ca(leaf.issuer()) {
            ev.cloudflare_origin_ca = true;
        } else {
            ev.problems.push(UNTRUSTED_ISSUER);
            ev.chain_error = Some(format!("{e:?}"));
        }
    }
    sort_problems(&mut ev.problems);
    ev
}

fn sort_problems(problems: &mut Vec<&'static str>) {
    problems.sort_by_key(|p| PROBLEMS.iter().position(|q| q == p));
    problems.dedup();
}

/// The leaf's SAN DNS names and IP addresses.
fn san_names(leaf: &X509Certificate<'_>) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                GeneralName::IPAddress(b) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                        ips.push(IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                        ips.push(IpAddr::from(v6));
                    }
                }
                _ => {}
            }
        }
    }
    (dns, ips)
}

/// Whether `sni` is covered by the SAN: DNS names per RFC 6125, an IP literal by IP SANs.
fn name_matches(dns: &[String], ips: &[IpAddr], sni: &str) -> bool {
    if let Ok(ip) = sni.parse::<IpAddr>() {
        return ips.contains(&ip);
    }
    dns.iter().any(|pattern| dns_name_matches(pattern, sni))
}

fn normalize_host(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// RFC 6125 §6.4: case-insensitive; `*` only as the entire left-most label, matching exactly
/// one non-empty label, and followed by at least two labels (`*.com` matches nothing).
pub fn dns_name_matches(pattern: &str, host: &str) -> bool {
    let pattern = normalize_host(pattern);
    let host = normalize_host(host);
    if host.is_empty() || host.contains('*') || host.split('.').any(str::is_empty) {
        return false;
    }
    if let Some(rest) = pattern.strip_prefix("*.") {
        if rest.contains('*') || rest.split('.').count() < 2 || rest.split('.').any(str::is_empty) {
            return false;
        }
        return host
            .split_once('.')
            .is_some_and(|(first, tail)| !first.is_empty() && tail == rest);
    }
    !pattern.contains('*') && pattern == host
}

/// Builds the chain to one of `anchors`, for server auth, hostname ignored. Validity is
/// judged at `now` clamped into the leaf's own window, so an expired or not yet valid leaf is
/// reported as that alone; an intermediate out of its validity still fails here.
fn chains_to_anchor(
    chain: &[Vec<u8>],
    not_before: i64,
    not_after: i64,
    now: i64,
    anchors: &[TrustAnchor<'_>],
) -> Result<(), webpki::Error> {
    let ders: Vec<CertificateDer<'_>> = chain
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let Some((leaf, intermediates)) = ders.split_first() else {
        return Err(webpki::Error::BadDer);
    };
    let ee = webpki::EndEntityCert::try_from(leaf)?;
    let at = if not_before <= not_after {
        now.clamp(not_before, not_after)
    } else {
        now
    };
    let time = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(at).unwrap_or(0)));
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        anchors,
        intermediates,
        time,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map(|_| ())
}

fn is_cloudflare_origin_ca(issuer: &X509Name<'_>) -> bool {
    issuer
        .iter_organizational_unit()
        .chain(issuer.iter_common_name())
        .filter_map(|a| a.as_str().ok())
        .any(|v| {
            CLOUDFLARE_ORIGIN_CA_NAMES
                .iter()
                .any(|n| v.trim().eq_ignore_ascii_case(n))
        })
}

/// What one handshake brought back.
struct Handshake {
    /// The chain the server sent (leaf first), when it sent one.
    chain: Option<Vec<Vec<u8>>>,
    client_cert_requested: bool,
    result: Result<(), String>,
}

/// Records the server's chain and accepts it; still verifies the handshake signature, so a
/// server without the certificate's key fails as it would for the edge.
#[derive(Debug)]
struct RecordingVerifier {
    chain: Mutex<Option<Vec<Vec<u8>>>>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.as_ref().to_vec())
            .collect();
        *self.chain.lock().unwrap_or_else(PoisonError::into_inner) = Some(chain);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Has no client certificate; notes that the server asked for one.
#[derive(Debug, Default)]
struct NoClientCert {
    asked: AtomicBool,
}

impl ResolvesClientCert for NoClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.asked.store(true, Ordering::Relaxed);
        None
    }

    fn has_certs(&self) -> bool {
        false
    }
}

fn handshake(addr: SocketAddr, sni: &str, timeout: Duration) -> Handshake {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(RecordingVerifier {
        chain: Mutex::new(None),
        algs: provider.signature_verification_algorithms,
    });
    let client_cert = Arc::new(NoClientCert::default());
    let result = run_handshake(
        addr,
        sni,
        timeout,
        &provider,
        verifier.clone(),
        client_cert.clone(),
    );
    let chain = verifier
        .chain
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    Handshake {
        chain,
        client_cert_requested: client_cert.asked.load(Ordering::Relaxed),
        result,
    }
}

fn run_handshake(
    addr: SocketAddr,
    sni: &str,
    timeout: Duration,
    provider: &Arc<rustls::crypto::CryptoProvider>,
    verifier: Arc<RecordingVerifier>,
    client_cert: Arc<NoClientCert>,
) -> Result<(), String> {
    let server_name = ServerName::try_from(sni.to_owned())
        .map_err(|e| format!("invalid server name {sni:?}: {e}"))?;
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls config: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(client_cert);
    // A full handshake every time: the certificate is the point.
    config.resumption = Resumption::disabled();
    let mut conn = ClientConnection::new(Arc::new(config), server_name)
        .map_err(|e| format!("tls client: {e}"))?;

    let deadline = Instant::now() + timeout;
    let mut sock =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    let _ = sock.set_nodelay(true);
    while conn.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "handshake timed out after {}",
                fmt_duration(timeout)
            ));
        }
        sock.set_read_timeout(Some(left))
            .and_then(|()| sock.set_write_timeout(Some(left)))
            .map_err(|e| format!("socket: {e}"))?;
        match conn.complete_io(&mut sock) {
            Ok(_) => {}
            Err(e) => return Err(describe_io_error(&e, timeout)),
        }
    }
    conn.send_close_notify();
    let _ = conn.write_tls(&mut sock);
    let _ = sock.flush();
    Ok(())
}

fn describe_io_error(e: &io::Error, timeout: Duration) -> String {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            "the server closed the connection during the handshake".to_owned()
        }
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("handshake timed out after {}", fmt_duration(timeout))
        }
        io::ErrorKind::InvalidData => format!("tls: {e}"),
        _ => format!("handshake: {e}"),
    }
}

fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// One check per SNI per interval, and at most [`MAX_CHECKS_PER_INTERVAL`] checks per
/// interval overall (so a stream of distinct SNIs cannot turn into a flood of handshakes).
#[derive(Debug, Clone)]
pub struct Limiter {
    interval: Duration,
    max_per_interval: usize,
    last: HashMap<String, Instant>,
}

impl Limiter {
    pub fn new(interval: Duration) -> Self {
        Limiter {
            interval,
            max_per_interval: MAX_CHECKS_PER_INTERVAL,
            last: HashMap::new(),
        }
    }

    /// Whether `sni` may be checked at `now`; when it may, that check is counted.
    /// SNIs compare case-insensitively, a trailing dot ignored.
    pub fn due(&mut self, sni: &str, now: Instant) -> bool {
        let key = normalize_host(sni);
        if let Some(&last) = self.last.get(&key) {
            if now.saturating_duration_since(last) < self.interval {
                return false;
            }
            self.last.insert(key, now);
            return true;
        }
        if self.last.len() >= self.max_per_interval {
            let interval = self.interval;
            self.last
                .retain(|_, t| now.saturating_duration_since(*t) < interval);
            if self.last.len() >= self.max_per_interval {
                return false;
            }
        }
        self.last.insert(key, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa,
        Issuer, KeyPair, KeyUsagePurpose,
    };
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::server::WebPkiClientVerifier;
    use rustls::{RootCertStore, ServerConfig, ServerConnection};
    use std::io::Read;
    use std::net::TcpListener;
    use std::thread;

    /// 2026-01-01T00:00:00Z
    const NOW: i64 = 1_767_225_600;
    const DAY: i64 = 86_400;

    type Ymd = (i32, u8, u8);
    const VALID: (Ymd, Ymd) = ((2025, 1, 1), (2027, 1, 1));

    struct Ca {
        params: CertificateParams,
        key: KeyPair,
        der: Vec<u8>,
    }

    impl Ca {
        fn anchor(&self) -> TrustAnchor<'static> {
            webpki::anchor_from_trusted_cert(&CertificateDer::from(self.der.clone()))
                .unwrap()
                .to_owned()
        }
    }

    fn dn(attrs: &[(DnType, &str)]) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        for (t, v) in attrs {
            dn.push(t.clone(), *v);
        }
        dn
    }

    fn ca_params(name: &DistinguishedName) -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = name.clone();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2040, 1, 1);
        params
    }

    /// A self-signed root CA.
    fn root_ca(name: &DistinguishedName) -> Ca {
        let key = KeyPair::generate().unwrap();
        let params = ca_params(name);
        let der = params.self_signed(&key).unwrap().der().to_vec();
        Ca { params, key, der }
    }

    /// An intermediate CA signed by `parent`.
    fn sub_ca(name: &DistinguishedName, parent: &Ca) -> Ca {
        let key = KeyPair::generate().unwrap();
        let params = ca_params(name);
        let issuer = Issuer::from_params(&parent.params, &parent.key);
        let der = params.signed_by(&key, &issuer).unwrap().der().to_vec();
        Ca { params, key, der }
    }

    fn leaf_params(sans: &[&str], (from, to): (Ymd, Ymd)) -> CertificateParams {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name = dn(&[(DnType::CommonName, "origin leaf")]);
        params.not_before = date_time_ymd(from.0, from.1, from.2);
        params.not_after = date_time_ymd(to.0, to.1, to.2);
        params
    }

    /// A leaf for `sans`, valid `from`..`to`, signed by `ca` (or by itself with `None`).
    fn leaf(sans: &[&str], validity: (Ymd, Ymd), ca: Option<&Ca>) -> (Vec<u8>, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let params = leaf_params(sans, validity);
        let cert = match ca {
            Some(ca) => params
                .signed_by(&key, &Issuer::from_params(&ca.params, &ca.key))
                .unwrap(),
            None => params.self_signed(&key).unwrap(),
        };
        (cert.der().to_vec(), key)
    }

    fn test_ca() -> Ca {
        root_ca(&dn(&[
            (DnType::CommonName, "origin-tracer test CA"),
            (DnType::OrganizationName, "origin-tracer"),
        ]))
    }

    // ---- evaluate -------------------------------------------------------------------

    #[test]
    fn good_leaf_from_private_ca_is_only_untrusted() {
        let ca = test_ca();
        let (der, _) = leaf(&["origin.test"], VALID, Some(&ca));
        let ev = evaluate(&[der.clone(), ca.der.clone()], "origin.test", NOW);
        assert_eq!(ev.problems, vec![UNTRUSTED_ISSUER]);
        assert_eq!(ev.chain_error.as_deref(), Some("UnknownIssuer"));
        assert_eq!(ev.subject.as_deref(), Some("CN=origin leaf"));
        assert_eq!(
            ev.issuer.as_deref(),
            Some("CN=origin-tracer test CA, O=origin-tracer")
        );
        assert_eq!(ev.san, vec!["origin.test".to_owned()]);
        assert_eq!(ev.not_before_unix, Some(1_735_689_600)); // 2025-01-01
        assert_eq!(ev.not_after_unix, Some(1_798_761_600)); // 2027-01-01
        assert_eq!(ev.days_until_expiry, Some(365));
        assert!(!ev.cloudflare_origin_ca);
        assert_eq!(ev.error, None);

        // The same chain with the CA trusted passes: the only problem was the issuer.
        let ev = evaluate_with_anchors(&[der], "origin.test", NOW, &[ca.anchor()]);
        assert!(ev.problems.is_empty(), "{ev:?}");
        assert_eq!(ev.chain_error, None);
    }

    #[test]
    fn expired_leaf() {
        let ca = test_ca();
        let (der, _) = leaf(&["origin.test"], ((2023, 1, 1), (2024, 1, 1)), Some(&ca));
        let ev = evaluate(std::slice::from_ref(&der), "origin.test", NOW);
        assert_eq!(ev.problems, vec![EXPIRED, UNTRUSTED_ISSUER]);
        // 2024-01-01 is 731 days before 2026-01-01.
        assert_eq!(ev.days_until_expiry, Some(-731));
        // Under a trusted CA it is expired and nothing else: the chain is judged inside the
        // leaf's own validity window.
        let ev = evaluate_with_anchors(&[der], "origin.test", NOW, &[ca.anchor()]);
        assert_eq!(ev.problems, vec![EXPIRED]);
    }

    #[test]
    fn not_yet_valid_leaf() {
        let ca = test_ca();
        let (der, _) = leaf(&["origin.test"], ((2027, 1, 1), (2028, 1, 1)), Some(&ca));
        let ev = evaluate(std::slice::from_ref(&der), "origin.test", NOW);
        assert_eq!(ev.problems, vec![NOT_YET_VALID, UNTRUSTED_ISSUER]);
        assert_eq!(ev.days_until_expiry, Some(730));
        let ev = evaluate_with_anchors(&[der], "origin.test", NOW, &[ca.anchor()]);
        assert_eq!(ev.problems, vec![NOT_YET_VALID]);
    }

    #[test]
    fn wrong_san_leaf() {
        let ca = test_ca();
        let (der, _) = leaf(&["other.test", "www.other.test"], VALID, Some(&ca));
        let ev = evaluate(std::slice::from_ref(&der), "origin.test", NOW);
        assert_eq!(ev.problems, vec![HOSTNAME_MISMATCH, UNTRUSTED_ISSUER]);
        assert_eq!(ev.san, vec!["other.test", "www.other.test"]);
        // The trust check ignores the hostname: a trusted CA leaves the mismatch alone.
        let ev = evaluate_with_anchors(&[der], "origin.test", NOW, &[ca.anchor()]);
        assert_eq!(ev.problems, vec![HOSTNAME_MISMATCH]);
    }

    #[test]
    fn self_signed_leaf_is_self_signed_not_untrusted() {
        let (der, _) = leaf(&["origin.test"], VALID, None);
        let ev = evaluate(std::slice::from_ref(&der), "origin.test", NOW);
        assert_eq!(ev.problems, vec![SELF_SIGNED]);
        assert_eq!(ev.subject, ev.issuer);
        assert_eq!(ev.chain_error, None);
        // Problems add up; still no untrusted_issuer.
        let (der, _) = leaf(&["other.test"], ((2023, 1, 1), (2024, 1, 1)), None);
        let ev = evaluate(&[der], "origin.test", NOW);
        assert_eq!(ev.problems, vec![EXPIRED, HOSTNAME_MISMATCH, SELF_SIGNED]);
    }

    #[test]
    fn same_name_as_issuer_but_signed_by_another_key_is_not_self_signed() {
        let ca = test_ca();
        let key = KeyPair::generate().unwrap();
        let mut params = leaf_params(&["origin.test"], VALID);
        params.distinguished_name = ca.params.distinguished_name.clone();
        let der = params
            .signed_by(&key, &Issuer::from_params(&ca.params, &ca.key))
            .unwrap()
            .der()
            .to_vec();
        let ev = evaluate(&[der], "origin.test", NOW);
        assert_eq!(ev.subject, ev.issuer);
        assert_eq!(ev.problems, vec![UNTRUSTED_ISSUER]);
    }

    #[test]
    fn wildcard_leaf() {
        let ca = test_ca();
        let (der, _) = leaf(&["*.example.test"], VALID, Some(&ca));
        let chain = [der];
        let anchors = [ca.anchor()];
        for (sni, ok) in [
            ("www.example.test", true),
            ("API.Example.Test", true),
            ("www.example.test.", true),
            ("example.test", false),
            ("a.b.example.test", false),
            ("www.example.testx", false),
        ] {
            let ev = evaluate_with_anchors(&chain, sni, NOW, &anchors);
            let want: Vec<&str> = if ok { vec![] } else { vec![HOSTNAME_MISMATCH] };
            assert_eq!(ev.problems, want, "{sni}");
        }
        let ev = evaluate(&chain, "www.example.test", NOW);
        assert_eq!(ev.problems, vec![UNTRUSTED_ISSUER]);
    }

    #[test]
    fn rfc6125_matching() {
        for (pattern, host, want) in [
            ("example.test", "example.test", true),
            ("Example.TEST.", "example.test", true),
            ("example.test", "www.example.test", false),
            ("*.example.test", "www.example.test", true),
            ("*.example.test", "example.test", false),
            ("*.example.test", ".example.test", false),
            ("*.example.test", "a.b.example.test", false),
            ("*.test", "example.test", false),
            ("*", "example", false),
            ("w*.example.test", "www.example.test", false),
            ("*w.example.test", "www.example.test", false),
            ("www.*.test", "www.example.test", false),
            ("*.*.test", "a.example.test", false),
            ("*.example.test", "*.example.test", false),
            ("*.xn--bcher-kva.test", "www.xn--bcher-kva.test", true),
            ("", "", false),
            ("example.test", "example..test", false),
        ] {
            assert_eq!(dns_name_matches(pattern, host), want, "{pattern} vs {host}");
        }
    }

    #[test]
    fn missing_intermediate_is_untrusted() {
        let root = test_ca();
        let inter = sub_ca(&dn(&[(DnType::CommonName, "test intermediate")]), &root);
        let (der, _) = leaf(&["origin.test"], VALID, Some(&inter));
        let anchors = [root.anchor()];
        let full = [der.clone(), inter.der.clone()];
        assert!(evaluate_with_anchors(&full, "origin.test", NOW, &anchors)
            .problems
            .is_empty());
        let ev = evaluate_with_anchors(&[der], "origin.test", NOW, &anchors);
        assert_eq!(ev.problems, vec![UNTRUSTED_ISSUER]);
        assert_eq!(ev.chain_error.as_deref(), Some("UnknownIssuer"));
    }

    #[test]
    fn cloudflare_origin_ca_is_accepted_by_name() {
        let origin_ca = root_ca(&dn(&[
            (DnType::CountryName, "US"),
            (DnType::OrganizationName, "CloudFlare, Inc."),
            (
                DnType::OrganizationalUnitName,
                "CloudFlare Origin SSL ECC Certificate Authority",
            ),
        ]));
        let (der, _) = leaf(&["*.origin.test", "origin.test"], VALID, Some(&origin_ca));
        let ev = evaluate(std::slice::from_ref(&der), "origin.test", NOW);
        assert!(ev.problems.is_empty(), "{ev:?}");
        assert!(ev.cloudflare_origin_ca);
        // Its other problems are still reported.
        let ev = evaluate(&[der], "elsewhere.test", NOW);
        assert_eq!(ev.problems, vec![HOSTNAME_MISMATCH]);
    }

    #[test]
    fn ip_literal_sni_matches_ip_sans() {
        let ca = test_ca();
        let (der, _) = leaf(&["127.0.0.1", "::1", "origin.test"], VALID, Some(&ca));
        let chain = [der];
        let anchors = [ca.anchor()];
        for (sni, ok) in [
            ("127.0.0.1", true),
            ("::1", true),
            ("127.0.0.2", false),
            ("origin.test", true),
        ] {
            let ev = evaluate_with_anchors(&chain, sni, NOW, &anchors);
            assert_eq!(ev.problems.is_empty(), ok, "{sni}: {ev:?}");
        }
        // IP SANs are not DNS names.
        assert_eq!(
            evaluate(&chain, "origin.test", NOW).san,
            vec!["origin.test".to_owned()]
        );
    }

    #[test]
    fn no_or_garbage_certificate_is_handshake_failed() {
        let ev = evaluate(&[], "origin.test", NOW);
        assert_eq!(ev.problems, vec![HANDSHAKE_FAILED]);
        assert!(ev.error.is_some());
        let ev = evaluate(&[b"not a certificate".to_vec()], "origin.test", NOW);
        assert_eq!(ev.problems, vec![HANDSHAKE_FAILED]);
        assert!(ev.error.unwrap().contains("does not parse"));
        assert_eq!(ev.subject, None);
    }

    #[test]
    fn days_until_expiry_rounds_down() {
        let ca = test_ca();
        let (der, _) = leaf(&["origin.test"], VALID, Some(&ca));
        let not_after = 1_798_761_600;
        let chain = [der];
        let days = |now| evaluate(&chain, "origin.test", now).days_until_expiry;
        assert_eq!(days(not_after - DAY - 1), Some(1));
        assert_eq!(days(not_after - 1), Some(0));
        assert_eq!(days(not_after), Some(0));
        assert_eq!(days(not_after + 1), Some(-1));
        // Expiry is strictly after notAfter.
        assert!(!evaluate(&chain, "origin.test", not_after)
            .problems
            .contains(&EXPIRED));
        assert!(evaluate(&chain, "origin.test", not_after + 1)
            .problems
            .contains(&EXPIRED));
    }

    // ---- JSON ---------------------------------------------------------------------------

    #[test]
    fn json_line() {
        let mut c = CertCheck::new("127.0.0.1:443".parse().unwrap(), "origin.test");
        c.eval.problems = vec![EXPIRED, UNTRUSTED_ISSUER];
        c.eval.subject = Some("CN=origin.test".to_owned());
        c.eval.issuer = Some("CN=test CA".to_owned());
        c.eval.san = vec!["origin.test".to_owned()];
        c.eval.not_before_unix = Some(1_735_689_600);
        c.eval.not_after_unix = Some(1_767_225_599);
        c.eval.days_until_expiry = Some(-1);
        let v = c.to_json("2026-01-01T00:00:00.000000Z");
        assert_eq!(v["type"], "cert_check");
        assert_eq!(v["schema_version"], SCHEMA_VERSION);
        assert_eq!(v["ts"], "2026-01-01T00:00:00.000000Z");
        assert_eq!(v["sni"], "origin.test");
        assert_eq!(v["addr"], "127.0.0.1");
        assert_eq!(v["port"], 443);
        assert_eq!(v["ok"], false);
        assert_eq!(v["problems"], json!(["expired", "untrusted_issuer"]));
        assert_eq!(v["subject"], "CN=origin.test");
        assert_eq!(v["issuer"], "CN=test CA");
        assert_eq!(v["san"], json!(["origin.test"]));
        assert_eq!(v["not_before"], "2025-01-01T00:00:00.000000Z");
        assert_eq!(v["not_after"], "2025-12-31T23:59:59.000000Z");
        assert_eq!(v["days_until_expiry"], -1);
        assert!(v.get("error").is_none());

        let mut c = CertCheck::new("[::1]:8443".parse().unwrap(), "origin.test");
        c.eval.problems = vec![HANDSHAKE_FAILED];
        c.eval.error = Some("connect: refused".to_owned());
        let v = c.to_json("t");
        assert_eq!(v["addr"], "::1");
        assert_eq!(v["port"], 8443);
        assert_eq!(v["subject"], Value::Null);
        assert_eq!(v["not_after"], Value::Null);
        assert_eq!(v["days_until_expiry"], Value::Null);
        assert_eq!(v["san"], json!([]));
        assert_eq!(v["error"], "connect: refused");
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for k in [
            "type",
            "schema_version",
            "ts",
            "sni",
            "addr",
            "port",
            "ok",
            "problems",
            "subject",
            "issuer",
            "san",
            "not_before",
            "not_after",
            "days_until_expiry",
            "error",
        ] {
            assert!(keys.contains(&k), "{k}");
        }
        assert_eq!(keys.len(), 15);
    }

    // ---- Limiter --------------------------------------------------------------------

    #[test]
    fn limiter_one_check_per_sni_per_interval() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut l = Limiter::new(s(300));
        assert!(l.due("origin.test", t0));
        assert!(!l.due("origin.test", t0));
        assert!(!l.due("ORIGIN.test.", t0 + s(299)));
        assert!(l.due("other.test", t0 + s(1)));
        assert!(l.due("origin.test", t0 + s(300)));
        assert!(!l.due("origin.test", t0 + s(599)));
        assert!(l.due("origin.test", t0 + s(600)));
        // A clock that goes backwards does not open the gate.
        assert!(!l.due("other.test", t0));
    }

    #[test]
    fn limiter_caps_checks_per_interval_overall() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut l = Limiter::new(s(60));
        for i in 0..MAX_CHECKS_PER_INTERVAL {
            assert!(l.due(&format!("h{i}.test"), t0), "{i}");
        }
        assert!(!l.due("one-more.test", t0 + s(59)));
        // Once the interval has passed, old entries make room again.
        assert!(l.due("one-more.test", t0 + s(60)));
        assert!(l.last.len() <= MAX_CHECKS_PER_INTERVAL);
        assert!(l.due("h0.test", t0 + s(60)));
    }

    // ---- check, end to end over loopback ----------------------------------------------

    const TIMEOUT: Duration = Duration::from_secs(5);

    struct Server {
        chain: Vec<Vec<u8>>,
        key: Vec<u8>,
        tls12_only: bool,
        require_client_cert_from: Option<Vec<u8>>,
    }

    /// A rustls server on 127.0.0.1 that serves `conns` connections, then stops.
    fn serve_tls(server: Server, conns: usize) -> SocketAddr {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone());
        let builder = if server.tls12_only {
            builder.with_protocol_versions(&[&rustls::version::TLS12])
        } else {
            builder.with_safe_default_protocol_versions()
        }
        .unwrap();
        let builder = match &server.require_client_cert_from {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(CertificateDer::from(ca.clone())).unwrap();
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let certs = server.chain.into_iter().map(CertificateDer::from).collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key));
        let config = Arc::new(builder.with_single_cert(certs, key).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            for _ in 0..conns {
                let Ok((mut sock, _)) = listener.accept() else {
                    return;
                };
                sock.set_read_timeout(Some(TIMEOUT)).unwrap();
                sock.set_write_timeout(Some(TIMEOUT)).unwrap();
                let mut conn = ServerConnection::new(config.clone()).unwrap();
                let mut failed = false;
                while conn.is_handshaking() {
                    if conn.complete_io(&mut sock).is_err() {
                        failed = true;
                        break;
                    }
                }
                if !failed {
                    // Until the client's close_notify or EOF.
                    let mut buf = [0u8; 1024];
                    while !matches!(conn.complete_io(&mut sock), Err(_) | Ok((0, 0))) {
                        if conn.reader().read(&mut buf).is_ok_and(|n| n == 0) {
                            break;
                        }
                    }
                }
            }
        });
        addr
    }

    fn simple_server(ca: &Ca, sans: &[&str], conns: usize) -> SocketAddr {
        let (der, key) = leaf(sans, VALID, Some(ca));
        serve_tls(
            Server {
                chain: vec![der, ca.der.clone()],
                key: key.serialize_der(),
                tls12_only: false,
                require_client_cert_from: None,
            },
            conns,
        )
    }

    #[test]
    fn check_reads_the_served_chain() {
        let ca = test_ca();
        let addr = simple_server(&ca, &["origin.test"], 2);
        let c = check(addr, "origin.test", TIMEOUT, NOW);
        assert_eq!(c.eval.problems, vec![UNTRUSTED_ISSUER], "{c:?}");
        assert_eq!(c.eval.error, None);
        assert_eq!(c.addr, addr.ip());
        assert_eq!(c.port, addr.port());
        assert_eq!(c.sni, "origin.test");
        assert_eq!(c.eval.subject.as_deref(), Some("CN=origin leaf"));
        assert_eq!(
            c.eval.issuer.as_deref(),
            Some("CN=origin-tracer test CA, O=origin-tracer")
        );
        assert_eq!(c.eval.san, vec!["origin.test".to_owned()]);
        assert_eq!(c.eval.days_until_expiry, Some(365));
        assert!(!c.client_cert_requested);
        assert!(!c.ok());

        let c = check(addr, "elsewhere.test", TIMEOUT, NOW);
        assert_eq!(c.eval.problems, vec![HOSTNAME_MISMATCH, UNTRUSTED_ISSUER]);
        let v = c.to_json("2026-01-01T00:00:00.000000Z");
        assert_eq!(
            v["problems"],
            json!(["hostname_mismatch", "untrusted_issuer"])
        );
        assert_eq!(v["not_before"], "2025-01-01T00:00:00.000000Z");
    }

    #[test]
    fn check_over_tls12_and_self_signed() {
        let (der, key) = leaf(&["origin.test"], ((2023, 1, 1), (2024, 1, 1)), None);
        let addr = serve_tls(
            Server {
                chain: vec![der],
                key: key.serialize_der(),
                tls12_only: true,
                require_client_cert_from: None,
            },
            1,
        );
        let c = check(addr, "origin.test", TIMEOUT, NOW);
        assert_eq!(c.eval.problems, vec![EXPIRED, SELF_SIGNED], "{c:?}");
        assert_eq!(c.eval.error, None);
    }

    #[test]
    fn check_with_client_auth_required_is_not_a_handshake_failure() {
        let ca = test_ca();
        for tls12_only in [true, false] {
            let (der, key) = leaf(&["origin.test"], VALID, Some(&ca));
            let addr = serve_tls(
                Server {
                    chain: vec![der, ca.der.clone()],
                    key: key.serialize_der(),
                    tls12_only,
                    require_client_cert_from: Some(ca.der.clone()),
                },
                1,
            );
            let c = check(addr, "origin.test", TIMEOUT, NOW);
            assert!(c.client_cert_requested, "tls12_only={tls12_only}");
            assert_eq!(
                c.eval.problems,
                vec![UNTRUSTED_ISSUER],
                "tls12_only={tls12_only}: {c:?}"
            );
            assert_eq!(c.eval.error, None);
        }
    }

    #[test]
    fn check_closed_port_is_handshake_failed() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let c = check(addr, "origin.test", TIMEOUT, NOW);
        assert_eq!(c.eval.problems, vec![HANDSHAKE_FAILED]);
        let err = c.eval.error.as_deref().unwrap();
        assert!(err.starts_with("connect: "), "{err}");
        assert_eq!(c.eval.subject, None);
        assert_eq!(c.to_json("t")["error"], err);
    }

    /// A plain TCP server on 127.0.0.1 that runs `f` on one accepted connection.
    fn serve_plain(f: impl FnOnce(TcpStream) + Send + 'static) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            if let Ok((sock, _)) = listener.accept() {
                f(sock);
            }
        });
        addr
    }

    #[test]
    fn check_server_that_closes_is_handshake_failed() {
        let addr = serve_plain(drop);
        let c = check(addr, "origin.test", TIMEOUT, NOW);
        assert_eq!(c.eval.problems, vec![HANDSHAKE_FAILED], "{c:?}");
        let err = c.eval.error.unwrap();
        assert!(
            err.contains("closed the connection") || err.contains("reset"),
            "{err}"
        );
    }

    #[test]
    fn check_plain_http_is_handshake_failed() {
        let addr = serve_plain(|mut sock| {
            let mut buf = [0u8; 512];
            let _ = sock.read(&mut buf);
            let _ = sock.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        });
        let c = check(addr, "origin.test", TIMEOUT, NOW);
        assert_eq!(c.eval.problems, vec![HANDSHAKE_FAILED], "{c:?}");
        assert!(c.eval.error.unwrap().starts_with("tls: "));
    }

    #[test]
    fn check_silent_server_times_out() {
        let addr = serve_plain(|sock| {
            thread::sleep(Duration::from_secs(2));
            drop(sock);
        });
        let started = Instant::now();
        let c = check(addr, "origin.test", Duration::from_millis(300), NOW);
        assert!(started.elapsed() < Duration::from_millis(1500));
        assert_eq!(c.eval.problems, vec![HANDSHAKE_FAILED]);
        assert_eq!(
            c.eval.error.as_deref(),
            Some("handshake timed out after 300ms")
        );
    }

    #[test]
    fn check_invalid_server_name() {
        let c = check("127.0.0.1:9".parse().unwrap(), "not a name", TIMEOUT, NOW);
        assert_eq!(c.eval.problems, vec![HANDSHAKE_FAILED]);
        assert!(c.eval.error.unwrap().contains("invalid server name"));
    }
}
