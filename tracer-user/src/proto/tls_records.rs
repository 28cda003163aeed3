//! Which encrypted TLS records carry the edge's request and the origin's
//! response. After the hellos nothing can be read, so records are told apart
//! by type, order and length, never by content:
//!
//! - TLS 1.0-1.2: handshake messages (`Finished` included) are records of
//!   type 22 and alerts of type 21; only application data is type 23. The
//!   first type-23 record of each direction is the request / the response.
//! - TLS 1.3: everything after the `ServerHello` is type 23. The edge's
//!   `Finished` has a length fixed by the cipher suite (4 + hash + 1 + tag);
//!   its records after that are application data. The origin's records sent
//!   before that `Finished` arrived are its handshake flight. Afterwards it
//!   may first send `NewSessionTicket`s: OpenSSL-based servers (nginx,
//!   Apache, Python ...) send two of the same length right away, which is
//!   how they are recognised here. Records of alert or `KeyUpdate` size are
//!   never a response. A server that sends a single ticket after the edge's
//!   `Finished` makes that ticket look like a response: the rules then stay
//!   silent rather than guess.

use crate::proto::tls::ServerHello;

/// Bytes of a record header: type, version, length.
const HEADER: usize = 5;
/// Record content types.
const CHANGE_CIPHER_SPEC: u8 = 20;
const APPLICATION_DATA: u8 = 23;
/// A ticket record is small (OpenSSL's are about 250 bytes). Response
/// records that repeat one length are larger: full-size ones, or the
/// 1,225-byte records of Go's dynamic record sizing. (A ticket that carries
/// a client certificate may be larger than this: then it is taken for a
/// response, and the rules stay silent.)
const TICKET_MAX: usize = 1024;

/// How a connection's records are to be read, from its `ServerHello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// TLS 1.0 to 1.2: record types say everything.
    Tls12,
    /// TLS 1.3 with a cipher suite of known hash and tag lengths.
    Tls13 {
        /// Length of a `Finished` record: 4 + hash + 1 (inner type) + tag.
        finished: usize,
        /// Longest record that can only be an alert (2 + 1 + tag) or a
        /// `KeyUpdate` (5 + 1 + tag).
        control: usize,
        /// A full handshake, seen whole: OpenSSL sends its two tickets. A
        /// resumed session gets one, and after a `HelloRetryRequest` the
        /// final `ServerHello` is not read: no tickets are recognised then.
        two_tickets: bool,
    },
}

impl Version {
    /// `None` for a `ServerHello` whose records cannot be read this way (an
    /// unknown version or TLS 1.3 cipher suite).
    pub fn of(sh: &ServerHello) -> Option<Self> {
        match sh.version {
            0x0301..=0x0303 => Some(Self::Tls12),
            0x0304 => {
                // RFC 8446 B.4: (hash length, AEAD tag length).
                let (hash, tag) = match sh.cipher {
                    0x1301 | 0x1303 | 0x1304 => (32, 16),
                    0x1302 => (48, 16),
                    0x1305 => (32, 8),
                    _ => return None,
                };
                Some(Self::Tls13 {
                    finished: 4 + hash + 1 + tag,
                    control: 5 + 1 + tag,
                    two_tickets: !sh.resumed && !sh.hello_retry_request,
                })
            }
            _ => None,
        }
    }
}

/// The record walk of one connection, fed each direction's reassembled
/// stream (from its first byte) as it grows.
#[derive(Debug, Default)]
pub struct Records {
    /// Offset of the next record header in each stream.
    in_pos: usize,
    out_pos: usize,
    /// TLS 1.3: the edge's `Finished` went by.
    edge_finished: bool,
    /// TLS 1.3: the edge sent records before its `Finished` (a client
    /// certificate and its proof).
    pub edge_certificate: bool,
    /// TLS 1.3: the origin sent an alert-sized record after the edge's
    /// `Finished` (`close_notify`, or a refusal of its certificate).
    pub origin_alert: bool,
    /// The origin's data records after the handshake, (length, seen at ns),
    /// until the response is certain: TLS 1.2 only its first, TLS 1.3 those
    /// after the edge's `Finished` that are longer than alerts.
    data: Vec<(usize, u64)>,
    /// Length of the edge's first application-data record.
    pub request: Option<usize>,
    /// A stream stopped looking like TLS records: nothing more is known.
    pub lost: bool,
    /// A later request/response turn: no tickets, no handshake; each
    /// stream restarts at its turn's first record.
    pub later_turn: bool,
    /// A later turn whose origin may still send tickets first (TLS 1.3,
    /// taken over from the kernel before they went by): its response is
    /// certain only as a first turn's is.
    pub unsure: bool,
}

