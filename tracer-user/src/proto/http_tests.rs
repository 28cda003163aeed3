//! Unit tests of the HTTP/1.x request-line and response-head parsers.

use super::http::{
    could_start_request, parse_request, parse_response, Request, Response, ResponseHead,
};

fn head(data: &[u8]) -> ResponseHead {
    match parse_response(data) {
        Response::Head(h) => h,
        other => panic!("not a head: {other:?}"),
    }
}

#[test]
fn request_path_without_query() {
    let data = b"GET /api/v1/items?token=secret&x=1 HTTP/1.1\r\nHost: a\r\nCookie: s=1\r\n\r\n";
    let r = parse_request(data, true).unwrap();
    assert_eq!(
        r,
        Request {
            method: "GET".into(),
            path: Some("/api/v1/items".into()),
            version: Some("HTTP/1.1".into()),
        }
    );
    let r = parse_request(data, false).unwrap();
    assert_eq!(r.path, None);
    assert_eq!(r.method, "GET");
    // Fragment is cut too.
    let r = parse_request(b"POST /form#top HTTP/1.0\r\n", true).unwrap();
    assert_eq!(r.path.as_deref(), Some("/form"));
    assert_eq!(r.version.as_deref(), Some("HTTP/1.0"));
}

#[test]
fn request_target_forms() {
    let r = parse_request(
        b"GET http://user:pw@host.example/a/b?q=1 HTTP/1.1\r\n",
        true,
    )
    .unwrap();
    assert_eq!(r.path.as_deref(), Some("/a/b"));
    let r = parse_request(b"GET https://host.example HTTP/1.1\r\n", true).unwrap();
    assert_eq!(r.path.as_deref(), Some("/"));
    let r = parse_request(b"OPTIONS * HTTP/1.1\r\n", true).unwrap();
    assert_eq!(r.path.as_deref(), Some("*"));
    let r = parse_request(b"CONNECT host.example:443 HTTP/1.1\r\n", true).unwrap();
    assert_eq!(r.method, "CONNECT");
    assert_eq!(r.path, None);
    // LF-only line end.
    let r = parse_request(b"DELETE /x HTTP/1.1\nHost: a\n\n", true).unwrap();
    assert_eq!(r.path.as_deref(), Some("/x"));
}

#[test]
fn request_cut_short() {
    // Cut inside the target: the path is unknown unless the query began.
    let r = parse_request(b"GET /very/long/pa", true).unwrap();
    assert_eq!((r.path, r.version), (None, None));
    let r = parse_request(b"GET /very/long/path?sec", true).unwrap();
    assert_eq!(r.path.as_deref(), Some("/very/long/path"));
    // Cut inside the version.
    let r = parse_request(b"GET / HTT", true).unwrap();
    assert_eq!(r.path.as_deref(), Some("/"));
    assert_eq!(r.version, None);
    let r = parse_request(b"GET / HTTP/1.1", true).unwrap();
    assert_eq!(r.version.as_deref(), Some("HTTP/1.1"));
    let r = parse_request(b"GET ", true).unwrap();
    assert_eq!(r.method, "GET");
    assert!(parse_request(b"GET", true).is_none());
    assert!(parse_request(b"", true).is_none());
}

#[test]
fn not_requests() {
    for data in [
        &b"SSH-2.0-OpenSSH_8.7\r\n"[..],
        b"SSH-2.0-OpenSSH_8.7 Ubuntu\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET /\r\n",                // HTTP/0.9
        b"GET / FTP/1.0\r\n",        // not HTTP
        b"GET / HTTP/1.1x\r\n",      // junk after the version
        b"GET  / HTTP/1.1\r\n",      // two spaces
        b"get / HTTP/1.1\r\n",       // lower-case method
        b"GET /a\x01b HTTP/1.1\r\n", // control byte in the target
        b"AVERYLONGMETHODNAMETHATISNOTREAL1 / HTTP/1.1\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",
    ] {
        assert!(parse_request(data, true).is_none(), "{data:?}");
    }
}

