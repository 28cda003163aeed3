//! TLS record-role tests: TLS 1.2 and 1.3 flights, tickets, resumed sessions, doubtful records.

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
