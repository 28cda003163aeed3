//! Packet snapshots from the TC programs turned into payload events: the
//! first chunk of a packet is decoded for its TCP sequence number, later
//! chunks of the same long packet continue from where it left off.

use std::collections::HashMap;

use super::records::PacketSnap;
use crate::source::{
    capture::decode,
    event::{Flow, FlowEvent, FlowEventKind},
};

/// Most packets whose continuation is remembered at once.
const MAX_OPEN: usize = 65_536;

/// Where the next chunk of a long packet continues.
#[derive(Debug, Default)]
pub struct Snapshots {
    /// Per (flow, outbound): (offset in the packet, sequence number there,
    /// the packet's acknowledgement number).
    continuation: HashMap<(Flow, bool), (u32, u32, u32)>,
}

impl Snapshots {
    /// The TCP payload in a snapshot chunk, as a payload event.
    pub fn payload_event(&mut self, snap: &PacketSnap) -> Option<FlowEvent> {
        let key = (snap.flow, snap.outbound);
        let (seq, ack, bytes) = if snap.offset == 0 {
            let link = if snap.l2_len == 14 {
                pcap_file::DataLink::ETHERNET
            } else {
                pcap_file::DataLink::RAW
            };
            let Ok(Some(d)) = decode::decode(link, &snap.data) else {
                return None;
            };
            let decode::Transport::Tcp {
                seq, ack, payload, ..
            } = d.transport
            else {
                return None;
            };
            let end = u32::try_from(snap.data.len()).ok()?;
            let after = seq.wrapping_add(u32::try_from(payload.len()).ok()?);
            self.continuation.insert(key, (end, after, ack));
            (seq, ack, payload.to_vec())
        } else {
            let (at, seq, ack) = self.continuation.remove(&key)?;
            if at != snap.offset {
                return None;
            }
            let end = snap.offset + u32::try_from(snap.data.len()).ok()?;
            self.continuation.insert(
                key,
                (
                    end,
                    seq.wrapping_add(u32::try_from(snap.data.len()).ok()?),
                    ack,
                ),
            );
            (seq, ack, snap.data.clone())
        };
        if self.continuation.len() > MAX_OPEN {
            self.continuation.clear();
        }
        (!bytes.is_empty()).then_some(FlowEvent {
            ts_ns: snap.ts_ns,
            flow: snap.flow,
            kind: FlowEventKind::Payload {
                outbound: snap.outbound,
                ack,
                bytes,
            },
            seq,
        })
    }
}
