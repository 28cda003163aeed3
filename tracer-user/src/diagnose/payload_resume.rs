//! A connection the kernel followed quietly and handed over: where its
//! application layer stands (the turns answered there, and for TLS the
//! handshake the kernel read), so that the next bytes are read as if every
//! earlier one had been seen.

use super::{App, EvidenceKind, PayloadEvent};
use crate::diagnose::opaque::{offers_h2, Opaque};
use crate::{proto::tls, source::event::TlsResume};

impl App {
    /// The kernel saw `requests` requests answered before it handed the
    /// connection over: the edge's next payload starts the next turn (a
    /// connection handed over in its first turn starts as any other).
    /// `h2`: the kernel found it speaks HTTP/2 (and counted it).
    pub fn resume(&mut self, requests: u32, h2: bool) {
        self.requests = requests;
        self.resume_pending = requests > 0;
        if h2 {
            // A TLS connection's hello, resumed next, says how.
            self.opaque = Some(Opaque::Http2Preface);
            self.opaque_counted = true;
        }
    }

    /// A TLS connection the kernel followed: the `ClientHello` it kept,
    /// parsed here as if it had come in a snapshot, and the `ServerHello`'s
    /// version and cipher suite. Once the edge's side of the handshake
    /// finished, its next record starts a turn. Returns the evidence the
    /// hellos stand for, with their times (`at_ns`: the `ClientHello`'s).
    pub fn resume_tls(&mut self, t: &TlsResume, at_ns: u64) -> Vec<(u64, EvidenceKind)> {
        let mut out = Vec::new();
        let hello = t
            .client_hello
            .as_deref()
            .and_then(|b| tls::scan(b).client_hello);
        if let Some(ch) = &hello {
            out.push((at_ns, hello_evidence(ch)));
            if offers_h2(ch) {
                self.opaque = Some(Opaque::Http2Alpn);
            }
        }
        // Not kept (the kernel holds a bounded number): TLS all the same.
        self.client_hello = Some(hello.unwrap_or_default());
        if let Some((version, cipher, ts)) = t.server_hello {
            let sh = tls::ServerHello {
                version,
                cipher,
                ..tls::ServerHello::default()
            };
            out.push((ts.max(at_ns), server_hello_evidence(sh)));
            self.server_hello = Some(sh);
        }
        // The tickets belong to the first turn's story (later turns start
        // from the handshake's evidence, as when read in userspace).
        if let Some(ts) = t.tickets_ns.filter(|_| self.requests == 0) {
            self.kernel_tickets = 2;
            out.push((
                ts.max(at_ns),
                EvidenceKind::Payload {
                    event: PayloadEvent::DataOut,
                    detail: "2 TLS 1.3 session tickets".to_owned(),
                },
            ));
        }
        if t.done {
            self.resume_pending = true;
            self.tickets_pending = t.tickets_pending;
            self.records.handshake_done();
            self.handshake_done = true;
        }
        out
    }
}

/// `client_hello_in`: the server name asked for and the versions offered.
pub(super) fn hello_evidence(ch: &tls::ClientHello) -> EvidenceKind {
    let versions: Vec<&str> = ch
        .offered_versions
        .iter()
        .map(|v| tls::version_name(*v))
        .collect();
    EvidenceKind::Payload {
        event: PayloadEvent::ClientHelloIn,
        detail: format!(
            "sni={} offers {}{}{}",
            ch.sni.as_deref().unwrap_or("-"),
            versions.join(","),
            if ch.alpn.is_empty() { "" } else { ", alpn " },
            ch.alpn.join(",")
        ),
    }
}

/// `server_hello_out`: the version chosen.
pub(super) fn server_hello_evidence(sh: tls::ServerHello) -> EvidenceKind {
    EvidenceKind::Payload {
        event: PayloadEvent::ServerHelloOut,
        detail: format!(
            "{}{}",
            tls::version_name(sh.version),
            if sh.hello_retry_request {
                " (HelloRetryRequest)"
            } else {
                ""
            }
        ),
    }
}
