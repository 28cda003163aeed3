//! The offline source: packet captures (pcap, pcapng) read as a stream and
//! turned into the same [`crate::source::event::FlowEvent`]s the kernel produces.

pub mod decode;
pub mod packets;
pub mod reader;
