//! Unit tests of the TLS scanner on synthetic records: large hellos split
//! across records and cut short, several records per segment, alerts,
//! malformed and garbage input.

use super::tls::{looks_like_tls, scan, version_name, Alert, TlsRecordKind};

/// A 16-bit length prefix.
fn be16(n: usize) -> [u8; 2] {
    u16::try_from(n).expect("fits u16").to_be_bytes()
}

fn ext(ext_type: u16, data: &[u8]) -> Vec<u8> {
    let mut v = ext_type.to_be_bytes().to_vec();
    v.extend_from_slice(&be16(data.len()));
    v.extend_from_slice(data);
    v
}

fn sni_ext(name: &str) -> Vec<u8> {
    let mut entry = vec![0];
    entry.extend_from_slice(&be16(name.len()));
    entry.extend_from_slice(name.as_bytes());
    let mut list = be16(entry.len()).to_vec();
    list.extend(entry);
    ext(0, &list)
}

fn alpn_ext(names: &[&str]) -> Vec<u8> {
    let mut entries = Vec::new();
    for n in names {
        entries.push(u8::try_from(n.len()).unwrap());
        entries.extend_from_slice(n.as_bytes());
    }
    let mut list = be16(entries.len()).to_vec();
    list.extend(entries);
    ext(16, &list)
}

fn versions_ext(versions: &[u16]) -> Vec<u8> {
    let mut v = vec![u8::try_from(versions.len() * 2).unwrap()];
    for x in versions {
        v.extend_from_slice(&x.to_be_bytes());
    }
    ext(43, &v)
}

fn key_share_ext(groups: &[(u16, usize)]) -> Vec<u8> {
    let mut entries = Vec::new();
    for &(g, len) in groups {
        entries.extend_from_slice(&g.to_be_bytes());
        entries.extend_from_slice(&be16(len));
        entries.extend(std::iter::repeat_n(0x42, len));
    }
    let mut list = be16(entries.len()).to_vec();
    list.extend(entries);
    ext(51, &list)
}

/// A `ClientHello` handshake message (header included) with these
/// extensions in this order.
fn client_hello(exts: &[Vec<u8>]) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend([7u8; 32]); // random
    body.push(32);
    body.extend([9u8; 32]); // session id
    let suites: [u16; 4] = [0x1a1a, 0x1301, 0x1302, 0xc02f];
    body.extend_from_slice(&be16(suites.len() * 2));
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend([1, 0]); // compression: null
    let all: Vec<u8> = exts.concat();
    body.extend_from_slice(&be16(all.len()));
    body.extend(all);
    handshake(1, &body)
}

fn handshake(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap().to_be_bytes();
    let mut v = vec![msg_type, len[1], len[2], len[3]];
    v.extend_from_slice(body);
    v
}

fn record(content_type: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![content_type, 3, 1];
    v.extend_from_slice(&be16(body.len()));
    v.extend_from_slice(body);
    v
}

/// Handshake bytes split into records of at most `max` bytes.
fn records(msg: &[u8], max: usize) -> Vec<u8> {
    msg.chunks(max).flat_map(|c| record(22, c)).collect()
}

/// A hello whose SNI sits past byte 1,500: padding extension, GREASE and
/// two real key shares first.
fn big_hello() -> Vec<u8> {
    client_hello(&[
        ext(0x2a2a, &[]),
        versions_ext(&[0x3a3a, 0x0304, 0x0303]),
        key_share_ext(&[(0x4a4a, 1), (0x11ec, 1216), (0x001d, 32)]),
        ext(21, &[0; 300]), // padding
        alpn_ext(&["h2", "http/1.1"]),
        sni_ext("origin.example.com"),
    ])
}

fn server_hello(version_ext: Option<u16>, random: [u8; 32]) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend(random);
    body.push(0); // empty session id
    body.extend([0x13, 0x01]);
    body.push(0);
    if let Some(v) = version_ext {
        let exts = ext(43, &v.to_be_bytes());
        body.extend_from_slice(&be16(exts.len()));
        body.extend(exts);
    }
    handshake(2, &body)
}

