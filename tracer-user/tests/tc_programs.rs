//! The TC programs on synthetic frames through `BPF_PROG_TEST_RUN` (root):
//! matching segments become events (every one with `--events all`; by
//! default only those of a flow that may be failing, after its history),
//! everything else (other sources, other ports, non-IP, truncated or
//! malformed headers) passes untouched and silent.

mod rig;

use etherparse::PacketBuilder;
use rig::{connect, is_root, len32, seg, Rig, EDGE4, EDGE6, ORIGIN4, ORIGIN6, OTHER4, REQUEST};
use tracer_ebpf::{counter, flow_flag, handover, kind, names};

fn tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: &str) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(src, dst, 64);
    let b = b.tcp(sport, dport, 1000, 64_240);
    let b = if flags.contains('S') { b.syn() } else { b };
    let b = if flags.contains('A') { b.ack(1) } else { b };
    let b = if flags.contains('R') { b.rst() } else { b };
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    v
}

fn tcp6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv6(src, dst, 64)
        .tcp(sport, dport, 7, 64_240)
        .syn();
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    v
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn ingress_reports_edge_syns_only() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let mut rig = Rig::new();
    let ev = rig.run("otr_tc_ingress", &tcp4(EDGE4, ORIGIN4, 40_000, 443, "S"));
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, kind::EDGE_SYN);
    assert_eq!(
        (&ev[0].edge_addr[..4], &ev[0].origin_addr[..4]),
        (&EDGE4[..], &ORIGIN4[..])
    );
    assert_eq!((ev[0].edge_port, ev[0].origin_port), (40_000, 443));
    // The handshake's ACK of that tracked flow, once.
    assert_eq!(
        rig.run("otr_tc_ingress", &tcp4(EDGE4, ORIGIN4, 40_000, 443, "A"))[0].kind,
        kind::EDGE_ACK
    );
    assert!(rig
        .run("otr_tc_ingress", &tcp4(EDGE4, ORIGIN4, 40_000, 443, "A"))
        .is_empty());
    // Not an edge address, not a watched port, an untracked flow's ACK.
    assert!(rig
        .run("otr_tc_ingress", &tcp4(OTHER4, ORIGIN4, 40_001, 443, "S"))
        .is_empty());
    assert!(rig
        .run("otr_tc_ingress", &tcp4(EDGE4, ORIGIN4, 40_002, 80, "S"))
        .is_empty());
    assert!(rig
        .run("otr_tc_ingress", &tcp4(EDGE4, ORIGIN4, 40_003, 443, "A"))
        .is_empty());
    let v6 = rig.run("otr_tc_ingress", &tcp6(EDGE6, ORIGIN6, 40_004, 443));
    assert_eq!(v6.len(), 1);
    assert_eq!(
        (v6[0].family, v6[0].edge_addr),
        (tracer_ebpf::FAMILY_V6, EDGE6)
    );
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn egress_reports_synacks_resets_and_icmp_about_edge_segments() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let mut rig = Rig::new();
    let ev = rig.run("otr_tc_egress", &tcp4(ORIGIN4, EDGE4, 443, 40_000, "SA"));
    assert_eq!(
        (ev.len(), ev[0].kind, ev[0].edge_port),
        (1, kind::ORIGIN_SYNACK, 40_000)
    );
    assert_eq!(
        rig.run("otr_tc_egress", &tcp4(ORIGIN4, EDGE4, 443, 40_000, "RA"))[0].kind,
        kind::ORIGIN_RST
    );
    assert!(rig
        .run("otr_tc_egress", &tcp4(ORIGIN4, OTHER4, 443, 40_000, "SA"))
        .is_empty());

    // ICMP port unreachable quoting the edge's SYN (a firewall's REJECT).
    let quoted = &tcp4(EDGE4, ORIGIN4, 40_010, 443, "S")[14..];
    let icmp = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
        .ipv4(ORIGIN4, EDGE4, 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ));
    let mut frame = Vec::new();
    icmp.write(&mut frame, quoted).unwrap();
    let ev = rig.run("otr_tc_egress", &frame);
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].kind, ev[0].aux0, ev[0].aux1, ev[0].edge_port),
        (kind::ORIGIN_ICMP_UNREACH, 3, 3, 40_010)
    );
    // The same ICMP with its quote cut short says nothing.
    let cut = frame.len() - 16;
    assert!(rig.run("otr_tc_egress", &frame[..cut]).is_empty());
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn malformed_frames_pass_untouched_and_silent() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let mut rig = Rig::new();
    let good = tcp4(EDGE4, ORIGIN4, 40_020, 443, "S");
    let mut cases: Vec<Vec<u8>> = Vec::new();
    // Every truncation of a valid SYN below a full TCP header.
    // (BPF_PROG_TEST_RUN refuses frames shorter than Ethernet + IPv4 headers.)
    for len in 34..34 + 20 {
        cases.push(good[..len].to_vec());
    }
    // IHL pointing past the end of the packet.
    let mut long_ihl = good.clone();
    long_ihl[14] = 0x4f;
    cases.push(long_ihl);
    // IHL below the minimum.
    let mut short_ihl = good.clone();
    short_ihl[14] = 0x41;
    cases.push(short_ihl);
    // A later fragment: no TCP header in it.
    let mut fragment = good.clone();
    fragment[20] = 0x00;
    fragment[21] = 0x10;
    cases.push(fragment);
    // ARP, and 60 bytes of noise claiming to be IPv4 and IPv6.
    let mut arp = good.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    cases.push(arp);
    for ethertype in [[0x08, 0x00], [0x86, 0xdd]] {
        let mut noise: Vec<u8> = (0u8..60).map(|i| i.wrapping_mul(37)).collect();
        noise[12..14].copy_from_slice(&ethertype);
        cases.push(noise);
    }
    // IPv6 with its TCP header cut short (BPF_PROG_TEST_RUN itself refuses
    // frames whose IPv6 header is incomplete).
    let v6 = tcp6(EDGE6, ORIGIN6, 40_021, 443);
    cases.push(v6[..14 + 40 + 19].to_vec());
    for frame in &cases {
        for program in ["otr_tc_ingress", "otr_tc_egress"] {
            let events = rig.run(program, frame);
            assert!(
                events.is_empty(),
                "{program} reported {events:?} for malformed frame {frame:02x?}"
            );
        }
    }
}

