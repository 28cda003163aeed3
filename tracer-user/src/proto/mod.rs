//! Application protocols recognised by content in the first payload bytes of
//! each TCP direction: TLS handshakes and alerts ([`tls`]) and HTTP/1.x heads
//! ([`http`]), and where the secrets of plain HTTP are ([`secrets`], for the
//! evidence file). Every parser here reads bytes from the network: none panics,
//! none trusts a length field beyond the bytes present, and none returns
//! bodies, cookies, credentials or query strings.
//!
//! Why not `tls-parser` / `httparse` (both build here and were tried): the
//! agent sees the *first bytes* of a direction, often cut inside a message.
//! `tls-parser` parses a hello's extensions all-or-nothing, so it cannot read
//! the SNI of a truncated `ClientHello`, leaves key shares as raw bytes and only
//! knows the draft form of `HelloRetryRequest`; `httparse` needs a fixed header
//! array (a 16 KiB+ head overflows it) and parses header values we must never
//! handle. Both parsers here are small, bounds-checked and fuzzed by tests.

pub mod http;
pub mod secrets;
pub mod tls;
pub mod tls_records;

#[cfg(test)]
mod capture_tests;
#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod tls_tests;
