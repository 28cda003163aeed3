//! `--write-pcap`: keeps the packets the kernel snapshotted for each
//! connection for a while, and writes those of every connection that ends in
//! a finding to a pcapng file, bounded in memory and in file size, with the
//! secrets of plain HTTP masked and bodies dropped ([`redact`]) unless
//! `--write-pcap-raw` asks for the bytes as captured.

pub mod redact;

use std::{
    borrow::Cow,
    collections::{HashMap, VecDeque},
    fs::File,
    io::BufWriter,
    path::Path,
    time::Duration,
};

use anyhow::{Context, Result};
use pcap_file::{
    pcapng::{
        blocks::{
            enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption},
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
        },
        PcapNgWriter,
    },
    DataLink,
};

use super::line::{PcapPayload, PcapReport};
use crate::{
    clock::WallClock,
    source::{event::Flow, kernel::records::PacketSnap},
};

/// Most bytes of snapshots held in memory while waiting for verdicts.
const MAX_HELD: usize = 32 << 20;
/// Most packets kept per connection.
const MAX_PER_FLOW: usize = 64;

struct Held {
    ts_ns: u64,
    outbound: bool,
    ifindex: u32,
    l2_len: u32,
    wire_len: u32,
    data: Vec<u8>,
}

pub struct PcapEvidence {
    writer: PcapNgWriter<BufWriter<File>>,
    interfaces: HashMap<(u32, u32), u32>,
    flows: HashMap<Flow, Vec<Held>>,
    order: VecDeque<(u64, Flow)>,
    held: usize,
    keep_ns: u64,
    max_file: u64,
    written: u64,
    clock: WallClock,
    file: String,
    flows_written: u64,
    packets_written: u64,
    packets_not_written: u64,
    /// Keep payload bytes as captured (`--write-pcap-raw`).
    raw: bool,
    /// The URL path may stay (`--show-path`).
    keep_path: bool,
    packets_masked: u64,
}

impl PcapEvidence {
    /// `keep`: how long a connection's packets wait for a verdict; `raw`:
    /// write payload bytes as captured, secrets included; `keep_path`: the
    /// URL path may stay when masking (`--show-path`).
    pub fn create(
        path: &Path,
        max_bytes: u64,
        keep: Duration,
        clock: WallClock,
        (raw, keep_path): (bool, bool),
    ) -> Result<Self> {
        let file = File::create(path)
            .with_context(|| format!("creating --write-pcap file {}", path.display()))?;
        let writer =
            PcapNgWriter::new(BufWriter::new(file)).context("writing the pcapng header")?;
        Ok(Self {
            writer,
            interfaces: HashMap::new(),
            flows: HashMap::new(),
            order: VecDeque::new(),
            held: 0,
            keep_ns: u64::try_from(keep.as_nanos()).unwrap_or(u64::MAX),
            max_file: max_bytes,
            written: 0,
            clock,
            file: path.display().to_string(),
            flows_written: 0,
            packets_written: 0,
            packets_not_written: 0,
            raw,
            keep_path,
            packets_masked: 0,
        })
    }

    /// Hold a snapshot; later chunks of a long packet join their packet.
    pub fn add(&mut self, s: PacketSnap) {
        let packets = self.flows.entry(s.flow).or_insert_with(|| {
            self.order.push_back((s.ts_ns, s.flow));
            Vec::new()
        });
        let appended = match packets.last_mut() {
            Some(last)
                if s.offset > 0
                    && last.outbound == s.outbound
                    && last.wire_len == s.wire_len
                    && last.data.len() == s.offset as usize =>
            {
                last.data.extend_from_slice(&s.data);
                true
            }
            _ => false,
        };
        if appended {
            self.held += s.data.len();
        } else if s.offset == 0 && packets.len() < MAX_PER_FLOW {
            // (A later chunk whose first chunk is gone is dropped.)
            self.held += s.data.len();
            packets.push(Held {
                ts_ns: s.ts_ns,
                outbound: s.outbound,
                ifindex: s.ifindex,
                l2_len: s.l2_len,
                wire_len: s.wire_len,
                data: s.data,
            });
        }
        while self.held > MAX_HELD {
            let Some((_, old)) = self.order.pop_front() else {
                break;
            };
            self.drop_flow(&old);
        }
    }