/// The origin's first response record as far as the records tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// Record length.
    pub len: usize,
    /// When it was seen.
    pub ts_ns: u64,
    /// Later records confirmed it. A lone record of ticket size after the
    /// edge's `Finished` may still turn out to be the first of two tickets.
    pub certain: bool,
}

/// Records kept before the response is certain (two tickets, the response,
/// one more to confirm it).
const MAX_DATA: usize = 4;

impl Records {
    /// The edge's stream grew; the length of its request record if this is
    /// where it appeared.
    pub fn edge_bytes(&mut self, v: Version, stream: &[u8]) -> Option<usize> {
        if self.request.is_some() {
            return None;
        }
        while let Some((kind, len)) = self.next(stream, true) {
            if kind != APPLICATION_DATA {
                continue;
            }
            let is_request = match v {
                Version::Tls12 => true,
                Version::Tls13 { finished, .. } if !self.edge_finished => {
                    self.edge_finished = len == finished;
                    self.edge_certificate |= !self.edge_finished;
                    false
                }
                // Not the edge's close_notify or KeyUpdate.
                Version::Tls13 { control, .. } => len > control,
            };
            if is_request {
                self.request = Some(len);
                return self.request;
            }
        }
        None
    }

    /// The kernel followed the handshake to its end: the edge's `Finished`
    /// went by there.
    pub fn handshake_done(&mut self) {
        self.edge_finished = true;
    }

    /// The next request/response turn: both streams restart (at a record
    /// boundary: each side's earlier records were complete).
    pub fn next_turn(&mut self) {
        self.in_pos = 0;
        self.out_pos = 0;
        self.data.clear();
        self.request = None;
        self.later_turn = true;
        self.unsure = false;
    }

    /// The origin's stream grew (at `ts_ns`).
    pub fn origin_bytes(&mut self, v: Version, stream: &[u8], ts_ns: u64) {
        while let Some((kind, len)) = self.next(stream, false) {
            if kind != APPLICATION_DATA || self.response(v).is_some_and(|r| r.certain) {
                continue;
            }
            let keep = match v {
                Version::Tls12 => true,
                // Before the edge's Finished: the origin's own flight (or
                // tickets sent with it); alerts and KeyUpdates are no answer.
                Version::Tls13 { control, .. } => {
                    self.origin_alert |= self.edge_finished && len <= control;
                    self.edge_finished && len > control
                }
            };
            if keep && self.data.len() < MAX_DATA {
                self.data.push((len, ts_ns));
            }
        }
    }

    /// Session tickets recognised: OpenSSL's two, the first two records
    /// after the edge's `Finished`, of one small length. (A response record
    /// of the ticket's length after them is the third. Not by timing: with
    /// Nagle the second ticket may wait for the edge's next segment.)
    pub fn tickets(&self, v: Version) -> usize {
        let Version::Tls13 {
            two_tickets: true, ..
        } = v
        else {
            return 0;
        };
        if self.later_turn {
            return 0;
        }
        match self.data.as_slice() {
            [(a, _), (b, _), ..] if a == b && *a <= TICKET_MAX => 2,
            _ => 0,
        }
    }

    /// The response's first record, if any.
    pub fn response(&self, v: Version) -> Option<Response> {
        let tickets = self.tickets(v);
        let &(len, ts_ns) = self.data.get(tickets)?;
        let certain = match v {
            Version::Tls12 => true,
            // After tickets, or too long for one, or followed by a record
            // of another length: not a ticket.
            Version::Tls13 { .. } => {
                (self.later_turn && !self.unsure)
                    || tickets > 0
                    || len > TICKET_MAX
                    || self.data.len() > 1
            }
        };
        Some(Response {
            len,
            ts_ns,
            certain,
        })
    }

    /// The next whole record header of one stream: (type, length).
    fn next(&mut self, stream: &[u8], edge: bool) -> Option<(u8, usize)> {
        if self.lost {
            return None;
        }
        let pos = if edge {
            &mut self.in_pos
        } else {
            &mut self.out_pos
        };
        let h = stream.get(*pos..*pos + HEADER)?;
        let kind = h[0];
        if !(CHANGE_CIPHER_SPEC..=24).contains(&kind) || h[1] != 3 {
            self.lost = true;
            return None;
        }
        let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
        *pos += HEADER + len;
        Some((kind, len))
    }
}

#[cfg(test)]
#[path = "tls_records_tests.rs"]
mod tests;
