//! Where the secrets are in one direction of a connection's bytes: which
//! bytes of plain HTTP/1.x to mask (query strings, userinfo, the values of
//! credential headers, and the URL path unless `--show-path` lets the
//! output name it) and which to drop (bodies, bytes that are neither
//! HTTP nor TLS), so that the `--write-pcap` evidence file can be handed to
//! a third party. TLS is left as it is (encrypted).
//!
//! Hand-written rather than `httparse`: the masker must place every byte of
//! heads that are cut short (a snapshot, a header split across segments),
//! oversized (16 KiB+), folded or malformed, and say for each byte whether it
//! is kept; `httparse` returns nothing for a partial head and rejects the
//! malformed ones outright. The rule when in doubt is to mask or drop.

use std::ops::Range;

/// Header names whose values are masked (lower case): the credential
/// headers of RFC 9110 and RFC 6265 and the API-key headers in common use.
const SECRET_HEADERS: [&str; 14] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "set-cookie2",
    "x-api-key",
    "api-key",
    "x-auth-token",
    "x-access-token",
    "x-csrf-token",
    "x-xsrf-token",
    "x-amz-security-token",
    "cf-access-client-secret",
    "cf-access-jwt-assertion",
];

/// Parts of a header name that mark its value as a credential (in the
/// spirit of the default scrubbing lists of error trackers).
const SECRET_PARTS: [&str; 10] = [
    "auth",
    "jwt",
    "token",
    "secret",
    "passw",
    "apikey",
    "api-key",
    "api_key",
    "session",
    "credential",
];

/// Headers whose value is a URL (or holds one): its query string is masked,
/// and all of it without `--show-path`.
const URL_HEADERS: [&str; 8] = [
    "referer",
    "location",
    "content-location",
    "link",
    "refresh",
    "x-original-url",
    "x-forwarded-uri",
    "x-rewrite-url",
];

/// Methods a message after the first must have (a body the framing missed
/// must not pass for a request).
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Most bytes of a stream that is neither HTTP nor TLS kept to show what it
/// was: its first visible characters, up to a space or control byte.
pub const UNKNOWN_KEPT: usize = 16;

/// Longest header name compared against the lists (longer ones are masked:
/// no honest header name is that long).
const MAX_NAME: usize = 64;

/// What is done to a span of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Replaced by `x`, same length.
    Mask,
    /// Left out of the evidence (its length is kept).
    Drop,
}

/// Why a span is masked or dropped (said in the evidence file's comments).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum What {
    /// The URL path (kept with `--show-path`).
    Path,
    QueryString,
    Userinfo,
    /// The value of a credential header (the header named).
    Header(SecretHeader),
    /// A header line without a colon, or a name too long to judge.
    MalformedHeader,
    Body,
    /// Bytes that are neither HTTP nor TLS, or that could not be placed.
    NotHttp,
}

/// A credential header, by its index in [`SECRET_HEADERS`] or as "another
/// credential header" (a name matched by [`SECRET_PARTS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretHeader(Option<u8>);

impl SecretHeader {
    /// The header's name, for the evidence comment.
    pub fn name(self) -> &'static str {
        match self.0 {
            Some(i) => SECRET_HEADERS[usize::from(i)],
            None => "credential header",
        }
    }
}

impl What {
    pub fn describe(self) -> &'static str {
        match self {
            What::Path => "path",
            What::QueryString => "query string",
            What::Userinfo => "userinfo",
            What::Header(h) => h.name(),
            What::MalformedHeader => "malformed header line",
            What::Body => "body",
            What::NotHttp => "payload neither HTTP nor TLS",
        }
    }
}

/// One span of the stream and what is done to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub range: Range<usize>,
    pub action: Action,
    pub what: What,
}