fn data4(sport: u16, payload: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(EDGE4, ORIGIN4, 64)
        .tcp(sport, 443, 2000, 64_240)
        .ack(1);
    let mut v = Vec::new();
    let body: Vec<u8> = (0..payload)
        .map(|i| u8::try_from(i % 251).unwrap())
        .collect();
    b.write(&mut v, &body).unwrap();
    v
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn snapshots_carry_whole_packets_within_the_flow_budget() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    // By default only segments with payload are snapshotted (for the
    // TLS/HTTP diagnosis); with --no-payload, nothing.
    let mut payload = Rig::new();
    payload.run("otr_tc_ingress", &tcp4(EDGE4, ORIGIN4, 41_000, 443, "S"));
    assert!(payload.snaps.is_empty(), "a SYN carries no payload");
    payload.run("otr_tc_ingress", &data4(41_000, 100));
    assert_eq!(payload.snaps.len(), 1);
    let mut off = Rig::with(&["--no-payload"]);
    off.run("otr_tc_ingress", &tcp4(EDGE4, ORIGIN4, 41_000, 443, "S"));
    off.run("otr_tc_ingress", &data4(41_000, 100));
    assert!(off.snaps.is_empty());

    let mut rig = Rig::with(&["--write-pcap", "/dev/null"]);
    let syn = tcp4(EDGE4, ORIGIN4, 41_000, 443, "S");
    rig.run("otr_tc_ingress", &syn);
    assert_eq!(rig.snaps.len(), 1);
    assert_eq!(rig.snaps[0].data, syn, "the SYN as it was on the wire");
    assert!(!rig.snaps[0].outbound);
    assert_eq!((rig.snaps[0].l2_len, rig.snaps[0].offset), (14, 0));
    // A packet longer than a chunk comes in two, back to back.
    let big = data4(41_000, 3_000);
    rig.run("otr_tc_ingress", &big);
    let chunks: Vec<_> = rig.snaps[1..]
        .iter()
        .map(|s| (s.offset, s.data.len()))
        .collect();
    assert_eq!(chunks, [(0, 2048), (2048, big.len() - 2048)]);
    let mut whole = rig.snaps[1].data.clone();
    whole.extend_from_slice(&rig.snaps[2].data);
    assert_eq!(whole, big);
    // The inbound budget (8 KiB) ends the snapshots, mid-packet if it must.
    rig.run("otr_tc_ingress", &big);
    rig.run("otr_tc_ingress", &big);
    rig.run("otr_tc_ingress", &big);
    // The budget counts payload bytes: every packet brings its 54 bytes of
    // headers (Ethernet, IPv4, TCP) on top.
    let total: usize = rig.snaps.iter().map(|s| s.data.len()).sum();
    let headers = 54 * rig.snaps.iter().filter(|s| s.offset == 0).count();
    assert_eq!(total - headers, 8 * 1024);
    // Untracked flows are never snapshotted.
    let before = rig.snaps.len();
    rig.run("otr_tc_ingress", &data4(41_999, 100));
    assert_eq!(rig.snaps.len(), before);
}

