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

use super::line::Line;
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

    fn render(&self, line: &Line) -> Option<String> {
        let mut s = match self.format {
            Format::Json => match serde_json::to_string(line) {
                Ok(s) => s,
                // Not expected (every field is a string, a number or a map
                // with string keys), and never a broken line if it happens.
                Err(e) => {
                    tracing::warn!("a line could not be written as JSON: {e}");
                    return None;
                }
            },
            Format::Pretty => crate::output::pretty::render(line),
        };
        s.push('\n');
        Some(s)
    }

    /// Queue a line without ever blocking; a full buffer counts a dropped line.
    pub fn emit(&self, v: &Line) {
        let (Some(tx), Some(text)) = (&self.tx, self.render(v)) else {
            return;
        };
        match tx.try_send(text) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => self.closed.store(true, Ordering::SeqCst),
        }
    }

    /// Queue a line, waiting for room (start and summary lines).
    pub fn emit_wait(&self, v: &Line) {
        if let (Some(tx), Some(text)) = (&self.tx, self.render(v)) {
            if tx.send(text).is_err() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::lines;
    use serde_json::Value;
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
            sink.emit(&lines::loss(String::new(), i, i));
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
        assert_eq!(first["events_lost"], 0);
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
        sink.emit_wait(&lines::loss(String::new(), 1, 1));
        for _ in 0..100 {
            if sink.is_closed() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(sink.is_closed());
        sink.finish();
    }
}
