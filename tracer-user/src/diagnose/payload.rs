//! The application layer of one connection: the first payload bytes of each
//! direction of each request/response turn, reassembled in sequence order,
//! and what the TLS and HTTP parsers read in them. Feeds the diagnoser's
//! 520/524/525/526 rules, for the Nth request on a kept-alive connection as
//! for the first: a turn ends when the edge sends new bytes after the
//! origin answered (the kernel and `analyze` restart their snapshot budgets
//! there too).

use super::finding::{EvidenceKind, HttpFacts, PayloadEvent, Side, TlsAlert, TlsFacts};
use crate::proto::{
    http, tls,
    tls_records::{Records, Version},
};

/// Most bytes kept per direction: a response header block just past 16 KiB.
/// The kernel's snapshot budget for the origin's direction is the same, so
/// a stream this long means later bytes go unseen.
pub const STREAM_CAP: usize = 20 * 1024;
/// Origin bytes delivered after which more may have gone unseen: the 20 KiB
/// budget less a snapshot's largest shortfall (about 16 KiB are sent of a
/// larger packet).
const BLIND_AFTER: usize = 15 * 1024;
/// Cloudflare's limit on a response header block.
pub const HEADER_LIMIT: usize = 16 * 1024;

#[derive(Debug, Default)]
struct Stream {
    next_seq: Option<u32>,
    buf: Vec<u8>,
    /// A segment went missing: later bytes cannot be placed.
    gap: bool,
    /// The turn is answered: positions are followed, bytes not kept.
    resting: bool,
}

impl Stream {
    /// Append the part of a segment that continues the stream; true if any.
    fn add(&mut self, seq: u32, bytes: &[u8]) -> bool {
        let next = *self.next_seq.get_or_insert(seq);
        if self.resting && !self.gap && seq.wrapping_sub(next).cast_signed() <= 0 {
            let end = seq.wrapping_add(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
            if end.wrapping_sub(next).cast_signed() > 0 {
                self.next_seq = Some(end);
            }
            return false;
        }
        if self.gap || self.resting || bytes.is_empty() {
            return false;
        }
        // Offset of the segment relative to what we have (wrapping seq space).
        let ahead = seq.wrapping_sub(next).cast_signed();
        if ahead > 0 {
            self.gap = true;
            return false;
        }
        let skip = usize::try_from(-i64::from(ahead)).unwrap_or(usize::MAX);
        if skip >= bytes.len() {
            return false; // a retransmission of what we have
        }
        let new = &bytes[skip..];
        let room = STREAM_CAP.saturating_sub(self.buf.len());
        let take = new.len().min(room);
        self.buf.extend_from_slice(&new[..take]);
        self.next_seq = Some(next.wrapping_add(u32::try_from(new.len()).unwrap_or(u32::MAX)));
        take > 0
    }

    /// Not a retransmission of what the stream already has.
    fn is_new(&self, seq: u32) -> bool {
        self.next_seq
            .is_none_or(|next| self.gap || seq.wrapping_sub(next).cast_signed() >= 0)
    }

    /// A new turn starts at `seq` (`None`: at the next segment seen).
    fn restart(&mut self, seq: Option<u32>) {
        *self = Self {
            next_seq: seq,
            ..Self::default()
        };
    }
}

/// A TLS alert and who sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeenAlert {
    pub alert: tls::Alert,
    pub from_origin: bool,
}

/// What the first bytes of a connection said.
#[derive(Debug, Default)]
pub struct App {
    inb: Stream,
    out: Stream,
    pub client_hello: Option<tls::ClientHello>,
    pub client_hello_ns: Option<u64>,
    pub server_hello: Option<tls::ServerHello>,
    pub server_hello_ns: Option<u64>,
    pub alerts: Vec<SeenAlert>,
    /// The origin answered a `ClientHello` with bytes that are not TLS.
    pub not_tls: bool,
    pub request: Option<http::Request>,
    /// When the request arrived: an HTTP request head, or over TLS the
    /// edge's first application-data record.
    pub request_ns: Option<u64>,
    /// First response byte: origin payload after an HTTP request, or over
    /// TLS its first application-data record that is not a session ticket.
    pub first_out_ns: Option<u64>,
    pub response: Option<http::Response>,
    /// Edge bytes after the `ServerHello` (a TLS 1.3 client's Finished is
    /// more than an encrypted alert).
    pub in_after_server_hello: usize,
    /// Origin payload after its first flight was seen.
    pub out_segments: u32,
    /// Origin payload bytes delivered, retransmissions included (the kernel
    /// charges those to the snapshot budget too).
    out_delivered: usize,
    /// TLS: which encrypted records are the request and the response.
    pub records: Records,
    /// Requests seen on the connection: the current turn's index once its
    /// request came (1 for the first).
    pub requests: u32,
    /// A 5xx response head just came (plain HTTP), not yet taken.
    pub error_status: Option<u16>,
    /// Segments of the current request the edge sent again before any
    /// response byte: the origin did not acknowledge them.
    pub in_retransmits: u32,
    /// Origin payload segments since the current request came.
    pub out_after_request: u32,
}