const HRR: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

#[test]
fn sni_past_1500_bytes_in_two_records() {
    let msg = big_hello();
    let sni_at = msg
        .windows(18)
        .position(|w| w == b"origin.example.com")
        .unwrap();
    assert!(sni_at > 1500, "SNI at {sni_at}");
    let data = records(&msg, 1000);
    let r = scan(&data);
    assert_eq!(r.records, 2);
    assert!(!r.truncated && !r.malformed && !r.not_tls);
    let h = r.client_hello.unwrap();
    assert!(h.complete);
    assert_eq!(h.sni.as_deref(), Some("origin.example.com"));
    assert_eq!(h.offered_versions, vec![0x0304, 0x0303]);
    assert_eq!(h.key_shares, 2);
    assert_eq!(h.alpn, vec!["h2", "http/1.1"]);
    assert_eq!(h.cipher_suites, 4);
    assert_eq!(r.handshake_types, vec![1]);
}

#[test]
fn hello_cut_before_and_after_sni() {
    let data = records(&big_hello(), 1000);
    let sni_end = data
        .windows(18)
        .position(|w| w == b"origin.example.com")
        .unwrap()
        + 18;
    // Cut inside the SNI extension, in the second record.
    let r = scan(&data[..sni_end - 1]);
    assert!(r.truncated);
    let h = r.client_hello.unwrap();
    assert!(!h.complete);
    assert_eq!(h.sni, None);
    assert_eq!(h.key_shares, 2);
    assert_eq!(h.offered_versions, vec![0x0304, 0x0303]);
    // Cut inside the first record: versions seen, no fallback invented.
    let r = scan(&data[..200]);
    assert!(r.truncated);
    let h = r.client_hello.unwrap();
    assert_eq!(h.offered_versions, vec![0x0304, 0x0303]);
    let r = scan(&data[..100]); // inside supported_versions
    assert!(r.client_hello.unwrap().offered_versions.is_empty());
    // Cut right at the end: the SNI is whole and the hello complete.
    let r = scan(&data[..sni_end]);
    assert_eq!(
        r.client_hello.unwrap().sni.as_deref(),
        Some("origin.example.com")
    );
}

#[test]
fn sni_first_is_read_from_a_partial_hello() {
    let msg = client_hello(&[sni_ext("edge.example.net"), ext(21, &[0; 3000])]);
    let data = records(&msg, 16384);
    let r = scan(&data[..300]);
    assert!(r.truncated);
    let h = r.client_hello.unwrap();
    assert!(!h.complete);
    assert_eq!(h.sni.as_deref(), Some("edge.example.net"));
}

#[test]
fn every_prefix_of_a_split_hello_is_truncated() {
    let data = records(&big_hello(), 700);
    for n in 0..data.len() {
        let r = scan(&data[..n]);
        assert!(r.truncated, "prefix {n}");
        assert!(!r.malformed && !r.not_tls, "prefix {n}");
        assert!(r.client_hello.is_none_or(|h| !h.complete), "prefix {n}");
    }
    assert!(!scan(&data).truncated);
}

#[test]
fn hello_without_supported_versions_offers_its_legacy_version() {
    let data = record(22, &client_hello(&[sni_ext("a.example")]));
    let h = scan(&data).client_hello.unwrap();
    assert_eq!(h.offered_versions, vec![0x0303]);
    assert_eq!(h.key_shares, 0);
    assert!(h.alpn.is_empty());
}

#[test]
fn server_flight_in_one_segment() {
    // ServerHello + ChangeCipherSpec + encrypted records, as a TLS 1.3
    // server sends them.
    let mut data = record(22, &server_hello(Some(0x0304), [1; 32]));
    data.extend(record(20, &[1]));
    data.extend(record(23, &[0xaa; 900]));
    data.extend(record(23, &[0xbb; 300]));
    let r = scan(&data);
    assert_eq!(r.records, 4);
    assert!(!r.truncated && !r.malformed);
    let sh = r.server_hello.unwrap();
    assert_eq!(version_name(sh.version), "TLS1.3");
    assert_eq!(sh.cipher, 0x1301);
    assert!(!sh.hello_retry_request && !sh.resumed);
    // Cut in the last record.
    let r = scan(&data[..data.len() - 10]);
    assert!(r.truncated && r.server_hello.is_some());
}

