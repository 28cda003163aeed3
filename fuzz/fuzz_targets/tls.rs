//! Fuzz target `tls`: the input is one direction's first bytes, read by the
//! TLS scanner (`proto::tls::scan`) and, once a `ServerHello` shows which
//! version was negotiated, by the encrypted-record walk
//! (`proto::tls_records::Records`) in both directions. Nothing may panic,
//! and no more record headers or SNI bytes are read than the input holds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_user::proto::{
    tls::{self, looks_like_tls},
    tls_records::{Records, Version},
};

fuzz_target!(|data: &[u8]| {
    let _ = looks_like_tls(data);
    let scan = tls::scan(data);
    assert!(
        scan.records <= data.len() / 5 + 1,
        "{} record headers in {} bytes",
        scan.records,
        data.len()
    );
    if let Some(ch) = &scan.client_hello {
        let sni = ch.sni.as_deref().unwrap_or("");
        assert!(sni.len() <= data.len(), "an SNI longer than the input");
    }
    for a in &scan.alerts {
        let _ = (a.level_name(), a.description_name());
    }
    let Some(v) = scan.server_hello.as_ref().and_then(Version::of) else {
        return;
    };
    // The same bytes as each side's stream after the handshake, offered
    // in two growing prefixes as segments arrive.
    let mut records = Records::default();
    for end in [data.len() / 2, data.len()] {
        let _ = records.edge_bytes(v, &data[..end]);
        records.origin_bytes(v, &data[..end], end as u64);
    }
    let _ = (records.tickets(v), records.response(v));
});