    fn drop_flow(&mut self, flow: &Flow) {
        if let Some(p) = self.flows.remove(flow) {
            self.held -= p.iter().map(|h| h.data.len()).sum::<usize>();
        }
    }

    /// Forget connections whose verdict can no longer come.
    pub fn expire(&mut self, now_ns: u64) {
        while let Some(&(first, flow)) = self.order.front() {
            if now_ns < first + self.keep_ns {
                break;
            }
            self.order.pop_front();
            self.drop_flow(&flow);
        }
    }

    fn interface(&mut self, ifindex: u32, l2_len: u32) -> Result<u32> {
        if let Some(id) = self.interfaces.get(&(ifindex, l2_len)) {
            return Ok(*id);
        }
        let link = if l2_len == 14 {
            DataLink::ETHERNET
        } else {
            DataLink::RAW
        };
        let mut idb = InterfaceDescriptionBlock::new(link, 65_535);
        idb.options.push(InterfaceDescriptionOption::IfTsResol(9));
        self.writer.write_pcapng_block(idb)?;
        let id = u32::try_from(self.interfaces.len()).unwrap_or(u32::MAX);
        self.interfaces.insert((ifindex, l2_len), id);
        Ok(id)
    }

    /// A connection ended in a finding: write its packets.
    pub fn write_flow(&mut self, flow: &Flow) -> Result<()> {
        let Some(packets) = self.flows.remove(flow) else {
            return Ok(());
        };
        self.held -= packets.iter().map(|h| h.data.len()).sum::<usize>();
        let mut frames: Vec<redact::Frame> = Vec::with_capacity(packets.len());
        let mut meta = Vec::with_capacity(packets.len());
        for p in packets {
            frames.push(redact::Frame {
                outbound: p.outbound,
                l2_len: p.l2_len,
                data: p.data,
                comment: None,
            });
            meta.push((p.ts_ns, p.ifindex, p.l2_len, p.wire_len));
        }
        if !self.raw {
            self.packets_masked += redact::redact(&mut frames, self.keep_path);
        }
        let mut any = false;
        for (f, (ts_ns, ifindex, l2_len, wire_len)) in frames.into_iter().zip(meta) {
            let size = f.data.len() as u64 + 64 + f.comment.as_ref().map_or(0, |c| c.len() as u64);
            if self.written + size > self.max_file {
                self.packets_not_written += 1;
                continue;
            }
            let interface_id = self.interface(ifindex, l2_len)?;
            let unix_ns = self.clock.unix_ns(ts_ns);
            let options = f
                .comment
                .map(|c| vec![EnhancedPacketOption::Comment(Cow::Owned(c))])
                .unwrap_or_default();
            self.writer.write_pcapng_block(EnhancedPacketBlock {
                interface_id,
                timestamp: Duration::from_nanos(unix_ns),
                original_len: wire_len,
                data: Cow::Owned(f.data),
                options,
            })?;
            self.written += size;
            self.packets_written += 1;
            any = true;
        }
        if any {
            self.flows_written += 1;
        }
        Ok(())
    }

    /// Flush and report, for the summary line.
    pub fn finish(mut self) -> PcapReport {
        use std::io::Write;
        let flushed = self.writer.get_mut().flush().is_ok();
        PcapReport {
            complete: flushed && self.packets_not_written == 0,
            file: self.file,
            flows_written: self.flows_written,
            packets_written: self.packets_written,
            packets_not_written: self.packets_not_written,
            payload: if self.raw {
                PcapPayload::Raw
            } else {
                PcapPayload::Masked
            },
            packets_masked: self.packets_masked,
        }
    }
}
