//! Output: renders lines (JSON or pretty) and writes them from a thread of
//! its own, so a slow pipe or log shipper never stalls the agent. Lines beyond
//! the buffer are counted (`lines_dropped` in the summary), never silent.

use std::{
    io::{self, Write},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{sync_channel, SyncSender, TrySendError},
        Arc,
    },
    thread::JoinHandle,
};

use serde_json::Value;

use crate::cli::Format;

pub struct Sink {
    format: Format,
    tx: Option<SyncSender<String>>,
    dropped: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
}

impl Sink {
    /// Write to stdout; `capacity` lines may wait while stdout is slow.
    pub fn stdout(format: Format, capacity: usize) -> Self {
        Self::new(io::stdout(), format, capacity)
    }

    pub fn new<W: Write + Send + 'static>(mut out: W, format: Format, capacity: usize) -> Self {
        let (tx, rx) = sync_channel::<String>(capacity);
        let closed = Arc::new(AtomicBool::new(false));
        let closed_w = Arc::clone(&closed);
        let writer = std::thread::Builder::new()
            .name("sink".into())
            .spawn(move || {
                while let Ok(line) = rx.recv() {
                    let mut ok = out.write_all(line.as_bytes()).is_ok();
                    // Flush when nothing else is queued: a line is never held back.
                    let mut pending = rx.try_iter().peekable();
                    while ok {
                        match pending.next() {
                            Some(more) => ok = out.write_all(more.as_bytes()).is_ok(),
                            None => break,
                        }
                    }
                    if !ok || out.flush().is_err() {
                        // Broken pipe (`origin-tracer | head`): stop quietly.
                        closed_w.store(true, Ordering::SeqCst);
                        break;
                    }
                }
            })
            .expect("spawn sink thread");
        Self {
            format,
            tx: Some(tx),
            dropped: Arc::default(),
            closed,
            writer: Some(writer),
        }
    }

    fn render(&self, v: &Value) -> String {
        let mut s = match self.format {
            Format::Json => v.to_string(),
            Format::Pretty => pretty(v),
        };
        s.push('\n');
        s
    }

    /// Queue a line without ever blocking; a full buffer counts a dropped line.
    pub fn emit(&self, v: &Value) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(self.render(v)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => self.closed.store(true, Ordering::SeqCst),
        }
    }

    /// Queue a line, waiting for room (start and summary lines).
    pub fn emit_wait(&self, v: &Value) {
        if let Some(tx) = &self.tx {
            if tx.send(self.render(v)).is_err() {
                self.closed.store(true, Ordering::SeqCst);
            }
        }
    }

    /// The reader went away (broken pipe).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Write out everything queued and stop the writer.
    pub fn finish(mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn endpoint(flow: &Value, addr: &str, port: &str) -> String {
    let a = s(flow, addr);
    let p = flow.get(port).and_then(Value::as_u64).unwrap_or(0);
    if a.contains(':') {
        format!("[{a}]:{p}")
    } else {
        format!("{a}:{p}")
    }
}

fn flow_text(v: &Value) -> String {
    let f = &v["flow"];
    format!(
        "{} -> {}",
        endpoint(f, "src", "sport"),
        endpoint(f, "dst", "dport")
    )
}

fn evidence_text(e: &Value) -> String {
    let mut t = s(e, "event").to_owned();
    for key in ["reason", "direction", "segment"] {
        if let Some(x) = e.get(key).and_then(Value::as_str) {
            t.push(' ');
            t.push_str(x);
        }
    }
    if let Some(name) = e.pointer("/icmp/name").and_then(Value::as_str) {
        t.push(' ');
        t.push_str(name);
    }
    if let (Some(from), Some(to)) = (
        e.get("from").and_then(Value::as_str),
        e.get("to").and_then(Value::as_str),
    ) {
        t.push_str(&format!(" {from}->{to}"));
    }
    if let Some(q) = e.pointer("/queue/accept_queue").and_then(Value::as_u64) {
        t.push_str(&format!(" accept_queue={q}"));
    }
    if let Some(t_us) = e.get("t_us").and_then(Value::as_u64) {
        t.push_str(&format!(" +{t_us}us"));
    }
    if let Some(r) = e.get("repeat").and_then(Value::as_u64) {
        t.push_str(&format!(" x{r}"));
    }
    t
}

fn time_of(v: &Value) -> &str {
    let ts = s(v, "ts");
    ts.get(11..23).unwrap_or(ts)
}

/// One human-readable rendering of a schema line.
pub fn pretty(v: &Value) -> String {
    match s(v, "type") {
        "start" if s(v, "source") == "capture" => format!(
            "origin-tracer {}: analysing {} for ports {} ({} IPv4 + {} IPv6 edge prefixes{})",
            s(v, "version"),
            s(v, "capture_file"),
            v["ports"]
                .as_array()
                .map(|p| p
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","))
                .unwrap_or_default(),
            v["edge_prefixes"]["ipv4"],
            v["edge_prefixes"]["ipv6"],
            if v["all_sources"].as_bool() == Some(true) {
                ", all sources"
            } else {
                ""
            },
        ),
        "inconclusive" => {
            let evidence: Vec<String> = v["evidence"]
                .as_array()
                .into_iter()
                .flatten()
                .map(evidence_text)
                .collect();
            format!(
                "{} inconclusive {}\n    evidence: {}\n    why: {}",
                time_of(v),
                flow_text(v),
                evidence.join(", "),
                s(v, "reason")
            )
        }
        "start" => {
            let ifaces: Vec<&str> = v["interfaces"]
                .as_array()
                .map(|a| a.iter().filter_map(|i| i["name"].as_str()).collect())
                .unwrap_or_default();
            let mut skipped = Vec::new();
            let mut attached = 0;
            for p in v["probes"].as_array().into_iter().flatten() {
                if s(p, "status") == "attached" {
                    attached += 1;
                } else {
                    skipped.push(format!("{} ({})", s(p, "name"), s(p, "reason")));
                }
            }
            let mut out = format!(
                "origin-tracer {} on Linux {}: watching {} ports {} ({} IPv4 + {} IPv6 edge prefixes{}), {} probes attached via {}",
                s(v, "version"),
                s(v, "kernel"),
                ifaces.join(","),
                v["ports"].as_array().map(|p| p.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")).unwrap_or_default(),
                v["edge_prefixes"]["ipv4"],
                v["edge_prefixes"]["ipv6"],
                if v["all_sources"].as_bool() == Some(true) { ", all sources" } else { "" },
                attached,
                s(v, "attach_mode"),
            );
            if !skipped.is_empty() {
                out.push_str(&format!("\n  skipped: {}", skipped.join("; ")));
            }
            for stale in v["stale_removed"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "\n  removed leftover of an earlier run: {}",
                    stale.as_str().unwrap_or("")
                ));
            }
            out
        }
        "finding" => {
            let evidence: Vec<String> = v["evidence"]
                .as_array()
                .into_iter()
                .flatten()
                .map(evidence_text)
                .collect();
            format!(
                "{} {} {} [{}] {}\n    evidence: {}\n    hint: {}",
                time_of(v),
                s(v, "class"),
                s(v, "cause"),
                s(v, "confidence"),
                flow_text(v),
                evidence.join(", "),
                s(v, "hint")
            )
        }
        "event" => format!("{} event {} {}", time_of(v), evidence_text(v), flow_text(v)),
        "loss" => format!(
            "{} WARNING: {} kernel events lost (ring buffer full), {} in all",
            time_of(v),
            v["events_lost"],
            v["events_lost_total"]
        ),
        "summary" => {
            let causes: Vec<String> = v["findings"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, n)| n.as_u64() != Some(0))
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            if s(v, "source") == "capture" {
                let skipped: u64 = v["capture"]["packets_skipped"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(_, n)| n.as_u64())
                    .sum();
                return format!(
                    "summary: {} findings{}, {} healthy handshakes, {} inconclusive, {} packets read, {} skipped{}",
                    v["findings_total"],
                    if causes.is_empty() { String::new() } else { format!(" ({})", causes.join(", ")) },
                    v["healthy_handshakes"],
                    v["pending_at_exit"],
                    v["capture"]["packets"],
                    skipped,
                    v["capture"]["damage"].as_str().map(|d| format!("; {d}")).unwrap_or_default()
                );
            }
            format!(
                "summary: {} findings{}, {} healthy handshakes, {} kernel events, {} lost, {} pending at exit",
                v["findings_total"],
                if causes.is_empty() { String::new() } else { format!(" ({})", causes.join(", ")) },
                v["healthy_handshakes"],
                v["events_received"],
                v["events_lost"],
                v["pending_at_exit"]
            )
        }
        _ => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;

    /// A writer that blocks until released, then records everything.
    #[derive(Clone, Default)]
    struct Slow {
        gate: Arc<Mutex<()>>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Slow {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let _g = self.gate.lock().unwrap();
            self.out.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_slow_reader_loses_nothing_within_the_buffer_and_counts_the_rest() {
        let slow = Slow::default();
        let hold = slow.gate.lock().unwrap();
        let sink = Sink::new(slow.clone(), Format::Json, 100);
        for i in 0..150 {
            sink.emit(&json!({"type": "event", "n": i}));
        }
        // The writer holds at most one line outside the queue.
        assert!((49..=50).contains(&sink.dropped()), "{}", sink.dropped());
        drop(hold);
        let dropped = sink.dropped();
        sink.finish();
        let text = String::from_utf8(slow.out.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count() as u64, 150 - dropped);
        // Order is kept.
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["n"], 0);
    }

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_broken_pipe_closes_quietly() {
        let sink = Sink::new(Broken, Format::Json, 4);
        sink.emit_wait(&json!({"type": "start"}));
        for _ in 0..100 {
            if sink.is_closed() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(sink.is_closed());
        sink.finish();
    }

    #[test]
    fn pretty_finding_names_cause_flow_and_hint() {
        let v = json!({"type":"finding","ts":"2026-11-21T16:00:00.123456Z","class":"521","cause":"no_listener",
            "confidence":"high","flow":{"src":"2001:db8::1","sport":4000,"dst":"2001:db8::2","dport":81,"family":"ipv6"},
            "evidence":[{"t_us":0,"event":"syn_in"},{"t_us":30,"event":"kernel_drop","reason":"NO_SOCKET","direction":"in","segment":"SYN"}],
            "hint":"check ss"});
        let p = pretty(&v);
        assert!(
            p.starts_with(
                "16:00:00.123 521 no_listener [high] [2001:db8::1]:4000 -> [2001:db8::2]:81"
            ),
            "{p}"
        );
        assert!(p.contains("kernel_drop NO_SOCKET in SYN +30us"), "{p}");
        assert!(p.contains("hint: check ss"));
    }
}
