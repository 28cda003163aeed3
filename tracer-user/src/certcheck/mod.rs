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
//! - `hostname_mismatch`: the SNI is not among the leaf's SAN names, as rustls-webpki's own
//!   subject-name verification judges it (the one the TLS stack uses: case-insensitive, a
//!   wildcard only as the whole left-most label; the subject CN is not consulted). An SNI
//!   that is an IP literal is matched against the SAN IP addresses.
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
//! The parts: [`handshake`] (rustls, a recording verifier), [`evaluate`] (the judgement,
//! pure), [`limiter`] (how often), [`watch`] (a worker thread for the live agent).
//!
//! Limits: TLS 1.2 and 1.3 only (rustls); an origin that speaks only TLS 1.0/1.1 shows as
//! `handshake_failed`. [`Limiter`] keeps this to one check per SNI per interval and a bounded
//! number of checks per interval overall, never a flood.

pub mod evaluate;
mod handshake;
pub mod limiter;
pub mod watch;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;

use evaluate::sort_problems;
pub use evaluate::{evaluate, evaluate_with_anchors, Evaluation};
use handshake::handshake;
pub use limiter::Limiter;

use crate::clock::rfc3339_from_unix_ns;
use crate::output::line::{CertCheckLine, Line, SCHEMA_VERSION};

/// Why a certificate would fail Full (strict); declared in the order they
/// are reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// No TLS session could be made, or the server sent no usable certificate.
    HandshakeFailed,
    /// The leaf's notAfter is in the past.
    Expired,
    /// The leaf's notBefore is in the future.
    NotYetValid,
    /// The SNI is not covered by the leaf's SAN.
    HostnameMismatch,
    /// The leaf signed itself.
    SelfSigned,
    /// The chain does not build to a public root (nor is it a Cloudflare Origin CA certificate).
    UntrustedIssuer,
}

impl Problem {
    /// The schema's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::HandshakeFailed => "handshake_failed",
            Problem::Expired => "expired",
            Problem::NotYetValid => "not_yet_valid",
            Problem::HostnameMismatch => "hostname_mismatch",
            Problem::SelfSigned => "self_signed",
            Problem::UntrustedIssuer => "untrusted_issuer",
        }
    }
}

pub const EXPIRED: Problem = Problem::Expired;
pub const NOT_YET_VALID: Problem = Problem::NotYetValid;
pub const HOSTNAME_MISMATCH: Problem = Problem::HostnameMismatch;
pub const SELF_SIGNED: Problem = Problem::SelfSigned;
pub const UNTRUSTED_ISSUER: Problem = Problem::UntrustedIssuer;
pub const HANDSHAKE_FAILED: Problem = Problem::HandshakeFailed;

/// Checks per interval over all SNIs together (new SNIs beyond this wait).
pub const MAX_CHECKS_PER_INTERVAL: usize = 64;
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
    pub fn to_line(&self, ts: String) -> Line {
        let rfc3339 = |secs: i64| rfc3339_from_unix_ns(i128::from(secs) * 1_000_000_000);
        Line::CertCheck(CertCheckLine {
            schema_version: SCHEMA_VERSION,
            ts: ts.into(),
            sni: self.sni.clone(),
            addr: self.addr,
            port: self.port,
            ok: self.ok(),
            problems: self.eval.problems.clone(),
            subject: self.eval.subject.clone(),
            issuer: self.eval.issuer.clone(),
            san: self.eval.san.clone(),
            not_before: self.eval.not_before_unix.map(rfc3339),
            not_after: self.eval.not_after_unix.map(rfc3339),
            days_until_expiry: self.eval.days_until_expiry,
            error: self.eval.error.clone(),
        })
    }

    /// The line as JSON (tests).
    #[cfg(test)]
    pub fn to_json(&self, ts: &str) -> serde_json::Value {
        serde_json::to_value(self.to_line(ts.to_owned())).expect("a cert_check line serializes")
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

#[cfg(test)]
mod tests;