#[test]
fn resumed_session_is_told_by_pre_shared_key() {
    // supported_versions TLS 1.3, then pre_shared_key selecting identity 0.
    let mut body = vec![3, 3];
    body.extend([2; 32]);
    body.push(0);
    body.extend([0x13, 0x02, 0]);
    let mut exts = ext(43, &[3, 4]);
    exts.extend(ext(41, &[0, 0]));
    body.extend_from_slice(&be16(exts.len()));
    body.extend(exts);
    let sh = scan(&record(22, &handshake(2, &body)))
        .server_hello
        .unwrap();
    assert!(sh.resumed && sh.version == 0x0304 && sh.cipher == 0x1302);
}

#[test]
fn tls12_server_hello_and_encrypted_finished() {
    let mut data = record(22, &server_hello(None, [1; 32]));
    data.extend(record(20, &[1]));
    // An encrypted Finished: a handshake record that is not plaintext.
    data.extend(record(22, &[0x5c; 40]));
    let r = scan(&data);
    assert!(!r.truncated && !r.malformed);
    assert_eq!(r.handshake_types, vec![2]);
    assert_eq!(r.server_hello.unwrap().version, 0x0303);
    assert_eq!(version_name(0x0303), "TLS1.2");
}

#[test]
fn hello_retry_request_and_second_client_hello_after_ccs() {
    let mut server = record(22, &server_hello(Some(0x0304), HRR));
    server.extend(record(20, &[1]));
    let r = scan(&server);
    assert!(r.server_hello.unwrap().hello_retry_request);

    // Client: hello, CCS (compatibility mode), second hello in two records.
    let mut client = record(22, &client_hello(&[sni_ext("one.example")]));
    client.extend(record(20, &[1]));
    client.extend(records(&big_hello(), 1000));
    let r = scan(&client);
    assert!(!r.truncated && !r.malformed);
    assert_eq!(r.handshake_types, vec![1, 1]);
    assert_eq!(r.client_hello.unwrap().sni.as_deref(), Some("one.example"));
}

#[test]
fn alerts_plain_and_encrypted() {
    let mut data = record(21, &[2, 70]);
    data.extend(record(21, &[0x17; 26])); // encrypted: not read
    data.extend(record(21, &[1, 0]));
    let r = scan(&data);
    assert_eq!(r.records, 3);
    assert_eq!(
        r.alerts,
        vec![
            Alert {
                level: 2,
                description: 70
            },
            Alert {
                level: 1,
                description: 0
            }
        ]
    );
    assert_eq!(r.alerts[0].description_name(), "protocol_version");
    assert_eq!(r.alerts[1].level_name(), "warning");
    assert_eq!(r.alerts[1].description_name(), "close_notify");
    let odd = Alert {
        level: 9,
        description: 250,
    };
    assert_eq!(
        (odd.level_name(), odd.description_name()),
        ("unknown", "unknown")
    );
    // Cut inside the alert.
    let r = scan(&data[..6]);
    assert!(r.truncated && r.alerts.is_empty());
}

#[test]
fn alert_names() {
    for (d, name) in [
        (40, "handshake_failure"),
        (42, "bad_certificate"),
        (45, "certificate_expired"),
        (46, "certificate_unknown"),
        (48, "unknown_ca"),
        (51, "decrypt_error"),
        (70, "protocol_version"),
        (80, "internal_error"),
        (112, "unrecognized_name"),
        (120, "no_application_protocol"),
    ] {
        let a = Alert {
            level: 2,
            description: d,
        };
        assert_eq!(a.description_name(), name);
    }
}

