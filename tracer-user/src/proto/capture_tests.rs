//! Tests of the protocol parsers on real captures (shared/captures): each
//! direction's TCP payload is reassembled in sequence order and parsed.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::pcap::PcapReader;
use pcap_file::DataLink;

use super::http::{parse_request, parse_response, Response};
use super::tls::{scan, version_name};

/// The captures directory beside the repository, `None` (said loudly) if it
/// is not there.
fn captures_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/captures");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: capture directory {} is missing; proto capture tests not run",
            dir.display()
        );
        None
    }
}

/// One TCP direction: its segments (sequence number, payload) and the ISN
/// if its SYN was seen.
#[derive(Default)]
struct Direction {
    syn_seq: Option<u32>,
    segments: Vec<(u32, Vec<u8>)>,
}

impl Direction {
    /// The payload bytes in sequence order, retransmissions dropped, up to
    /// the first hole.
    fn stream(&self) -> Vec<u8> {
        let Some(base) = self
            .syn_seq
            .map(|s| s.wrapping_add(1))
            .or_else(|| self.segments.first().map(|s| s.0))
        else {
            return Vec::new();
        };
        let mut segs: Vec<(usize, &[u8])> = self
            .segments
            .iter()
            .map(|(seq, p)| (seq.wrapping_sub(base) as usize, p.as_slice()))
            .collect();
        segs.sort_by_key(|s| s.0);
        let mut out = Vec::new();
        for (off, payload) in segs {
            if off > out.len() {
                break; // a hole
            }
            let skip = out.len() - off;
            if let Some(tail) = payload.get(skip..) {
                out.extend_from_slice(tail);
            }
        }
        out
    }
}

/// The client's (SYN sender's) and the server's payload streams of the
/// first TCP connection in a capture.
struct Streams {
    client: Vec<u8>,
    server: Vec<u8>,
}

fn streams(name: &str) -> Option<Streams> {
    let path = captures_dir()?.join(name);
    let file = File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut reader = PcapReader::new(file).expect("pcap header");
    let datalink = reader.header().datalink;
    let mut dirs: HashMap<(Vec<u8>, u16), Direction> = HashMap::new();
    let mut syn_sender: Option<(Vec<u8>, u16)> = None;
    let mut first: Option<(Vec<u8>, u16)> = None;
    while let Some(pkt) = reader.next_packet() {
        let pkt = pkt.expect("pcap packet");
        let sliced = match datalink {
            DataLink::ETHERNET => SlicedPacket::from_ethernet(&pkt.data),
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => SlicedPacket::from_ip(&pkt.data),
            other => panic!("{name}: unexpected link type {other:?}"),
        };
        let Ok(sliced) = sliced else { continue };
        let src = match &sliced.net {
            Some(NetSlice::Ipv4(ip)) => ip.header().source().to_vec(),
            Some(NetSlice::Ipv6(ip)) => ip.header().source().to_vec(),
            _ => continue,
        };
        let Some(TransportSlice::Tcp(tcp)) = &sliced.transport else {
            continue;
        };
        let key = (src, tcp.source_port());
        if tcp.syn() && !tcp.ack() {
            syn_sender.get_or_insert_with(|| key.clone());
        }
        first.get_or_insert_with(|| key.clone());
        let dir = dirs.entry(key).or_default();
        if tcp.syn() {
            dir.syn_seq = Some(tcp.sequence_number());
        }
        if !tcp.payload().is_empty() {
            dir.segments
                .push((tcp.sequence_number(), tcp.payload().to_vec()));
        }
    }
    let client_key = syn_sender.or(first).expect("a TCP packet");
    let client = dirs.remove(&client_key).unwrap_or_default().stream();
    let server = dirs
        .into_values()
        .next()
        .map(|d| d.stream())
        .unwrap_or_default();
    Some(Streams { client, server })
}

#[test]
fn handshake_failure_alert_from_server() {
    let Some(s) = streams("tls-1.2-handshake-failure.pcap") else {
        return;
    };
    let client = scan(&s.client);
    let hello = client.client_hello.expect("client hello");
    assert!(hello.complete);
    assert!(!client.truncated && !client.not_tls && !client.malformed);
    assert_eq!(client.handshake_types, vec![1]);

    let server = scan(&s.server);
    assert!(!server.not_tls && !server.truncated && !server.malformed);
    assert_eq!(server.records, 1);
    assert_eq!(server.alerts.len(), 1);
    assert_eq!(server.alerts[0].description, 40);
    assert_eq!(server.alerts[0].description_name(), "handshake_failure");
    assert_eq!(server.alerts[0].level_name(), "fatal");
    assert!(server.server_hello.is_none());
}

