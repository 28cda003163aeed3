//! The application layer of one connection: the first payload bytes of each
//! direction of each request/response turn, reassembled in sequence order,
//! and what the TLS and HTTP parsers read in them. Feeds the diagnoser's
//! 520/524/525/526 rules, for the Nth request on a kept-alive connection as
//! for the first: a turn ends when the edge sends new bytes after the
//! origin answered (the kernel and `analyze` restart their snapshot budgets
//! there too).

use super::{
    finding::{EvidenceKind, PayloadEvent},
    opaque::{offers_h2, Opaque, H2_PREFACE},
    stream::Stream,
};
use crate::proto::{
    http, tls,
    tls_records::{Records, Version},
};

/// Origin bytes delivered after which more may have gone unseen: the 20 KiB
/// budget less a snapshot's largest shortfall (about 16 KiB are sent of a
/// larger packet).
pub(super) const BLIND_AFTER: usize = 15 * 1024;
/// Cloudflare's limit on a response header block.
pub const HEADER_LIMIT: usize = 16 * 1024;

/// A TLS alert and who sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeenAlert {
    pub alert: tls::Alert,
    pub from_origin: bool,
}

/// What the first bytes of a connection said.
#[derive(Debug, Default)]
pub struct App {
    pub(super) inb: Stream,
    pub(super) out: Stream,
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
    /// Origin payload bytes delivered, retransmissions included (the kernel
    /// charges those to the snapshot budget too).
    pub(super) out_delivered: usize,
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
    /// The kernel followed the connection quietly before: the edge's next
    /// payload starts a turn (as after an answered one).
    resume_pending: bool,
    /// TLS 1.3, taken over from the kernel before the origin's tickets went
    /// by: the next turn's response record is not certain.
    tickets_pending: bool,
    /// The kernel saw the edge finish its side of the TLS handshake (its
    /// bytes are not in the streams).
    pub handshake_done: bool,
    /// TLS 1.3 session tickets the kernel saw go by.
    pub(super) kernel_tickets: usize,
    /// Requests are not followed on this connection (nor named).
    pub opaque: Option<Opaque>,
    /// The kernel saw it first and counted it ([`tracer_ebpf::counter::HTTP2`]).
    pub(crate) opaque_counted: bool,
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
        let after_request = matches!(
            (self.request_ns, self.first_out_ns),
            (Some(request), Some(first)) if first >= request
        );
        // Over plain HTTP only a final response head answers (not a
        // `100 Continue`); over TLS the response's first record does.
        after_request && (self.is_tls() || self.response.is_some())
    }

    /// Whether an edge segment starts the next turn: new bytes after the
    /// origin answered the current one.
    pub fn starts_turn(&self, outbound: bool, seq: u32) -> bool {
        !outbound
            && self.opaque.is_none()
            && (self.answered() || self.resume_pending)
            && self.inb.is_new(seq)
    }

    /// Start the next turn at the edge's segment `seq`; `ack` (what that
    /// segment acknowledges) is where the origin's next bytes begin.
    fn next_turn(&mut self, seq: u32, ack: u32) {
        self.resume_pending = false;
        self.inb.restart(Some(seq));
        self.out.restart(Some(ack));
        self.request = None;
        self.request_ns = None;
        self.first_out_ns = None;
        self.response = None;
        self.out_delivered = 0;
        self.in_retransmits = 0;
        self.out_after_request = 0;
        self.records.next_turn();
        self.records.unsure = std::mem::take(&mut self.tickets_pending);
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
            // A later turn that began with bytes that are no request (the
            // rest of a body the origin answered early): wait for the next
            // segment to start one.
            if self.requests > 0
                && self.opaque.is_none()
                && self.request.is_none()
                && !self.is_tls()
                && !http::could_start_request(&self.inb.buf)
            {
                self.inb.restart(None);
            }
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
        if self.client_hello.is_none() && self.request.is_none() && self.opaque.is_none() {
            if tls::looks_like_tls(data) {
                let scan = tls::scan(data);
                if let Some(ch) = scan.client_hello.filter(|c| c.complete || c.sni.is_some()) {
                    out.push(hello_evidence(&ch));
                    self.opaque = self.opaque.or(offers_h2(&ch).then_some(Opaque::Http2Alpn));
                    self.client_hello = Some(ch);
                    self.client_hello_ns = Some(ts_ns);
                }
            } else if data.starts_with(H2_PREFACE) {
                out.push(EvidenceKind::Payload {
                    event: PayloadEvent::RequestIn,
                    detail: "HTTP/2 connection preface (h2c)".to_owned(),
                });
                self.opaque = Some(Opaque::Http2Preface);
                self.rest();
                return;
            } else if H2_PREFACE.starts_with(data) && !data.is_empty() {
                // Too little yet to tell the preface from a `PRI` request.
                return;
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
            if let Some(v) = self.record_version().filter(|_| self.opaque.is_none()) {
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
    pub(super) fn record_version(&self) -> Option<Version> {
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
                out.push(server_hello_evidence(sh));
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
            // Switching protocols: no more HTTP/1 on this connection.
            if let (true, http::Response::Head(h)) = (changed, &now) {
                if h.status == 101 && h.header_bytes.is_some() {
                    // The diagnoser counts the turn and rests the streams.
                    self.opaque = Some(Opaque::Upgraded);
                    self.response = Some(now);
                    return;
                }
            }
            // An interim response (100 Continue, 103 Early Hints): the
            // final one follows it in the stream.
            if let http::Response::Head(h) = &now {
                if let (true, Some(n)) = (h.status < 200, h.header_bytes) {
                    self.out.buf.drain(..n.min(self.out.buf.len()));
                    self.response = None;
                    return self.read_out(ts_ns, out);
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

#[path = "payload_resume.rs"]
mod resume;
use resume::{hello_evidence, server_hello_evidence};

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
