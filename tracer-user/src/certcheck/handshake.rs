//! One TLS handshake to the origin with rustls: a verifier that records the chain the
//! server sends (and still checks the handshake signature), no client certificate, every
//! step bounded by a timeout.

use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

/// What one handshake brought back.
pub(super) struct Handshake {
    /// The chain the server sent (leaf first), when it sent one.
    pub chain: Option<Vec<Vec<u8>>>,
    pub client_cert_requested: bool,
    pub result: Result<(), String>,
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

pub(super) fn handshake(addr: SocketAddr, sni: &str, timeout: Duration) -> Handshake {
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
