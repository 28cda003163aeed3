//! The TLS program on synthetic TLS 1.2 and 1.3 connections through
//! `BPF_PROG_TEST_RUN` (root): a healthy handshake and healthy turns send
//! nothing (counted in the kernel), anything that may be a failure hands the
//! connection over with what the kernel read of its handshake, and the
//! agent's own decoding of that history (the kept `ClientHello`, the
//! resume) is checked on what the programs really wrote. HTTP/2 (ALPN
//! `h2`, and the h2c preface on the turn program) is followed without turns.

mod rig;

use rig::{connect, is_root, len32, seg, Rig};
use tracer_ebpf::{counter, flow_flag, kind, names, tls_phase};
use tracer_user::source::{
    event::FlowEventKind,
    kernel::{quiet::Quiet, records::decode_history},
};

/// A record: content type, TLS 1.2 record version, `body`.
fn record(t: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![t, 3, 3];
    r.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    r.extend_from_slice(body);
    r
}

/// A handshake message inside a record.
fn handshake(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    m.extend_from_slice(body);
    record(22, &m)
}

/// A `ClientHello` asking for `sni`.
fn client_hello(sni: &str) -> Vec<u8> {
    client_hello_alpn(sni, &[])
}

/// A `ClientHello` asking for `sni` and offering ALPN `protocols` (none:
/// no ALPN extension).
fn client_hello_alpn(sni: &str, protocols: &[&str]) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[7; 32]);
    b.extend_from_slice(&[0, 0, 4, 0x13, 0x01, 0xc0, 0x2f, 1, 0]);
    let name = sni.as_bytes();
    let n = u16::try_from(name.len()).unwrap();
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&(n + 5).to_be_bytes());
    ext.extend_from_slice(&(n + 3).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&n.to_be_bytes());
    ext.extend_from_slice(name);
    // Another extension before ALPN (supported_versions: TLS 1.3).
    ext.extend_from_slice(&[0x00, 0x2b, 0, 3, 2, 3, 4]);
    if !protocols.is_empty() {
        let mut list = Vec::new();
        for p in protocols {
            list.push(u8::try_from(p.len()).unwrap());
            list.extend_from_slice(p.as_bytes());
        }
        let n = u16::try_from(list.len()).unwrap();
        ext.extend_from_slice(&[0, 16]);
        ext.extend_from_slice(&(n + 2).to_be_bytes());
        ext.extend_from_slice(&n.to_be_bytes());
        ext.extend_from_slice(&list);
    }
    b.extend_from_slice(&u16::try_from(ext.len()).unwrap().to_be_bytes());
    b.extend_from_slice(&ext);
    handshake(1, &b)
}

/// A `ServerHello` choosing `cipher` (a 32-byte session id echoed).
fn server_hello(cipher: u16) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[9; 32]);
    b.push(32);
    b.extend_from_slice(&[5; 32]);
    b.extend_from_slice(&cipher.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0]);
    handshake(2, &b)
}

fn data(len: usize) -> Vec<u8> {
    record(23, &vec![0xaa; len])
}

const CCS: [u8; 6] = [20, 3, 3, 0, 1, 1];

/// One side's bytes, sent in order: where each side's next segment starts.
struct Conn {
    port: u16,
    edge: u32,
    origin: u32,
}

impl Conn {
    fn open(rig: &mut Rig, port: u16) -> Self {
        assert!(connect(rig, port).is_empty());
        Self {
            port,
            edge: 1001,
            origin: 5001,
        }
    }

    fn edge(&mut self, rig: &mut Rig, bytes: &[u8]) -> Vec<u32> {
        let s = seg(false, self.port, (self.edge, self.origin), "AP", bytes);
        self.edge += len32(bytes);
        rig.run(names::TC_INGRESS, &s)
            .iter()
            .map(|e| e.kind)
            .collect()
    }

