//! `--check-certs`: runs the certificate checks of [`crate::certcheck`] on a
//! worker thread, one per SNI per interval, so the event loop never waits on
//! a handshake; results come back as `cert_check` lines.

use std::{
    net::{IpAddr, SocketAddr},
    sync::mpsc::{channel, sync_channel, Receiver, SyncSender},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use super::{CertCheck, Limiter};

/// Handshake timeout of one check.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Checks waiting for the worker; beyond this, new server names wait for the
/// next interval (never a flood).
const QUEUE: usize = 16;

pub struct CertWatch {
    requests: SyncSender<(SocketAddr, String)>,
    results: Receiver<CertCheck>,
    limiter: Limiter,
}

impl CertWatch {
    pub fn start(interval: Duration) -> std::io::Result<Self> {
        let (requests, rx) = sync_channel::<(SocketAddr, String)>(QUEUE);
        let (tx, results) = channel();
        std::thread::Builder::new()
            .name("cert-check".into())
            .spawn(move || {
                for (addr, sni) in rx {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let check =
                        super::check(addr, &sni, TIMEOUT, i64::try_from(now).unwrap_or(i64::MAX));
                    if tx.send(check).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self {
            requests,
            results,
            limiter: Limiter::new(interval),
        })
    }

    /// A server name the edge asked for at `addr:port`: check it if due.
    pub fn saw(&mut self, addr: IpAddr, port: u16, sni: &str) {
        if self.limiter.due(sni, Instant::now()) {
            // A full queue: the name is checked again at its next interval.
            let _ = self
                .requests
                .try_send((SocketAddr::new(addr, port), sni.to_owned()));
        }
    }

    /// Checks finished since the last call.
    pub fn finished(&self) -> Vec<CertCheck> {
        self.results.try_iter().collect()
    }

    /// Wait up to `limit` for checks still running (at exit).
    pub fn finish(self, limit: Duration) -> Vec<CertCheck> {
        drop(self.requests);
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.results.recv_timeout(left) {
                Ok(c) => out.push(c),
                Err(_) => break,
            }
        }
        out
    }
}