/// Certificate-related alert descriptions (RFC 8446 6.2).
pub fn is_certificate_alert(description: u8) -> bool {
    matches!(description, 42..=46 | 48 | 49 | 116)
}

impl App {
    pub fn is_tls(&self) -> bool {
        self.client_hello.is_some()
    }

    /// The current turn's request was answered (a first response byte; not
    /// an interim `100 Continue`).
    pub fn answered(&self) -> bool {
        let interim = matches!(&self.response, Some(http::Response::Head(h)) if h.status < 200);
        self.request_ns.is_some() && self.first_out_ns.is_some() && !interim
    }

    /// Whether an edge segment starts the next turn: new bytes after the
    /// origin answered the current one.
    pub fn starts_turn(&self, outbound: bool, seq: u32) -> bool {
        !outbound && self.answered() && self.inb.is_new(seq)
    }

    /// Start the next turn at the edge's segment `seq`; `ack` (what that
    /// segment acknowledges) is where the origin's next bytes begin.
    fn next_turn(&mut self, seq: u32, ack: u32) {
        self.inb.restart(Some(seq));
        self.out.restart(Some(ack));
        self.request = None;
        self.request_ns = None;
        self.first_out_ns = None;
        self.response = None;
        self.out_segments = 0;
        self.out_delivered = 0;
        self.in_retransmits = 0;
        self.out_after_request = 0;
        self.records.next_turn();
    }

    /// The turn is answered and nothing in it can change the verdict: keep
    /// positions, drop the bytes (a kept-alive connection waits cheaply).
    pub fn rest(&mut self) -> bool {
        let newly = !self.out.resting;
        for s in [&mut self.inb, &mut self.out] {
            s.resting = true;
            s.buf = Vec::new();
        }
        newly
    }

    /// A payload segment (`ack`: what it acknowledges); returns the
    /// evidence it adds.
    pub fn on_payload(
        &mut self,
        ts_ns: u64,
        outbound: bool,
        (seq, ack): (u32, u32),
        bytes: &[u8],
        keep_path: bool,
    ) -> Vec<EvidenceKind> {
        let mut out = Vec::new();
        if self.starts_turn(outbound, seq) {
            self.next_turn(seq, ack);
        }
        if outbound {
            self.out_segments += 1;
            self.out_after_request += u32::from(self.request_ns.is_some());
            self.out_delivered += bytes.len();
            if self.first_out_ns.is_none() && !self.is_tls() {
                self.first_out_ns = Some(ts_ns);
            }
            if !self.out.add(seq, bytes) {
                return out;
            }
            self.read_out(ts_ns, &mut out);
        } else {
            if self.request_ns.is_some()
                && self.first_out_ns.is_none()
                && !bytes.is_empty()
                && !self.inb.is_new(seq)
            {
                self.in_retransmits += 1;
                out.push(EvidenceKind::Payload {
                    event: PayloadEvent::RequestIn,
                    detail: "sent again: not acknowledged".to_owned(),
                });
            }
            if self.server_hello.is_some() {
                self.in_after_server_hello += bytes.len();
            }
            if !self.inb.add(seq, bytes) {
                return out;
            }
            self.read_in(ts_ns, keep_path, &mut out);
        }
        out
    }

