//! origin-tracer: an eBPF agent that names why edge (CDN) connections to this
//! origin fail. Data flows one way: kernel -> event -> diagnose -> sink.

pub mod analyze;
pub mod app;
pub mod capture;
pub mod certcheck;
pub mod certwatch;
pub mod cli;
pub mod clock;
pub mod diagnose;
pub mod event;
pub mod evidence_pcap;
pub mod finding;
pub mod kernel;
pub mod pretty;
pub mod proto;
pub mod ranges;
pub mod report;
pub mod run;
pub mod sink;
pub mod tls_records;
