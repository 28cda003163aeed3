//! Fuzz target `capture`: the input is a whole capture file (pcap or pcapng),
//! read with `capture::reader::read`, every packet decoded and fed to a
//! `Packetizer`, as `origin-tracer analyze` does. Nothing may panic.

#![no_main]

use std::{path::PathBuf, sync::OnceLock};

use libfuzzer_sys::fuzz_target;
use tracer_user::source::{
    capture::{decode, packets::Packetizer, reader},
    ranges::EdgeRanges,
};

/// One file per fuzzing process (`-jobs`/`-fork` run several).
fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("origin-tracer-fuzz-{}.pcap", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("write the fuzz input to a temp file");
    // Half the inputs watch every source, half check the edge ranges; a tiny
    // flow table so eviction is exercised too.
    let (ranges, all_sources) = if data.len().is_multiple_of(2) {
        (EdgeRanges::default(), true)
    } else {
        let r =
            EdgeRanges::parse_list("0.0.0.0/1,128.0.0.0/2,::/1,fe80::/10").expect("valid ranges");
        (r, false)
    };
    let mut packets = Packetizer::new(ranges, all_sources, &[22, 80, 443, 8080], 4);
    let mut handed_out = 0u64;
    let end = reader::read(path, |pkt| {
        handed_out += 1;
        assert!(
            pkt.data.len() <= data.len(),
            "a packet larger than the file"
        );
        if let Ok(Some(d)) = decode::decode(pkt.link, pkt.data) {
            let _ = packets.on_packet(pkt.ts_ns, &d);
        }
    });
    if let Ok(end) = end {
        assert_eq!(end.packets, handed_out, "ReadEnd.packets miscounts");
    }
});