/// Which name, if any, marks a header's value as a secret.
fn secret_header(name: &[u8]) -> Option<What> {
    if name.len() > MAX_NAME || !name.iter().all(u8::is_ascii_graphic) {
        return Some(What::MalformedHeader);
    }
    let lower = name.to_ascii_lowercase();
    if let Some(i) = SECRET_HEADERS.iter().position(|h| h.as_bytes() == lower) {
        return Some(What::Header(SecretHeader(u8::try_from(i).ok())));
    }
    let part = SECRET_PARTS
        .iter()
        .any(|p| lower.windows(p.len()).any(|w| w == p.as_bytes()));
    // `X-Functions-Key`, `Ocp-Apim-Subscription-Key` ...
    let key = lower.ends_with(b"-key") || lower.ends_with(b"_key");
    (part || key).then_some(What::Header(SecretHeader(None)))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn looks_tls(s: &[u8]) -> bool {
    matches!(s, [0x14..=0x17, 0x03, ..])
}

/// The secrets of one direction's bytes in stream order; `inbound`: the
/// edge's direction (requests), else the origin's (responses); `at_start`:
/// the bytes begin with the connection's first payload byte; `keep_path`:
/// the URL path may be shown (`--show-path`).
pub fn plan(stream: &[u8], inbound: bool, at_start: bool, keep_path: bool) -> Vec<Span> {
    if stream.is_empty() || (at_start && looks_tls(stream)) {
        return Vec::new();
    }
    let mut spans = Vec::new();
    let mut pos = 0;
    while pos < stream.len() {
        let first = pos == 0 && at_start;
        match message(stream, pos, (inbound, first, keep_path), &mut spans) {
            Some(next) if next > pos => pos = next,
            Some(_) => break,
            None => {
                // Not a message start: keep a few bytes of the first thing
                // seen (to show what it was), drop the rest.
                let keep = if pos == 0 && at_start {
                    stream
                        .iter()
                        .take(UNKNOWN_KEPT)
                        .take_while(|b| b.is_ascii_graphic())
                        .count()
                } else {
                    0
                };
                let from = (pos + keep).min(stream.len());
                push(&mut spans, from..stream.len(), Action::Drop, What::NotHttp);
                break;
            }
        }
    }
    spans
}

fn push(spans: &mut Vec<Span>, range: Range<usize>, action: Action, what: What) {
    if !range.is_empty() {
        spans.push(Span {
            range,
            action,
            what,
        });
    }
}

/// The line starting at `pos`: its content (without CR LF) and where the
/// next line starts (`None` when the bytes end first).
fn line(s: &[u8], pos: usize) -> (Range<usize>, Option<usize>) {
    match s[pos..].iter().position(|&b| b == b'\n') {
        Some(i) => {
            let end = pos + i;
            let content_end = if end > pos && s[end - 1] == b'\r' {
                end - 1
            } else {
                end
            };
            (pos..content_end, Some(end + 1))
        }
        None => (pos..s.len(), None),
    }
}

/// One message at `pos`: spans for its start line, head and body; where the
/// next message starts. `None` when `pos` does not start an HTTP message.
/// `how`: (a request, the first message of the connection, keep the path).
fn message(s: &[u8], pos: usize, how: (bool, bool, bool), spans: &mut Vec<Span>) -> Option<usize> {
    let (inbound, _first, keep_path) = how;
    let (start, next) = line(s, pos);
    if inbound {
        request_line(s, start.clone(), keep_path, spans)?;
    } else if !s[pos..].starts_with(b"HTTP/") && !b"HTTP/".starts_with(&s[pos..]) {
        return None;
    }
    let status = (!inbound)
        .then(|| std::str::from_utf8(s.get(start.start + 9..start.start + 12)?).ok())
        .flatten()
        .and_then(|code| code.parse::<u16>().ok());
    let Some(mut at) = next else {
        return Some(s.len());
    };
    let mut framing = Framing::default();
    // Before the first header a continuation line continues nothing: masked.
    let mut masking: Option<What> = Some(What::MalformedHeader);
    loop {
        let (content, next) = line(s, at);
        if content.is_empty() && next.is_some() {
            at = next.unwrap_or(s.len());
            break;
        }
        let bytes = &s[content.clone()];
        if matches!(bytes.first(), Some(b' ' | b'\t')) {
            // A folded continuation: as secret as the line it continues.
            if let Some(what) = masking {
                push(spans, content, Action::Mask, what);
            }
        } else if let Some(colon) = bytes.iter().position(|&b| b == b':') {
            let name = &bytes[..colon];
            let value = content.start + colon + 1..content.end;
            masking = secret_header(name);
            if let Some(what) = masking {
                push(spans, value, Action::Mask, what);
            } else {
                framing.header(name, &s[value.clone()]);
                url_query(s, name, value, keep_path, spans);
            }
        } else if next.is_some() {
            masking = Some(What::MalformedHeader);
            push(spans, content, Action::Mask, What::MalformedHeader);
        } else {
            // Cut short inside a name: nothing says what follows.
            masking = None;
            push(spans, content, Action::Mask, What::MalformedHeader);
        }
        match next {
            Some(n) => at = n,
            None => return Some(s.len()),
        }
    }
    let no_body = !inbound && matches!(status, Some(100..=199 | 204 | 304));
    match framing.body_len(inbound) {
        _ if no_body => Some(at),
        Some(len) => {
            let end = at.saturating_add(len).min(s.len());
            push(spans, at..end, Action::Drop, What::Body);
            Some(end)
        }
        None => {
            push(spans, at..s.len(), Action::Drop, What::Body);
            Some(s.len())
        }
    }
}

/// In a header whose value is a URL, the query string is masked.
fn url_query(s: &[u8], name: &[u8], value: Range<usize>, keep_path: bool, spans: &mut Vec<Span>) {
    if !URL_HEADERS
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
    {
        return;
    }
    if !keep_path {
        push(spans, value, Action::Mask, What::Path);
        return;
    }
    if let Some(q) = s[value.clone()].iter().position(|&b| b == b'?') {
        push(
            spans,
            value.start + q + 1..value.end,
            Action::Mask,
            What::QueryString,
        );
    }
}

/// The request line at `line`: masks the target's query and userinfo.
/// `None` if it does not start like a request (method, space).
fn request_line(
    s: &[u8],
    line: Range<usize>,
    keep_path: bool,
    spans: &mut Vec<Span>,
) -> Option<()> {
    let bytes = &s[line.clone()];
    // The line's end is in the bytes (else they end inside it).
    let complete = line.end < s.len();
    let method_len = bytes.iter().take_while(|&&b| is_tchar(b)).count();
    let method = &bytes[..method_len];
    if method_len == bytes.len() && !complete {
        // Cut inside the method: only the start of a known one passes.
        let prefix = !method.is_empty() && METHODS.iter().any(|m| m.as_bytes().starts_with(method));
        return prefix.then_some(());
    }
    if !METHODS.iter().any(|m| m.as_bytes() == method) || bytes.get(method_len) != Some(&b' ') {
        return None;
    }
    // The target runs to ` HTTP/x.y` at the line's end (which a whole line
    // must have), or to where the bytes end.
    let rest = line.start + method_len + 1..line.end;
    let version = s[rest.clone()]
        .windows(6)
        .rposition(|w| w == b" HTTP/")
        .map(|i| rest.start + i)
        .filter(|&v| line.end - v <= 9);
    if complete && version.is_none() {
        return None;
    }
    let end = version.unwrap_or(rest.end);
    let start = rest.start
        + s[rest.start..end]
            .iter()
            .take_while(|&&b| b == b' ')
            .count();
    if start >= end {
        return Some(());
    }
    let target = start..end;
    let t = &s[target.clone()];
    if t.iter().any(|&b| b == b' ' || b == b'\t') {
        // Not one target: nothing says which part is which.
        push(spans, target, Action::Mask, What::Path);
        return Some(());
    }
    let query = t.iter().position(|&b| b == b'?');
    if let Some(q) = query {
        push(
            spans,
            target.start + q + 1..target.end,
            Action::Mask,
            What::QueryString,
        );
    }
    // Where the path starts: after the leading `/`, or after the authority
    // of an absolute URL (authority-form and `*` have none).
    let mut path_start = (t.first() == Some(&b'/')).then_some(1);
    if let Some(scheme_end) = t
        .windows(3)
        .position(|w| w == b"://")
        .filter(|_| t.first() != Some(&b'/'))
    {
        let authority = scheme_end + 3;
        let end = t[authority..]
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .map_or(t.len(), |i| authority + i);
        if let Some(at) = t[authority..end].iter().rposition(|&b| b == b'@') {
            let range = target.start + authority..target.start + authority + at;
            push(spans, range, Action::Mask, What::Userinfo);
        }
        path_start = (t.get(end) == Some(&b'/')).then_some(end + 1);
    }
    if let (false, Some(from)) = (keep_path, path_start) {
        let to = query.unwrap_or(t.len());
        push(
            spans,
            target.start + from..target.start + to.max(from),
            Action::Mask,
            What::Path,
        );
    }
    Some(())
}

/// How a message's body is delimited, from its head.
#[derive(Default)]
struct Framing {
    content_length: Option<usize>,
    conflicting: bool,
    transfer_encoding: bool,
}

impl Framing {
    fn header(&mut self, name: &[u8], value: &[u8]) {
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
            match (n, self.content_length) {
                (Some(n), None) => self.content_length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => self.conflicting = true,
            }
        }
    }

    /// The body's length; `None`: it runs to the end (chunked, unknown, or
    /// a response delimited by the close).
    fn body_len(&self, request: bool) -> Option<usize> {
        if self.transfer_encoding || self.conflicting {
            return None;
        }
        match self.content_length {
            Some(n) => Some(n),
            None if request => Some(0),
            None => None,
        }
    }
}

#[cfg(test)]
#[path = "secrets_tests.rs"]
mod tests;
