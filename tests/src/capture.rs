//! Captures of the lab's origin: tcpdump run in the origin namespace while
//! the live agent watches, and `origin-tracer analyze` run on what it wrote,
//! so that live and offline verdicts on the same connections can be compared.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::agent::{agent_bin, render};
use crate::lab::Lab;
use crate::netns::{run_bounded, Outcome, Proc};

/// How long tcpdump may take to start listening, and to exit after SIGINT.
const TCPDUMP_LIMIT: Duration = Duration::from_secs(10);

/// Where tcpdump listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tap {
    /// `-i any`: every interface of the origin, Linux cooked (SLL2) framing.
    Any,
    /// `-i <origin veth>`: the wire to the edge, Ethernet framing.
    OriginVeth,
}

/// A tcpdump writing a pcap file in the lab's origin namespace; killed on
/// drop if not stopped.
pub struct Tcpdump {
    proc: Proc,
    path: PathBuf,
    stderr: Arc<Mutex<String>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Tcpdump {
    /// Starts `tcpdump -i <tap> -w <lab dir>/<name>.pcap -U --immediate-mode`
    /// in the origin namespace; returns once it listens.
    pub fn start(lab: &Lab, tap: Tap, name: &str) -> Tcpdump {
        let iface = match tap {
            Tap::Any => "any".to_owned(),
            Tap::OriginVeth => lab.origin_veth.clone(),
        };
        let path = lab.dir().join(format!("{name}.pcap"));
        let mut cmd = lab.origin.command("tcpdump");
        // -Z root: write the file as root (the lab directory is root's);
        // --immediate-mode: every packet reaches the file before SIGINT.
        cmd.args([
            "-n",
            "-Z",
            "root",
            "-U",
            "--immediate-mode",
            "-i",
            &iface,
            "-w",
        ])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut proc = Proc::spawn("tcpdump", &mut cmd);
        let mut pipe = proc.child_mut().stderr.take().expect("tcpdump stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let reader = {
            let stderr = Arc::clone(&stderr);
            thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    *lock(&stderr) = String::from_utf8_lossy(&buf).into_owned();
                }
            })
        };
        let mut tcpdump = Tcpdump {
            proc,
            path,
            stderr,
            reader: Some(reader),
        };
        let deadline = Instant::now() + TCPDUMP_LIMIT;
        while !tcpdump.stderr().contains("listening on") {
            crate::check_interrupted();
            if let Some(status) = tcpdump.proc.try_wait() {
                thread::sleep(Duration::from_millis(100));
                panic!("tcpdump exited ({status}): {}", tcpdump.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "tcpdump does not listen after {TCPDUMP_LIMIT:?}: {}",
                tcpdump.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
        tcpdump
    }

    /// The capture file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What tcpdump wrote to stderr so far.
    pub fn stderr(&self) -> String {
        lock(&self.stderr).clone()
    }

    /// Stops tcpdump with SIGINT, waits for it to flush and exit, and
    /// returns its stderr (with its packet counts). Panics if it does not
    /// exit in time, fails, or says the kernel dropped packets.
    pub fn stop(mut self) -> String {
        self.proc.signal(libc::SIGINT);
        let status = self.proc.wait_timeout(TCPDUMP_LIMIT);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let stderr = self.stderr();
        let Some(status) = status else {
            self.proc.kill();
            panic!("tcpdump did not exit within {TCPDUMP_LIMIT:?} of SIGINT: {stderr}");
        };
        assert!(status.success(), "tcpdump failed ({status}): {stderr}");
        assert!(
            stderr
                .lines()
                .any(|l| l.trim() == "0 packets dropped by kernel"),
            "tcpdump lost packets, the capture is incomplete: {stderr}"
        );
        stderr
    }
}

/// Runs `$ORIGIN_TRACER_BIN analyze <file> --format json <args>` (no
/// namespace, no root needed) and returns its outcome and stdout lines
/// (non-JSON lines as JSON strings). Panics if it fails.
pub fn analyze(file: &Path, args: &[&str]) -> (Outcome, Vec<Value>) {
    let mut cmd = std::process::Command::new(agent_bin());
    cmd.arg("analyze")
        .arg(file)
        .args(["--format", "json"])
        .args(args);
    let out = run_bounded(&mut cmd, Duration::from_mins(1));
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| Value::String(l.to_owned())))
        .collect();
    assert!(
        out.success(),
        "origin-tracer analyze {} {args:?} failed ({}): {}\nstdout:\n{}",
        file.display(),
        out.describe_status(),
        out.stderr.trim(),
        render(&lines)
    );
    (out, lines)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
