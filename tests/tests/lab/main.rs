//! The privileged lab tests, one binary with a module per topic (as aya's
//! integration tests are): real servers, real faults and the real agent in
//! network namespaces, one test at a time (`cargo xtask test`). Shared
//! helpers live in the `integration_tests` crate (`session`, `verdict`,
//! `lab`, ...).

mod bad_input;
mod detach;
mod diagnosis;
mod differential;
mod differential_tls_http;
mod http2;
mod keepalive;
mod lab_itself;
mod origin_status;
mod output;
mod pipeline;
mod startup;
mod tls_http;
mod unacked;
mod write_pcap;
