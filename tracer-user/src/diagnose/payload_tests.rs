//! The application layer of one connection: HTTP heads, header sizes.

use super::*;

#[test]
fn http_request_and_response_heads() {
    let mut a = App::default();
    let ev = a.on_payload(
        1,
        false,
        (1, 0),
        b"GET /x?secret=1 HTTP/1.1\r\nHost: h\r\n\r\n",
        true,
    );
    assert_eq!(ev.len(), 1);
    assert_eq!(a.request.as_ref().unwrap().path.as_deref(), Some("/x"));
    a.on_payload(
        2,
        true,
        (1, 0),
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        false,
    );
    assert!(a.response_ok());
    let http = serde_json::to_value(a.http_facts().unwrap()).unwrap();
    assert_eq!(http["status"], 200);
    assert!(!http.to_string().contains("secret"));
}

#[test]
fn a_huge_header_block_is_measured() {
    let mut a = App::default();
    a.on_payload(1, false, (1, 0), b"GET / HTTP/1.1\r\n\r\n", false);
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    while head.len() < 17_000 {
        head.extend_from_slice(
            b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        );
    }
    for (i, chunk) in head.chunks(1448).enumerate() {
        let seq = 1 + u32::try_from(i * 1448).unwrap();
        a.on_payload(2, true, (seq, 0), chunk, false);
    }
    let (n, complete) = a.oversized_headers().unwrap();
    assert!(n > HEADER_LIMIT && !complete);
}
