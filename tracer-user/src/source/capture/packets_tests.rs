//! Packetizer tests: flows, directions, edge ranges, payload budgets, ICMP.

use super::*;
use crate::source::capture::decode::Quoted;

fn tcp(src: &str, dst: &str, sport: u16, dport: u16, flags: u8) -> Decoded<'static> {
    Decoded {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        transport: Transport::Tcp {
            sport,
            dport,
            flags,
            seq: 1,
            ack: 0,
            payload: &[],
        },
    }
}

fn kinds(packets: &[Decoded<'static>]) -> Vec<FlowEventKind> {
    let ranges = EdgeRanges::parse_list("198.18.0.1/32").unwrap();
    let mut p = Packetizer::new(ranges, false, &[443], 8);
    packets
        .iter()
        .flat_map(|d| p.on_packet(0, d))
        .map(|e| e.kind)
        .collect()
}

#[test]
fn a_handshake_and_its_close() {
    let e = "198.18.0.1";
    let o = "198.18.0.2";
    let got = kinds(&[
        tcp(e, o, 5000, 443, SYN),
        tcp(o, e, 443, 5000, SYN | ACK),
        tcp(e, o, 5000, 443, ACK),
        tcp(e, o, 5000, 443, ACK | 0x08),
        tcp(o, e, 443, 5000, ACK),
        tcp(e, o, 5000, 443, FIN | ACK),
        tcp(o, e, 443, 5000, FIN | ACK),
    ]);
    assert_eq!(
        got,
        [
            FlowEventKind::SynIn,
            FlowEventKind::SynAckOut,
            FlowEventKind::AckIn,
            FlowEventKind::FinIn,
            FlowEventKind::FinOut
        ]
    );
}

#[test]
fn others_are_ignored() {
    let got = kinds(&[
        tcp("198.19.0.1", "198.18.0.2", 5000, 443, SYN),
        tcp("198.18.0.1", "198.18.0.2", 5000, 80, SYN),
        tcp("198.18.0.1", "198.18.0.2", 5001, 443, ACK),
    ]);
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn icmp_about_the_edge_segment() {
    let q = Quoted {
        src: "198.18.0.1".parse().unwrap(),
        dst: "198.18.0.2".parse().unwrap(),
        sport: 5000,
        dport: 443,
        seq: 9,
    };
    let icmp = Decoded {
        src: "198.18.0.2".parse().unwrap(),
        dst: "198.18.0.1".parse().unwrap(),
        transport: Transport::IcmpUnreach {
            v6: false,
            icmp_type: 3,
            code: 13,
            quoted: q,
        },
    };
    assert_eq!(
        kinds(&[icmp]),
        [FlowEventKind::IcmpUnreachOut {
            v6: false,
            icmp_type: 3,
            code: 13
        }]
    );
}

#[test]
fn tracked_flows_are_bounded() {
    let ranges = EdgeRanges::parse_list("198.18.0.0/16").unwrap();
    let mut p = Packetizer::new(ranges, false, &[443], 8);
    for port in 0..100 {
        p.on_packet(0, &tcp("198.18.0.1", "198.18.1.1", port, 443, SYN));
    }
    assert!(p.flows.len() <= 8);
    assert!(p.order.len() <= 16);
}
