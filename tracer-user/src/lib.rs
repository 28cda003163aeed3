//! origin-tracer: an eBPF agent that names why edge (CDN) connections to this
//! origin fail. Data flows one way, one folder per stage:
//! [`source`] (the kernel's programs, or a capture) -> [`source::event`] ->
//! [`pipeline`] -> [`diagnose`] (findings) -> [`output`] (lines, sinks).
//! Beside them: [`proto`] (TLS and HTTP read from payload bytes) and
//! [`certcheck`] (`--check-certs`). [`run`] is the live entry point,
//! [`analyze`] the offline one.

pub mod analyze;
pub mod certcheck;
pub mod cli;
pub mod clock;
pub mod diagnose;
pub mod output;
pub mod pipeline;
pub mod proto;
pub mod run;
pub mod source;