    fn new_alerts(&mut self, scan: &tls::TlsScan, from_origin: bool, out: &mut Vec<EvidenceKind>) {
        let known = self
            .alerts
            .iter()
            .filter(|a| a.from_origin == from_origin)
            .count();
        for alert in scan.alerts.iter().skip(known) {
            self.alerts.push(SeenAlert {
                alert: *alert,
                from_origin,
            });
            out.push(EvidenceKind::Payload {
                event: if from_origin {
                    PayloadEvent::TlsAlertOut
                } else {
                    PayloadEvent::TlsAlertIn
                },
                detail: format!("{} {}", alert.level_name(), alert.description_name()),
            });
        }
    }

    fn read_in(&mut self, ts_ns: u64, keep_path: bool, out: &mut Vec<EvidenceKind>) {
        let data = &self.inb.buf;
        if self.client_hello.is_none() && self.request.is_none() {
            if tls::looks_like_tls(data) {
                let scan = tls::scan(data);
                if let Some(ch) = scan.client_hello.filter(|c| c.complete || c.sni.is_some()) {
                    let versions: Vec<&str> = ch
                        .offered_versions
                        .iter()
                        .map(|v| tls::version_name(*v))
                        .collect();
                    out.push(EvidenceKind::Payload {
                        event: PayloadEvent::ClientHelloIn,
                        detail: format!(
                            "sni={} offers {}",
                            ch.sni.as_deref().unwrap_or("-"),
                            versions.join(",")
                        ),
                    });
                    self.client_hello = Some(ch);
                    self.client_hello_ns = Some(ts_ns);
                }
            } else if let Some(req) = http::parse_request(data, keep_path) {
                out.push(EvidenceKind::Payload {
                    event: PayloadEvent::RequestIn,
                    detail: req.method.clone(),
                });
                self.request = Some(req);
                self.request_ns = Some(ts_ns);
                self.requests += 1;
                // Whatever the origin said before the request is not a response.
                self.first_out_ns = None;
            }
        }
        if self.client_hello.is_some() {
            // Later turns hold only encrypted records: nothing to scan.
            if self.records.request.is_none() && self.requests == 0 {
                let scan = tls::scan(&self.inb.buf);
                self.new_alerts(&scan, false, out);
            }
            if let Some(v) = self.record_version() {
                if let Some(len) = self.records.edge_bytes(v, &self.inb.buf) {
                    self.request_ns = Some(ts_ns);
                    self.requests += 1;
                    out.push(EvidenceKind::Payload {
                        event: PayloadEvent::RequestIn,
                        detail: format!("TLS application data, {len} bytes (encrypted)"),
                    });
                }
            }
        }
    }

    /// How this connection's encrypted records can be told apart, once its
    /// `ServerHello` was seen.
    fn record_version(&self) -> Option<Version> {
        self.server_hello.as_ref().and_then(Version::of)
    }

    fn read_out(&mut self, ts_ns: u64, out: &mut Vec<EvidenceKind>) {
        if self.client_hello.is_some() && self.records.later_turn {
            self.read_out_records(ts_ns, out);
            return;
        }
        if self.client_hello.is_some() {
            let scan = tls::scan(&self.out.buf);
            if scan.not_tls && !self.not_tls {
                self.not_tls = true;
                out.push(EvidenceKind::Payload {
                    event: PayloadEvent::DataOut,
                    detail: format!("not TLS: {}", printable(&self.out.buf)),
                });
            }
            if let (None, Some(sh)) = (self.server_hello, scan.server_hello) {
                out.push(EvidenceKind::Payload {
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
                });
                self.server_hello = Some(sh);
                self.server_hello_ns = Some(ts_ns);
            }
            self.new_alerts(&scan, true, out);
            self.read_out_records(ts_ns, out);
            return;
        }
        if self.request.is_some() {
            let before = self.response.clone();
            let now = http::parse_response(&self.out.buf);
            let changed = match (&before, &now) {
                (None, http::Response::Incomplete) => false,
                (None, _) => true,
                (Some(http::Response::Head(a)), http::Response::Head(b)) => {
                    a.header_bytes.is_none() && b.header_bytes.is_some()
                }
                _ => false,
            };
            if changed {
                let detail = match &now {
                    http::Response::Head(h) => match h.header_bytes {
                        Some(n) => format!("{} {}, header block {n} bytes", h.version, h.status),
                        None => format!(
                            "{} {}, header block not ended after {} bytes",
                            h.version, h.status, h.seen_bytes
                        ),
                    },
                    http::Response::NotHttp => format!("not HTTP: {}", printable(&self.out.buf)),
                    http::Response::Incomplete => String::new(),
                };
                out.push(EvidenceKind::Payload {
                    event: PayloadEvent::ResponseOut,
                    detail,
                });
            }
            if let (true, http::Response::Head(h)) = (changed, &now) {
                if (500..=599).contains(&h.status) && before.is_none() {
                    self.error_status = Some(h.status);
                }
            }
            if !matches!(now, http::Response::Incomplete) {
                self.response = Some(now);
            }
        }
    }

