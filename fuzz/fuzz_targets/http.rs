//! Fuzz target `http`: the input is one direction's first bytes, read as a
//! request line (`proto::http::parse_request`, with and without the path)
//! and as a response head (`proto::http::parse_response`). Nothing may
//! panic; no query string or fragment ever comes out, and no size read
//! exceeds the bytes given.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_user::proto::http::{parse_request, parse_response, Response};

fuzz_target!(|data: &[u8]| {
    if let Some(req) = parse_request(data, true) {
        assert!(req.method.len() <= data.len());
        if let Some(path) = &req.path {
            assert!(
                !path.contains('?') && !path.contains('#'),
                "a path with its query or fragment: {path:?}"
            );
        }
    }
    if let Some(req) = parse_request(data, false) {
        assert!(req.path.is_none(), "a path read without --show-path");
    }
    if let Response::Head(h) = parse_response(data) {
        assert!(h.seen_bytes <= data.len(), "more head bytes seen than given");
        if let Some(n) = h.header_bytes {
            assert!(n <= data.len(), "a header block longer than the input");
        }
    }
});
