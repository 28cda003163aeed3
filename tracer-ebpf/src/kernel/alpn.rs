//! Whether a kept `ClientHello` offers HTTP/2 (ALPN `h2`): such a
//! connection's records are frames of many streams, not one request and its
//! response, so the TLS program follows its handshake but no turns. The walk
//! is the fixed layout of RFC 8446 4.1.2 up to the extensions, then at most
//! [`MAX_EXTENSIONS`] extension headers and [`MAX_NAMES`] protocol names;
//! a hello it cannot walk to the end is read in userspace.

use tracer_ebpf::HELLO_BYTES;

/// Extensions walked before the ALPN one (browsers send about 16).
const MAX_EXTENSIONS: u32 = 32;
/// Protocol names read in the ALPN list (the edge sends two).
const MAX_NAMES: u32 = 8;
const EXT_ALPN: u32 = 16;
/// Record header (5), handshake header (4), legacy version (2), random (32).
const SESSION_ID_AT: u32 = 43;

/// What the walk found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `h2` is among the protocols offered.
    H2,
    /// No ALPN extension, or one without `h2`.
    Other,
    /// The hello could not be walked within the bounds.
    Unknown,
}

#[inline(always)]
fn byte(b: &[u8; HELLO_BYTES], at: u32) -> u32 {
    u32::from(b[(at as usize) & (HELLO_BYTES - 1)])
}

#[inline(always)]
fn be16(b: &[u8; HELLO_BYTES], at: u32) -> u32 {
    (byte(b, at) << 8) | byte(b, at + 1)
}

/// The ALPN offer of the `ClientHello` record in `b[..len]`.
#[inline(always)]
pub fn offer(b: &[u8; HELLO_BYTES], len: u32) -> Alpn {
    if len > HELLO_BYTES as u32 || len <= SESSION_ID_AT {
        return Alpn::Unknown;
    }
    let mut p = SESSION_ID_AT + 1 + byte(b, SESSION_ID_AT);
    if p + 2 > len {
        return Alpn::Unknown;
    }
    p += 2 + be16(b, p);
    if p + 1 > len {
        return Alpn::Unknown;
    }
    p += 1 + byte(b, p);
    if p + 2 > len {
        // No extensions at all.
        return if p == len { Alpn::Other } else { Alpn::Unknown };
    }
    p += 2;
    let mut alpn = 0;
    for _ in 0..MAX_EXTENSIONS {
        if p >= len {
            break;
        }
        if p + 4 > len {
            return Alpn::Unknown;
        }
        if be16(b, p) == EXT_ALPN {
            if p + 4 + be16(b, p + 2) > len {
                return Alpn::Unknown;
            }
            alpn = p + 4;
            break;
        }
        p += 4 + be16(b, p + 2);
    }
    if alpn == 0 {
        // Walked to the record's end exactly: no ALPN.
        return if p == len { Alpn::Other } else { Alpn::Unknown };
    }
    // The protocol name list: its length, then (length, name) pairs.
    let end = alpn + 2 + be16(b, alpn);
    let mut q = alpn + 2;
    for _ in 0..MAX_NAMES {
        if q >= end || q >= len {
            return Alpn::Other;
        }
        let n = byte(b, q);
        if n == 2
            && q + 3 <= len
            && byte(b, q + 1) == u32::from(b'h')
            && byte(b, q + 2) == u32::from(b'2')
        {
            return Alpn::H2;
        }
        q += 1 + n;
    }
    if q >= end {
        Alpn::Other
    } else {
        Alpn::Unknown
    }
}
