//! What the application layer of a connection says, from its [`App`]: the
//! questions the 520/524 rules ask of the current turn (answered? blind?
//! headers too large?) and a finding's `tls` and `http` objects.

use super::{
    finding::{HttpFacts, Side, TlsAlert, TlsFacts},
    payload::{App, BLIND_AFTER, HEADER_LIMIT},
};
use crate::proto::{http, tls, tls_records::Version};

impl App {
    /// TLS 1.3 session tickets recognised among the origin's records.
    pub fn tls_tickets(&self) -> usize {
        self.record_version()
            .map_or(0, |v| self.records.tickets(v))
            .max(self.kernel_tickets)
    }

    /// A TLS connection whose response certainly started.
    pub fn tls_answered(&self) -> bool {
        // HTTP/2 records are frames, not responses.
        self.is_tls()
            && self.opaque.is_none()
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
        // 101 Switching Protocols is final: what follows is no HTTP/1.
        matches!(&self.response, Some(http::Response::Head(h)) if (h.status >= 200 || h.status == 101) && h.header_bytes.is_some_and(|n| n <= HEADER_LIMIT))
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
