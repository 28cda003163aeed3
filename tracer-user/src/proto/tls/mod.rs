//! TLS recognised by content, not by port: record headers, the edge's
//! `ClientHello`, the origin's `ServerHello` / `HelloRetryRequest` and the
//! plaintext alerts of a handshake, read from one direction's first bytes.
//!
//! The input is whatever the agent saw (one or a few segments, possibly cut
//! anywhere): records are walked one after another, handshake messages are
//! reassembled across records, and a `ClientHello` cut short still yields
//! what its bytes hold (marked incomplete). Lengths are checked against the
//! bytes present, never trusted.

mod hello;

use hello::{parse_client_hello, parse_server_hello};
pub use hello::{ClientHello, ServerHello};

/// Largest record body allowed (TLS 1.2 `TLSCiphertext`: 2^14 + 2048).
const MAX_RECORD_LEN: usize = (1 << 14) + 2048;
/// Bytes of a record header: type, version, length.
const RECORD_HEADER: usize = 5;
/// Bytes of a handshake message header: type, 24-bit length.
const HANDSHAKE_HEADER: usize = 4;

/// Handshake message types (RFC 8446 section 4, RFC 5246 section 7.4).
const HS_CLIENT_HELLO: u8 = 1;
const HS_SERVER_HELLO: u8 = 2;

/// The content type of a TLS record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsRecordKind {
    ChangeCipherSpec,
    Alert,
    Handshake,
    ApplicationData,
    Heartbeat,
}

impl TlsRecordKind {
    /// The kind of a record's first byte, `None` if it is no TLS content type.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            20 => Some(Self::ChangeCipherSpec),
            21 => Some(Self::Alert),
            22 => Some(Self::Handshake),
            23 => Some(Self::ApplicationData),
            24 => Some(Self::Heartbeat),
            _ => None,
        }
    }

    /// The RFC name of the content type.
    pub fn name(self) -> &'static str {
        match self {
            Self::ChangeCipherSpec => "change_cipher_spec",
            Self::Alert => "alert",
            Self::Handshake => "handshake",
            Self::ApplicationData => "application_data",
            Self::Heartbeat => "heartbeat",
        }
    }
}

/// Does `data` start like a TLS record? Content type 20..=24, version major 3
/// and minor 0..=4, and (when those bytes are present) a length that a record
/// may have. Needs at least the type and version (3 bytes).
pub fn looks_like_tls(data: &[u8]) -> bool {
    data.len() >= 3 && header_prefix_ok(data)
}

/// Every byte present among a record header's five agrees with TLS.
fn header_prefix_ok(data: &[u8]) -> bool {
    let Some(kind) = data.first().copied().and_then(TlsRecordKind::from_byte) else {
        return false;
    };
    if data.get(1).is_some_and(|&major| major != 3) || data.get(2).is_some_and(|&minor| minor > 4) {
        return false;
    }
    match (data.get(3), data.get(4)) {
        (Some(&hi), Some(&lo)) => {
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            // Only application data may be empty (TLS 1.2 allows it).
            len <= MAX_RECORD_LEN && (len > 0 || kind == TlsRecordKind::ApplicationData)
        }
        (Some(&hi), None) => usize::from(hi) <= MAX_RECORD_LEN >> 8,
        _ => true,
    }
}

/// The printable name of a protocol version: "SSL3.0", "TLS1.0".."TLS1.3",
/// or "unknown".
pub fn version_name(v: u16) -> &'static str {
    match v {
        0x0300 => "SSL3.0",
        0x0301 => "TLS1.0",
        0x0302 => "TLS1.1",
        0x0303 => "TLS1.2",
        0x0304 => "TLS1.3",
        _ => "unknown",
    }
}

/// The RFC name of a handshake message type, or "unknown".
pub fn handshake_type_name(t: u8) -> &'static str {
    match t {
        0 => "hello_request",
        1 => "client_hello",
        2 => "server_hello",
        3 => "hello_verify_request",
        4 => "new_session_ticket",
        5 => "end_of_early_data",
        6 => "hello_retry_request",
        8 => "encrypted_extensions",
        11 => "certificate",
        12 => "server_key_exchange",
        13 => "certificate_request",
        14 => "server_hello_done",
        15 => "certificate_verify",
        16 => "client_key_exchange",
        20 => "finished",
        22 => "certificate_status",
        24 => "key_update",
        254 => "message_hash",
        _ => "unknown",
    }
}

/// A plaintext TLS alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alert {
    pub level: u8,
    pub description: u8,
}

impl Alert {
    /// "warning", "fatal" or "unknown".
    pub fn level_name(&self) -> &'static str {
        match self.level {
            1 => "warning",
            2 => "fatal",
            _ => "unknown",
        }
    }

    /// The RFC name of the alert (RFC 8446, RFC 5246 and their extensions),
    /// or "unknown".
    pub fn description_name(&self) -> &'static str {
        alert_description_name(self.description)
    }
}

/// The RFC name of an alert description, or "unknown".
pub fn alert_description_name(d: u8) -> &'static str {
    match d {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        21 => "decryption_failed",
        22 => "record_overflow",
        30 => "decompression_failure",
        40 => "handshake_failure",
        41 => "no_certificate",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        60 => "export_restriction",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        111 => "certificate_unobtainable",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        114 => "bad_certificate_hash_value",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        121 => "ech_required",
        _ => "unknown",
    }
}

