//! Connections whose requests are not followed one by one: HTTP/2 (frames
//! of many streams are no request/response turns, and over TLS 1.3 the
//! origin's ALPN choice is encrypted) and connections switched to another
//! protocol. Their handshakes are still diagnosed; no 520/522/524 is named
//! from their frames, and the summary counts them.

use schemars::JsonSchema;
use serde::Serialize;

use super::payload::App;
use crate::proto::tls;

/// Why a connection's requests are not followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opaque {
    /// HTTP/2 with prior knowledge: the edge sent the h2c preface.
    Http2Preface,
    /// The edge offered HTTP/2 (ALPN `h2`).
    Http2Alpn,
    /// The origin answered `101 Switching Protocols` (a WebSocket, an h2c
    /// upgrade): what follows is no HTTP/1.
    Upgraded,
}

/// The h2c connection preface's first line (RFC 9113 3.4).
pub(super) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// The edge offers HTTP/2 among its ALPN protocols (the kernel's
/// `alpn::offer` reads the same).
pub(super) fn offers_h2(ch: &tls::ClientHello) -> bool {
    ch.alpn.iter().any(|p| p == "h2")
}

/// Connections whose requests were not followed one by one, for the
/// summary (those the kernel counted itself included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct PerRequestOff {
    /// HTTP/2: the edge sent the h2c preface, or offered ALPN `h2` over
    /// TLS. Until HTTP/2 frames are read, no request on them is named.
    pub http2: u64,
    /// Switched to another protocol by `101 Switching Protocols`
    /// (WebSocket, an h2c upgrade) after the request that asked for it.
    pub upgraded: u64,
}

impl PerRequestOff {
    /// Count `app` if it became opaque since it was `had` (not when the
    /// kernel found it first: it counted it).
    pub(super) fn count(&mut self, had: Option<Opaque>, app: &App) {
        if had.is_some() || app.opaque_counted {
            return;
        }
        match app.opaque {
            Some(Opaque::Http2Preface | Opaque::Http2Alpn) => self.http2 += 1,
            Some(Opaque::Upgraded) => self.upgraded += 1,
            None => {}
        }
    }
}
