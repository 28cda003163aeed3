//! The HTTP and TLS loads' client, run as `xtask bench-client` (a hidden
//! subcommand of the xtask built in release, so that the client's own TLS
//! is not what limits the rate) in the lab's edge namespace: it drives one
//! load for a while and prints what it did as one JSON line.

#![expect(
    clippy::cast_precision_loss,
    reason = "rates of counts, far below 2^52"
)]

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{
    loads::{Done, Load},
    tls_client::{self, TlsClient},
};

/// nginx closes a kept-alive connection after this many requests
/// (`keepalive_requests`' default): the client opens another.
const KEEPALIVE_REQUESTS: u64 = 1000;

/// `xtask bench-client`'s arguments.
#[derive(clap::Args)]
pub struct ClientArgs {
    #[arg(long, value_enum)]
    load: Load,
    /// The origin's address and port.
    #[arg(long)]
    target: SocketAddr,
    /// How long to drive the load, in seconds.
    #[arg(long)]
    secs: f64,
    /// The CA the origin's certificate is signed by (TLS loads).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The origin's name on its certificate (SNI).
    #[arg(long, default_value = "origin.lab")]
    name: String,
}

impl ClientArgs {
    /// The arguments that make `xtask bench-client` drive `load`.
    pub fn command_line(
        load: Load,
        target: SocketAddr,
        length: Duration,
        ca: &std::path::Path,
        name: &str,
    ) -> Vec<String> {
        let load = clap::ValueEnum::to_possible_value(&load)
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default();
        vec![
            "bench-client".into(),
            "--load".into(),
            load,
            "--target".into(),
            target.to_string(),
            "--secs".into(),
            length.as_secs_f64().to_string(),
            "--ca".into(),
            ca.to_string_lossy().into_owned(),
            "--name".into(),
            name.into(),
        ]
    }
}

/// `xtask bench-client`: drives the load, prints one JSON line.
pub fn main(args: &ClientArgs) -> Result<()> {
    let tls = match (&args.ca, args.load) {
        (Some(ca), Load::TlsHandshakes | Load::TlsKeepAlive) => {
            Some(TlsClient::new(ca, &args.name)?)
        }
        (None, Load::TlsHandshakes | Load::TlsKeepAlive) => bail!("a TLS load needs --ca"),
        _ => None,
    };
    let length = Duration::from_secs_f64(args.secs);
    let done = client(args.target, tls.as_ref(), args.load, length)?;
    println!(
        "{}",
        serde_json::json!({
            "rate": done.rate,
            "requests": done.requests,
            "connections": done.connections,
        })
    );
    Ok(())
}

fn client(addr: SocketAddr, tls: Option<&TlsClient>, load: Load, length: Duration) -> Result<Done> {
    let tls = || tls.context("no TLS client");
    let start = Instant::now();
    let deadline = start + length;
    let (mut requests, mut connections) = (0u64, 0u64);
    while Instant::now() < deadline {
        let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        connections += 1;
        match load {
            Load::Connections => requests += close_request(tcp)?,
            Load::KeepAlive => requests += keep_alive(&mut tcp, deadline)?.0,
            Load::TlsHandshakes => requests += close_request(tls()?.connect(tcp)?)?,
            Load::TlsKeepAlive => {
                let mut s = tls()?.connect(tcp)?;
                let (n, origin_closed) = keep_alive(&mut s, deadline)?;
                requests += n;
                if !origin_closed {
                    tls_client::close(s);
                }
            }
            Load::Bulk => bail!("iperf3 drives the bulk load"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(Done {
        rate: requests as f64 / secs,
        requests,
        connections,
        bytes: 0,
    })
}

/// One `Connection: close` request; reads until the origin closes.
fn close_request(mut s: impl Read + Write) -> Result<u64> {
    s.write_all(b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // A TLS peer that closes without close_notify.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
    }
    if !got.starts_with(b"HTTP/1.1 200") {
        bail!(
            "nginx answered {:?}",
            String::from_utf8_lossy(&got[..got.len().min(40)])
        );
    }
    Ok(1)
}

/// Requests on one connection until `deadline` or nginx's limit: (requests
/// answered, whether the origin closed the connection).
fn keep_alive(s: &mut (impl Read + Write), deadline: Instant) -> Result<(u64, bool)> {
    let mut buf = [0u8; 4096];
    let mut done = 0;
    while done < KEEPALIVE_REQUESTS && Instant::now() < deadline {
        s.write_all(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n")?;
        if !read_response(s, &mut buf)? {
            return Ok((done, true));
        }
        done += 1;
    }
    Ok((done, done == KEEPALIVE_REQUESTS))
}

/// Read one response with a `Content-Length`; false if the server closed.
fn read_response(s: &mut impl Read, buf: &mut [u8]) -> Result<bool> {
    let mut got = Vec::new();
    loop {
        let n = match s.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Ok(false);
        }
        got.extend_from_slice(&buf[..n]);
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .context("a response without Content-Length")?;
        if got.len() >= end + 4 + length {
            return Ok(true);
        }
    }
}
