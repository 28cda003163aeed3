//! The judgement of a certificate chain, offline and pure: validity, the SNI against the
//! leaf's names (rustls-webpki's own check), self-signed, and whether it builds to a
//! trusted root (or is Cloudflare Origin CA by name).

use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use super::{
    Problem, EXPIRED, HANDSHAKE_FAILED, HOSTNAME_MISMATCH, NOT_YET_VALID, SELF_SIGNED,
    UNTRUSTED_ISSUER,
};

/// Issuer names (OU or CN) of Cloudflare's Origin CA, which Full (strict) trusts.
const CLOUDFLARE_ORIGIN_CA_NAMES: [&str; 2] = [
    "CloudFlare Origin SSL Certificate Authority",
    "CloudFlare Origin SSL ECC Certificate Authority",
];

/// What [`evaluate`] found in a chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// In the order [`Problem`] declares them; empty when the certificate would pass.
    pub problems: Vec<Problem>,
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

    if !name_matches(leaf_der, sni) {
        ev.problems.push(HOSTNAME_MISMATCH);
    }
    ev.san = san_dns_names(&leaf);

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

pub(super) fn sort_problems(problems: &mut Vec<Problem>) {
    problems.sort_unstable();
    problems.dedup();
}

/// The leaf's SAN DNS names, as written (for the `san` field).
fn san_dns_names(leaf: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = leaf.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(d) => Some((*d).to_owned()),
            _ => None,
        })
        .collect()
}

/// Whether `sni` is covered by the leaf's SAN, by rustls-webpki's own subject-name check
/// (what a verifying TLS client applies): DNS names with its wildcard rules, an IP literal
/// against IP SANs. A trailing dot is the same name.
fn name_matches(leaf: &[u8], sni: &str) -> bool {
    let Ok(name) = ServerName::try_from(sni.strip_suffix('.').unwrap_or(sni)) else {
        return false;
    };
    let der = CertificateDer::from(leaf);
    webpki::EndEntityCert::try_from(&der)
        .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
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
