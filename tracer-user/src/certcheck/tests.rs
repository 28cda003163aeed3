//! Certificate check tests: evaluation on chains made with rcgen, the limiter, and
//! handshakes with real rustls servers on loopback.

use super::*;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, TrustAnchor};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

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
        let want: Vec<Problem> = if ok { vec![] } else { vec![HOSTNAME_MISMATCH] };
        assert_eq!(ev.problems, want, "{sni}");
    }
    let ev = evaluate(&chain, "www.example.test", NOW);
    assert_eq!(ev.problems, vec![UNTRUSTED_ISSUER]);
}

#[test]
fn rfc6125_matching() {
    // Each pattern as the leaf's only SAN, judged by rustls-webpki's name check.
    let ca = test_ca();
    let anchors = [ca.anchor()];
    for (pattern, host, want) in [
        ("example.test", "example.test", true),
        ("Example.TEST", "example.test", true),
        // RFC 5280 4.2.1.6: a presented name never ends in a dot; webpki rejects it.
        ("example.test.", "example.test", false),
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
        let (der, _) = leaf(&[pattern], VALID, Some(&ca));
        let ev = evaluate_with_anchors(&[der], host, NOW, &anchors);
        let matched = !ev.problems.contains(&HOSTNAME_MISMATCH);
        assert_eq!(matched, want, "{pattern} vs {host}: {ev:?}");
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
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
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
