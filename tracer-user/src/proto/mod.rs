//! Application protocols recognised by content in the first payload bytes of
//! each TCP direction: TLS handshakes and alerts ([`tls`]) and HTTP/1.x heads
//! ([`http`]). Every parser here reads bytes from the network: none panics,
//! none trusts a length field beyond the bytes present, and none returns
//! bodies, cookies, credentials or query strings.

pub mod http;
pub mod tls;

#[cfg(test)]
mod capture_tests;
#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod tls_tests;
