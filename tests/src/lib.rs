//! Privileged test lab for origin-tracer: network namespaces joined by a veth
//! pair, real servers (nginx), real faults (nft, iptables, broken routes),
//! real clients (curl), the agent under test, captures of the origin (tcpdump)
//! for the agent's `analyze`, checks that nothing of the agent is left in the
//! kernel, and a checker for the output schema (docs/SCHEMA.md).
//!
//! Everything the lab creates lives in namespaces and temporary directories it
//! owns and removes on drop, also when a test panics; leftovers of a killed
//! run are removed by the next `Lab::new`. Labs must run one at a time: the
//! agent's tracepoints see every namespace.
//!
//! The privileged tests are `#[ignore]`d so that `cargo test` needs no root;
//! `cargo xtask test` runs them (`--ignored --test-threads=1`) with
//! `ORIGIN_TRACER_BIN` set to the agent it built. `OTL_TRANSCRIPT=1` prints
//! every agent run, not only those of failing tests.

pub mod agent;
pub mod backends;
pub mod capture;
pub mod differential;
pub mod lab;
pub mod leftovers;
pub mod netns;
pub mod nginx;
pub mod schema;
pub mod session;
pub mod tls;
pub mod tls_origin;
pub mod verdict;

use std::sync::atomic::{AtomicBool, Ordering};

pub use agent::Agent;
pub use capture::{Tap, Tcpdump};
pub use lab::{Curl, CurlResult, Family, Firewall, Lab, Source};
pub use leftovers::Leftovers;
pub use netns::{Netns, Outcome, Proc};
pub use nginx::Nginx;

/// True when the process runs as root (the lab needs it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// For the first line of a privileged test: `false` (after saying so on
/// stderr) when not root, so that the test returns early instead of failing.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    eprintln!("SKIPPED {test}: needs root (run `cargo xtask test`)");
    false
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set a flag instead of killing the process, so
/// that a lab in use is torn down properly: every wait of this crate panics
/// with "interrupted" once the flag is set, and the drops clean up.
/// Processes the lab starts run in their own process groups, so a Ctrl-C on
/// the terminal reaches only this process.
pub fn install_interrupt_handler() {
    let handler: extern "C" fn(libc::c_int) = on_interrupt;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            libc::signal(signal, handler as libc::sighandler_t);
        }
    }
}

/// Whether SIGINT or SIGTERM arrived since [`install_interrupt_handler`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Panics when interrupted; called by every polling loop of the lab.
pub(crate) fn check_interrupted() {
    assert!(!interrupted(), "interrupted");
}
