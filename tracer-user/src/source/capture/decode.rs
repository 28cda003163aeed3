//! One captured frame to addresses, TCP header fields or an ICMP error's
//! quoted TCP segment, for every link type a capture of this host may carry
//! (Ethernet, Linux cooked SLL and SLL2, raw IP, BSD loopback), with etherparse.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};
use pcap_file::DataLink;

/// The TCP segment an ICMP error quotes (the edge's segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quoted {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport<'a> {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        seq: u32,
        ack: u32,
        payload: &'a [u8],
    },
    /// ICMP(v6) destination unreachable about a TCP segment.
    IcmpUnreach {
        v6: bool,
        icmp_type: u8,
        code: u8,
        quoted: Quoted,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub transport: Transport<'a>,
}

/// Why a frame was skipped (counted in the summary).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// The capture's link type is not one origin-tracer reads.
    UnsupportedLinkType,
    /// The headers are cut short (snap length or damage).
    TruncatedHeaders,
    /// The headers do not parse.
    Malformed,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::UnsupportedLinkType => "unsupported_link_type",
            Skip::TruncatedHeaders => "truncated_headers",
            Skip::Malformed => "malformed",
        }
    }
}

fn lax(link: DataLink, data: &[u8]) -> Result<LaxSlicedPacket<'_>, Skip> {
    let short = |n: usize| {
        if data.len() < n {
            Err(Skip::TruncatedHeaders)
        } else {
            Ok(())
        }
    };
    match link {
        DataLink::ETHERNET => {
            LaxSlicedPacket::from_ethernet(data).map_err(|_| Skip::TruncatedHeaders)
        }
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => {
            LaxSlicedPacket::from_ip(data).map_err(|_| Skip::Malformed)
        }
        DataLink::LINUX_SLL => {
            short(16)?;
            let proto = u16::from_be_bytes([data[14], data[15]]);
            Ok(LaxSlicedPacket::from_ether_type(
                EtherType(proto),
                &data[16..],
            ))
        }
        DataLink::LINUX_SLL2 => {
            short(20)?;
            let proto = u16::from_be_bytes([data[0], data[1]]);
            Ok(LaxSlicedPacket::from_ether_type(
                EtherType(proto),
                &data[20..],
            ))
        }
        DataLink::NULL | DataLink::LOOP => {
            short(4)?;
            LaxSlicedPacket::from_ip(&data[4..]).map_err(|_| Skip::Malformed)
        }
        _ => Err(Skip::UnsupportedLinkType),
    }
}

fn quoted(v6: bool, q: &[u8]) -> Option<Quoted> {
    let (src, dst, l4): (IpAddr, IpAddr, &[u8]) = if v6 {
        if q.len() < 40 || q[0] >> 4 != 6 || q[6] != 6 {
            return None;
        }
        let s: [u8; 16] = q[8..24].try_into().ok()?;
        let d: [u8; 16] = q[24..40].try_into().ok()?;
        (Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into(), &q[40..])
    } else {
        let ihl = usize::from(q.first()? & 0x0f) * 4;
        if q.len() < 20 || q[0] >> 4 != 4 || q[9] != 6 || ihl < 20 {
            return None;
        }
        let src = Ipv4Addr::new(q[12], q[13], q[14], q[15]);
        let dst = Ipv4Addr::new(q[16], q[17], q[18], q[19]);
        (src.into(), dst.into(), q.get(ihl..)?)
    };
    // RFC 792: at least 8 bytes of the transport header are quoted.
    let th = l4.get(..8)?;
    Some(Quoted {
        src,
        dst,
        sport: u16::from_be_bytes([th[0], th[1]]),
        dport: u16::from_be_bytes([th[2], th[3]]),
        seq: u32::from_be_bytes([th[4], th[5], th[6], th[7]]),
    })
}

/// Decode a frame. `Ok(None)`: a well-formed frame of no interest (ARP, UDP,
/// other ICMP ...).
pub fn decode(link: DataLink, data: &[u8]) -> Result<Option<Decoded<'_>>, Skip> {
    let p = lax(link, data)?;
    let Some(net) = &p.net else {
        return match p.stop_err {
            Some(_) => Err(Skip::TruncatedHeaders),
            None => Ok(None),
        };
    };
    let (src, dst): (IpAddr, IpAddr) = match net {
        LaxNetSlice::Ipv4(v4) => (
            v4.header().source_addr().into(),
            v4.header().destination_addr().into(),
        ),
        LaxNetSlice::Ipv6(v6) => (
            v6.header().source_addr().into(),
            v6.header().destination_addr().into(),
        ),
    };
    let transport = match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            let flags = u8::from(t.fin())
                | u8::from(t.syn()) << 1
                | u8::from(t.rst()) << 2
                | u8::from(t.psh()) << 3
                | u8::from(t.ack()) << 4;
            Transport::Tcp {
                sport: t.source_port(),
                dport: t.destination_port(),
                flags,
                seq: t.sequence_number(),
                ack: t.acknowledgment_number(),
                payload: t.payload(),
            }
        }
        Some(TransportSlice::Icmpv4(i)) if i.type_u8() == 3 => match quoted(false, i.payload()) {
            Some(q) => Transport::IcmpUnreach {
                v6: false,
                icmp_type: 3,
                code: i.code_u8(),
                quoted: q,
            },
            None => return Ok(None),
        },
        Some(TransportSlice::Icmpv6(i)) if i.type_u8() == 1 => match quoted(true, i.payload()) {
            Some(q) => Transport::IcmpUnreach {
                v6: true,
                icmp_type: 1,
                code: i.code_u8(),
                quoted: q,
            },
            None => return Ok(None),
        },
        Some(_) => return Ok(None),
        None => {
            // A TCP packet whose header did not fit in the capture.
            let proto = match net {
                LaxNetSlice::Ipv4(v4) => v4.header().protocol().0,
                LaxNetSlice::Ipv6(v6) => v6.payload().ip_number.0,
            };
            return if proto == 6 && p.stop_err.is_some() {
                Err(Skip::TruncatedHeaders)
            } else {
                Ok(None)
            };
        }
    };
    Ok(Some(Decoded {
        src,
        dst,
        transport,
    }))
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
