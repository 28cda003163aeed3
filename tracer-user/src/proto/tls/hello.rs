//! The hello messages of a TLS handshake: what the edge's `ClientHello`
//! offers (SNI, versions, ALPN, key shares, even when cut short) and what the
//! origin's `ServerHello` or `HelloRetryRequest` chose. Every length is
//! checked against the bytes present.

/// Extension types used here.
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
const EXT_PRE_SHARED_KEY: u16 = 41;
const EXT_KEY_SHARE: u16 = 51;

/// The `ServerHello.random` that marks a `HelloRetryRequest`
/// (SHA-256 of `"HelloRetryRequest"`, RFC 8446 section 4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// GREASE values (RFC 8701) are noise a client adds to lists: 0x?A?A with
/// both bytes equal.
fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// What the edge's `ClientHello` offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// Server Name Indication (the first `host_name`), if sent and seen.
    pub sni: Option<String>,
    /// `ClientHello.legacy_version` (0x0303 for TLS 1.2 and 1.3 clients).
    pub legacy_version: u16,
    /// Versions from the `supported_versions` extension (GREASE left out);
    /// without that extension, `[legacy_version]` when the hello is complete,
    /// empty when it was cut before its end.
    pub offered_versions: Vec<u16>,
    /// ALPN protocol names, in the client's order.
    pub alpn: Vec<String>,
    /// Number of cipher suites offered (GREASE included).
    pub cipher_suites: usize,
    /// Number of key shares sent (`key_share` extension, GREASE left out).
    pub key_shares: usize,
    /// The whole message was present; if not, the fields hold what the bytes
    /// seen contain and the rest is unknown.
    pub complete: bool,
}

/// What the origin's `ServerHello` (or `HelloRetryRequest`) chose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerHello {
    /// Negotiated version: `supported_versions` if present, else
    /// `legacy_version`.
    pub version: u16,
    /// Chosen cipher suite.
    pub cipher: u16,
    /// The message is a TLS 1.3 `HelloRetryRequest`: the origin asks for
    /// another key share.
    pub hello_retry_request: bool,
    /// TLS 1.3: the origin accepted a pre-shared key (`pre_shared_key`
    /// extension): a resumed session.
    pub resumed: bool,
}

/// Parses a `ClientHello` body. With `complete`, the body is the whole
/// message and any inconsistency is reported (`false`); without, it is what
/// was seen and parsing stops quietly where the bytes end.
pub(super) fn parse_client_hello(body: &[u8], complete: bool) -> (ClientHello, bool) {
    let mut hello = ClientHello {
        complete,
        ..ClientHello::default()
    };
    let mut saw_versions = false;
    let ok = fill_client_hello(body, complete, &mut hello, &mut saw_versions).unwrap_or(false);
    if complete && !saw_versions {
        hello.offered_versions.push(hello.legacy_version);
    }
    (hello, ok || !complete)
}

/// Fills `hello` from `body`; `None` where the bytes end or contradict a
/// length, `Some(false)` if an extension's content is malformed.
fn fill_client_hello(
    body: &[u8],
    complete: bool,
    hello: &mut ClientHello,
    saw_versions: &mut bool,
) -> Option<bool> {
    let mut r = Reader::new(body);
    hello.legacy_version = r.u16()?;
    r.take(32)?; // random
    r.vec8()?; // legacy_session_id
    hello.cipher_suites = r.vec16()?.len() / 2;
    r.vec8()?; // legacy_compression_methods
    if r.is_empty() {
        return Some(true); // no extensions (pre-TLS 1.2 clients)
    }
    let ext_len = usize::from(r.u16()?);
    let exts = if complete {
        let exts = r.take(ext_len)?;
        if !r.is_empty() {
            return Some(false); // trailing bytes
        }
        exts
    } else {
        r.take_at_most(ext_len)
    };
    let mut e = Reader::new(exts);
    let mut ok = true;
    while !e.is_empty() {
        let ext_type = e.u16()?;
        let data = e.vec16()?;
        let parsed = match ext_type {
            EXT_SERVER_NAME => parse_sni(data, &mut hello.sni),
            EXT_ALPN => parse_alpn(data).map(|alpn| hello.alpn = alpn),
            EXT_SUPPORTED_VERSIONS => parse_client_versions(data).map(|v| {
                *saw_versions = true;
                hello.offered_versions = v;
            }),
            EXT_KEY_SHARE => count_key_shares(data).map(|n| hello.key_shares = n),
            _ => Some(()),
        };
        ok &= parsed.is_some();
    }
    Some(ok)
}

