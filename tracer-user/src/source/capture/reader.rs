//! Streaming reader of pcap and pcapng files (pcap-file): one packet at a
//! time with its link type and capture timestamp; damage ends the stream with
//! a reason instead of a panic, and memory does not grow with the file.

use std::{fs::File, io::Read, path::Path, time::Duration};

use pcap_file::{
    pcap::PcapReader,
    pcapng::{
        blocks::{interface_description::InterfaceDescriptionOption, Block},
        PcapNgReader,
    },
    DataLink, PcapError,
};

/// One captured packet.
#[derive(Debug)]
pub struct Captured<'a> {
    /// Unix time in nanoseconds, as the capture recorded it.
    pub ts_ns: u64,
    pub link: DataLink,
    /// The bytes captured (may be fewer than `orig_len`: a snap length).
    pub data: &'a [u8],
    pub orig_len: u32,
}

/// Why a capture cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {why}")]
    Io { path: String, why: String },
    /// Neither pcap nor pcapng magic.
    #[error("{path} is not a pcap or pcapng capture (magic {magic:02x?})")]
    NotACapture { path: String, magic: Vec<u8> },
    /// The file header is damaged.
    #[error("{path}: damaged capture header: {why}")]
    Header { path: String, why: String },
}

/// How reading ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReadEnd {
    /// Packets handed out.
    pub packets: u64,
    /// Why reading stopped before the end of the file, if it did.
    pub damage: Option<String>,
}

const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

const TRUNCATED: &str = "the file ends inside a packet record (truncated capture)";

fn damage(e: &PcapError) -> String {
    match e {
        PcapError::IncompleteBuffer => TRUNCATED.into(),
        PcapError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            TRUNCATED.into()
        }
        other => format!("damaged record: {other}"),
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// pcapng timestamps are in units of the interface's `if_tsresol`
/// (default microseconds); pcap-file hands them out as if they were ns.
fn scale(units: u64, tsresol: u8) -> u64 {
    let exp = u32::from(tsresol & 0x7f);
    if tsresol & 0x80 == 0 {
        if exp <= 9 {
            units.saturating_mul(10u64.pow(9 - exp))
        } else {
            units / 10u64.saturating_pow(exp - 9)
        }
    } else {
        let ns = (u128::from(units) * 1_000_000_000) >> exp.min(127);
        u64::try_from(ns).unwrap_or(u64::MAX)
    }
}

/// Read `path`, calling `each` for every packet in order.
pub fn read(path: &Path, mut each: impl FnMut(&Captured<'_>)) -> Result<ReadEnd, CaptureError> {
    let name = path.display().to_string();
    let io = |e: std::io::Error| CaptureError::Io {
        path: name.clone(),
        why: e.to_string(),
    };
    let mut file = File::open(path).map_err(io)?;
    let mut magic = [0u8; 4];
    let got = file.read(&mut magic).map_err(io)?;
    let file = File::open(path).map_err(io)?;
    let reader = std::io::BufReader::with_capacity(1 << 16, file);
    if got == 4 && PCAP_MAGICS.contains(&magic) {
        read_pcap(&name, reader, &mut each)
    } else if got == 4 && magic == PCAPNG_MAGIC {
        read_pcapng(&name, reader, &mut each)
    } else {
        Err(CaptureError::NotACapture {
            path: name,
            magic: magic[..got].to_vec(),
        })
    }
}

fn read_pcap<R: Read>(
    name: &str,
    r: R,
    each: &mut dyn FnMut(&Captured<'_>),
) -> Result<ReadEnd, CaptureError> {
    let mut reader = PcapReader::new(r).map_err(|e| CaptureError::Header {
        path: name.into(),
        why: e.to_string(),
    })?;
    let link = reader.header().datalink;
    let mut end = ReadEnd::default();
    while let Some(next) = reader.next_packet() {
        match next {
            Ok(p) => {
                end.packets += 1;
                each(&Captured {
                    ts_ns: nanos(p.timestamp),
                    link,
                    data: &p.data,
                    orig_len: p.orig_len,
                });
            }
            Err(e) => {
                end.damage = Some(damage(&e));
                break;
            }
        }
    }
    Ok(end)
}

fn read_pcapng<R: Read>(
    name: &str,
    r: R,
    each: &mut dyn FnMut(&Captured<'_>),
) -> Result<ReadEnd, CaptureError> {
    let mut reader = PcapNgReader::new(r).map_err(|e| CaptureError::Header {
        path: name.into(),
        why: e.to_string(),
    })?;
    // (link type, if_tsresol) per interface of the current section.
    let mut interfaces: Vec<(DataLink, u8)> = Vec::new();
    let mut end = ReadEnd::default();
    while let Some(next) = reader.next_block() {
        let block = match next {
            Ok(b) => b,
            Err(e) => {
                end.damage = Some(damage(&e));
                break;
            }
        };
        match block {
            Block::SectionHeader(_) => interfaces.clear(),
            Block::InterfaceDescription(idb) => {
                let resol = idb
                    .options
                    .iter()
                    .find_map(|o| match o {
                        InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                        _ => None,
                    })
                    .unwrap_or(6);
                interfaces.push((idb.linktype, resol));
            }
            Block::EnhancedPacket(epb) => {
                let Some(&(link, resol)) = usize::try_from(epb.interface_id)
                    .ok()
                    .and_then(|i| interfaces.get(i))
                else {
                    end.damage = Some(format!(
                        "packet for undeclared interface {}",
                        epb.interface_id
                    ));
                    break;
                };
                end.packets += 1;
                let ts_ns = scale(nanos(epb.timestamp), resol);
                each(&Captured {
                    ts_ns,
                    link,
                    data: &epb.data,
                    orig_len: epb.original_len,
                });
            }
            Block::SimplePacket(spb) => {
                // No timestamp: such packets keep the previous time.
                let Some(&(link, _)) = interfaces.first() else {
                    end.damage = Some("simple packet before any interface".into());
                    break;
                };
                end.packets += 1;
                each(&Captured {
                    ts_ns: 0,
                    link,
                    data: &spb.data,
                    orig_len: spb.original_len,
                });
            }
            _ => {}
        }
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcapng_resolutions() {
        assert_eq!(scale(1_500, 6), 1_500_000);
        assert_eq!(scale(7, 9), 7);
        assert_eq!(scale(3, 0), 3_000_000_000);
        assert_eq!(scale(1 << 20, 0x80 | 0x14), 1_000_000_000);
        assert_eq!(scale(5_000, 12), 5);
    }

    fn tmp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("otr-reader-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn garbage_and_empty_files_are_refused_clearly() {
        let e = read(&tmp("garbage", b"GET / HTTP/1.1\r\n"), |_| {}).unwrap_err();
        assert!(e.to_string().contains("not a pcap or pcapng"), "{e}");
        let e = read(&tmp("empty", b""), |_| {}).unwrap_err();
        assert!(matches!(e, CaptureError::NotACapture { .. }));
        let e = read(Path::new("/nonexistent/x.pcap"), |_| {}).unwrap_err();
        assert!(matches!(e, CaptureError::Io { .. }));
        // pcap magic, then a header cut short.
        let e = read(&tmp("short", &[0xd4, 0xc3, 0xb2, 0xa1, 2, 0]), |_| {}).unwrap_err();
        assert!(matches!(e, CaptureError::Header { .. }), "{e}");
    }
}