/// A segment of an edge connection on port 443 with its numbers and payload.
#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn quiet_flows_say_nothing_until_they_may_fail() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let mut rig = Rig::with(&[]);
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let req_end = 1001 + len32(REQUEST);
    // A healthy handshake and a healthy request: not one record.
    let mut quiet = connect(&mut rig, 42_000);
    quiet.extend(rig.run(
        names::TC_INGRESS,
        &seg(false, 42_000, (1001, 5001), "AP", REQUEST),
    ));
    quiet.extend(rig.run(
        names::TC_EGRESS,
        &seg(true, 42_000, (5001, req_end), "AP", ok),
    ));
    assert!(quiet.is_empty() && rig.snaps.is_empty(), "{quiet:?}");
    assert_eq!(rig.counter(counter::HANDSHAKES), 1);
    assert_eq!(rig.counter(counter::REQUESTS), 1);

    // The next request is answered 503: the history, then the response.
    let next = seg(false, 42_000, (req_end, 5001 + len32(ok)), "AP", REQUEST);
    assert!(rig.run(names::TC_INGRESS, &next).is_empty());
    let busy = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
    let ev = rig.run(
        names::TC_EGRESS,
        &seg(true, 42_000, (5001 + len32(ok), 0), "AP", busy),
    );
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].kind, kind::HISTORY);
    let h = rig.histories[0].value;
    assert_eq!(
        (h.turns, h.isn, h.origin_isn, h.req_seq),
        (1, 1000, 5000, req_end)
    );
    assert!(h.flags & flow_flag::WAITING != 0 && h.flags & flow_flag::COUNTED != 0);
    assert_eq!(&h.head[..h.head_len as usize], REQUEST);
    assert!(h.syn_ns <= h.synack_ns && h.synack_ns <= h.ack_ns && h.ack_ns <= h.req_ns);
    assert_eq!(rig.snaps.len(), 1, "the 503 itself");
    assert_eq!(
        rig.counter(counter::REQUESTS),
        1,
        "a 503 is not a healthy request"
    );
    // Loud from now on: its FIN is an event.
    let fin = rig.run(names::TC_EGRESS, &seg(true, 42_000, (6000, 0), "AF", &[]));
    assert_eq!(
        fin.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [kind::ORIGIN_FIN]
    );
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn resets_resends_and_long_hellos_turn_quiet_flows_loud() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let mut rig = Rig::with(&[]);
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let req_end = 1001 + len32(REQUEST);
    // A reset while a request waits: history, then the reset.
    connect(&mut rig, 42_001);
    rig.run(
        names::TC_INGRESS,
        &seg(false, 42_001, (1001, 5001), "AP", REQUEST),
    );
    let ev = rig.run(names::TC_EGRESS, &seg(true, 42_001, (5001, 0), "RA", &[]));
    assert_eq!(
        ev.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [kind::HISTORY, kind::ORIGIN_RST]
    );
    // The same SYN again: the edge had no answer; a reset of a flow whose
    // SYN was never seen says nothing.
    rig.run(names::TC_INGRESS, &seg(false, 42_002, (7000, 0), "S", &[]));
    let again = rig.run(names::TC_INGRESS, &seg(false, 42_002, (7000, 0), "S", &[]));
    assert_eq!(
        again.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [kind::HISTORY, kind::EDGE_SYN]
    );
    assert!(rig
        .run(names::TC_EGRESS, &seg(true, 42_999, (1, 0), "RA", &[]))
        .is_empty());
    // A ClientHello longer than its segment is read in userspace.
    connect(&mut rig, 42_003);
    let hello = [0x16, 3, 1, 0, 0x40, 1, 0, 0, 0x3c];
    let ev = rig.run(
        names::TC_INGRESS,
        &seg(false, 42_003, (1001, 5001), "AP", &hello),
    );
    assert_eq!(
        ev.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [kind::HISTORY]
    );
    assert_eq!(
        rig.snaps.last().map(|s| s.data.len()),
        Some(54 + hello.len())
    );
    // Both sides closing an answered connection: it is forgotten, quietly.
    connect(&mut rig, 42_004);
    rig.run(
        names::TC_INGRESS,
        &seg(false, 42_004, (1001, 5001), "AP", REQUEST),
    );
    rig.run(
        names::TC_EGRESS,
        &seg(true, 42_004, (5001, req_end), "AFP", ok),
    );
    let close = rig.run(
        names::TC_INGRESS,
        &seg(false, 42_004, (req_end, 0), "AF", &[]),
    );
    assert!(close.is_empty(), "{close:?}");
    assert_eq!(rig.counter(counter::REQUESTS), 1);
    assert_eq!(rig.counter(counter::LOUD_FLOWS), 3);
    // Each by its first reason: the reset, the SYN again, the hello.
    let by = |why| rig.counter(counter::HANDED_OVER + why);
    assert_eq!(
        (
            by(handover::RESET),
            by(handover::SYN_RESENT),
            by(handover::PAYLOAD)
        ),
        (1, 1, 1)
    );
    let all: u64 = (0..handover::COUNT).map(by).sum();
    assert_eq!(all, 3, "one reason per connection");
    // Four flows recorded; the reset one and the closed one removed: what
    // is left is in the map (nothing was evicted).
    let live = tracer_user::source::kernel::quiet::Quiet::take(&mut rig.ebpf)
        .unwrap()
        .live_flows();
    assert_eq!(
        (
            rig.counter(counter::FLOWS_NEW),
            rig.counter(counter::FLOWS_GONE),
            live
        ),
        (4, 2, 2)
    );
}
