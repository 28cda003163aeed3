//! The bench's TLS 1.3 client (rustls with ring, the version the agent
//! uses): it trusts only the lab's test CA and never resumes a session, so
//! every connection it opens is a full handshake.

use std::{net::TcpStream, path::Path, sync::Arc};

use anyhow::{Context, Result};
use rustls::{
    client::Resumption,
    pki_types::{pem::PemObject, CertificateDer, ServerName},
    ClientConfig, ClientConnection, RootCertStore, StreamOwned,
};

/// A TLS stream over TCP.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// One configuration shared by every connection of a phase (so its cost is
/// paid once); with resumption disabled it holds no session between them.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl TlsClient {
    /// A client that trusts `ca` (PEM) alone and asks for `name` (SNI, and
    /// the name the origin's certificate must carry).
    pub fn new(ca: &Path, name: &str) -> Result<TlsClient> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("reading {}", ca.display()))?
        {
            roots.add(cert.context("a certificate of the lab's CA")?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.resumption = Resumption::disabled();
        Ok(TlsClient {
            config: Arc::new(config),
            name: ServerName::try_from(name.to_owned())?,
        })
    }

    /// A full TLS 1.3 handshake over `tcp`; returns once it is complete.
    pub fn connect(&self, tcp: TcpStream) -> Result<TlsStream> {
        let conn = ClientConnection::new(Arc::clone(&self.config), self.name.clone())?;
        let mut s = StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn
                .complete_io(&mut s.sock)
                .context("TLS handshake with the lab's nginx")?;
        }
        Ok(s)
    }
}

/// Ends a connection the client closes first: `close_notify`, then FIN.
pub fn close(mut s: TlsStream) {
    s.conn.send_close_notify();
    // The origin may be gone already; nothing to report then.
    let _ = s.conn.complete_io(&mut s.sock);
}
