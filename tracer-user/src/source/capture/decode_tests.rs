//! Frame decoder tests: every link type, VLANs, ICMP quotes, truncated and malformed frames.

use super::*;
use etherparse::PacketBuilder;

fn syn_frame() -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .tcp(40_000, 443, 7, 1000)
        .syn();
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    v
}

#[test]
fn ethernet_sll_sll2_raw_and_loopback() {
    let eth = syn_frame();
    let ip = &eth[14..];
    let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 2, 2, 2, 2, 2, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(ip);
    let mut sll2 = vec![
        0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 2, 2, 2, 2, 2, 0, 0,
    ];
    sll2.extend_from_slice(ip);
    let mut null = vec![2, 0, 0, 0];
    null.extend_from_slice(ip);
    for (link, data) in [
        (DataLink::ETHERNET, &eth[..]),
        (DataLink::LINUX_SLL, &sll[..]),
        (DataLink::LINUX_SLL2, &sll2[..]),
        (DataLink::RAW, ip),
        (DataLink::NULL, &null[..]),
    ] {
        let d = decode(link, data)
            .unwrap()
            .unwrap_or_else(|| panic!("{link:?}"));
        assert_eq!(d.src, "198.18.0.1".parse::<IpAddr>().unwrap());
        assert!(
            matches!(
                d.transport,
                Transport::Tcp {
                    sport: 40_000,
                    dport: 443,
                    flags: 0x02,
                    seq: 7,
                    ..
                }
            ),
            "{link:?}"
        );
    }
}

#[test]
fn damaged_frames_are_counted_not_fatal() {
    let eth = syn_frame();
    assert_eq!(
        decode(DataLink::IEEE802_11, &eth),
        Err(Skip::UnsupportedLinkType)
    );
    // Snapped inside the TCP header.
    assert_eq!(
        decode(DataLink::ETHERNET, &eth[..14 + 20 + 10]),
        Err(Skip::TruncatedHeaders)
    );
    assert_eq!(
        decode(DataLink::ETHERNET, &eth[..10]),
        Err(Skip::TruncatedHeaders)
    );
    assert_eq!(
        decode(DataLink::LINUX_SLL2, &[0x08, 0]),
        Err(Skip::TruncatedHeaders)
    );
    // Every prefix and some noise: never a panic.
    for n in 0..eth.len() {
        let _ = decode(DataLink::ETHERNET, &eth[..n]);
        let _ = decode(DataLink::RAW, &eth[14..14 + n.min(eth.len() - 14)]);
    }
    let noise: Vec<u8> = (0..200u32).map(|i| (i * 97 % 251) as u8).collect();
    for link in [
        DataLink::ETHERNET,
        DataLink::RAW,
        DataLink::LINUX_SLL,
        DataLink::LINUX_SLL2,
    ] {
        let _ = decode(link, &noise);
    }
}

#[test]
fn icmp_unreachable_quotes_the_edge_segment() {
    let quoted_ip = &syn_frame()[14..];
    let b = PacketBuilder::ethernet2([4; 6], [2; 6])
        .ipv4([198, 18, 0, 2], [198, 18, 0, 1], 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ));
    let mut v = Vec::new();
    b.write(&mut v, quoted_ip).unwrap();
    let d = decode(DataLink::ETHERNET, &v).unwrap().unwrap();
    let Transport::IcmpUnreach {
        v6: false,
        code: 3,
        quoted,
        ..
    } = d.transport
    else {
        panic!("{d:?}")
    };
    assert_eq!((quoted.sport, quoted.dport, quoted.seq), (40_000, 443, 7));
}
