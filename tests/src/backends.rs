//! Small misbehaving servers in the origin namespace (one Python script,
//! one thread per connection): each reads what the client sends, then
//! closes, resets, answers with something that is not HTTP, answers late or
//! answers with an oversized header block. They log what they did, so a
//! test can tell that the fault really happened.

use std::fmt;
use std::path::PathBuf;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use crate::lab::Lab;
use crate::netns::Proc;
use crate::tls::Leaf;

/// How long a backend lives at most (it is killed on drop before that).
const LIFETIME: Duration = Duration::from_mins(5);

/// What a backend does once it has read what the client sent (everything
/// that arrives until the client pauses for 300 ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    /// Closes the connection (FIN): nothing unread, so no RST.
    Close,
    /// Resets the connection (`SO_LINGER` 0, then close).
    Reset,
    /// Sends this line (plus CRLF), then closes after 200 ms.
    Banner(String),
    /// Waits this long, then sends a small `200 OK` response and closes.
    Slow(Duration),
    /// Sends a `200 OK` response whose header block is at least this many
    /// bytes, then closes.
    Headers(usize),
    /// Like `Headers`, with a `Set-Cookie` of this value first.
    HeadersWithCookie(usize, String),
    /// Answers this many requests on the connection with a kept-alive
    /// `200 OK`, then does the inner behavior with the next one.
    KeepAlive(u32, Box<Behavior>),
    /// (Inside `KeepAlive` only.) Closes the idle connection after this
    /// long, no request waiting: healthy.
    IdleClose(Duration),
}

impl Behavior {
    fn args(&self) -> (&'static str, String) {
        match self {
            Behavior::Close => ("close", String::new()),
            Behavior::Reset => ("reset", String::new()),
            Behavior::Banner(line) => ("banner", line.clone()),
            Behavior::Slow(d) => ("slow", format!("{:.3}", d.as_secs_f64())),
            Behavior::Headers(n) => ("headers", n.to_string()),
            Behavior::HeadersWithCookie(n, cookie) => ("headers", format!("{n}:{cookie}")),
            Behavior::IdleClose(d) => ("idle", format!("{:.3}", d.as_secs_f64())),
            Behavior::KeepAlive(n, then) => {
                let (mode, arg) = then.args();
                ("keepalive", format!("{n}:{mode}:{arg}"))
            }
        }
    }
}

const SCRIPT: &str = r#"
import os, select, socket, ssl, struct, sys, threading, time
mode, arg, log_path, lifetime = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
ctx = None
if os.environ.get("OT_TLS_CERT"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.environ["OT_TLS_CERT"], os.environ["OT_TLS_KEY"])
    v = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[os.environ["OT_TLS_VERSION"]]
    ctx.minimum_version = ctx.maximum_version = v
lock = threading.Lock()
def log(msg):
    with lock, open(log_path, "a") as f:
        f.write(msg + "\n")
def drain(conn):
    conn.settimeout(10)
    data = conn.recv(65536)
    while data:
        if not (ctx and conn.pending()) and not select.select([conn], [], [], 0.3)[0]:
            break
        more = conn.recv(65536)
        if not more:
            break
        data += more
    return data
def close(conn):
    # Over TLS, a close_notify first (as nginx does), not waiting long for
    # the client's.
    if ctx:
        try:
            conn.settimeout(0.3)
            conn = conn.unwrap()
        except (OSError, ValueError):
            pass
    conn.close()
