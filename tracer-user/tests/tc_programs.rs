//! The TC programs on synthetic frames through `BPF_PROG_TEST_RUN` (root):
//! matching segments become events (every one with `--events all`; by
//! default only those of a flow that may be failing, after its history),
//! everything else (other sources, other ports, non-IP, truncated or
//! malformed headers) passes untouched and silent.

use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{SchedClassifier, TestRun, TestRunOptions},
    Ebpf,
};
use clap::Parser;
use etherparse::PacketBuilder;
use tracer_ebpf::{counter, flow_flag, kind, names, History, RawEvent};
use tracer_user::{
    cli::Args,
    source::kernel::{
        attach::load_configured,
        records::{
            decode_snapshot, is_history, is_snapshot, read_history, read_raw, KernelNames,
            PacketSnap,
        },
    },
};

const EDGE4: [u8; 4] = [198, 18, 9, 1];
const ORIGIN4: [u8; 4] = [198, 18, 9, 2];
const OTHER4: [u8; 4] = [198, 19, 9, 1];
const EDGE6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const ORIGIN6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
/// `TC_ACT_UNSPEC` (-1): "no opinion", the packet goes on unchanged.
const UNSPEC: u32 = u32::MAX;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

struct Rig {
    ebpf: Ebpf,
    ring: RingBuf<MapData>,
    /// Packet snapshots seen so far.
    snaps: Vec<PacketSnap>,
    /// Histories of quiet flows turned loud, seen so far.
    histories: Vec<History>,
}

impl Rig {
    /// Every flow loud: each matching segment is an event.
    fn new() -> Self {
        Self::with(&["--events", "all"])
    }

    fn with(extra: &[&str]) -> Self {
        let mut command_line = vec![
            "origin-tracer",
            "--format",
            "json",
            "-p",
            "443",
            "--edge-ranges",
            "198.18.9.1/32,2001:db8:9::1/128",
        ];
        command_line.extend_from_slice(extra);
        let args = Args::try_parse_from(command_line).unwrap();
        let mut ebpf =
            load_configured(&args.resolve().unwrap(), &[], &KernelNames::default()).unwrap();
        for name in [names::TC_INGRESS, names::TC_EGRESS] {
            let p: &mut SchedClassifier = ebpf.program_mut(name).unwrap().try_into().unwrap();
            p.load().unwrap();
        }
        let ring = RingBuf::try_from(ebpf.take_map("EVENTS").unwrap()).unwrap();
        Self {
            ebpf,
            ring,
            snaps: Vec::new(),
            histories: Vec::new(),
        }
    }

    /// A per-CPU counter of the programs, summed.
    fn counter(&self, index: u32) -> u64 {
        let counters: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map(names::COUNTERS).unwrap()).unwrap();
        counters.get(&index, 0).unwrap().iter().sum()
    }

    /// Run a program on a frame; assert it passed the frame on unchanged and
    /// return the events it emitted.
    fn run(&mut self, program: &str, frame: &[u8]) -> Vec<RawEvent> {
        let p: &SchedClassifier = self.ebpf.program(program).unwrap().try_into().unwrap();
        let mut out = vec![0u8; frame.len() + 64];
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.data_out = Some(&mut out);
        let result = p
            .test_run(opts)
            .unwrap_or_else(|e| panic!("test_run on {} bytes: {e}", frame.len()));
        assert_eq!(
            result.return_value, UNSPEC,
            "{program} must never decide a packet's fate"
        );
        assert_eq!(
            &out[..result.data_size_out as usize],
            frame,
            "{program} altered the packet"
        );
        let mut events = Vec::new();
        while let Some(item) = self.ring.next() {
            if is_history(&item) {
                self.histories.push(read_history(&item).unwrap());
                events.push(read_raw(&item).unwrap());
            } else if is_snapshot(&item) {
                self.snaps.push(decode_snapshot(&item).unwrap());
            } else {
                events.push(read_raw(&item).unwrap());
            }
        }
        events
    }
}

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
fn seg(out: bool, port: u16, (seq, ack): (u32, u32), flags: &str, payload: &[u8]) -> Vec<u8> {
    let (src, dst, sport, dport) = if out {
        (ORIGIN4, EDGE4, 443, port)
    } else {
        (EDGE4, ORIGIN4, port, 443)
    };
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, seq, 64_240);
    let b = if flags.contains('S') { b.syn() } else { b };
    let b = if flags.contains('A') { b.ack(ack) } else { b };
    let b = if flags.contains('R') { b.rst() } else { b };
    let b = if flags.contains('F') { b.fin() } else { b };
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

fn len32(b: &[u8]) -> u32 {
    u32::try_from(b.len()).unwrap()
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// Handshake on `port`: the edge's ISN 1000, the origin's 5000.
fn connect(rig: &mut Rig, port: u16) -> Vec<RawEvent> {
    let mut ev = rig.run(names::TC_INGRESS, &seg(false, port, (1000, 0), "S", &[]));
    ev.extend(rig.run(names::TC_EGRESS, &seg(true, port, (5000, 1001), "SA", &[])));
    ev.extend(rig.run(names::TC_INGRESS, &seg(false, port, (1001, 5001), "A", &[])));
    ev
}

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
fn resets_resends_and_tls_turn_quiet_flows_loud() {
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
    // TLS is read in userspace from its first record.
    connect(&mut rig, 42_003);
    let hello = [0x16, 3, 1, 0, 4, 1, 0, 0, 0];
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
}
