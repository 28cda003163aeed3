//! Fuzz target `decode`: the first byte picks one of the link types
//! `source::capture::decode::decode` reads, the rest is the frame; the decoded
//! packet goes through a `Packetizer`. Nothing may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pcap_file::DataLink;
use tracer_user::source::{
    capture::{
        decode::{self, Transport},
        packets::Packetizer,
    },
    ranges::EdgeRanges,
};

/// Every link type the decoder reads (seed files start with their index).
const LINKS: [DataLink; 8] = [
    DataLink::ETHERNET,
    DataLink::RAW,
    DataLink::IPV4,
    DataLink::IPV6,
    DataLink::LINUX_SLL,
    DataLink::LINUX_SLL2,
    DataLink::NULL,
    DataLink::LOOP,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, frame)) = data.split_first() else {
        return;
    };
    let link = LINKS[usize::from(pick) % LINKS.len()];
    let Ok(Some(d)) = decode::decode(link, frame) else {
        return;
    };
    if let Transport::Tcp { payload, .. } = d.transport {
        // The payload is a slice of the frame.
        let range = frame.as_ptr_range();
        assert!(payload.is_empty() || range.contains(&payload.as_ptr()));
        assert!(payload.len() <= frame.len());
    }
    let mut packets = Packetizer::new(EdgeRanges::default(), true, &[80, 443], 2);
    let _ = packets.on_packet(1, &d);
});