    fn origin(&mut self, rig: &mut Rig, bytes: &[u8], flags: &str) -> Vec<u32> {
        let s = seg(true, self.port, (self.origin, self.edge), flags, bytes);
        self.origin += len32(bytes);
        rig.run(names::TC_EGRESS, &s)
            .iter()
            .map(|e| e.kind)
            .collect()
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn healthy_tls13_stays_in_the_kernel_until_a_request_goes_unanswered() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let mut rig = Rig::with(&[]);
    let mut c = Conn::open(&mut rig, 43_000);
    let hello = client_hello("lab.example");
    let mut quiet = c.edge(&mut rig, &hello);
    // The origin's flight; the edge's Finished (53 bytes with
    // TLS_AES_128_GCM_SHA256) and its first request in one segment.
    quiet.extend(c.origin(
        &mut rig,
        &cat(&[&server_hello(0x1301), &CCS, &data(700), &data(90)]),
        "AP",
    ));
    quiet.extend(c.edge(&mut rig, &cat(&[&CCS, &data(53), &data(200)])));
    // OpenSSL's two tickets, then the response; a second turn.
    quiet.extend(c.origin(&mut rig, &cat(&[&data(250), &data(250)]), "AP"));
    quiet.extend(c.origin(&mut rig, &data(1_300), "AP"));
    quiet.extend(c.edge(&mut rig, &data(150)));
    quiet.extend(c.origin(&mut rig, &cat(&[&data(400), &data(60)]), "AP"));
    assert!(quiet.is_empty() && rig.snaps.is_empty(), "{quiet:?}");
    assert_eq!(rig.counter(counter::REQUESTS), 2);
    assert_eq!(rig.counter(counter::TLS_REQUESTS), 2);

    // A third request, and the origin closes: handed over.
    assert!(c.edge(&mut rig, &data(120)).is_empty());
    let ev = c.origin(&mut rig, &[], "AF");
    assert_eq!(ev, [kind::HISTORY, kind::ORIGIN_FIN]);
    let h = rig.histories[0];
    let v = h.value;
    assert!(v.flags & flow_flag::TLS != 0 && v.flags & flow_flag::WAITING != 0);
    assert!(v.flags & flow_flag::TICKETS_DONE != 0);
    assert_eq!(
        (v.tls_phase, v.tls_version, v.tls_cipher, v.turns),
        (tls_phase::DONE, 0x0304, 0x1301, 2)
    );
    assert_eq!(&v.head[..5], &[23, 3, 3, 0, 120], "the request's record");

    // The agent reads the kept hello and resumes the connection with it.
    let quiet_maps = Quiet::take(&mut rig.ebpf).unwrap();
    let kept = quiet_maps.hello_of(&h).expect("the ClientHello is kept");
    assert_eq!(kept.1, hello);
    assert!(v.syn_ns < kept.0 && kept.0 < v.server_hello_ns);
    let events = decode_history(&h, Some(kept)).unwrap();
    let resumes: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            FlowEventKind::Resume { requests, tls, .. } => Some((*requests, tls.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(resumes.len(), 2, "the handshake's, then the hellos'");
    assert!(resumes[0].1.is_none());
    let tls = resumes[1].1.clone().expect("a TLS resume");
    assert_eq!(resumes[1].0, 2);
    assert!(tls.done && !tls.tickets_pending);
    assert_eq!(tls.server_hello, Some((0x0304, 0x1301, v.server_hello_ns)));
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        FlowEventKind::Payload { outbound: false, bytes, .. } if bytes[..5] == [23, 3, 3, 0, 120]
    )));
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn tls12_turns_are_counted_and_alerts_hand_over() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let mut rig = Rig::with(&[]);
    let mut c = Conn::open(&mut rig, 43_001);
    let mut quiet = c.edge(&mut rig, &client_hello("a.example"));
    quiet.extend(c.origin(
        &mut rig,
        &cat(&[&server_hello(0xc02f), &handshake(11, &[1; 900])]),
        "AP",
    ));
    quiet.extend(c.edge(
        &mut rig,
        &cat(&[&handshake(16, &[2; 66]), &CCS, &record(22, &[3; 40])]),
    ));
    quiet.extend(c.origin(&mut rig, &cat(&[&CCS, &record(22, &[4; 40])]), "AP"));
    quiet.extend(c.edge(&mut rig, &data(180)));
    quiet.extend(c.origin(&mut rig, &data(2_000), "AP"));
    // close_notify between turns is no failure.
    quiet.extend(c.edge(&mut rig, &record(21, &[1, 0])));
    assert!(quiet.is_empty() && rig.snaps.is_empty(), "{quiet:?}");
    assert_eq!(rig.counter(counter::TLS_REQUESTS), 1);

