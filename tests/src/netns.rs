//! Named network namespaces (`ip netns`), commands run inside them, and
//! guards for the background processes started there.
//!
//! Commands enter a namespace with `setns(CLONE_NEWNET)` only, not with
//! `ip netns exec`: the latter also remounts /sys, which hides tracefs and
//! bpffs from the agent under test.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Where `ip netns` keeps its namespaces.
const NETNS_DIR: &str = "/var/run/netns";

/// Prefix of every namespace a lab creates; with the owner's pid in the name
/// so that leftovers of a killed test run can be recognised and removed.
pub const PREFIX: &str = "otl-";

/// A named network namespace, deleted on drop together with every process
/// still inside it.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `name` (`ip netns add`).
    pub fn create(name: &str) -> Netns {
        host_ok("ip", &["netns", "add", name]);
        Netns {
            name: name.to_owned(),
        }
    }

    /// The namespace's name as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let path = PathBuf::from(NETNS_DIR).join(&self.name);
        let ns = File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let mut cmd = Command::new(program);
        cmd.env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY");
        // SAFETY: the closure runs between fork and exec and only calls
        // setns(2), which is async-signal-safe. The file (opened with
        // O_CLOEXEC) is owned by the closure, so its descriptor stays valid
        // until the command is dropped and never leaks into the child.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        cmd
    }

    /// Runs `program args` in the namespace (bounded to 20 s).
    pub fn run(&self, program: &str, args: &[&str]) -> Outcome {
        let mut cmd = self.command(program);
        cmd.args(args);
        run_bounded(&mut cmd, Duration::from_secs(20))
    }

    /// Like [`Netns::run`], and panics with the command's stderr if it
    /// fails. Returns stdout.
    pub fn run_ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.run(program, args);
        assert!(
            out.success(),
            "in netns {}: `{program} {}` failed ({}): {}",
            self.name,
            args.join(" "),
            out.describe_status(),
            out.stderr.trim()
        );
        out.stdout
    }

    /// Runs a command given as one line of whitespace-separated words
    /// (no quoting) and panics if it fails; returns stdout.
    pub fn line(&self, line: &str) -> String {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (program, args) = words.split_first().expect("an empty command line");
        self.run_ok(program, args)
    }

    /// Runs a shell-free `program` with `stdin` as its input (for `nft -f -`).
    pub fn run_with_input(&self, program: &str, args: &[&str], stdin: &str) -> Outcome {
        let mut cmd = self.command(program);
        cmd.args(args);
        run_bounded_input(&mut cmd, Some(stdin), Duration::from_secs(20))
    }

    /// Starts `cmd` (from [`Netns::command`]) in the background, in its own
    /// process group; the returned guard kills it.
    pub fn spawn(&self, label: &str, cmd: &mut Command) -> Proc {
        Proc::spawn(label, cmd)
    }

    /// The pids of all processes in the namespace (`ip netns pids`).
    pub fn pids(&self) -> Vec<i32> {
        pids_of(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        remove_namespace(&self.name);
    }
}

fn pids_of(name: &str) -> Vec<i32> {
    let out = host("ip", &["netns", "pids", name]);
    out.stdout
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Kills everything inside namespace `name` and deletes it; never panics.
fn remove_namespace(name: &str) {
    for _ in 0..20 {
        let pids = pids_of(name);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            // SAFETY: plain kill(2) on a pid read from the namespace.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    let out = host("ip", &["netns", "del", name]);
    if !out.success() {
        eprintln!("lab: could not delete netns {name}: {}", out.stderr.trim());
    }
}

/// Deletes namespaces left by lab owners that no longer run (a test run
/// killed with SIGKILL or Ctrl-C). Names look like `otl-<tag>-<n>-<pid>-<e|o>`.
/// Also removes their temporary directories (`otl-<tag>-<n>-<pid>`).
pub fn remove_stale() {
    for (name, pid) in owned_entries(Path::new(NETNS_DIR), 2) {
        eprintln!("lab: removing stale netns {name} (owner pid {pid} is gone)");
        remove_namespace(&name);
    }
    let tmp = std::env::temp_dir();
    for (name, _) in owned_entries(&tmp, 1) {
        let _ = std::fs::remove_dir_all(tmp.join(name));
    }
}

/// Entries of `dir` named `otl-...` whose `nth_from_end` dash-separated part
/// (1 = last) is the pid of a process that is gone.
fn owned_entries(dir: &Path, nth_from_end: usize) -> Vec<(String, i32)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(PREFIX) {
                return None;
            }
            let pid = name
                .rsplit('-')
                .nth(nth_from_end - 1)?
                .parse::<i32>()
                .ok()?;
            (pid > 0 && !process_exists(pid)).then_some((name, pid))
        })
        .collect()
}

