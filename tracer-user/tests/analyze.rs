//! `origin-tracer analyze` on captures built packet by packet (pcap and
//! pcapng, several link types) and on the real captures in ../shared/captures:
//! the causes packets alone can show, capture timestamps, inconclusive ends,
//! damaged files. No root needed.

use std::{
    borrow::Cow,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use etherparse::PacketBuilder;
use pcap_file::{
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    pcapng::{
        blocks::{
            enhanced_packet::EnhancedPacketBlock,
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
        },
        PcapNgWriter,
    },
    DataLink, TsResolution,
};
use serde_json::Value;

const EDGE: [u8; 4] = [198, 18, 7, 1];
const ORIGIN: [u8; 4] = [198, 18, 7, 2];
/// 2026-11-21T10:00:00Z: findings must carry the capture's own time.
const T0: u64 = 1_795_255_200_000_000_000;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const RST: u8 = 0x04;

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("otr-analyze-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An IPv4 TCP frame (Ethernet) from `src` to `dst`.
fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: u8, seq: u32) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, seq, 64_240);
    let b = if flags & SYN != 0 { b.syn() } else { b };
    let b = if flags & ACK != 0 { b.ack(1) } else { b };
    let b = if flags & RST != 0 { b.rst() } else { b };
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    v
}

fn inbound(sport: u16, flags: u8, seq: u32) -> Vec<u8> {
    tcp(EDGE, ORIGIN, sport, 443, flags, seq)
}

fn outbound(dport: u16, flags: u8) -> Vec<u8> {
    tcp(ORIGIN, EDGE, 443, dport, flags, 900)
}