    /// The origin's records after the handshake: session tickets, the
    /// response's first record.
    fn read_out_records(&mut self, ts_ns: u64, out: &mut Vec<EvidenceKind>) {
        let Some(v) = self.record_version() else {
            return;
        };
        let (tickets, certain) = (self.records.tickets(v), self.tls_answered());
        self.records.origin_bytes(v, &self.out.buf, ts_ns);
        let n = self.records.tickets(v);
        if n > tickets {
            out.push(EvidenceKind::Payload {
                event: PayloadEvent::DataOut,
                detail: format!("{n} TLS 1.3 session tickets"),
            });
        }
        // An uncertain response still counts as one (no 520/524 is named
        // then); it may turn out to have been the first of two tickets.
        let response = self.records.response(v);
        self.first_out_ns = response.map(|r| r.ts_ns);
        if let Some(r) = response.filter(|r| r.certain && !certain) {
            out.push(EvidenceKind::Payload {
                event: PayloadEvent::ResponseOut,
                detail: format!("TLS application data, {} bytes (encrypted)", r.len),
            });
        }
    }

    /// TLS 1.3 session tickets recognised among the origin's records.
    pub fn tls_tickets(&self) -> usize {
        self.record_version().map_or(0, |v| self.records.tickets(v))
    }

    /// A TLS connection whose response certainly started.
    pub fn tls_answered(&self) -> bool {
        self.is_tls()
            && self
                .record_version()
                .and_then(|v| self.records.response(v))
                .is_some_and(|r| r.certain)
    }

    /// The origin's bytes may no longer all be seen: a segment went
    /// missing, or its snapshot budget is (nearly) spent (a certificate
    /// chain may fill it before the response). Its silence then proves
    /// nothing. The margin covers a packet too large for one snapshot
    /// (8 chunks of 2 KiB, headers included): charged whole, seen in part.
    pub fn origin_blind(&self) -> bool {
        self.out.gap || self.out_delivered >= BLIND_AFTER
    }

    /// A response time that means what it says: not over TLS 1.3 when the
    /// origin's tickets could not be told apart (a resumed session, a
    /// `HelloRetryRequest`), where the "response" may be a ticket.
    pub fn response_timing_reliable(&self) -> bool {
        !matches!(
            self.record_version(),
            Some(Version::Tls13 {
                two_tickets: false,
                ..
            })
        )
    }

    /// TLS 1.3: the edge authenticated with a certificate and the origin
    /// answered its handshake with an alert, no tickets: perhaps a refused
    /// client certificate (`certificate_required`, encrypted), not an
    /// application that closed.
    pub fn tls_client_auth_refused(&self) -> bool {
        self.records.edge_certificate && self.records.origin_alert && self.tls_tickets() == 0
    }

    /// The origin sent bytes before `seq` (the sequence number of its FIN or
    /// RST) that were not seen: a snapshot lost, or the budget spent.
    /// `isn` is the origin's initial sequence number, for a stream that
    /// never had payload.
    pub fn origin_sent_unseen(&self, seq: u32, isn: Option<u32>) -> bool {
        let Some(next) = self.out.next_seq.or(isn.map(|i| i.wrapping_add(1))) else {
            return false;
        };
        self.out.gap || seq.wrapping_sub(next).cast_signed() > 0
    }

    /// The response head is over Cloudflare's limit: (bytes, complete).
    pub fn oversized_headers(&self) -> Option<(usize, bool)> {
        match &self.response {
            Some(http::Response::Head(h)) => match h.header_bytes {
                Some(n) if n > HEADER_LIMIT => Some((n, true)),
                None if h.seen_bytes > HEADER_LIMIT => Some((h.seen_bytes, false)),
                _ => None,
            },
            _ => None,
        }
    }

    /// A complete, acceptable response head: the connection worked.
    pub fn response_ok(&self) -> bool {
        matches!(&self.response, Some(http::Response::Head(h)) if h.header_bytes.is_some_and(|n| n <= HEADER_LIMIT))
    }