#[test]
fn looks_like_tls_by_content() {
    assert!(looks_like_tls(&[22, 3, 1, 2, 0]));
    assert!(looks_like_tls(&[21, 3, 3, 0, 2, 2, 40]));
    assert!(looks_like_tls(&[23, 3, 3]));
    assert!(!looks_like_tls(&[22, 3]));
    assert!(!looks_like_tls(b"GET / HTTP/1.1\r\n"));
    assert!(!looks_like_tls(b"HTTP/1.1 400 Bad Request\r\n"));
    assert!(!looks_like_tls(b"SSH-2.0-OpenSSH_8.7\r\n"));
    assert!(!looks_like_tls(&[22, 2, 0, 0, 5])); // SSL 2 major
    assert!(!looks_like_tls(&[22, 3, 5, 0, 5])); // minor past TLS 1.3
    assert!(!looks_like_tls(&[22, 3, 3, 0xff, 0xff])); // longer than a record
    assert!(!looks_like_tls(&[22, 3, 3, 0, 0])); // empty handshake record
    assert!(looks_like_tls(&[23, 3, 3, 0, 0])); // empty application data
    assert_eq!(TlsRecordKind::from_byte(21), Some(TlsRecordKind::Alert));
    assert_eq!(TlsRecordKind::from_byte(25), None);
    assert_eq!(TlsRecordKind::Handshake.name(), "handshake");
    assert_eq!(version_name(0x0300), "SSL3.0");
    assert_eq!(version_name(0x0301), "TLS1.0");
    assert_eq!(version_name(0x7f1c), "unknown");
}

#[test]
fn not_tls_and_garbage() {
    assert!(scan(b"HTTP/1.1 400 Bad Request\r\n\r\n").not_tls);
    assert!(scan(b"\x00").not_tls);
    let empty = scan(b"");
    assert!(empty.truncated && !empty.not_tls);
    // One plausible byte: too little to tell, not "not TLS".
    assert!(scan(&[22]).truncated);
    // Good record then garbage.
    let mut data = record(21, &[2, 40]);
    data.extend_from_slice(b"garbage!");
    let r = scan(&data);
    assert!(r.malformed && !r.not_tls);
    assert_eq!(r.alerts.len(), 1);
}

#[test]
fn malformed_hellos_do_not_panic() {
    // Lengths that lie.
    let mut msg = big_hello();
    // Extensions length (after 2+32+1+32+2+8+2 = 79 body bytes + 4 header).
    msg[83] = 0xff;
    let r = scan(&records(&msg, 16384));
    assert!(r.malformed);
    assert!(r.client_hello.is_some());
    // SNI list length inconsistent with the extension length.
    let bad_sni = ext(0, &[0, 50, 0, 0, 3, b'a', b'b', b'c']);
    let r = scan(&record(22, &client_hello(&[bad_sni])));
    assert!(r.malformed);
    assert_eq!(r.client_hello.unwrap().sni, None);
    // A ServerHello with a broken supported_versions extension.
    let mut body = vec![3, 3];
    body.extend([0; 32]);
    body.extend([0, 0x13, 0x01, 0]);
    body.extend(be16(5));
    body.extend(ext(43, &[3]));
    let r = scan(&record(22, &handshake(2, &body)));
    assert!(r.malformed && r.server_hello.is_none());
}

#[test]
fn pseudo_random_bytes_never_panic() {
    // A small deterministic generator: xorshift.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let base = records(&big_hello(), 900);
    for round in 0..3000 {
        let mut data = base.clone();
        // Flip a few bytes, then cut somewhere.
        for _ in 0..=(round % 5) {
            let i = usize::try_from(next() % data.len() as u64).unwrap();
            data[i] = next().to_le_bytes()[0];
        }
        let cut = usize::try_from(next() % (data.len() as u64 + 1)).unwrap();
        let _ = scan(&data[..cut]);
        // Fully random bytes behind a plausible header.
        let mut junk = vec![22, 3, 3, 0x40, 0x00];
        junk.extend((0..(round % 200)).map(|_| next().to_le_bytes()[1]));
        let _ = scan(&junk);
    }
}
