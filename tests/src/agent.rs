//! The agent under test, run in the lab's origin namespace: its stdout lines
//! are collected (parsed as JSON) by a thread, its stderr kept for failure
//! messages.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::lab::Lab;
use crate::netns::{run_bounded, Outcome, Proc};

/// How long the agent may take to exit after SIGINT/SIGTERM.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

/// The agent binary from `$ORIGIN_TRACER_BIN`.
pub fn agent_bin() -> PathBuf {
    match std::env::var_os("ORIGIN_TRACER_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!("ORIGIN_TRACER_BIN is not set: run `cargo xtask test`"),
    }
}

#[derive(Default)]
struct Shared {
    lines: Vec<Value>,
    eof: bool,
}

/// A running agent; killed (SIGTERM, then SIGKILL) on drop. Its transcript
/// (arguments, stdout, stderr) is printed on drop when the test panics, or
/// always with `OTL_TRANSCRIPT=1` in the environment.
pub struct Agent {
    proc: Proc,
    args: Vec<String>,
    out: Arc<(Mutex<Shared>, Condvar)>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<thread::JoinHandle<()>>,
    echoed: bool,
}

impl Agent {
    /// Starts `$ORIGIN_TRACER_BIN --format json --edge-ranges <lab>
    /// --syn-timeout 3s <extra>` in the lab's origin namespace.
    pub fn start(lab: &Lab, extra: &[&str]) -> Agent {
        Agent::start_in_lab(lab, extra, &[])
    }

    /// Like [`Agent::start`], with `ORIGIN_TRACER_LOG=debug`: everything the
    /// agent logs lands in its stderr.
    pub fn start_debug(lab: &Lab, extra: &[&str]) -> Agent {
        Agent::start_in_lab(lab, extra, &[("ORIGIN_TRACER_LOG", "debug")])
    }

    fn start_in_lab(lab: &Lab, extra: &[&str], env: &[(&str, &str)]) -> Agent {
        let edge = lab.edge_ranges();
        let mut args = vec![
            "--format",
            "json",
            "--edge-ranges",
            &edge,
            "--syn-timeout",
            "3s",
        ];
        args.extend_from_slice(extra);
        Agent::spawn(&agent_bin(), lab, &args, None, env)
    }

    /// Starts `bin args` in the lab's origin namespace; with `echo`, every
    /// stdout line is also printed as it arrives.
    pub fn start_with(bin: &Path, lab: &Lab, args: &[&str], echo: bool) -> Agent {
        Agent::spawn(bin, lab, args, echo.then(String::new), &[])
    }

    /// Like [`Agent::start_with`], printing every stdout line after `prefix`.
    pub fn start_echoing(bin: &Path, lab: &Lab, args: &[&str], prefix: &str) -> Agent {
        Agent::spawn(bin, lab, args, Some(prefix.to_owned()), &[])
    }

