//! HTTP/1.x recognised by content: the request line the edge sent (method,
//! path without its query, on request only) and the origin's status line and
//! header-block size — or the fact that the origin's answer is not HTTP.
//!
//! Only the request line and status line are read; header values, bodies,
//! cookies, credentials and query strings are never returned.

/// Longest method accepted (the longest registered one has 17 bytes).
const MAX_METHOD_LEN: usize = 32;
/// `HTTP/` followed by `d.d`: the version of HTTP/1.x messages.
const VERSION_LEN: usize = 8;

/// The request line of an HTTP/1.x request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. "GET".
    pub method: String,
    /// The path of the request target without query or fragment; only when
    /// asked for, and only when the bytes show where it ends. Absolute-form
    /// targets give their path (scheme and authority dropped); `*` is kept;
    /// authority-form (`CONNECT host:port`) gives `None`.
    pub path: Option<String>,
    /// The protocol version, e.g. "HTTP/1.1"; `None` if the bytes ran out
    /// before it.
    pub version: Option<String>,
}

/// Whether `data` may be the start of a request line: a method token so
/// far (uppercase, digits, `-`, `_`), then a space if it came.
pub fn could_start_request(data: &[u8]) -> bool {
    let token = data
        .iter()
        .take(MAX_METHOD_LEN + 1)
        .take_while(|&&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        .count();
    token <= MAX_METHOD_LEN && data.get(token).is_none_or(|&b| b == b' ' && token > 0)
}

/// Reads the request line at the start of `data`. `None` if it is not an
/// HTTP/1.x request line (or too little of it to tell: less than the method
/// and the space after it). With `keep_path` false the path is never read.
pub fn parse_request(data: &[u8], keep_path: bool) -> Option<Request> {
    let sp = data
        .iter()
        .take(MAX_METHOD_LEN + 1)
        .position(|&b| b == b' ')?;
    let method = data.get(..sp)?;
    let method_ok = method
        .iter()
        .all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if method.is_empty() || !method_ok {
        return None;
    }
    let method = String::from_utf8_lossy(method).into_owned();
    let after = data.get(sp + 1..).unwrap_or_default();
    let end = after
        .iter()
        .position(|&b| matches!(b, b' ' | b'\r' | b'\n'))
        .unwrap_or(after.len());
    let target = after.get(..end).unwrap_or_default();
    if target.iter().any(|&b| b < 0x21 || b == 0x7f) {
        return None;
    }
    let path = |complete| {
        if keep_path {
            path_of(target, complete)
        } else {
            None
        }
    };
    let Some(&sep) = after.get(end) else {
        // The bytes end inside the target.
        return Some(Request {
            method,
            path: path(false),
            version: None,
        });
    };
    if sep != b' ' || target.is_empty() {
        // A line without a version (HTTP/0.9 or not HTTP), or two spaces.
        return None;
    }
    let rest = after.get(end + 1..).unwrap_or_default();
    let version = rest.get(..VERSION_LEN).unwrap_or(rest);
    if !version_prefix_ok(version) {
        return None;
    }
    let version = if version.len() == VERSION_LEN {
        let eol = rest.get(VERSION_LEN..).unwrap_or_default();
        if !matches!(eol, [] | [b'\n', ..] | [b'\r'] | [b'\r', b'\n', ..]) {
            return None;
        }
        Some(String::from_utf8_lossy(version).into_owned())
    } else {
        None
    };
    Some(Request {
        method,
        path: path(true),
        version,
    })
}

/// Every byte present agrees with `HTTP/d.d`.
fn version_prefix_ok(v: &[u8]) -> bool {
    v.iter().zip(b"HTTP/#.#").all(|(&b, &want)| {
        if want == b'#' {
            b.is_ascii_digit()
        } else {
            b == want
        }
    })
}

/// The path of a request target, cut before its query or fragment. `None`
/// if the target was cut (`complete` false) before either, or has no path.
fn path_of(target: &[u8], complete: bool) -> Option<String> {
    let cut = target.iter().position(|&b| b == b'?' || b == b'#');
    if cut.is_none() && !complete {
        return None;
    }
    let t = target.get(..cut.unwrap_or(target.len()))?;
    let path: &[u8] = if t.first() == Some(&b'/') || t == b"*" {
        t
    } else {
        // absolute-form: scheme "://" authority path
        let i = t.windows(3).position(|w| w == b"://")?;
        let scheme = t.get(..i)?;
        if scheme.is_empty() || !scheme.iter().all(u8::is_ascii_alphabetic) {
            return None;
        }
        let after = t.get(i + 3..)?;
        match after.iter().position(|&b| b == b'/') {
            Some(p) => after.get(p..)?,
            None => b"/",
        }
    };
    Some(String::from_utf8_lossy(path).into_owned())
}

/// The head of an HTTP/1.x response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code, 100..=999.
    pub status: u16,
    /// The protocol version, e.g. "HTTP/1.1".
    pub version: String,
    /// Bytes of the head: status line and headers up to and including the
    /// blank line; `None` if that line is not in the bytes seen.
    pub header_bytes: Option<usize>,
    /// Bytes of the head seen: `header_bytes` when complete, else all the
    /// bytes given.
    pub seen_bytes: usize,
}

/// What the first bytes of a response are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// An HTTP/1.x status line (and maybe the whole head).
    Head(ResponseHead),
    /// Not an HTTP/1.x status line: e.g. an SSH banner, TLS bytes, HTML.
    NotHttp,
    /// Too few bytes to tell, and those present agree with a status line.
    Incomplete,
}

/// Reads the status line and header-block size at the start of `data`
/// (one direction's first payload bytes).
pub fn parse_response(data: &[u8]) -> Response {
    // "HTTP/d.d NNN" then a space or the line's end.
    const PATTERN: &[u8] = b"HTTP/#.# ###";
    let line_start = data.get(..PATTERN.len()).unwrap_or(data);
    let start_ok = line_start.iter().zip(PATTERN).all(|(&b, &want)| {
        if want == b'#' {
            b.is_ascii_digit()
        } else {
            b == want
        }
    });
    if !start_ok {
        return Response::NotHttp;
    }
    let Some(&after_code) = data.get(PATTERN.len()) else {
        return Response::Incomplete;
    };
    if !matches!(after_code, b' ' | b'\r' | b'\n') {
        return Response::NotHttp;
    }
    let status = line_start
        .get(9..12)
        .unwrap_or_default()
        .iter()
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    if status < 100 {
        return Response::NotHttp;
    }
    let version =
        String::from_utf8_lossy(line_start.get(..VERSION_LEN).unwrap_or_default()).into_owned();
    let header_bytes = head_len(data);
    Response::Head(ResponseHead {
        status,
        version,
        header_bytes,
        seen_bytes: header_bytes.unwrap_or(data.len()),
    })
}

/// Length of the head: up to and including the first empty line (CRLF or a
/// bare LF), `None` if there is none yet.
fn head_len(data: &[u8]) -> Option<usize> {
    let mut from = 0;
    loop {
        let lf = from + data.get(from..)?.iter().position(|&b| b == b'\n')?;
        let next = lf + 1;
        match data.get(next..)? {
            [b'\n', ..] => return Some(next + 1),
            [b'\r', b'\n', ..] => return Some(next + 2),
            _ => from = next,
        }
    }
}