#[test]
fn client_hello_to_plain_http_server() {
    let Some(s) = streams("https-to-http.pcap") else {
        return;
    };
    let client = scan(&s.client);
    let hello = client.client_hello.expect("client hello");
    assert!(hello.complete && !client.truncated);
    assert!(hello.alpn.contains(&"h2".to_string()));
    // A ClientHello is not an HTTP request line.
    assert!(parse_request(&s.client, true).is_none());

    let server = scan(&s.server);
    assert!(server.not_tls);
    assert_eq!(server.records, 0);
    // This origin (Python's http.server) answered the unparsable request
    // HTTP/0.9-style: an HTML error page with "Error code: 400" and no status
    // line at all, so it is not an HTTP/1.x response either.
    assert!(s.server.starts_with(b"<!DOCTYPE HTML>"));
    assert_eq!(parse_response(&s.server), Response::NotHttp);
}

#[test]
fn get_answered_by_ssh_server() {
    let Some(s) = streams("get-to-ssh-server.pcap") else {
        return;
    };
    let req = parse_request(&s.client, true).expect("request line");
    assert_eq!(req.method, "GET");
    assert_eq!(req.version.as_deref(), Some("HTTP/1.1"));
    assert!(req
        .path
        .as_deref()
        .is_some_and(|p| p.starts_with('/') && !p.contains('?')));
    assert!(s.server.starts_with(b"SSH-2.0-"));
    assert_eq!(parse_response(&s.server), Response::NotHttp);
    assert!(scan(&s.server).not_tls);
    assert!(scan(&s.client).not_tls);
}

#[test]
fn chrome_tls13_kyber_client_hello() {
    let Some(s) = streams("chrome-1250-tls-x25519-kyber.pcap") else {
        return;
    };
    let client = scan(&s.client);
    let hello = client.client_hello.clone().expect("client hello");
    assert_eq!(hello.sni.as_deref(), Some("lh3.google.com"));
    assert!(hello.complete);
    assert_eq!(hello.legacy_version, 0x0303);
    assert!(hello.offered_versions.contains(&0x0304), "{hello:?}");
    assert!(hello.key_shares >= 2, "{hello:?}");
    assert_eq!(hello.alpn, vec!["h2".to_string(), "http/1.1".to_string()]);
    assert!(hello.cipher_suites > 10);
    assert!(!client.malformed);
    assert_eq!(client.handshake_types.first(), Some(&1));

    let server = scan(&s.server);
    let sh = server.server_hello.expect("server hello");
    assert_eq!(version_name(sh.version), "TLS1.3");
    assert!(!sh.hello_retry_request);
    assert!(server.alerts.is_empty());
    assert!(!server.malformed && !server.not_tls);
    assert_eq!(server.handshake_types, vec![2]);
    assert!(
        server.records >= 3,
        "ServerHello, ChangeCipherSpec, encrypted records"
    );
}

#[test]
fn chrome_client_hello_cut_like_a_segment() {
    let Some(s) = streams("chrome-1250-tls-x25519-kyber.pcap") else {
        return;
    };
    let record_len = 5 + usize::from(u16::from_be_bytes([s.client[3], s.client[4]]));
    assert!(
        record_len > 1500,
        "Chrome's hello is larger than one segment"
    );
    // The first of two 1460-byte segments.
    let first = scan(&s.client[..1460]);
    assert!(first.truncated);
    let partial = first.client_hello.expect("partial hello");
    assert!(!partial.complete);
    // Both segments: the whole hello.
    let both = scan(&s.client[..record_len]);
    assert!(!both.truncated);
    assert_eq!(
        both.client_hello.and_then(|h| h.sni).as_deref(),
        Some("lh3.google.com")
    );
}

#[test]
fn every_prefix_of_real_client_hellos_is_truncated() {
    for name in [
        "chrome-1250-tls-x25519-kyber.pcap",
        "tls-1.2-handshake-failure.pcap",
        "https-to-http.pcap",
    ] {
        let Some(s) = streams(name) else {
            return;
        };
        let record_len = 5 + usize::from(u16::from_be_bytes([s.client[3], s.client[4]]));
        let whole = s.client.get(..record_len).expect("whole record");
        for n in 0..whole.len() {
            let r = scan(&whole[..n]);
            assert!(r.truncated, "{name}: prefix {n}");
            assert!(!r.not_tls && !r.malformed, "{name}: prefix {n}");
            if let Some(h) = r.client_hello {
                assert!(!h.complete, "{name}: prefix {n}");
            }
        }
        let r = scan(whole);
        assert!(!r.truncated && r.client_hello.is_some_and(|h| h.complete));
    }
}

#[test]
fn healthy_get_200() {
    let Some(s) = streams("get.pcap") else {
        return;
    };
    let req = parse_request(&s.client, true).expect("request line");
    assert_eq!(req.method, "GET");
    assert_eq!(req.path.as_deref(), Some("/download/CHANGES.bro-aux.txt"));
    assert_eq!(req.version.as_deref(), Some("HTTP/1.1"));
    assert!(parse_request(&s.client, false).is_some_and(|r| r.path.is_none()));

    let expected = s
        .server
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .expect("blank line");
    let Response::Head(head) = parse_response(&s.server) else {
        panic!("not a response head");
    };
    assert_eq!(head.status, 200);
    assert_eq!(head.version, "HTTP/1.1");
    assert_eq!(head.header_bytes, Some(expected));
    assert_eq!(head.seen_bytes, expected);
    assert!(scan(&s.server).not_tls);
}