    fn spawn(
        bin: &Path,
        lab: &Lab,
        args: &[&str],
        echo: Option<String>,
        env: &[(&str, &str)],
    ) -> Agent {
        let echoed = echo.is_some();
        let mut cmd = lab.origin.command(&bin.to_string_lossy());
        cmd.envs(env.iter().copied());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut proc = Proc::spawn("origin-tracer", &mut cmd);
        let stdout = proc.child_mut().stdout.take().expect("agent stdout");
        let stderr_pipe = proc.child_mut().stderr.take().expect("agent stderr");
        let out = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out_reader = {
            let out = Arc::clone(&out);
            thread::spawn(move || read_lines(stdout, &out, echo.as_deref()))
        };
        let err_reader = {
            let stderr = Arc::clone(&stderr);
            thread::spawn(move || {
                let mut buf = Vec::new();
                let mut pipe = stderr_pipe;
                let mut chunk = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    *lock(&stderr) = String::from_utf8_lossy(&buf).into_owned();
                }
            })
        };
        Agent {
            proc,
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            out,
            stderr,
            readers: vec![out_reader, err_reader],
            echoed,
        }
    }

    /// The agent's pid.
    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    /// What the agent wrote to stderr so far.
    pub fn stderr(&self) -> String {
        lock(&self.stderr).clone()
    }

    /// All stdout lines so far (non-JSON lines as JSON strings).
    pub fn lines(&self) -> Vec<Value> {
        lock(&self.out.0).lines.clone()
    }

    /// How many lines arrived so far, for [`Agent::wait_for_since`].
    pub fn mark(&self) -> usize {
        lock(&self.out.0).lines.len()
    }

    /// Waits for the `start` line; panics (with stderr) if the agent exits
    /// or writes something else first, or after `limit`.
    pub fn wait_start(&mut self, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(first) = lock(&self.out.0).lines.first() {
                assert!(
                    first["type"] == "start",
                    "first line is not `start`: {first}\nstderr:\n{}",
                    self.stderr()
                );
                return first.clone();
            }
            if let Some(status) = self.proc.try_wait() {
                // Let the readers catch the last words.
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "agent exited ({status}) before `start`; args {:?}\nstderr:\n{}\nstdout:\n{}",
                    self.args,
                    self.stderr(),
                    render(&self.lines())
                );
            }
            assert!(
                Instant::now() < deadline,
                "no `start` line after {limit:?}\nstderr:\n{}",
                self.stderr()
            );
            self.wait_change(Duration::from_millis(50));
        }
    }

    /// The first line (from the beginning) that satisfies `pred`, waiting up
    /// to `limit` for it.
    pub fn wait_for(&self, pred: impl Fn(&Value) -> bool, limit: Duration) -> Option<Value> {
        self.wait_for_since(0, pred, limit)
    }

    /// The first line at index `mark` or later that satisfies `pred`.
    pub fn wait_for_since(
        &self,
        mark: usize,
        pred: impl Fn(&Value) -> bool,
        limit: Duration,
    ) -> Option<Value> {
        let deadline = Instant::now() + limit;
        loop {
            crate::check_interrupted();
            {
                let shared = lock(&self.out.0);
                if let Some(v) = shared.lines.iter().skip(mark).find(|v| pred(v)) {
                    return Some(v.clone());
                }
                if shared.eof {
                    return None;
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            self.wait_change(Duration::from_millis(50));
        }
    }

    fn wait_change(&self, limit: Duration) {
        let (m, cv) = &*self.out;
        let guard = lock(m);
        let _ = cv.wait_timeout(guard, limit);
    }

    /// Sends `signal` (SIGINT or SIGTERM), waits for the agent to exit and
    /// returns every line it wrote. Panics if it does not exit within 10 s.
    pub fn stop(&mut self, signal: i32) -> Vec<Value> {
        self.proc.signal(signal);
        if self.proc.wait_timeout(EXIT_LIMIT).is_none() {
            self.proc.kill();
            self.join_readers();
            panic!(
                "agent did not exit within {EXIT_LIMIT:?} of signal {signal}\nstderr:\n{}\nstdout:\n{}",
                self.stderr(),
                render(&self.lines())
            );
        }
        self.join_readers();
        self.lines()
    }

    /// Kills the agent with SIGKILL; returns every line it wrote.
    pub fn kill9(&mut self) -> Vec<Value> {
        self.proc.signal(libc::SIGKILL);
        self.proc.kill();
        self.join_readers();
        self.lines()
    }

    /// The exit status, once it has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.proc.try_wait()
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }

    /// Everything the agent said, for failure messages.
    pub fn transcript(&self) -> String {
        format!(
            "args: {:?}\nstdout:\n{}\nstderr:\n{}",
            self.args,
            render(&self.lines()),
            self.stderr()
        )
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.proc.try_wait().is_none() {
            self.proc.signal(libc::SIGTERM);
            if self.proc.wait_timeout(Duration::from_secs(5)).is_none() {
                self.proc.kill();
            }
        }
        if thread::panicking() || std::env::var_os("OTL_TRANSCRIPT").is_some() {
            if self.echoed {
                // Its stdout is on the terminal already.
                eprintln!("---- origin-tracer stderr ----\n{}", self.stderr());
            } else {
                eprintln!("---- origin-tracer transcript ----\n{}", self.transcript());
            }
        }
    }
}

fn read_lines(stdout: impl Read, out: &(Mutex<Shared>, Condvar), echo: Option<&str>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(prefix) = echo {
            println!("{prefix}{line}");
        }
        let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
        lock(&out.0).lines.push(value);
        out.1.notify_all();
    }
    lock(&out.0).eof = true;
    out.1.notify_all();
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Lines as text, one a line.
pub fn render(lines: &[Value]) -> String {
    lines
        .iter()
        .map(|v| match v {
            Value::String(s) => format!("(not JSON) {s}"),
            v => v.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs the agent to completion (bounded by `limit`), in the lab's origin
/// namespace when `lab` is given, for tests of start-up errors.
pub fn run_once(lab: Option<&Lab>, args: &[&str], limit: Duration) -> Outcome {
    let bin = agent_bin();
    let mut cmd = match lab {
        Some(lab) => lab.origin.command(&bin.to_string_lossy()),
        None => std::process::Command::new(&bin),
    };
    cmd.args(args);
    run_bounded(&mut cmd, limit)
}
