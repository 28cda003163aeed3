//! The TLS/HTTP origin of the lab tests: one nginx with a port per TLS fault,
//! plain HTTP, a 20 KiB header block and several certificates chosen by SNI,
//! shared by the scenario tests and the live-versus-capture tests.

use crate::lab::{Family, Lab};
use crate::nginx::Nginx;
use crate::tls::{filler_headers, http_server, s_client, start_nginx, Certs, EdgeCurl, TlsServer};

/// nginx on the origin: one port per TLS fault, plain HTTP, and a port
/// with several certificates chosen by SNI.
pub mod port {
    /// SNI `good.lab.test` (default server, CA-signed), `expired.lab.test`,
    /// `wrongsan.lab.test`, `self.lab.test`; TLS 1.2 and 1.3.
    pub const SITES: u16 = 443;
    /// TLS 1.3 only.
    pub const TLS13_ONLY: u16 = 4431;
    /// TLS 1.2 with one cipher suite, `ECDHE-ECDSA-AES128-GCM-SHA256`.
    pub const ONE_CIPHER: u16 = 4432;
    /// `good.lab.test` only: other names get `ssl_reject_handshake`.
    pub const KNOWN_NAMES: u16 = 4433;
    /// Plain HTTP.
    pub const HTTP: u16 = 80;
    /// Plain HTTP with a 20 KiB response header block.
    pub const BIG_HEADERS: u16 = 8080;
    /// Backends (Python) that read, then misbehave.
    pub const CLOSE: u16 = 9001;
    pub const RESET: u16 = 9002;
    pub const BANNER: u16 = 9003;
    pub const SLOW: u16 = 9004;
}

pub const GOOD: &str = "good.lab.test";
pub const EXPIRED: &str = "expired.lab.test";
pub const WRONG_SAN: &str = "wrongsan.lab.test";
pub const SELF: &str = "self.lab.test";
pub const UNKNOWN: &str = "unknown.lab.test";
/// The only name in the wrong-SAN certificate.
pub const ELSEWHERE: &str = "elsewhere.lab.test";

/// The SSH-like banner of the malformed-response backend.
pub const BANNER: &str = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3";
/// Header block size of the big-headers server (over Cloudflare's 16 KiB).
pub const BIG_HEADER_BYTES: usize = 20 * 1024;

/// The lab's nginx with every TLS and HTTP server block, and its CA.
pub struct Origin {
    pub certs: Certs,
    _nginx: Nginx,
}

impl Origin {
    /// Starts nginx with every server block.
    pub fn start(lab: &Lab) -> Origin {
        let certs = Certs::new(lab);
        let good = certs.signed(GOOD, &[GOOD]);
        let expired = certs.expired(EXPIRED, &[EXPIRED]);
        let wrong_san = certs.signed(WRONG_SAN, &[ELSEWHERE]);
        let self_signed = certs.self_signed(SELF, &[SELF]);
        let servers = [
            TlsServer::new(port::SITES, &good)
                .name(GOOD)
                .default_server()
                .block(lab),
            TlsServer::new(port::SITES, &expired)
                .name(EXPIRED)
                .block(lab),
            TlsServer::new(port::SITES, &wrong_san)
                .name(WRONG_SAN)
                .block(lab),
            TlsServer::new(port::SITES, &self_signed)
                .name(SELF)
                .block(lab),
            TlsServer::new(port::TLS13_ONLY, &good)
                .protocols("TLSv1.3")
                .block(lab),
            TlsServer::new(port::ONE_CIPHER, &good)
                .protocols("TLSv1.2")
                .ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
                .block(lab),
            TlsServer::reject_unknown_names(port::KNOWN_NAMES).block(lab),
            TlsServer::new(port::KNOWN_NAMES, &good)
                .name(GOOD)
                .block(lab),
            http_server(lab, port::HTTP, &[]),
            http_server(lab, port::BIG_HEADERS, &filler_headers(BIG_HEADER_BYTES)),
        ];
        let nginx = start_nginx(
            lab,
            &[
                port::SITES,
                port::TLS13_ONLY,
                port::ONE_CIPHER,
                port::KNOWN_NAMES,
                port::HTTP,
                port::BIG_HEADERS,
            ],
            &servers,
        );
        Origin {
            certs,
            _nginx: nginx,
        }
    }

    /// curl trusting the lab's CA.
    pub fn trusting(&self, c: EdgeCurl) -> EdgeCurl {
        let ca = self.certs.ca.to_string_lossy().into_owned();
        c.args(&["--cacert", &ca])
    }

    /// Healthy traffic from the edge: HTTPS over TLS 1.2 and 1.3 (IPv4 and
    /// IPv6), a TLS 1.3 handshake that ends without a request (`s_client`),
    /// plain HTTP over both families. Each checked from the client's side;
    /// returns the number of connections.
    pub fn healthy_traffic(&self, lab: &Lab) -> u64 {
        let mut connections = 0;
        for (versions, family) in [
            (&["--tlsv1.2", "--tls-max", "1.2"][..], Family::V4),
            (&["--tlsv1.3"][..], Family::V4),
            (&["--tlsv1.3"][..], Family::V6),
        ] {
            let c = EdgeCurl::https(port::SITES).host(GOOD).over(family);
            let r = self.trusting(c).args(versions).run(lab);
            assert!(r.ok() && r.body == "ok\n", "{versions:?} {family:?}: {r:?}");
            connections += 1;
        }
        let ca = self.ca();
        let out = s_client(
            lab,
            Family::V4,
            port::SITES,
            &[
                "-tls1_3",
                "-verify_return_error",
                "-CAfile",
                &ca,
                "-servername",
                GOOD,
            ],
        );
        assert!(out.success(), "s_client to the good certificate: {out:?}");
        connections += 1;
        for family in [Family::V4, Family::V6] {
            let r = EdgeCurl::http(port::HTTP).over(family).run(lab);
            assert!(r.ok() && r.body == "ok\n", "HTTP {family:?}: {r:?}");
            connections += 1;
        }
        connections
    }

    /// Path of the lab's test CA.
    pub fn ca(&self) -> String {
        self.certs.ca.to_string_lossy().into_owned()
    }
}