/// What one direction's first bytes contain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsScan {
    /// The first `ClientHello` seen (possibly incomplete, see its `complete`).
    pub client_hello: Option<ClientHello>,
    /// The first complete `ServerHello` or `HelloRetryRequest` seen.
    pub server_hello: Option<ServerHello>,
    /// Plaintext alerts, in order.
    pub alerts: Vec<Alert>,
    /// Types of the complete plaintext handshake messages, in order.
    pub handshake_types: Vec<u8>,
    /// Record headers read (the last record may be cut short).
    pub records: usize,
    /// The bytes ran out inside a record header, a record or a handshake
    /// message (also set for empty input).
    pub truncated: bool,
    /// The first bytes are not a TLS record.
    pub not_tls: bool,
    /// TLS records were read but something after them is not TLS, or a
    /// complete message contradicts its own lengths.
    pub malformed: bool,
}

/// Walks the records in `data` (one direction's first payload bytes, in
/// order) and reports what they contain. Never panics.
pub fn scan(data: &[u8]) -> TlsScan {
    let mut out = TlsScan::default();
    if data.is_empty() {
        out.truncated = true;
        return out;
    }
    if !header_prefix_ok(data) {
        out.not_tls = true;
        return out;
    }
    let mut hs = HandshakeStream::default();
    let mut rest = data;
    while !rest.is_empty() {
        if !header_prefix_ok(rest) {
            out.malformed = true;
            break;
        }
        let (Some(kind), Some(len)) = (
            rest.first().copied().and_then(TlsRecordKind::from_byte),
            rest.get(3..RECORD_HEADER)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))),
        ) else {
            // A header cut short, consistent with TLS so far.
            out.truncated = true;
            break;
        };
        out.records += 1;
        let body = rest.get(RECORD_HEADER..).unwrap_or_default();
        let (fragment, whole) = match body.get(..len) {
            Some(f) => (f, true),
            None => (body, false),
        };
        match kind {
            TlsRecordKind::Handshake => hs.push(fragment, &mut out),
            TlsRecordKind::Alert => {
                // A plaintext alert is exactly two bytes; an encrypted one is
                // longer (MAC or AEAD tag), so its length tells them apart.
                if len == 2 {
                    if let [level, description] = *fragment {
                        out.alerts.push(Alert { level, description });
                    }
                }
            }
            TlsRecordKind::ChangeCipherSpec => hs.after_ccs = true,
            TlsRecordKind::ApplicationData | TlsRecordKind::Heartbeat => {}
        }
        if !whole {
            out.truncated = true;
            break;
        }
        rest = body.get(len..).unwrap_or_default();
    }
    hs.finish(&mut out);
    out
}

/// Handshake bytes of one direction, reassembled across records.
#[derive(Default)]
struct HandshakeStream {
    /// Plaintext handshake bytes not yet consumed as whole messages.
    buf: Vec<u8>,
    /// A `ChangeCipherSpec` was seen: later handshake records are encrypted
    /// (TLS 1.2 `Finished`) unless they plainly start a new hello (the second
    /// `ClientHello` after a TLS 1.3 `HelloRetryRequest` in compatibility mode).
    after_ccs: bool,
}

impl HandshakeStream {
    fn push(&mut self, fragment: &[u8], out: &mut TlsScan) {
        if self.after_ccs {
            if !(self.buf.is_empty() && starts_plain_hello(fragment)) {
                return;
            }
            // A new hello restarts the plaintext handshake.
            self.after_ccs = false;
        }
        self.buf.extend_from_slice(fragment);
        let mut used = 0;
        while let Some((msg_type, body)) = whole_message(self.buf.get(used..).unwrap_or_default()) {
            used += HANDSHAKE_HEADER + body.len();
            out.handshake_types.push(msg_type);
            match msg_type {
                HS_CLIENT_HELLO if out.client_hello.is_none() => {
                    let (hello, ok) = parse_client_hello(body, true);
                    out.client_hello = Some(hello);
                    out.malformed |= !ok;
                }
                HS_SERVER_HELLO if out.server_hello.is_none() => {
                    let hello = parse_server_hello(body);
                    out.malformed |= hello.is_none();
                    out.server_hello = hello;
                }
                _ => {}
            }
        }
        self.buf.drain(..used.min(self.buf.len()));
    }

    /// The bytes ran out: a message left half-read is truncated, and a
    /// `ClientHello` among them still tells what its bytes hold.
    fn finish(self, out: &mut TlsScan) {
        if self.buf.is_empty() {
            return;
        }
        out.truncated = true;
        if let [HS_CLIENT_HELLO, a, b, c, body @ ..] = self.buf.as_slice() {
            if out.client_hello.is_none() {
                let len = usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c);
                let body = body.get(..len).unwrap_or(body);
                out.client_hello = Some(parse_client_hello(body, false).0);
            }
        }
    }
}

/// A fragment after `ChangeCipherSpec` that is a plaintext `ClientHello` or
/// `ServerHello` (type 1 or 2, legacy version 3.3), not ciphertext.
fn starts_plain_hello(fragment: &[u8]) -> bool {
    matches!(
        fragment,
        [HS_CLIENT_HELLO | HS_SERVER_HELLO, _, _, _, 3, 3, ..]
    )
}

/// The first whole handshake message in `buf`: its type and body.
fn whole_message(buf: &[u8]) -> Option<(u8, &[u8])> {
    let [msg_type, a, b, c, rest @ ..] = buf else {
        return None;
    };
    let len = usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c);
    rest.get(..len).map(|body| (*msg_type, body))
}
