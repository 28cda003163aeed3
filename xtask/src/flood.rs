//! The SYN-flood part of `cargo xtask bench`: pnet-crafted SYNs from many
//! spoofed edge addresses of the lab (198.18.N.0/24) at the origin, to see
//! what the agent costs and that every event it could not take is reported.

#![expect(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    reason = "packet counters: rates, and wrapping sequence numbers on purpose"
)]

use std::{
    fs,
    net::{IpAddr, Ipv4Addr},
    os::fd::AsRawFd,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use integration_tests::{Agent, Lab};
use pnet::packet::{
    ip::IpNextHeaderProtocols,
    ipv4::{self, MutableIpv4Packet},
    tcp::{self, MutableTcpPacket, TcpFlags},
};
use pnet::transport::{transport_channel, TransportChannelType::Layer3};

const FLOOD: Duration = Duration::from_secs(3);

fn syn(buf: &mut [u8; 40], src: Ipv4Addr, dst: Ipv4Addr, sport: u16, seq: u32) {
    {
        let mut ip = MutableIpv4Packet::new(&mut buf[..]).expect("40 bytes hold an IPv4 header");
        ip.set_version(4);
        ip.set_header_length(5);
        ip.set_total_length(40);
        ip.set_ttl(64);
        ip.set_next_level_protocol(IpNextHeaderProtocols::Tcp);
        ip.set_source(src);
        ip.set_destination(dst);
        let c = ipv4::checksum(&ip.to_immutable());
        ip.set_checksum(c);
    }
    let mut t = MutableTcpPacket::new(&mut buf[20..]).expect("20 bytes hold a TCP header");
    t.set_source(sport);
    t.set_destination(80);
    t.set_sequence(seq);
    t.set_data_offset(5);
    t.set_flags(TcpFlags::SYN);
    t.set_window(64_240);
    let c = tcp::ipv4_checksum(&t.to_immutable(), &src, &dst);
    t.set_checksum(c);
}

/// Send SYNs from 198.18.N.2..254 (not the origin's .2) for `FLOOD`; returns the count.
fn flood(lab: &Lab) -> Result<u64> {
    let ns = fs::File::open(Path::new("/var/run/netns").join(lab.edge.name()))?;
    let (origin, n) = (lab.origin_v4, lab.n);
    let handle = std::thread::spawn(move || -> Result<u64> {
        // SAFETY: setns on this thread only, with a valid namespace fd.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        let (mut tx, _rx) =
            transport_channel(1 << 16, Layer3(IpNextHeaderProtocols::Tcp)).context("raw socket")?;
        let start = Instant::now();
        let mut sent = 0u64;
        let mut buf = [0u8; 40];
        while start.elapsed() < FLOOD {
            for _ in 0..1_000 {
                let host = 3 + (sent % 250) as u8;
                let src = Ipv4Addr::new(198, 18, n, host);
                syn(
                    &mut buf,
                    src,
                    origin,
                    1_024 + (sent % 60_000) as u16,
                    sent as u32,
                );
                let packet = pnet::packet::ipv4::Ipv4Packet::new(&buf).expect("40 bytes");
                if tx.send_to(packet, IpAddr::V4(origin)).is_ok() {
                    sent += 1;
                }
            }
        }
        Ok(sent)
    });
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("flood thread panicked"))?
}

pub fn run(bin: &Path, cpu_rss: impl Fn(i32) -> (f64, u64)) -> Result<()> {
    let lab = Lab::new("flood");
    let _nginx = integration_tests::Nginx::start(&lab, &[80], None);
    let ranges = format!("198.18.{}.0/24", lab.n);
    let mut agent = Agent::start_with(
        bin,
        &lab,
        &[
            "--format",
            "json",
            "--edge-ranges",
            &ranges,
            "--syn-timeout",
            "2s",
            "--max-flows",
            "50000",
        ],
        false,
    );
    agent.wait_start(Duration::from_secs(20));
    let (cpu0, _) = cpu_rss(agent.pid());
    let sent = flood(&lab)?;
    std::thread::sleep(Duration::from_millis(500));
    let (cpu1, rss) = cpu_rss(agent.pid());
    let lines = agent.stop(libc::SIGINT);
    let s = lines
        .iter()
        .find(|l| l["type"] == "summary")
        .cloned()
        .unwrap_or_default();
    let losses: u64 = lines
        .iter()
        .filter(|l| l["type"] == "loss")
        .filter_map(|l| l["events_lost"].as_u64())
        .sum();
    println!(
        "\nSYN flood (pnet, spoofed sources in {ranges}, {}s):",
        FLOOD.as_secs()
    );
    println!(
        "  {sent} SYNs sent ({:.0}/s); agent CPU {:.0} ms ({:.2} us per SYN), RSS {rss} KiB",
        sent as f64 / FLOOD.as_secs_f64(),
        (cpu1 - cpu0) * 1e3,
        (cpu1 - cpu0) * 1e6 / (sent.max(1) as f64)
    );
    println!(
        "  agent: {} events read, {} lost (reported in {} loss lines: {losses}), {} flows evicted from the agent's table, {} findings, {} pending at exit",
        s["events_received"],
        s["events_lost"],
        lines.iter().filter(|l| l["type"] == "loss").count(),
        s["flows_evicted"],
        s["findings_total"],
        s["pending_at_exit"]
    );
    let k = &s["in_kernel"];
    println!(
        "  kernel: {} connections handed over ({}), {} forgotten by its full flow map",
        k["handed_over"], k["handed_over_by"], k["flows_evicted"]
    );
    Ok(())
}
