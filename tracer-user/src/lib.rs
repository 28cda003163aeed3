//! origin-tracer: an eBPF agent that names why edge (CDN) connections to this
//! origin fail. Data flows one way: kernel -> event -> diagnose -> sink.

pub mod diagnose;
pub mod event;
pub mod finding;
pub mod ranges;