def serve(conn, peer):
    try:
        if ctx:
            conn.settimeout(10)
            conn = ctx.wrap_socket(conn, server_side=True)
            log("handshake %s with %s port %d" % (conn.version(), peer[0], peer[1]))
        m, a = mode, arg
        if m == "keepalive":
            n, _, rest = a.partition(":")
            m, _, a = rest.partition(":")
            for i in range(int(n)):
                if not drain(conn):
                    return
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                log("answered request %d" % (i + 1))
            if m == "idle":
                time.sleep(float(a))
                close(conn)
                log("closed idle")
                return
        data = drain(conn)
        log("read %d bytes from %s port %d" % (len(data), peer[0], peer[1]))
        if m == "close":
            close(conn)
            log("closed")
        elif m == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            log("reset")
        elif m == "banner":
            conn.sendall(a.encode() + b"\r\n")
            time.sleep(0.2)
            close(conn)
            log("sent banner, closed")
        elif m == "slow":
            time.sleep(float(a))
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
            time.sleep(0.2)
            close(conn)
            log("answered after %s s, closed" % a)
        elif m == "headers":
            size, _, cookie = a.partition(":")
            head = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n"
            if cookie:
                head += b"Set-Cookie: " + cookie.encode() + b"; HttpOnly\r\n"
            i = 0
            while len(head) < int(size):
                head += b"X-Filler-%03d: %s\r\n" % (i, b"a" * 990)
                i += 1
            head += b"\r\n"
            conn.sendall(head + b"ok\n")
            time.sleep(0.2)
            close(conn)
            log("sent a %d-byte header block, closed" % len(head))
    except (OSError, ssl.SSLError) as e:
        log("error: %s" % e)
socks = []
for a in sys.argv[5:]:
    host, port = a.rsplit(":", 1)
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(64)
    socks.append(s)
log("listening")
end = time.monotonic() + lifetime
while time.monotonic() < end:
    for s in select.select(socks, [], [], 0.5)[0]:
        conn, peer = s.accept()
        threading.Thread(target=serve, args=(conn, peer), daemon=True).start()
"#;

/// A backend that speaks TLS first (Python's `ssl`, so OpenSSL: after a
/// TLS 1.3 handshake it sends two session tickets, as nginx does).
#[derive(Debug, Clone)]
pub struct BackendTls {
    /// Its certificate.
    pub leaf: Leaf,
    /// The only version it accepts: `"1.2"` or `"1.3"`.
    pub version: &'static str,
}

/// A running backend on one port of the origin's IPv4 and IPv6 addresses;
/// killed on drop.
pub struct Backend {
    proc: Proc,
    /// Its port.
    pub port: u16,
    behavior: Behavior,
    log: PathBuf,
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("port", &self.port)
            .field("behavior", &self.behavior)
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// Starts a backend doing `behavior` on `port`; returns once it listens.
    pub fn start(lab: &Lab, port: u16, behavior: Behavior) -> Backend {
        Backend::start_with(lab, port, behavior, None)
    }

    /// The same over TLS: it completes the handshake, then reads the
    /// request and misbehaves.
    pub fn start_tls(lab: &Lab, port: u16, behavior: Behavior, tls: &BackendTls) -> Backend {
        Backend::start_with(lab, port, behavior, Some(tls))
    }

    fn start_with(lab: &Lab, port: u16, behavior: Behavior, tls: Option<&BackendTls>) -> Backend {
        let log = lab.dir().join(format!("backend-{port}.log"));
        let _ = std::fs::remove_file(&log);
        let (mode, arg) = behavior.args();
        let mut cmd = lab.origin.command("python3");
        cmd.arg("-c")
            .arg(SCRIPT)
            .arg(mode)
            .arg(arg)
            .arg(&log)
            .arg(LIFETIME.as_secs().to_string())
            .arg(format!("{}:{port}", lab.origin_v4))
            .arg(format!("{}:{port}", lab.origin_v6))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(t) = tls {
            cmd.env("OT_TLS_CERT", &t.leaf.cert)
                .env("OT_TLS_KEY", &t.leaf.key)
                .env("OT_TLS_VERSION", t.version);
        }
        let mut backend = Backend {
            proc: Proc::spawn("backend", &mut cmd),
            port,
            behavior,
            log,
        };
        backend.wait_listening();
        backend
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.log().contains("listening") {
            if let Some(status) = self.proc.try_wait() {
                let mut err = String::new();
                if let Some(mut pipe) = self.proc.child_mut().stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut err);
                }
                panic!("backend on port {} exited ({status}): {err}", self.port);
            }
            assert!(
                Instant::now() < deadline,
                "backend on port {} does not listen after 15 s",
                self.port
            );
            thread::sleep(Duration::from_millis(30));
        }
    }

    /// What it did so far, one line a step.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (at most `limit`) until its log has a line containing `what`;
    /// whether it came.
    pub fn wait_log(&self, what: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            crate::check_interrupted();
            if self.log().contains(what) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it.
    pub fn stop(mut self) {
        self.proc.kill();
    }
}