    // The origin refusing the handshake: handed over with the alert.
    let mut d = Conn::open(&mut rig, 43_002);
    assert!(d.edge(&mut rig, &client_hello("b.example")).is_empty());
    let alert = record(21, &[2, 40]);
    assert_eq!(d.origin(&mut rig, &alert, "AP"), [kind::HISTORY]);
    assert_eq!(
        rig.snaps.last().map(|s| s.data.len()),
        Some(54 + alert.len())
    );
    let v = rig.histories.last().unwrap().value;
    assert_eq!((v.tls_phase, v.head_len), (tls_phase::HELLO, 0));

    // TLS 1.3: an alert-sized record from the edge in the handshake (it
    // refused the certificate) is read in userspace too.
    let mut e = Conn::open(&mut rig, 43_003);
    assert!(e.edge(&mut rig, &client_hello("c.example")).is_empty());
    assert!(e
        .origin(&mut rig, &cat(&[&server_hello(0x1302), &data(600)]), "AP")
        .is_empty());
    assert_eq!(e.edge(&mut rig, &data(19)), [kind::HISTORY]);
    let v = rig.histories.last().unwrap().value;
    assert_eq!((v.tls_phase, v.finished_len), (tls_phase::SHAKE, 69));
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn split_headers_and_odd_tickets_hand_over_and_check_certs_gets_each_hello() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let mut rig = Rig::with(&["--check-certs"]);
    let mut c = Conn::open(&mut rig, 43_010);
    let hello = client_hello("certs.example");
    assert_eq!(c.edge(&mut rig, &hello), [kind::HELLO]);
    assert_eq!(rig.hellos, [hello]);
    // A record header split across two segments.
    let flight = cat(&[&server_hello(0x1301), &CCS, &data(500)]);
    let (a, _) = flight.split_at(flight.len() - 503);
    assert_eq!(c.origin(&mut rig, a, "AP"), [kind::HISTORY]);

    // One ticket, then a small record of another length: a ticket and a
    // response cannot be told apart here.
    let mut d = Conn::open(&mut rig, 43_011);
    assert_eq!(d.edge(&mut rig, &client_hello("x.example")), [kind::HELLO]);
    assert!(d
        .origin(&mut rig, &cat(&[&server_hello(0x1301), &data(800)]), "AP")
        .is_empty());
    assert!(d.edge(&mut rig, &cat(&[&data(53), &data(90)])).is_empty());
    assert!(d.origin(&mut rig, &data(250), "AP").is_empty());
    assert_eq!(d.origin(&mut rig, &data(300), "AP"), [kind::HISTORY]);
    let v = rig.histories.last().unwrap().value;
    assert!(v.flags & flow_flag::TICKETS_DONE == 0 && v.flags & flow_flag::WAITING != 0);
    assert_eq!(rig.counter(counter::TLS_REQUESTS), 0);
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn http2_is_followed_without_turns_and_counted() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let mut rig = Rig::with(&[]);
    // Offered among others (the edge's order): HTTP/2 as far as can be told.
    let mut tls13 = Conn::open(&mut rig, 43_020);
    let hello = client_hello_alpn("h2.example", &["h2", "http/1.1"]);
    let mut quiet = tls13.edge(&mut rig, &hello);
    quiet.extend(tls13.origin(
        &mut rig,
        &cat(&[&server_hello(0x1301), &CCS, &data(700), &data(90)]),
        "AP",
    ));
    // The edge's Finished and its preface; the origin's SETTINGS before any
    // request, frames of two streams, one of them never answered here.
    quiet.extend(tls13.edge(&mut rig, &cat(&[&CCS, &data(53), &data(60)])));
    quiet.extend(tls13.origin(&mut rig, &data(40), "AP"));
    quiet.extend(tls13.edge(&mut rig, &cat(&[&data(100), &data(100)])));
    quiet.extend(tls13.origin(&mut rig, &data(1_200), "AP"));
    quiet.extend(tls13.edge(&mut rig, &data(30)));
    assert!(quiet.is_empty() && rig.snaps.is_empty(), "{quiet:?}");
    assert_eq!(rig.counter(counter::HTTP2), 1);
    assert_eq!(rig.counter(counter::REQUESTS), 0);
    // The origin resets it: handed over as HTTP/2, with its handshake.
    assert_eq!(
        tls13.origin(&mut rig, &[], "RA"),
        [kind::HISTORY, kind::ORIGIN_RST]
    );
    let history = *rig.histories.last().unwrap();
    let v = history.value;
    assert!(v.flags & flow_flag::H2 != 0 && v.flags & flow_flag::WAITING == 0);
    assert_eq!((v.tls_phase, v.turns), (tls_phase::DONE, 0));
    let quiet_maps = Quiet::take(&mut rig.ebpf).unwrap();
    let events = decode_history(&history, quiet_maps.hello_of(&history)).unwrap();
    assert!(events
        .iter()
        .any(|e| matches!(e.kind, FlowEventKind::Resume { h2: true, .. })));

