//! The five loads of the side-by-side bench, driven from the lab's edge
//! namespace against its origin: new HTTP connections, keep-alive requests,
//! TLS 1.3 handshakes, keep-alive requests over TLS 1.3 (the Rust client of
//! [`super::client`]), and bulk throughput origin -> edge (`iperf3 -R`).

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use integration_tests::{netns::run_bounded, Lab};

use super::client::ClientArgs;

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Load {
    /// A new connection per request (`Connection: close`).
    Connections,
    /// Requests on kept-alive connections.
    KeepAlive,
    /// A new TLS 1.3 connection (full handshake) per request.
    TlsHandshakes,
    /// Requests on kept-alive TLS 1.3 connections.
    TlsKeepAlive,
    /// `iperf3 -R`: one connection carrying bulk data origin -> edge.
    Bulk,
}

pub const LOADS: [Load; 5] = [
    Load::Connections,
    Load::KeepAlive,
    Load::TlsHandshakes,
    Load::TlsKeepAlive,
    Load::Bulk,
];

/// The ports: nginx's plain and TLS ones, and iperf3's.
pub const HTTP_PORT: u16 = 80;
pub const TLS_PORT: u16 = 443;
pub const IPERF_PORT: u16 = 5201;

impl Load {
    pub fn name(self) -> &'static str {
        match self {
            Load::Connections => "new HTTP connections/s (`Connection: close`)",
            Load::KeepAlive => "keep-alive requests/s",
            Load::TlsHandshakes => "TLS 1.3 handshakes/s (full, `Connection: close`)",
            Load::TlsKeepAlive => "keep-alive TLS 1.3 requests/s",
            Load::Bulk => "bulk origin -> edge Gbit/s (`iperf3 -R`)",
        }
    }

    /// The origin port it loads, the one every observer watches.
    pub fn port(self) -> u16 {
        match self {
            Load::Connections | Load::KeepAlive => HTTP_PORT,
            Load::TlsHandshakes | Load::TlsKeepAlive => TLS_PORT,
            Load::Bulk => IPERF_PORT,
        }
    }

    /// A rate of this load as text, with its unit.
    pub fn rate(self, rate: f64) -> String {
        match self {
            Load::Bulk => format!("{rate:.2} Gbit/s"),
            _ => format!("{rate:.0}/s"),
        }
    }
}

/// What a load did in one phase.
#[derive(Clone, Copy, Debug, Default)]
pub struct Done {
    /// Requests per second, or Gbit/s for the bulk load.
    pub rate: f64,
    /// Requests answered (none for the bulk load).
    pub requests: u64,
    /// Connections opened (iperf3: its control and data connections).
    pub connections: u64,
    /// Bytes iperf3 received (the bulk load only).
    pub bytes: u64,
}

/// Where the loads go, and the client that drives them.
pub struct Target {
    pub origin: IpAddr,
    pub edge: IpAddr,
    /// The lab CA's certificate and the name on the origin's.
    pub ca: PathBuf,
    pub name: &'static str,
    /// The xtask built in release (`bench-client`).
    pub client: PathBuf,
}

/// Runs `load` for `length` (whole seconds for the bulk load).
pub fn drive(lab: &Lab, target: &Target, load: Load, length: Duration) -> Result<Done> {
    if load == Load::Bulk {
        return iperf3(lab, target, length);
    }
    let addr = SocketAddr::new(target.origin, load.port());
    let mut cmd = lab.edge.command(&target.client.to_string_lossy());
    cmd.args(ClientArgs::command_line(
        load,
        addr,
        length,
        &target.ca,
        target.name,
    ));
    let out = run_bounded(&mut cmd, length + Duration::from_secs(15));
    if !out.success() {
        bail!(
            "the load client failed ({}): {}",
            out.describe_status(),
            out.stderr.trim()
        );
    }
    let v: serde_json::Value =
        serde_json::from_str(out.stdout.trim()).context("the load client's JSON line")?;
    Ok(Done {
        rate: v["rate"].as_f64().unwrap_or(0.0),
        requests: v["requests"].as_u64().unwrap_or(0),
        connections: v["connections"].as_u64().unwrap_or(0),
        bytes: 0,
    })
}

/// The iperf3 client, run in the edge namespace from the edge address.
pub fn iperf3_args(target: &Target, secs: u64) -> Vec<String> {
    let (origin, edge) = (target.origin.to_string(), target.edge.to_string());
    let port = IPERF_PORT.to_string();
    let secs = secs.to_string();
    [
        "-c", &origin, "-p", &port, "-B", &edge, "-R", "-t", &secs, "-J",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn iperf3(lab: &Lab, target: &Target, length: Duration) -> Result<Done> {
    let secs = length.as_secs().max(1);
    let mut cmd = lab.edge.command("iperf3");
    cmd.args(iperf3_args(target, secs));
    let out = run_bounded(&mut cmd, length + Duration::from_secs(15));
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    if !out.success() {
        bail!(
            "iperf3 failed ({}): {} {}",
            out.describe_status(),
            v["error"].as_str().unwrap_or_default(),
            out.stderr.trim()
        );
    }
    let sum = &v["end"]["sum_received"];
    let bits = sum["bits_per_second"]
        .as_f64()
        .context("iperf3's JSON has no end.sum_received.bits_per_second")?;
    Ok(Done {
        rate: bits / 1e9,
        requests: 0,
        // The control connection and one data stream.
        connections: 2,
        bytes: sum["bytes"].as_u64().unwrap_or(0),
    })
}
