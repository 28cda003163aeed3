use super::*;

/// The stream as the evidence would hold it: masked bytes as `x`, dropped
/// bytes left out.
fn render(stream: &[u8], inbound: bool, at_start: bool) -> String {
    render_with(stream, inbound, at_start, true)
}

fn render_with(stream: &[u8], inbound: bool, at_start: bool, keep_path: bool) -> String {
    let spans = plan(stream, inbound, at_start, keep_path);
    let mut out = Vec::new();
    for (i, &b) in stream.iter().enumerate() {
        match spans
            .iter()
            .find(|s| s.range.contains(&i))
            .map(|s| s.action)
        {
            Some(Action::Drop) => {}
            Some(Action::Mask) => out.push(b'x'),
            None => out.push(b),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn req(s: &str) -> String {
    render(s.as_bytes(), true, true)
}

fn resp(s: &str) -> String {
    render(s.as_bytes(), false, true)
}

#[test]
fn credential_headers_and_the_query_string_are_masked() {
    let r = req(
        "GET /a/b?token=s3cret&x=1 HTTP/1.1\r\nHost: example.com\r\n\
         Cookie: session=abc\r\nAuthorization: Bearer tok\r\nX-Api-Key: k\r\n\
         Accept: */*\r\n\r\n",
    );
    assert_eq!(
        r,
        "GET /a/b?xxxxxxxxxxxxxxxx HTTP/1.1\r\nHost: example.com\r\n\
         Cookie:xxxxxxxxxxxx\r\nAuthorization:xxxxxxxxxxx\r\nX-Api-Key:xx\r\n\
         Accept: */*\r\n\r\n"
    );
}

#[test]
fn names_match_without_case_and_by_their_parts() {
    let r = req("GET / HTTP/1.1\r\nCOOKIE: a\r\nX-Session-Id: b\r\nMy-Secret-Thing: c\r\nX-Trace: d\r\n\r\n");
    assert_eq!(
        r,
        "GET / HTTP/1.1\r\nCOOKIE:xx\r\nX-Session-Id:xx\r\nMy-Secret-Thing:xx\r\nX-Trace: d\r\n\r\n"
    );
}

#[test]
fn a_response_keeps_its_head_but_not_cookies_or_its_body() {
    let r = resp("HTTP/1.1 200 OK\r\nSet-Cookie: id=1; HttpOnly\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(
        r,
        "HTTP/1.1 200 OK\r\nSet-Cookie:xxxxxxxxxxxxxxx\r\nContent-Length: 5\r\n\r\n"
    );
    let spans = plan(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        false,
        true,
        true,
    );
    assert_eq!(
        spans.last().map(|s| (s.action, s.what)),
        Some((Action::Drop, What::Body))
    );
}

#[test]
fn folded_and_repeated_headers_stay_masked() {
    let r = req("GET / HTTP/1.1\r\nCookie: a=1\r\n  b=2\r\n\tc=3\r\nCookie: d=4\r\nAccept: x\r\n  y\r\n\r\n");
    assert_eq!(
        r,
        "GET / HTTP/1.1\r\nCookie:xxxx\r\nxxxxx\r\nxxxx\r\nCookie:xxxx\r\nAccept: x\r\n  y\r\n\r\n"
    );
}

#[test]
fn a_continuation_before_any_header_and_lines_without_colon_are_masked() {
    assert_eq!(
        req("GET / HTTP/1.1\r\n secret\r\nnocolon secret\r\n\r\n"),
        "GET / HTTP/1.1\r\nxxxxxxx\r\nxxxxxxxxxxxxxx\r\n\r\n"
    );
}

#[test]
fn non_ascii_bytes_are_masked_like_any_other() {
    let mut r = b"GET / HTTP/1.1\r\nCookie: \xc3\xa9t\xff\r\n\r\n".to_vec();
    let spans = plan(&r, true, true, true);
    for s in &spans {
        for b in &mut r[s.range.clone()] {
            *b = b'x';
        }
    }
    assert_eq!(r, b"GET / HTTP/1.1\r\nCookie:xxxxx\r\n\r\n");
    // A name with non-ASCII bytes cannot be judged: its value is masked.
    assert_eq!(
        req("GET / HTTP/1.1\r\nX-é: v\r\n\r\n"),
        "GET / HTTP/1.1\r\nX-é:xx\r\n\r\n"
    );
}

#[test]
fn a_head_cut_short_masks_to_the_end() {
    assert_eq!(req("GET /p?a=b"), "GET /p?xxx");
    assert_eq!(
        req("GET / HTTP/1.1\r\nCookie: abc"),
        "GET / HTTP/1.1\r\nCookie:xxxx"
    );
    // Cut inside a name: nothing says what it was.
    assert_eq!(req("GET / HTTP/1.1\r\nCook"), "GET / HTTP/1.1\r\nxxxx");
}

#[test]
fn userinfo_and_url_headers_lose_their_secrets() {
    assert_eq!(
        req("GET http://user:pw@host/x?q HTTP/1.1\r\nReferer: https://a/b?t=1\r\n\r\n"),
        "GET http://xxxxxxx@host/x?x HTTP/1.1\r\nReferer: https://a/b?xxx\r\n\r\n"
    );
    assert_eq!(
        resp("HTTP/1.1 302 Found\r\nLocation: /login?next=/a\r\nContent-Length: 0\r\n\r\n"),
        "HTTP/1.1 302 Found\r\nLocation: /login?xxxxxxx\r\nContent-Length: 0\r\n\r\n"
    );
}

#[test]
fn a_body_with_a_length_is_dropped_and_the_next_request_read() {
    let r = req("POST /a HTTP/1.1\r\nContent-Length: 6\r\n\r\npw=abcGET /b?t=2 HTTP/1.1\r\nCookie: c\r\n\r\n");
    assert_eq!(
        r,
        "POST /a HTTP/1.1\r\nContent-Length: 6\r\n\r\nGET /b?xxx HTTP/1.1\r\nCookie:xx\r\n\r\n"
    );
}

#[test]
fn bodies_without_a_clear_end_drop_everything_after_them() {
    // Chunked: the rest of the direction is dropped.
    let r = req("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n");
    assert_eq!(r, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    // Two different lengths.
    let r = req("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab");
    assert_eq!(
        r,
        "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
    );
    // A response delimited by the close.
    assert_eq!(
        resp("HTTP/1.0 200 OK\r\n\r\nsecret"),
        "HTTP/1.0 200 OK\r\n\r\n"
    );
    // A body the framing missed is not taken for a request.
    assert_eq!(
        req("GET / HTTP/1.1\r\n\r\nhello world and more"),
        "GET / HTTP/1.1\r\n\r\n"
    );
}

#[test]
fn responses_without_bodies_are_followed_by_the_next() {
    let r = resp("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nSet-Cookie: a\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(
        r,
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nSet-Cookie:xx\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
    );
}

#[test]
fn tls_is_kept_and_other_bytes_are_dropped_but_for_a_few() {
    let hello = [0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5];
    assert!(plan(&hello, true, true, true).is_empty());
    let ssh = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\nmore bytes";
    assert_eq!(render(ssh, false, true), "SSH-2.0-OpenSSH_");
    // Mid-stream (the start was not seen): nothing says a record is TLS
    // rather than a body that looks like one; all of it is dropped.
    assert_eq!(render(&hello, true, false), "");
    assert_eq!(render(b"tail of something", true, false), "");
}

#[test]
fn lf_only_lines_are_read_too() {
    assert_eq!(
        req("GET /?a HTTP/1.1\nCookie: x\n\n"),
        "GET /?x HTTP/1.1\nCookie:xx\n\n"
    );
}

#[test]
fn the_path_is_masked_unless_it_may_be_shown() {
    let r = b"GET /reset/abc123?t=1 HTTP/1.1\r\n\r\n";
    assert_eq!(
        render_with(r, true, true, false),
        "GET /xxxxxxxxxxxx?xxx HTTP/1.1\r\n\r\n"
    );
    assert_eq!(
        render_with(r, true, true, true),
        "GET /reset/abc123?xxx HTTP/1.1\r\n\r\n"
    );
    let abs = b"GET http://u:p@h/p/q HTTP/1.1\r\n\r\n";
    assert_eq!(
        render_with(abs, true, true, false),
        "GET http://xxx@h/xxx HTTP/1.1\r\n\r\n"
    );
    // Nothing to mask in `*` and authority-form.
    assert_eq!(
        render_with(b"OPTIONS * HTTP/1.1\r\n\r\n", true, true, false),
        "OPTIONS * HTTP/1.1\r\n\r\n"
    );
}

#[test]
fn other_protocols_and_odd_request_lines_keep_nothing_secret() {
    // IMAP and Redis look like "token space": not HTTP, the secret dropped.
    assert_eq!(req("a1 LOGIN user pw\r\n"), "a1");
    assert_eq!(req("AUTH hunter2\r\n"), "AUTH");
    // A whole line without a version is not HTTP/1.x.
    assert_eq!(req("GET /a?b=c\r\nCookie: x\r\n\r\n"), "GET");
    // Spaces before the target, or inside it.
    assert_eq!(
        render_with(b"GET  /p?t=S HTTP/1.1\r\n\r\n", true, true, false),
        "GET  /x?xxx HTTP/1.1\r\n\r\n"
    );
    assert_eq!(
        render_with(b"GET /a?b c HTTP/1.1\r\n\r\n", true, true, true),
        "GET xxxxxx HTTP/1.1\r\n\r\n"
    );
    // A path holding `://` is a path, not an absolute URL.
    assert_eq!(
        render_with(b"GET /r/https://u@h/x HTTP/1.1\r\n\r\n", true, true, false),
        "GET /xxxxxxxxxxxxxxx HTTP/1.1\r\n\r\n"
    );
    // Cut inside something that is not the start of a method.
    assert_eq!(
        render(b"deadbeefcafe0123456789", true, true),
        "deadbeefcafe0123"
    );
    assert_eq!(req("PO"), "PO");
}

#[test]
fn url_headers_and_key_headers_are_masked() {
    let r = b"GET / HTTP/1.1\r\nLink: </a/b>; rel=x\r\nX-Functions-Key: k1\r\nX-Jwt: t\r\n\r\n";
    assert_eq!(
        render_with(r, true, true, false),
        "GET / HTTP/1.1\r\nLink:xxxxxxxxxxxxxx\r\nX-Functions-Key:xxx\r\nX-Jwt:xx\r\n\r\n"
    );
}