    // TLS 1.2: the origin's SETTINGS right after its Finished, before the
    // edge's first record.
    let mut tls12 = Conn::open(&mut rig, 43_024);
    let mut quiet = tls12.edge(&mut rig, &client_hello_alpn("h2.example", &["h2"]));
    quiet.extend(tls12.origin(
        &mut rig,
        &cat(&[&server_hello(0xc02f), &handshake(11, &[1; 900])]),
        "AP",
    ));
    quiet.extend(tls12.edge(
        &mut rig,
        &cat(&[&handshake(16, &[2; 66]), &CCS, &record(22, &[3; 40])]),
    ));
    quiet.extend(tls12.origin(
        &mut rig,
        &cat(&[&CCS, &record(22, &[4; 40]), &data(40)]),
        "AP",
    ));
    quiet.extend(tls12.edge(&mut rig, &data(90)));
    quiet.extend(tls12.edge(&mut rig, &data(30)));
    assert!(quiet.is_empty(), "{quiet:?}");
    assert_eq!(rig.counter(counter::HTTP2), 2);

    // Only http/1.1 offered: turns as before.
    let mut h1 = Conn::open(&mut rig, 43_021);
    let mut quiet = h1.edge(&mut rig, &client_hello_alpn("h1.example", &["http/1.1"]));
    quiet.extend(h1.origin(
        &mut rig,
        &cat(&[&server_hello(0xc02f), &handshake(11, &[1; 900])]),
        "AP",
    ));
    quiet.extend(h1.edge(
        &mut rig,
        &cat(&[&handshake(16, &[2; 66]), &CCS, &record(22, &[3; 40])]),
    ));
    quiet.extend(h1.origin(&mut rig, &cat(&[&CCS, &record(22, &[4; 40])]), "AP"));
    quiet.extend(h1.edge(&mut rig, &data(180)));
    quiet.extend(h1.origin(&mut rig, &data(2_000), "AP"));
    assert!(quiet.is_empty(), "{quiet:?}");
    assert_eq!(rig.counter(counter::TLS_REQUESTS), 1);
    assert_eq!(rig.counter(counter::HTTP2), 2);

    // A hello whose extensions do not add up: read in userspace.
    let mut bad = client_hello_alpn("bad.example", &["h2"]);
    let n = bad.len();
    // The ALPN extension's length runs past the record.
    bad[n - 7] = 0x40;
    let mut broken = Conn::open(&mut rig, 43_022);
    assert_eq!(broken.edge(&mut rig, &bad), [kind::HISTORY]);

    // Prior-knowledge h2c on a plain port: the preface, then frames.
    let mut h2c = Conn::open(&mut rig, 43_023);
    let mut quiet = h2c.edge(
        &mut rig,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0",
    );
    quiet.extend(h2c.origin(&mut rig, b"\0\0\0\x04\0\0\0\0\0", "AP"));
    quiet.extend(h2c.edge(&mut rig, b"\0\0\x03\x01\x05\0\0\0\x01\x82\x84\x86"));
    assert!(quiet.is_empty(), "{quiet:?}");
    assert_eq!(rig.counter(counter::HTTP2), 3);
    assert_eq!(rig.counter(counter::REQUESTS), 1);
}