/// Write a pcap (microsecond timestamps); `packets` = (ms after T0, frame).
fn pcap(name: &str, link: DataLink, packets: &[(u64, Vec<u8>)]) -> PathBuf {
    let path = dir().join(name);
    let header = PcapHeader {
        datalink: link,
        ts_resolution: TsResolution::MicroSecond,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(std::fs::File::create(&path).unwrap(), header).unwrap();
    // In time order, as a capture is.
    let mut packets: Vec<&(u64, Vec<u8>)> = packets.iter().collect();
    packets.sort_by_key(|(ms, _)| *ms);
    for (ms, data) in packets {
        let ts = Duration::from_nanos(T0 + ms * 1_000_000);
        w.write_packet(&PcapPacket::new(
            ts,
            u32::try_from(data.len()).unwrap(),
            data,
        ))
        .unwrap();
    }
    path
}

fn analyze(file: &Path, extra: &[&str]) -> (Vec<Value>, String, Option<i32>) {
    let mut args = vec!["--format", "json", "-p", "443", "--syn-timeout", "3s"];
    if !extra
        .iter()
        .any(|a| *a == "--all-sources" || *a == "--edge-ranges")
    {
        args.extend(["--edge-ranges", "198.18.7.1/32"]);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_origin-tracer"))
        .arg("analyze")
        .arg(file)
        .args(args)
        .args(extra)
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

fn of_type<'a>(lines: &'a [Value], t: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == t).collect()
}

#[test]
fn packet_only_causes_and_capture_time() {
    let packets = vec![
        // Port 1001: SYN answered by a RST (no listener, from packets alone).
        (0, inbound(1001, SYN, 1)),
        (1, outbound(1001, RST | ACK)),
        // Port 1002: SYN retransmitted, never answered.
        (10, inbound(1002, SYN, 2)),
        (1_010, inbound(1002, SYN, 2)),
        (3_010, inbound(1002, SYN, 2)),
        // Port 1003: SYN-ACKs retransmitted, the edge never ACKs.
        (20, inbound(1003, SYN, 3)),
        (21, outbound(1003, SYN | ACK)),
        (1_021, outbound(1003, SYN | ACK)),
        (3_021, outbound(1003, SYN | ACK)),
        // Port 1004: healthy.
        (30, inbound(1004, SYN, 4)),
        (31, outbound(1004, SYN | ACK)),
        (32, inbound(1004, ACK, 5)),
        // Keep the capture going past every timeout.
        (5_000, tcp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, ACK, 0)),
    ];
    let (lines, stderr, code) = analyze(&pcap("causes.pcap", DataLink::ETHERNET, &packets), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let findings = of_type(&lines, "finding");
    let by_port = |p: u64| findings.iter().find(|f| f["flow"]["sport"] == p).copied();
    let f = by_port(1001).expect("finding for 1001");
    assert_eq!(
        (
            f["class"].as_str(),
            f["cause"].as_str(),
            f["confidence"].as_str()
        ),
        (Some("521"), Some("no_listener"), Some("medium"))
    );
    assert_eq!(f["source"], "capture");
    assert!(
        f["ts"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-21T10:00:00."),
        "{}",
        f["ts"]
    );
    assert_eq!(by_port(1002).expect("1002")["cause"], "syn_unanswered");
    let f = by_port(1003).expect("1003");
    assert_eq!(
        (f["cause"].as_str(), f["confidence"].as_str()),
        (Some("synack_unacked"), Some("high"))
    );
    assert!(
        f["ts"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-21T10:00:03."),
        "decided at the capture's timeout: {}",
        f["ts"]
    );
    assert!(by_port(1004).is_none());
    assert_eq!(findings.len(), 3, "{findings:#?}");
    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["healthy_handshakes"], 1);
    assert_eq!(summary["capture"]["packets"], 13);
    assert_eq!(summary["pending_at_exit"], 0);
}

#[test]
fn the_end_of_a_capture_is_not_a_timeout() {
    let packets = vec![(0, inbound(2001, SYN, 1)), (1_200, inbound(2001, SYN, 1))];
    let (lines, _, code) = analyze(&pcap("short.pcap", DataLink::ETHERNET, &packets), &[]);
    assert_eq!(code, Some(0));
    assert!(of_type(&lines, "finding").is_empty(), "{lines:#?}");
    let inc = of_type(&lines, "inconclusive");
    assert_eq!(inc.len(), 1);
    assert_eq!(
        (inc[0]["watched_ms"].as_u64(), inc[0]["needed_ms"].as_u64()),
        (Some(1_200), Some(3_000))
    );
    assert_eq!(inc[0]["flow"]["sport"], 2001);
    assert_eq!(lines.last().unwrap()["pending_at_exit"], 1);
}

#[test]
fn icmp_reject_over_sll2_and_ipv6_over_raw_ip() {
    // Linux cooked v2 framing around an ICMP port unreachable quoting the SYN.
    let syn = inbound(3001, SYN, 1);
    let b = PacketBuilder::ipv4(ORIGIN, EDGE, 64).icmpv4(
        etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ),
    );
    let mut icmp = Vec::new();
    b.write(&mut icmp, &syn[14..]).unwrap();
    let sll2 = |ip: &[u8]| {
        let mut v = vec![
            0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 2, 2, 2, 2, 2, 0, 0,
        ];
        v.extend_from_slice(ip);
        v
    };
    let packets = vec![(0, sll2(&syn[14..])), (1, sll2(&icmp))];
    let (lines, _, _) = analyze(&pcap("sll2.pcap", DataLink::LINUX_SLL2, &packets), &[]);
    let f = of_type(&lines, "finding");
    assert_eq!(f.len(), 1, "{lines:#?}");
    assert_eq!(f[0]["cause"], "firewall_reject");
    assert_eq!(f[0]["evidence"][1]["icmp"]["name"], "port_unreachable");

    let e6 = [0x20, 0x01, 0x0d, 0xb8, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let o6 = [0x20, 0x01, 0x0d, 0xb8, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let v6 = |src: [u8; 16], dst: [u8; 16], sp: u16, dp: u16, rst: bool| {
        let b = PacketBuilder::ipv6(src, dst, 64).tcp(sp, dp, 1, 100);
        let b = if rst { b.rst().ack(2) } else { b.syn() };
        let mut v = Vec::new();
        b.write(&mut v, &[]).unwrap();
        v
    };
    let packets = vec![
        (0, v6(e6, o6, 3002, 443, false)),
        (1, v6(o6, e6, 443, 3002, true)),
    ];
    let (lines, _, _) = analyze(
        &pcap("v6.pcap", DataLink::RAW, &packets),
        &["--edge-ranges", "2001:db8:7::1/128"],
    );
    let f = of_type(&lines, "finding");
    assert_eq!(f.len(), 1, "{lines:#?}");
    assert_eq!(
        (f[0]["cause"].as_str(), f[0]["flow"]["family"].as_str()),
        (Some("no_listener"), Some("ipv6"))
    );
}

#[test]
fn pcapng_with_nanosecond_timestamps() {
    let path = dir().join("ns.pcapng");
    let mut w = PcapNgWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
    let mut idb = InterfaceDescriptionBlock::new(DataLink::ETHERNET, 65_535);
    idb.options.push(InterfaceDescriptionOption::IfTsResol(9));
    w.write_pcapng_block(idb).unwrap();
    for (ns, data) in [
        (0u64, inbound(4001, SYN, 1)),
        (1_000_500, outbound(4001, RST | ACK)),
    ] {
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(T0 + ns),
            original_len: u32::try_from(data.len()).unwrap(),
            data: Cow::Owned(data),
            options: vec![],
        };
        w.write_pcapng_block(epb).unwrap();
    }
    drop(w);
    let (lines, stderr, code) = analyze(&path, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let f = of_type(&lines, "finding");
    assert_eq!(f.len(), 1, "{lines:#?}");
    assert_eq!(
        f[0]["evidence"][1]["t_us"], 1_000,
        "microseconds between SYN and RST from ns timestamps"
    );
}

#[test]
fn damaged_captures_are_reported_not_fatal() {
    let good = pcap(
        "good.pcap",
        DataLink::ETHERNET,
        &[(0, inbound(5001, SYN, 1)), (1, outbound(5001, RST | ACK))],
    );
    // Cut inside the last record: the first packet still counts.
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir().join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let (lines, stderr, code) = analyze(&cut, &[]);
    assert_eq!(code, Some(0));
    let summary = lines.last().unwrap();
    assert_eq!(summary["capture"]["packets"], 1);
    assert!(
        summary["capture"]["damage"]
            .as_str()
            .unwrap()
            .contains("truncated"),
        "{summary}"
    );
    assert!(stderr.contains("truncated"), "{stderr}");
    assert_eq!(of_type(&lines, "inconclusive").len(), 1);

    // Snapped headers and an unsupported link type are counted skips.
    let syn = inbound(5002, SYN, 1);
    let snapped = pcap(
        "snap.pcap",
        DataLink::ETHERNET,
        &[(0, syn[..40].to_vec()), (1, outbound(5002, RST | ACK))],
    );
    let (lines, _, _) = analyze(&snapped, &[]);
    assert_eq!(
        lines.last().unwrap()["capture"]["packets_skipped"]["truncated_headers"],
        1
    );
    let wifi = pcap("wifi.pcap", DataLink::IEEE802_11, &[(0, syn.clone())]);
    let (lines, _, code) = analyze(&wifi, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(
        lines.last().unwrap()["capture"]["packets_skipped"]["unsupported_link_type"],
        1
    );

    // Not a capture at all: one clear line, non-zero.
    let junk = dir().join("junk.pcap");
    std::fs::write(&junk, b"<html>not a capture</html>").unwrap();
    let (lines, stderr, code) = analyze(&junk, &[]);
    assert_eq!(code, Some(1));
    assert!(lines.is_empty());
    assert!(stderr.contains("not a pcap or pcapng"), "{stderr}");
}

/// The real captures of ../shared/captures (Zeek's test traces).
fn shared(name: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/captures")
        .join(name);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} not found (../shared beside the repository)",
            p.display()
        );
        None
    }
}

#[test]
fn real_captures_say_what_their_readme_says() {
    // (file, port, expected finding: class, cause, what the evidence names)
    let cases = [
        ("get.pcap", "80", None),
        ("chrome-1250-tls-x25519-kyber.pcap", "443", None),
        (
            "tls-1.2-handshake-failure.pcap",
            "443",
            Some(("525", "tls_alert_from_origin", "handshake_failure")),
        ),
        (
            "https-to-http.pcap",
            "80",
            Some(("525", "not_tls", "not TLS")),
        ),
        (
            "get-to-ssh-server.pcap",
            "22",
            Some(("520", "malformed_response", "not HTTP")),
        ),
    ];
    for (name, port, expected) in cases {
        let Some(file) = shared(name) else { return };
        let (lines, stderr, code) = analyze(&file, &["--all-sources", "-p", port]);
        assert_eq!(code, Some(0), "{name}: {stderr}");
        let findings = of_type(&lines, "finding");
        let summary = lines.last().unwrap();
        assert_eq!(summary["healthy_handshakes"], 1, "{name}");
        assert_eq!(
            summary["capture"]["packets_skipped"],
            serde_json::json!({}),
            "{name}"
        );
        match expected {
            None => assert!(findings.is_empty(), "{name}: {findings:#?}"),
            Some((class, cause, named)) => {
                assert_eq!(findings.len(), 1, "{name}: {findings:#?}");
                let f = findings[0];
                assert_eq!(
                    (f["class"].as_str(), f["cause"].as_str()),
                    (Some(class), Some(cause)),
                    "{name}"
                );
                assert!(f.to_string().contains(named), "{name}: {f}");
            }
        }
    }
    // The TLS facts of the failed handshake.
    let Some(file) = shared("tls-1.2-handshake-failure.pcap") else {
        return;
    };
    let (lines, _, _) = analyze(&file, &["--all-sources", "-p", "443"]);
    let f = of_type(&lines, "finding")[0];
    assert_eq!(f["tls"]["alert"]["description"], "handshake_failure");
    assert_eq!(f["tls"]["alert"]["level"], "fatal");
    assert_eq!(f["tls"]["alert"]["from"], "origin");
}

#[test]
fn a_large_client_hello_is_read_whole() {
    let Some(file) = shared("chrome-1250-tls-x25519-kyber.pcap") else {
        return;
    };
    let (lines, _, _) = analyze(&file, &["--all-sources", "-p", "443", "--events", "all"]);
    // The SNI sits inside a 1,756-byte ClientHello: the summary's TLS timing
    // proves the ClientHello and ServerHello were both read.
    let timing = &lines.last().unwrap()["timing"];
    assert_eq!(
        timing["client_hello_to_server_hello"]["count"], 1,
        "{timing}"
    );
}