/// `server_name` extension: the first `host_name` entry into `sni` (unless
/// already set), if it is a sane name (printable ASCII, at most 255 bytes);
/// `None` if the extension is malformed.
fn parse_sni(data: &[u8], sni: &mut Option<String>) -> Option<()> {
    let mut r = Reader::new(data);
    let list = r.vec16()?;
    if !r.is_empty() {
        return None;
    }
    let mut l = Reader::new(list);
    let mut found: Option<&[u8]> = None;
    while !l.is_empty() {
        let name_type = l.u8()?;
        let name = l.vec16()?;
        if name_type == 0 && found.is_none() {
            let sane =
                !name.is_empty() && name.len() <= 255 && name.iter().all(u8::is_ascii_graphic);
            if !sane {
                return None;
            }
            found = Some(name);
        }
    }
    if let (None, Some(name)) = (&sni, found) {
        *sni = Some(String::from_utf8_lossy(name).into_owned());
    }
    Some(())
}

/// ALPN extension: the protocol names.
fn parse_alpn(data: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader::new(data);
    let list = r.vec16()?;
    if !r.is_empty() {
        return None;
    }
    let mut l = Reader::new(list);
    let mut names = Vec::new();
    while !l.is_empty() {
        let name = l.vec8()?;
        names.push(String::from_utf8_lossy(name).into_owned());
    }
    Some(names)
}

/// `supported_versions` in a `ClientHello`: a list of versions, GREASE
/// left out.
fn parse_client_versions(data: &[u8]) -> Option<Vec<u16>> {
    let mut r = Reader::new(data);
    let list = r.vec8()?;
    if !r.is_empty() || list.len() % 2 != 0 {
        return None;
    }
    Some(
        list.chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .filter(|&v| !is_grease(v))
            .collect(),
    )
}

/// `key_share` in a `ClientHello`: how many shares (GREASE left out).
fn count_key_shares(data: &[u8]) -> Option<usize> {
    let mut r = Reader::new(data);
    let list = r.vec16()?;
    if !r.is_empty() {
        return None;
    }
    let mut l = Reader::new(list);
    let mut n = 0;
    while !l.is_empty() {
        let group = l.u16()?;
        l.vec16()?;
        if !is_grease(group) {
            n += 1;
        }
    }
    Some(n)
}

/// Parses a whole `ServerHello` body; `None` if it contradicts its lengths.
pub(super) fn parse_server_hello(body: &[u8]) -> Option<ServerHello> {
    let mut r = Reader::new(body);
    let legacy_version = r.u16()?;
    let random = r.take(32)?;
    r.vec8()?; // legacy_session_id_echo
    let cipher = r.u16()?;
    r.u8()?; // legacy_compression_method
    let mut hello = ServerHello {
        version: legacy_version,
        cipher,
        hello_retry_request: random == HRR_RANDOM,
        resumed: false,
    };
    if r.is_empty() {
        return Some(hello); // no extensions
    }
    let exts = r.vec16()?;
    if !r.is_empty() {
        return None;
    }
    let mut e = Reader::new(exts);
    while !e.is_empty() {
        let ext_type = e.u16()?;
        let data = e.vec16()?;
        if ext_type == EXT_SUPPORTED_VERSIONS {
            let [hi, lo] = *data else {
                return None;
            };
            hello.version = u16::from_be_bytes([hi, lo]);
        } else if ext_type == EXT_PRE_SHARED_KEY {
            hello.resumed = true;
        }
    }
    Some(hello)
}

/// A cursor over bytes whose reads fail (`None`) instead of running past
/// the end.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn take_at_most(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.rest.len());
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        head
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one-byte length prefix.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    /// A vector with a two-byte length prefix.
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}
