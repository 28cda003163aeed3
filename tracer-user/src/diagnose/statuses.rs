//! The origin's own 5xx responses (`origin_error_status`): an origin that
//! answers 10,000 503s a second gives at most one finding line per status
//! and port per 10 seconds, with how many it stands for and an example
//! flow; the summary counts every one.

use std::collections::HashMap;

use super::{
    finding::{Cause, Confidence, Finding},
    flow::FlowState,
};
use crate::source::event::Flow;

/// At most one line per status and port this often.
pub const WINDOW_NS: u64 = 10_000_000_000;

/// One (status, port)'s window.
#[derive(Debug)]
struct Window {
    /// When its last line was written.
    last_line_ns: u64,
    /// Responses since, and the first of them (the example).
    pending: u64,
    example: Option<Finding>,
}

/// The 5xx responses seen and the lines they are owed.
#[derive(Debug, Default)]
pub struct Statuses {
    windows: HashMap<(u16, u16), Window>,
    /// Lines ready for the next tick.
    ready: Vec<Finding>,
}

impl Statuses {
    /// A 5xx response (its finding, count 1): written now if the window of
    /// its status and port allows, else counted into the next line.
    pub fn saw(&mut self, finding: Finding, status: u16) {
        let key = (status, finding.flow.origin_port);
        let at = finding.ts_ns;
        match self.windows.get_mut(&key) {
            Some(w) if at < w.last_line_ns + WINDOW_NS => {
                w.pending += 1;
                w.example.get_or_insert(finding);
            }
            old => {
                if let Some(w) = old.filter(|w| w.pending > 0) {
                    if let Some(mut f) = w.example.take() {
                        f.count = Some(w.pending);
                        f.ts_ns = f.ts_ns.max(w.last_line_ns + WINDOW_NS).min(at);
                        self.ready.push(f);
                    }
                }
                self.windows.insert(
                    key,
                    Window {
                        last_line_ns: at,
                        pending: 0,
                        example: None,
                    },
                );
                self.ready.push(finding);
            }
        }
    }

    /// The lines due at `now` (with `all`, every pending one: the run ends).
    pub fn due(&mut self, now_ns: u64, all: bool) -> Vec<Finding> {
        for w in self.windows.values_mut() {
            if w.pending > 0 && (all || now_ns >= w.last_line_ns + WINDOW_NS) {
                if let Some(mut f) = w.example.take() {
                    f.count = Some(w.pending);
                    // Dated when its window closed, not at its first response.
                    f.ts_ns = f.ts_ns.max(now_ns.min(w.last_line_ns + WINDOW_NS));
                    self.ready.push(f);
                }
                w.last_line_ns = now_ns;
                w.pending = 0;
            }
        }
        // Quiet windows are forgotten: the next response opens a new one.
        self.windows
            .retain(|_, w| w.pending > 0 || now_ns < w.last_line_ns + WINDOW_NS);
        std::mem::take(&mut self.ready)
    }
}

/// The finding for a 5xx response on `flow`, from its connection's state.
pub fn finding(flow: Flow, f: &FlowState, status: u16, ts_ns: u64) -> Finding {
    Finding {
        ts_ns,
        flow,
        cause: Cause::OriginErrorStatus,
        confidence: Confidence::High,
        evidence: f.timeline(),
        hint: hint(status, flow.origin_port),
        tls: None,
        http: f.app.http_facts(),
        count: Some(1),
    }
}

fn hint(status: u16, port: u16) -> String {
    let what = match status {
        500 => "the application failed on this request: check its error log",
        502 => "bad gateway: the server on this port could not get an answer from its upstream (PHP-FPM or the application server down or refusing: check its socket, its process and the web server's error log)",
        503 => "service unavailable: the application is overloaded, rate-limiting or in maintenance (worker pools, connection limits)",
        504 => "gateway timeout: the server on this port gave up waiting for its upstream (a slow application or database)",
        _ => "the server on this port answered with an error of its own: check its error log",
    };
    format!("the origin itself answered {status} on port {port}: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::finding::Cause;

    fn response(t_ns: u64, edge_port: u16) -> Finding {
        let flow = Flow {
            edge: "198.18.0.1".parse().unwrap(),
            edge_port,
            origin: "198.18.0.2".parse().unwrap(),
            origin_port: 80,
        };
        finding(flow, &FlowState::default(), 503, t_ns)
    }

    #[test]
    fn a_flood_of_503s_is_one_line_per_ten_seconds_with_exact_counts() {
        let mut s = Statuses::default();
        let mut lines = Vec::new();
        // 10,000 responses a second for 25 s, ticking every 50 ms.
        let mut t = 0;
        let mut n = 0u64;
        while t < 25_000_000_000 {
            for i in 0..500 {
                s.saw(response(t + i, 1_000 + u16::try_from(i).unwrap()), 503);
                n += 1;
            }
            t += 50_000_000;
            lines.extend(s.due(t, false));
        }
        lines.extend(s.due(t, true));
        assert!(lines.len() <= 4, "{} lines", lines.len());
        assert_eq!(lines.iter().map(|f| f.count.unwrap()).sum::<u64>(), n);
        assert!(lines.iter().all(|f| f.cause == Cause::OriginErrorStatus));
        // The first response is written at once, the rest when windows close.
        assert_eq!((lines[0].ts_ns, lines[0].count), (0, Some(1)));
        assert!(lines[1].ts_ns >= WINDOW_NS, "{}", lines[1].ts_ns);
    }

    #[test]
    fn counts_survive_responses_that_outrun_the_tick() {
        // A response every 7 ms for 31 s, ticks every 50 ms: windows often
        // expire between ticks, with responses already waiting.
        let mut s = Statuses::default();
        let (mut lines, mut n) = (Vec::new(), 0u64);
        for k in 0..31_000 / 7 {
            let t = k * 7_000_000;
            s.saw(response(t, 1), 503);
            n += 1;
            if t % 50_000_000 < 7_000_000 {
                lines.extend(s.due(t, false));
            }
        }
        lines.extend(s.due(u64::MAX / 2, true));
        assert_eq!(lines.iter().map(|f| f.count.unwrap()).sum::<u64>(), n);
        assert!(lines.len() <= 8, "{} lines", lines.len());
    }

    #[test]
    fn statuses_and_ports_have_their_own_windows() {
        let mut s = Statuses::default();
        s.saw(response(0, 1), 503);
        s.saw(response(1, 2), 502);
        s.saw(response(2, 3), 503);
        let now = s.due(3, false);
        assert_eq!(now.len(), 2, "the first 503 and the first 502");
        let end = s.due(4, true);
        assert_eq!(
            (end.len(), end[0].count, end[0].flow.edge_port),
            (1, Some(1), 3)
        );
        assert!(s.due(5, true).is_empty());
        assert!(response(0, 1).hint.contains("503 on port 80"));
    }
}
