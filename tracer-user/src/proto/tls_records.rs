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
            Version::Tls13 { .. } => tickets > 0 || len > TICKET_MAX || self.data.len() > 1,
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
mod tests {
    use super::*;

    fn record(kind: u8, len: usize) -> Vec<u8> {
        let mut r = vec![kind, 3, 3];
        r.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        r.resize(HEADER + len, 0xaa);
        r
    }

    fn records(list: &[(u8, usize)]) -> Vec<u8> {
        list.iter().flat_map(|&(k, l)| record(k, l)).collect()
    }

    /// `TLS_AES_128_GCM_SHA256`: `Finished` records are 53 bytes, alerts 19.
    fn tls13() -> Version {
        Version::of(&ServerHello {
            version: 0x0304,
            cipher: 0x1301,
            ..ServerHello::default()
        })
        .unwrap()
    }

    /// Both directions of one connection, fed segment by segment.
    struct Conn {
        v: Version,
        r: Records,
        edge: Vec<u8>,
        origin: Vec<u8>,
        t: u64,
    }

    impl Conn {
        fn new(v: Version) -> Conn {
            Conn {
                v,
                r: Records::default(),
                edge: Vec::new(),
                origin: Vec::new(),
                t: 0,
            }
        }
        fn edge(&mut self, seg: &[u8]) -> Option<usize> {
            self.edge.extend_from_slice(seg);
            self.r.edge_bytes(self.v, &self.edge)
        }
        fn origin(&mut self, seg: &[u8]) -> Option<Response> {
            self.t += 1;
            self.origin.extend_from_slice(seg);
            self.r.origin_bytes(self.v, &self.origin, self.t);
            self.r.response(self.v)
        }
        fn tickets(&self) -> usize {
            self.r.tickets(self.v)
        }
    }

    fn certain(len: usize, ts_ns: u64) -> Response {
        Response {
            len,
            ts_ns,
            certain: true,
        }
    }

    #[test]
    fn versions_and_suites() {
        let sh = |version, cipher| ServerHello {
            version,
            cipher,
            ..ServerHello::default()
        };
        assert_eq!(Version::of(&sh(0x0303, 0xc02f)), Some(Version::Tls12));
        assert_eq!(
            Version::of(&sh(0x0304, 0x1302)),
            Some(Version::Tls13 {
                finished: 69,
                control: 22,
                two_tickets: true
            })
        );
        assert_eq!(
            Version::of(&sh(0x0304, 0x1305)),
            Some(Version::Tls13 {
                finished: 45,
                control: 14,
                two_tickets: true
            })
        );
        assert_eq!(Version::of(&sh(0x0304, 0x00ff)), None);
        assert_eq!(Version::of(&sh(0x0300, 0x002f)), None);
    }

    #[test]
    fn tls12_first_application_data_each_way() {
        let mut c = Conn::new(Version::Tls12);
        // ClientHello; ServerHello..Done; CKE, CCS, Finished; ticket, CCS, Finished.
        assert_eq!(c.edge(&record(22, 512)), None);
        assert_eq!(c.origin(&record(22, 3000)), None);
        assert_eq!(c.edge(&records(&[(22, 37), (20, 1), (22, 40)])), None);
        assert_eq!(c.origin(&records(&[(22, 200), (20, 1), (22, 40)])), None);
        // The request, split across two segments.
        let req = record(23, 300);
        assert_eq!(c.edge(&req[..3]), None);
        assert_eq!(c.edge(&req[3..]), Some(300));
        // An encrypted close_notify (type 21) is not a response; data is.
        assert_eq!(c.origin(&record(21, 26)), None);
        assert_eq!(c.origin(&record(23, 90)), Some(certain(90, 4)));
        assert_eq!(c.origin(&record(23, 90)), Some(certain(90, 4)));
        assert_eq!(c.tickets(), 0);
        assert!(!c.r.lost);
    }

    #[test]
    fn tls13_finished_by_length_then_two_tickets_then_response() {
        // As Python's ssl (OpenSSL 3) does it: each ticket in its own segment.
        let mut c = Conn::new(tls13());
        c.edge(&record(22, 1800));
        // ServerHello, CCS, EncryptedExtensions .. Finished (all type 23).
        let flight = records(&[(22, 122), (20, 1), (23, 40), (23, 900), (23, 280), (23, 53)]);
        assert_eq!(c.origin(&flight), None);
        // The edge's CCS and Finished (53 = 4 + 32 + 1 + 16), then the request.
        assert_eq!(c.edge(&records(&[(20, 1), (23, 53)])), None);
        assert_eq!(c.edge(&record(23, 120)), Some(120));
        // A lone ticket-sized record: a response until told otherwise.
        let first = c.origin(&record(23, 250)).unwrap();
        assert!(!first.certain && first.len == 250);
        // Its twin: both were tickets, no response yet.
        assert_eq!(c.origin(&record(23, 250)), None);
        assert_eq!(c.tickets(), 2);
        // An alert is no response either; the next record is.
        assert_eq!(c.origin(&record(23, 19)), None);
        assert_eq!(c.origin(&record(23, 400)), Some(certain(400, 5)));
    }