#[test]
fn response_heads() {
    let data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    let h = head(data);
    assert_eq!((h.status, h.version.as_str()), (200, "HTTP/1.1"));
    assert_eq!(h.header_bytes, Some(data.len() - 2));
    assert_eq!(h.seen_bytes, data.len() - 2);
    // No headers at all.
    assert_eq!(
        head(b"HTTP/1.0 204 No Content\r\n\r\n").header_bytes,
        Some(27)
    );
    // No reason phrase, bare LF line ends.
    let h = head(b"HTTP/1.1 503\nRetry-After: 1\n\nbody");
    assert_eq!((h.status, h.header_bytes), (503, Some(29)));
    // Status line only, headers still coming.
    let h = head(b"HTTP/1.1 502 Bad Gateway\r\nServer: x\r\n");
    assert_eq!((h.status, h.header_bytes, h.seen_bytes), (502, None, 37));
    let h = head(b"HTTP/1.1 404 ");
    assert_eq!((h.status, h.header_bytes, h.seen_bytes), (404, None, 13));
}

#[test]
fn response_incomplete_or_not_http() {
    for data in [
        &b""[..],
        b"H",
        b"HTTP/",
        b"HTTP/1.1 ",
        b"HTTP/1.1 40",
        b"HTTP/1.1 400",
    ] {
        assert_eq!(parse_response(data), Response::Incomplete, "{data:?}");
    }
    for data in [
        &b"SSH-2.0-OpenSSH_8.7\r\n"[..],
        b"\x15\x03\x03\x00\x02\x02\x28",
        b"<!DOCTYPE HTML>\n<html>",
        b"HTTP/1.1 2000 OK\r\n",
        b"HTTP/1.1 099 Odd\r\n",
        b"HTTP/x.1 200 OK\r\n",
        b"http/1.1 200 OK\r\n",
        b"HTTP/2 200\r\n",
        b" HTTP/1.1 200 OK\r\n",
    ] {
        assert_eq!(parse_response(data), Response::NotHttp, "{data:?}");
    }
}

/// A head of about 20 KiB: many headers, then the blank line and a body.
fn big_head() -> (Vec<u8>, usize) {
    let mut data = b"HTTP/1.1 200 OK\r\n".to_vec();
    let mut i = 0;
    while data.len() < 20 * 1024 {
        data.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "v".repeat(90)).as_bytes());
        i += 1;
    }
    data.extend_from_slice(b"\r\n");
    let len = data.len();
    data.extend_from_slice(&[b'b'; 5000]);
    (data, len)
}

#[test]
fn twenty_kib_head() {
    let (data, len) = big_head();
    assert!(len > 20 * 1024);
    let h = head(&data);
    assert_eq!(h.header_bytes, Some(len));
    assert_eq!(h.seen_bytes, len);
    // Exactly the head.
    assert_eq!(head(&data[..len]).header_bytes, Some(len));
    // Cut at 16 KiB: not complete, 16 KiB seen so far.
    let h = head(&data[..16 * 1024]);
    assert_eq!(
        (h.status, h.header_bytes, h.seen_bytes),
        (200, None, 16 * 1024)
    );
    // Cut between the CR and LF of the blank line.
    assert_eq!(head(&data[..len - 1]).header_bytes, None);
}

#[test]
fn every_prefix_of_a_response_is_sane() {
    let (data, len) = big_head();
    for n in 0..=len {
        match parse_response(&data[..n]) {
            Response::Incomplete => assert!(n < 13, "prefix {n}"),
            Response::Head(h) => {
                assert_eq!(h.status, 200);
                let want = (n == len).then_some(len);
                assert_eq!(h.header_bytes, want, "prefix {n}");
            }
            Response::NotHttp => panic!("prefix {n} not HTTP"),
        }
    }
    let req = b"GET /a/b?c=d HTTP/1.1\r\nHost: x\r\n\r\n";
    for n in 0..=req.len() {
        if let Some(r) = parse_request(&req[..n], true) {
            assert_eq!(r.method, "GET");
            assert!(r.path.is_none_or(|p| p == "/a/b"), "prefix {n}");
        }
    }
}

#[test]
fn what_could_start_a_request() {
    for yes in [
        &b""[..],
        b"G",
        b"GET",
        b"GET ",
        b"GET /x HTTP/1.1\r\n",
        b"M-SEARCH *",
    ] {
        assert!(
            could_start_request(yes),
            "{:?}",
            String::from_utf8_lossy(yes)
        );
    }
    for no in [
        &b"body"[..],
        b"{\"a\":1}",
        b" GET",
        b"\x16\x03\x01",
        b"get /",
    ] {
        assert!(
            !could_start_request(no),
            "{:?}",
            String::from_utf8_lossy(no)
        );
    }
}
