//! The test rig shared by the program tests: the agent's object loaded and
//! configured as the agent would, its TC programs run on synthetic frames
//! through `BPF_PROG_TEST_RUN`, what they emit collected.

#![allow(dead_code, reason = "each test binary uses part of the rig")]

use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{SchedClassifier, TestRun, TestRunOptions},
    Ebpf,
};
use clap::Parser;
use etherparse::PacketBuilder;
use tracer_ebpf::{names, History, RawEvent};
use tracer_user::{
    cli::Args,
    source::kernel::{
        attach::load_configured,
        records::{
            decode_snapshot, is_hello, is_history, is_snapshot, read_hello, read_history, read_raw,
            KernelNames, PacketSnap,
        },
    },
};

pub const EDGE4: [u8; 4] = [198, 18, 9, 1];
pub const ORIGIN4: [u8; 4] = [198, 18, 9, 2];
pub const OTHER4: [u8; 4] = [198, 19, 9, 1];
pub const EDGE6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const ORIGIN6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
/// `TC_ACT_UNSPEC` (-1): "no opinion", the packet goes on unchanged.
pub const UNSPEC: u32 = u32::MAX;

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

pub struct Rig {
    pub ebpf: Ebpf,
    ring: RingBuf<MapData>,
    /// Packet snapshots seen so far.
    pub snaps: Vec<PacketSnap>,
    /// Histories of quiet flows turned loud, seen so far.
    pub histories: Vec<History>,
    /// `ClientHello`s sent, seen so far.
    pub hellos: Vec<Vec<u8>>,
}

impl Rig {
    /// Every flow loud: each matching segment is an event.
    pub fn new() -> Self {
        Self::with(&["--events", "all"])
    }

    pub fn with(extra: &[&str]) -> Self {
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
            hellos: Vec::new(),
        }
    }

    /// A per-CPU counter of the programs, summed.
    pub fn counter(&self, index: u32) -> u64 {
        let counters: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map(names::COUNTERS).unwrap()).unwrap();
        counters.get(&index, 0).unwrap().iter().sum()
    }

    /// Run a program on a frame; assert it passed the frame on unchanged and
    /// return the events it emitted.
    pub fn run(&mut self, program: &str, frame: &[u8]) -> Vec<RawEvent> {
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
            } else if is_hello(&item) {
                self.hellos.push(read_hello(&item).unwrap().1);
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

pub fn seg(out: bool, port: u16, (seq, ack): (u32, u32), flags: &str, payload: &[u8]) -> Vec<u8> {
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

pub fn len32(b: &[u8]) -> u32 {
    u32::try_from(b.len()).unwrap()
}

pub const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// Handshake on `port`: the edge's ISN 1000, the origin's 5000.
pub fn connect(rig: &mut Rig, port: u16) -> Vec<RawEvent> {
    let mut ev = rig.run(names::TC_INGRESS, &seg(false, port, (1000, 0), "S", &[]));
    ev.extend(rig.run(names::TC_EGRESS, &seg(true, port, (5000, 1001), "SA", &[])));
    ev.extend(rig.run(names::TC_INGRESS, &seg(false, port, (1001, 5001), "A", &[])));
    ev
}