fn process_exists(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for the process.
    let found = unsafe { libc::kill(pid, 0) } == 0;
    found || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// What a finished command said.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Exit status; `None` when it was killed for running too long.
    pub status: Option<ExitStatus>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl Outcome {
    /// Exited with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The exit code, if it exited (not killed by a signal or the time limit).
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// "exit 1", "signal 9" or "timed out".
    pub fn describe_status(&self) -> String {
        match self.status {
            None => "timed out".to_owned(),
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => format!("exit {c}"),
                (None, Some(sig)) => format!("signal {sig}"),
                _ => format!("{s}"),
            },
        }
    }
}

/// Runs a command on the host (bounded to 20 s).
pub fn host(program: &str, args: &[&str]) -> Outcome {
    let mut cmd = Command::new(program);
    cmd.args(args);
    run_bounded(&mut cmd, Duration::from_secs(20))
}

/// Runs a command on the host and panics if it fails; returns stdout.
pub fn host_ok(program: &str, args: &[&str]) -> String {
    let out = host(program, args);
    assert!(
        out.success(),
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        out.describe_status(),
        out.stderr.trim()
    );
    out.stdout
}

/// Runs `cmd` to completion with captured output, killing it (and its
/// process group) after `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Outcome {
    run_bounded_input(cmd, None, limit)
}

fn run_bounded_input(cmd: &mut Command, input: Option<&str>, limit: Duration) -> Outcome {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", cmd.get_program().display()));
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        use std::io::Write;
        // A child that exits early closes the pipe; its status tells why.
        let _ = stdin.write_all(text.as_bytes());
    }
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let status = wait_bounded(&mut child, limit);
    if status.is_none() {
        kill_group(&mut child);
    }
    Outcome {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Waits for `child` at most `limit`; `None` if it is still running.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn kill_group(child: &mut Child) {
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    // SAFETY: the child was started as leader of its own process group.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A background process (leader of its own process group); on drop the whole
/// group is killed with SIGKILL and reaped.
#[derive(Debug)]
pub struct Proc {
    label: String,
    child: Child,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `cmd` as the leader of a new process group.
    pub fn spawn(label: &str, cmd: &mut Command) -> Proc {
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {label} ({}): {e}", cmd.get_program().display()));
        Proc {
            label: label.to_owned(),
            child,
            status: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(i32::MAX)
    }

    /// The underlying child, e.g. to take its pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Sends `signal` to the process (not its group).
    pub fn signal(&self, signal: i32) {
        if self.status.is_none() {
            // SAFETY: plain kill(2) on our own, not yet reaped, child.
            unsafe {
                libc::kill(self.pid(), signal);
            }
        }
    }

    /// The exit status if it has exited (reaps it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits at most `limit` for the process to exit.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = wait_bounded(&mut self.child, limit);
        }
        self.status
    }

    /// Kills the process group with SIGKILL and reaps the leader.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        kill_group(&mut self.child);
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("wait for {}: {e}", self.label));
        self.status = Some(status);
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            kill_group(&mut self.child);
        }
    }
}