    pub fn not_http(&self) -> bool {
        matches!(self.response, Some(http::Response::NotHttp))
    }

    /// The finding's `tls` object.
    pub fn tls_facts(&self) -> Option<TlsFacts> {
        let ch = self.client_hello.as_ref()?;
        Some(TlsFacts {
            sni: ch.sni.clone(),
            offered_versions: ch
                .offered_versions
                .iter()
                .map(|v| tls::version_name(*v))
                .collect(),
            negotiated_version: self.server_hello.map(|s| tls::version_name(s.version)),
            alert: self.alerts.first().map(|a| TlsAlert {
                level: a.alert.level_name(),
                description: a.alert.description_name(),
                from: if a.from_origin {
                    Side::Origin
                } else {
                    Side::Edge
                },
            }),
        })
    }

    /// The finding's `http` object.
    pub fn http_facts(&self) -> Option<HttpFacts> {
        let Some(req) = self.request.as_ref() else {
            // An encrypted request: what it asked and what came back is
            // unknown, but a 520/524 always has this object.
            return (self.is_tls() && self.request_ns.is_some()).then(|| HttpFacts {
                request_index: self.request_index(),
                ..HttpFacts::default()
            });
        };
        let (status, header_bytes) = match &self.response {
            Some(http::Response::Head(h)) => {
                (Some(h.status), Some(h.header_bytes.unwrap_or(h.seen_bytes)))
            }
            _ => (None, None),
        };
        Some(HttpFacts {
            method: Some(req.method.clone()),
            status,
            header_bytes,
            path: req.path.clone(),
            request_index: self.request_index(),
        })
    }

    /// Which request on its connection the current turn carries (1 for the
    /// first), once one was seen.
    pub fn request_index(&self) -> Option<u32> {
        (self.requests > 0).then_some(self.requests)
    }
}

/// What the first bytes look like, for evidence: at most 8 characters, enough
/// to recognise a protocol (`SSH-2.0-`, `HTTP/1.1`, `<!DOCTYP`), never content.
fn printable(data: &[u8]) -> String {
    data.iter()
        .take(8)
        .map(|b| {
            if b.is_ascii_graphic() || *b == b' ' {
                char::from(*b)
            } else {
                '.'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_reassemble_in_order_and_skip_retransmissions() {
        let mut s = Stream::default();
        assert!(s.add(100, b"GET "));
        assert!(!s.add(100, b"GET "), "retransmission");
        assert!(s.add(102, b"T / HTTP/1.1"), "overlap keeps the new part");
        assert_eq!(s.buf, b"GET / HTTP/1.1");
        assert!(!s.add(200, b"later"), "a gap stops the stream");
        assert!(!s.add(114, b"\r\n"));
        // Sequence numbers wrap.
        let mut w = Stream::default();
        assert!(w.add(u32::MAX - 1, b"ab"));
        assert!(w.add(0, b"cd"));
        assert_eq!(w.buf, b"abcd");
    }

    #[test]
    fn http_request_and_response_heads() {
        let mut a = App::default();
        let ev = a.on_payload(
            1,
            false,
            (1, 0),
            b"GET /x?secret=1 HTTP/1.1\r\nHost: h\r\n\r\n",
            true,
        );
        assert_eq!(ev.len(), 1);
        assert_eq!(a.request.as_ref().unwrap().path.as_deref(), Some("/x"));
        a.on_payload(
            2,
            true,
            (1, 0),
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(a.response_ok());
        let http = serde_json::to_value(a.http_facts().unwrap()).unwrap();
        assert_eq!(http["status"], 200);
        assert!(!http.to_string().contains("secret"));
    }

    #[test]
    fn a_huge_header_block_is_measured() {
        let mut a = App::default();
        a.on_payload(1, false, (1, 0), b"GET / HTTP/1.1\r\n\r\n", false);
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        while head.len() < 17_000 {
            head.extend_from_slice(
                b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        for (i, chunk) in head.chunks(1448).enumerate() {
            let seq = 1 + u32::try_from(i * 1448).unwrap();
            a.on_payload(2, true, (seq, 0), chunk, false);
        }
        let (n, complete) = a.oversized_headers().unwrap();
        assert!(n > HEADER_LIMIT && !complete);
    }
}