    #[test]
    fn tls13_tickets_and_response_in_one_segment() {
        let mut c = Conn::new(tls13());
        c.origin(&record(23, 53));
        assert_eq!(c.edge(&records(&[(23, 53), (23, 77)])), Some(77));
        let seg = records(&[(23, 250), (23, 250), (23, 1000)]);
        assert_eq!(c.origin(&seg), Some(certain(1000, 2)));
        assert_eq!(c.tickets(), 2);
    }

    #[test]
    fn tls13_without_tickets_the_first_record_is_the_response() {
        let mut c = Conn::new(tls13());
        c.edge(&record(23, 53));
        // Alone it is uncertain (a lone ticket looks the same: then the
        // rules stay silent, never name a false cause) ...
        let r = c.origin(&record(23, 240)).unwrap();
        assert!(!r.certain);
        // ... and a record of another length confirms it.
        assert_eq!(c.origin(&record(23, 60)), Some(certain(240, 1)));
        assert_eq!(c.tickets(), 0);
    }

    #[test]
    fn tls13_large_equal_records_are_a_response() {
        // Full-size records, and Go's 1,225-byte dynamic records.
        for len in [16401, 1225] {
            let mut c = Conn::new(tls13());
            c.edge(&record(23, 53));
            assert_eq!(
                c.origin(&records(&[(23, len), (23, len)])),
                Some(certain(len, 1))
            );
            assert_eq!(c.tickets(), 0);
        }
    }

    #[test]
    fn tls13_records_before_the_edge_finished_are_the_origin_flight() {
        // Tickets sent with the origin's flight (Go, BoringSSL) never count.
        let mut c = Conn::new(tls13());
        assert_eq!(
            c.origin(&records(&[(23, 40), (23, 900), (23, 53), (23, 250)])),
            None
        );
        c.edge(&record(23, 53));
        assert_eq!(c.edge(&record(23, 19)), None, "the edge's close_notify");
        assert_eq!(c.edge(&record(23, 99)), Some(99));
        assert_eq!(c.origin(&record(23, 19)), None, "an alert");
        assert_eq!(c.origin(&record(23, 22)), None, "a KeyUpdate");
        assert_eq!(c.origin(&record(23, 23)).map(|r| r.len), Some(23));
    }

    #[test]
    fn tls13_without_a_finished_of_the_expected_length_no_request() {
        // A client certificate packed with its Finished in one record (or a
        // padded Finished): the Finished is never recognised, so no request
        // is claimed.
        let mut c = Conn::new(tls13());
        assert_eq!(c.edge(&record(23, 1500)), None);
        assert_eq!(c.edge(&record(23, 300)), None);
        assert_eq!(c.r.request, None);
    }

    #[test]
    fn bytes_that_are_not_records_stop_the_walk() {
        let mut c = Conn::new(Version::Tls12);
        assert_eq!(c.origin(b"HTTP/1.1 200 OK\r\n"), None);
        assert!(c.r.lost);
        assert_eq!(c.origin(&record(23, 10)), None);
        assert_eq!(c.edge(&record(23, 10)), None);
    }

    #[test]
    fn tls13_tickets_are_two_in_a_full_handshake() {
        // A response of the ticket's length after the two tickets is the third record.
        let mut c = Conn::new(tls13());
        c.edge(&record(23, 53));
        let seg = records(&[(23, 250), (23, 250), (23, 250)]);
        assert_eq!(c.origin(&seg), Some(certain(250, 1)));
        assert_eq!(c.tickets(), 2);
        // A resumed session gets one ticket (OpenSSL), so a response of its
        // length would make two; after a HelloRetryRequest the final
        // ServerHello is not read. No tickets are recognised in either.
        for sh in [
            ServerHello {
                version: 0x0304,
                cipher: 0x1301,
                resumed: true,
                ..ServerHello::default()
            },
            ServerHello {
                version: 0x0304,
                cipher: 0x1301,
                hello_retry_request: true,
                ..ServerHello::default()
            },
        ] {
            let mut c = Conn::new(Version::of(&sh).unwrap());
            c.edge(&record(23, 53));
            assert_eq!(
                c.origin(&records(&[(23, 250), (23, 250)])),
                Some(certain(250, 1))
            );
            assert_eq!(c.tickets(), 0);
        }
    }

    #[test]
    fn tls13_client_certificate_and_origin_alert_are_noted() {
        let mut c = Conn::new(tls13());
        // Certificate, CertificateVerify, Finished; the request.
        assert_eq!(c.edge(&records(&[(23, 900), (23, 100), (23, 53)])), None);
        assert_eq!(c.edge(&record(23, 120)), Some(120));
        assert!(c.r.edge_certificate && !c.r.origin_alert);
        assert_eq!(c.origin(&record(23, 19)), None);
        assert!(c.r.origin_alert);
    }
}
