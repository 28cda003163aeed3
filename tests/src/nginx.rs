//! A real nginx in the origin namespace, with its own configuration (one
//! server answering `200 ok`, or the caller's server blocks, e.g. TLS), pid
//! and log files in the lab's directory; it can be hung (workers stopped
//! with SIGSTOP) so that its accept queue fills up.

use std::path::PathBuf;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use crate::lab::Lab;
use crate::netns::Proc;

/// A running nginx (master and one worker); killed on drop.
#[derive(Debug)]
pub struct Nginx {
    proc: Proc,
    /// The ports it listens on (origin IPv4 and IPv6 addresses).
    pub ports: Vec<u16>,
    error_log: PathBuf,
}

impl Nginx {
    /// Starts nginx on `ports` of the origin's addresses; `backlog` is the
    /// `listen ... backlog=` value (nginx's default when `None`). Returns
    /// once every port listens.
    pub fn start(lab: &Lab, ports: &[u16], backlog: Option<u32>) -> Nginx {
        let backlog = backlog.map(|b| format!("backlog={b}")).unwrap_or_default();
        let mut listen = String::new();
        for p in ports {
            listen.push_str(&Nginx::listen(lab, *p, &backlog));
        }
        let server = format!("  server {{\n{listen}    return 200 \"ok\\n\";\n  }}\n");
        Nginx::start_servers(lab, ports, &server)
    }

    /// `listen` lines for `port` on the origin's IPv4 and IPv6 addresses,
    /// with `params` (e.g. `ssl`, `ssl default_server`) after the address.
    pub fn listen(lab: &Lab, port: u16, params: &str) -> String {
        let params = if params.is_empty() {
            String::new()
        } else {
            format!(" {params}")
        };
        format!(
            "    listen {}:{port}{params};\n    listen [{}]:{port}{params};\n",
            lab.origin_v4, lab.origin_v6
        )
    }

    /// Starts nginx with `servers` (whole `server { ... }` blocks, whose
    /// `listen` lines come from [`Nginx::listen`]) in its `http` block;
    /// returns once every port of `ports` listens on both addresses.
    pub fn start_servers(lab: &Lab, ports: &[u16], servers: &str) -> Nginx {
        let dir = lab.dir().join(format!("nginx-{}", ports[0]));
        std::fs::create_dir_all(&dir).expect("create nginx dir");
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\n\
             pid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n\
             \x20 client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             \x20 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
             \x20 scgi_temp_path {d}/scgi;\n\
             {servers}}}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let error_log = dir.join("error.log");
        let mut cmd = lab.origin.command("nginx");
        cmd.arg("-e")
            .arg(&error_log)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut nginx = Nginx {
            proc: Proc::spawn("nginx", &mut cmd),
            ports: ports.to_vec(),
            error_log,
        };
        nginx.wait_listening(lab);
        nginx
    }

    fn wait_listening(&mut self, lab: &Lab) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ss = lab.origin.run_ok("ss", &["-Hltn"]);
            let all = self.ports.iter().all(|p| {
                ss.contains(&format!("{}:{p} ", lab.origin_v4))
                    && ss.contains(&format!("[{}]:{p} ", lab.origin_v6))
            });
            if all && !self.workers().is_empty() {
                return;
            }
            if let Some(status) = self.proc.try_wait() {
                panic!("nginx exited ({status}): {}", self.error_log_text());
            }
            assert!(
                Instant::now() < deadline,
                "nginx does not listen on {:?} after 5 s: {}",
                self.ports,
                self.error_log_text()
            );
            thread::sleep(Duration::from_millis(30));
        }
    }

    /// The master's pid.
    pub fn master_pid(&self) -> i32 {
        self.proc.pid()
    }

    /// Pids of the worker processes (children of the master).
    pub fn workers(&self) -> Vec<i32> {
        let master = self.master_pid();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| parent_of(*pid) == Some(master))
            .collect()
    }

    /// Stops the workers with SIGSTOP: nginx still listens but accepts
    /// nothing, so its accept queue fills up.
    pub fn hang(&self) {
        let workers = self.workers();
        assert!(!workers.is_empty(), "nginx has no worker to stop");
        for pid in workers {
            // SAFETY: plain kill(2) on a child of our nginx master.
            unsafe {
                libc::kill(pid, libc::SIGSTOP);
            }
        }
    }

    /// Stops nginx (SIGKILL to its process group).
    pub fn stop(mut self) {
        self.proc.kill();
    }

    /// nginx's error log, for failure messages.
    pub fn error_log_text(&self) -> String {
        std::fs::read_to_string(&self.error_log).unwrap_or_default()
    }
}

/// The parent pid of `pid` from /proc/PID/stat.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}
