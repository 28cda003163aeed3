//! Tracefs access: locating (or mounting) tracefs and parsing tracepoint `format` files.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Preferred tracefs mount point.
const TRACEFS_ROOT: &str = "/sys/kernel/tracing";
/// Legacy location of tracefs below debugfs.
const DEBUGFS_TRACING_ROOT: &str = "/sys/kernel/debug/tracing";

/// Errors from locating tracefs or reading and parsing tracepoint formats.
#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    /// tracefs was not mounted and mounting it ourselves failed.
    #[error(
        "tracefs is not mounted and mounting it at /sys/kernel/tracing failed: {source}; \
         mount it by hand with `mount -t tracefs nodev /sys/kernel/tracing` (as root)"
    )]
    Mount {
        /// The error returned by mount(2).
        #[source]
        source: io::Error,
    },
    /// tracefs is mounted but has no `events` directory (kernel without event tracing).
    #[error("tracefs at {} has no `events` directory (kernel built without CONFIG_EVENT_TRACING?)", path.display())]
    NoEvents {
        /// The tracefs root that lacks `events`.
        path: PathBuf,
    },
    /// Reading a file or directory below tracefs failed.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The path that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// A tracepoint category or name is not usable as a single path component.
    #[error("invalid tracepoint category or name {0:?}")]
    InvalidName(String),
    /// A line of the format file could not be parsed.
    #[error("malformed tracepoint format at line {line}: {reason}")]
    Malformed {
        /// 1-based line number in the format text.
        line: usize,
        /// What was wrong with it.
        reason: String,
    },
    /// The format text lacks a mandatory header line (`name:`, `ID:` or `format:`).
    #[error("malformed tracepoint format: no `{0}` line")]
    Missing(&'static str),
}

/// A parsed tracepoint format file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    /// Event name (`name:` line).
    pub name: String,
    /// Event id (`ID:` line), as used by perf and `common_type`.
    pub id: u32,
    /// All fields, including the `common_*` ones, in file order.
    pub fields: Vec<Field>,
    /// The `print fmt:` text (without the `print fmt: ` prefix); empty if absent.
    pub print_fmt: String,
}

/// One field of a tracepoint record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Field name without any array suffix (`saddr` for `__u8 saddr[4]`).
    pub name: String,
    /// C type as printed by the kernel, e.g. `__u8`, `const void *`, `enum skb_drop_reason`.
    pub c_type: String,
    /// Byte offset of the field in the raw record.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
    /// Whether the kernel reports the type as signed.
    pub signed: bool,
    /// Element count for array fields (`saddr[4]` -> 4). When the kernel printed a
    /// non-numeric length (older kernels: `saddr[sizeof(struct sockaddr_in6)]`) it is
    /// derived from `size` and the element type, or 0 if the element size is unknown.
    pub array_len: Option<u32>,
}

/// Find the tracefs root (`/sys/kernel/tracing`, else `/sys/kernel/debug/tracing`).
/// If neither has an `events` directory, mount tracefs at `/sys/kernel/tracing` and
/// return that.
pub fn ensure_mounted() -> Result<PathBuf, TracefsError> {
    for root in [TRACEFS_ROOT, DEBUGFS_TRACING_ROOT] {
        let root = Path::new(root);
        if root.join("events").is_dir() {
            return Ok(root.to_path_buf());
        }
    }
    let root = PathBuf::from(TRACEFS_ROOT);
    // SAFETY: all pointers are valid NUL-terminated C strings that outlive the call;
    // tracefs takes no mount data, so passing NULL is allowed.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let source = io::Error::last_os_error();
        // Someone else may have mounted it in the meantime (EBUSY).
        if root.join("events").is_dir() {
            return Ok(root);
        }
        return Err(TracefsError::Mount { source });
    }
    if root.join("events").is_dir() {
        Ok(root)
    } else {
        Err(TracefsError::NoEvents { path: root })
    }
}

/// Read and parse `<root>/events/<category>/<name>/format`.
/// `Ok(None)` when the event directory does not exist (the kernel lacks the tracepoint).
pub fn read_format(
    root: &Path,
    category: &str,
    name: &str,
) -> Result<Option<Format>, TracefsError> {
    for part in [category, name] {
        if part.is_empty() || part == "." || part == ".." || part.contains(['/', '\0']) {
            return Err(TracefsError::InvalidName(part.to_owned()));
        }
    }
    let dir = root.join("events").join(category).join(name);
    match std::fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Ok(None),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(source) => return Err(TracefsError::Io { path: dir, source }),
    }
    let path = dir.join("format");
    let text =
        std::fs::read_to_string(&path).map_err(|source| TracefsError::Io { path, source })?;
    Format::parse(&text).map(Some)
}

impl Format {
    /// Parse the text of a tracepoint `format` file.
    pub fn parse(text: &str) -> Result<Format, TracefsError> {
        let mut name: Option<String> = None;
        let mut id: Option<u32> = None;
        let mut saw_format = false;
        let mut fields = Vec::new();
        let mut print_fmt = String::new();

        let mut lines = text.lines().enumerate();
        while let Some((idx, raw)) = lines.next() {
            let lineno = idx + 1;
            let malformed = |reason: String| TracefsError::Malformed {
                line: lineno,
                reason,
            };
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("print fmt:") {
                // The print format is the rest of the file (normally one line).
                print_fmt.push_str(rest.trim_start());
                for (_, more) in lines.by_ref() {
                    print_fmt.push('\n');
                    print_fmt.push_str(more);
                }
                let trimmed = print_fmt.trim_end().len();
                print_fmt.truncate(trimmed);
                break;
            } else if let Some(rest) = line.strip_prefix("name:") {
                let value = rest.trim();
                if name.is_some() {
                    return Err(malformed("duplicate `name:` line".into()));
                }
                if value.is_empty() {
                    return Err(malformed("empty event name".into()));
                }
                name = Some(value.to_owned());
            } else if let Some(rest) = line.strip_prefix("ID:") {
                if id.is_some() {
                    return Err(malformed("duplicate `ID:` line".into()));
                }
                let value = rest.trim();
                id = Some(
                    value
                        .parse()
                        .map_err(|_| malformed(format!("bad event id {value:?}")))?,
                );
            } else if line == "format:" {
                saw_format = true;
            } else if line.starts_with("field:") || line.starts_with("field special:") {
                if !saw_format {
                    return Err(malformed("field line before `format:`".into()));
                }
                fields.push(parse_field(line).map_err(malformed)?);
            } else {
                let shown: String = line.chars().take(60).collect();
                return Err(malformed(format!("unrecognised line {shown:?}")));
            }
        }

        Ok(Format {
            name: name.ok_or(TracefsError::Missing("name:"))?,
            id: id.ok_or(TracefsError::Missing("ID:"))?,
            fields: if saw_format {
                fields
            } else {
                return Err(TracefsError::Missing("format:"));
            },
            print_fmt,
        })
    }

    /// The field called `name`, if any.
    #[must_use]
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Parse `__print_symbolic(REC->FIELD, { 2, "NOT_SPECIFIED" }, ...)` out of
    /// `print_fmt`: the numeric-keyed entries only (entries keyed by a symbol such as
    /// `{ TCP_ESTABLISHED, "TCP_ESTABLISHED" }` are skipped). Entries of every
    /// `__print_symbolic` call whose value expression mentions `REC->FIELD` are merged
    /// (the first one wins on duplicate keys). Negative keys are stored two's complement.
    /// `None` when the field has no `__print_symbolic` with numeric keys.
    #[must_use]
    pub fn symbols(&self, field: &str) -> Option<BTreeMap<u64, String>> {
        let mut out = BTreeMap::new();
        for args in symbolic_calls(&self.print_fmt) {
            let Some((value, entries)) = args.split_first() else {
                continue;
            };
            if !mentions_field(value, field) {
                continue;
            }
            for entry in entries {
                if let Some((key, name)) = parse_entry(entry) {
                    out.entry(key).or_insert(name);
                }
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

/// Parse one `field:TYPE NAME;\toffset:N;\tsize:N;\tsigned:N;` line.
fn parse_field(line: &str) -> Result<Field, String> {
    let mut decl = None;
    let mut offset = None;
    let mut size = None;
    let mut signed = None;
    for part in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once(':') else {
            return Err(format!("expected `key:value`, found {part:?}"));
        };
        let value = value.trim();
        let num = |what: &str| {
            value
                .parse::<u32>()
                .map_err(|_| format!("bad {what} {value:?}"))
        };
        match key.trim() {
            "field" | "field special" => decl = Some(value),
            "offset" => offset = Some(num("offset")?),
            "size" => size = Some(num("size")?),
            "signed" => {
                signed = Some(match value {
                    "0" => false,
                    "1" => true,
                    _ => return Err(format!("bad signed {value:?}")),
                });
            }
            _ => {} // unknown attributes are ignored for forward compatibility
        }
    }
    let decl = decl.ok_or("no field declaration")?;
    let offset = offset.ok_or("field without offset")?;
    let size = size.ok_or("field without size")?;
    let (name, c_type, array) = split_decl(decl)?;
    let array_len = array.map(|len| {
        len.parse::<u32>().unwrap_or_else(|_| {
            c_type_size(c_type)
                .filter(|&elem| elem > 0)
                .map_or(0, |elem| size / elem)
        })
    });
    Ok(Field {
        name: name.to_owned(),
        c_type: c_type.to_owned(),
        offset,
        size,
        signed: signed.unwrap_or(false),
        array_len,
    })
}

/// Split `const void * skbaddr` / `__u8 saddr[28]` into (name, type, array length text).
fn split_decl(decl: &str) -> Result<(&str, &str, Option<&str>), String> {
    let decl = decl.trim();
    let (base, array) = match decl.strip_suffix(']') {
        Some(inner) => {
            let open = inner
                .rfind('[')
                .ok_or_else(|| format!("unbalanced `]` in {decl:?}"))?;
            (inner[..open].trim_end(), Some(inner[open + 1..].trim()))
        }
        None => (decl, None),
    };
    let start = base
        .char_indices()
        .rev()
        .take_while(|&(_, c)| c.is_ascii_alphanumeric() || c == '_')
        .last()
        .map_or(base.len(), |(i, _)| i);
    let name = &base[start..];
    let c_type = base[..start].trim();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) || c_type.is_empty() {
        return Err(format!("cannot split {decl:?} into type and name"));
    }
    Ok((name, c_type, array))
}

/// Size of a few common C element types, to derive symbolic array lengths.
fn c_type_size(c_type: &str) -> Option<u32> {
    if c_type.ends_with('*') {
        return Some(if cfg!(target_pointer_width = "64") {
            8
        } else {
            4
        });
    }
    let t = c_type
        .trim_start_matches("const ")
        .trim_start_matches("volatile ")
        .trim();
    Some(match t {
        "char" | "signed char" | "unsigned char" | "u8" | "s8" | "__u8" | "__s8" | "bool"
        | "_Bool" => 1,
        "short" | "unsigned short" | "u16" | "s16" | "__u16" | "__s16" | "__be16" | "__le16" => 2,
        "int" | "unsigned int" | "unsigned" | "u32" | "s32" | "__u32" | "__s32" | "__be32"
        | "__le32" => 4,
        "long long" | "unsigned long long" | "u64" | "s64" | "__u64" | "__s64" | "__be64"
        | "__le64" => 8,
        "long" | "unsigned long" => {
            if cfg!(target_pointer_width = "64") {
                8
            } else {
                4
            }
        }
        _ => return None,
    })
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Index just past the string/char literal starting at `start` (which holds the quote).
fn skip_literal(b: &[u8], start: usize) -> usize {
    let quote = b[start];
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// Split `s` at top-level commas, honouring (), {}, [] and string literals.
/// `s` must be balanced; `None` otherwise.
fn split_top_level(s: &str) -> Option<Vec<&str>> {
    let b = s.as_bytes();
    let mut stack = Vec::new();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                i = skip_literal(b, i);
                continue;
            }
            open @ (b'(' | b'{' | b'[') => stack.push(open),
            close @ (b')' | b'}' | b']') => {
                let want = match close {
                    b')' => b'(',
                    b'}' => b'{',
                    _ => b'[',
                };
                if stack.pop() != Some(want) {
                    return None;
                }
            }
            b',' if stack.is_empty() => {
                parts.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if !stack.is_empty() {
        return None;
    }
    parts.push(s[start..].trim());
    Some(parts)
}

/// Given `s[open] == '('`, the index of the matching `)`.
fn matching_paren(s: &str, open: usize) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                i = skip_literal(b, i);
                continue;
            }
            b'(' | b'{' | b'[' => depth += 1,
            b')' | b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return (b[i] == b')').then_some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The argument lists of every `__print_symbolic(...)` call in `fmt`, nested ones included.
fn symbolic_calls(fmt: &str) -> Vec<Vec<&str>> {
    let b = fmt.as_bytes();
    let mut calls = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' || b[i] == b'\'' {
            i = skip_literal(b, i);
        } else if is_ident_byte(b[i]) {
            let start = i;
            while i < b.len() && is_ident_byte(b[i]) {
                i += 1;
            }
            if matches!(&fmt[start..i], "__print_symbolic" | "__print_symbolic_u64") {
                let open = i + (fmt[i..].len() - fmt[i..].trim_start().len());
                if b.get(open) == Some(&b'(') {
                    if let Some(close) = matching_paren(fmt, open) {
                        if let Some(args) = split_top_level(&fmt[open + 1..close]) {
                            calls.push(args);
                        }
                    }
                }
            }
        } else {
            i += 1;
        }
    }
    calls
}

/// Whether the expression contains `REC->field` as a whole token.
fn mentions_field(expr: &str, field: &str) -> bool {
    let b = expr.as_bytes();
    let mut from = 0;
    while let Some(pos) = expr[from..].find("REC->") {
        let at = from + pos;
        let name_start = at + "REC->".len();
        let mut name_end = name_start;
        while name_end < b.len() && is_ident_byte(b[name_end]) {
            name_end += 1;
        }
        let bounded = at == 0 || !is_ident_byte(b[at - 1]);
        if bounded && &expr[name_start..name_end] == field {
            return true;
        }
        from = name_start;
    }
    false
}

/// Parse `{ 12, "NETFILTER_DROP" }`; `None` when the key is not a number.
fn parse_entry(entry: &str) -> Option<(u64, String)> {
    let inner = entry.trim().strip_prefix('{')?.strip_suffix('}')?;
    let parts = split_top_level(inner)?;
    let [key, value] = parts.as_slice() else {
        return None;
    };
    Some((parse_c_number(key)?, parse_c_string(value)?))
}

/// Parse a C integer literal (decimal, hex, octal, optional sign, suffixes, parentheses).
fn parse_c_number(s: &str) -> Option<u64> {
    let mut s = s.trim();
    while let Some(inner) = s.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        s = inner.trim();
    }
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let s = s.trim_end_matches(['u', 'U', 'l', 'L']);
    let value = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()?
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8).ok()?
    } else if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.parse().ok()?
    } else {
        return None;
    };
    Some(if negative {
        value.wrapping_neg()
    } else {
        value
    })
}

/// Parse one or more adjacent C string literals into their value.
fn parse_c_string(s: &str) -> Option<String> {
    let mut rest = s.trim();
    let mut out = String::new();
    if !rest.starts_with('"') {
        return None;
    }
    while let Some(body) = rest.strip_prefix('"') {
        let mut chars = body.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    end = Some(i);
                    break;
                }
                '\\' => {
                    let (_, esc) = chars.next()?;
                    out.push(match esc {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '0' => '\0',
                        other => other,
                    });
                }
                c => out.push(c),
            }
        }
        rest = body[end? + 1..].trim_start();
    }
    rest.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KFREE_SKB: &str = include_str!("testdata/kfree_skb.format");
    const TCP_SEND_RESET: &str = include_str!("testdata/tcp_send_reset.format");
    const TCP_RECEIVE_RESET: &str = include_str!("testdata/tcp_receive_reset.format");
    const TCP_RETRANSMIT_SYNACK: &str = include_str!("testdata/tcp_retransmit_synack.format");
    const INET_SOCK_SET_STATE: &str = include_str!("testdata/inet_sock_set_state.format");

    fn parse(text: &str) -> Format {
        match Format::parse(text) {
            Ok(f) => f,
            Err(e) => panic!("fixture does not parse: {e}"),
        }
    }

    fn field<'a>(f: &'a Format, name: &str) -> &'a Field {
        f.field(name)
            .unwrap_or_else(|| panic!("no field {name} in {}", f.name))
    }

    #[test]
    fn kfree_skb_fields() {
        let f = parse(KFREE_SKB);
        assert_eq!(f.name, "kfree_skb");
        assert_eq!(f.id, 2310);
        assert_eq!(f.fields.len(), 9);
        let reason = field(&f, "reason");
        assert_eq!((reason.offset, reason.size, reason.signed), (36, 4, false));
        assert_eq!(reason.c_type, "enum skb_drop_reason");
        assert_eq!(reason.array_len, None);
        assert_eq!(field(&f, "protocol").offset, 32);
        assert_eq!(field(&f, "protocol").c_type, "unsigned short");
        let skbaddr = field(&f, "skbaddr");
        assert_eq!((skbaddr.offset, skbaddr.size), (8, 8));
        assert_eq!(skbaddr.c_type, "void *");
        let pid = field(&f, "common_pid");
        assert!(pid.signed);
        assert_eq!(pid.c_type, "int");
        assert!(f.print_fmt.starts_with("\"skbaddr=%p"));
        assert!(f.print_fmt.ends_with("{ 128, \"MAX\" })"));
    }

    #[test]
    fn kfree_skb_reason_symbols() {
        let f = parse(KFREE_SKB);
        let syms = f.symbols("reason").expect("reason symbols");
        assert_eq!(syms.get(&2).map(String::as_str), Some("NOT_SPECIFIED"));
        assert_eq!(syms.get(&3).map(String::as_str), Some("NO_SOCKET"));
        assert!(syms.values().any(|v| v == "NETFILTER_DROP"));
        assert!(syms.values().any(|v| v == "NO_SOCKET"));
        assert_eq!(syms.len(), 127);
        assert_eq!(f.symbols("protocol"), None);
        assert_eq!(f.symbols("nonexistent"), None);
    }

    #[test]
    fn tcp_send_reset() {
        let f = parse(TCP_SEND_RESET);
        let saddr = field(&f, "saddr");
        assert_eq!(saddr.array_len, Some(28));
        assert_eq!((saddr.offset, saddr.size), (32, 28));
        assert_eq!(saddr.c_type, "__u8");
        assert_eq!(field(&f, "daddr").offset, 60);
        assert_eq!(field(&f, "skaddr").c_type, "const void *");
        let reason = f.symbols("reason").expect("reason symbols");
        assert_eq!(reason.get(&1).map(String::as_str), Some("NO_SOCKET"));
        assert_eq!(reason.get(&0).map(String::as_str), Some("NOT_SPECIFIED"));
        // `state` is keyed by symbols (TCP_ESTABLISHED, ...) and appears in a ternary.
        assert_eq!(f.symbols("state"), None);
    }

    #[test]
    fn tcp_receive_reset_and_retransmit_synack() {
        let f = parse(TCP_RECEIVE_RESET);
        assert_eq!(field(&f, "sock_cookie").offset, 64);
        assert_eq!(field(&f, "saddr_v6").array_len, Some(16));
        let fam = f.symbols("family").expect("family symbols");
        assert_eq!(fam.get(&2).map(String::as_str), Some("AF_INET"));
        assert_eq!(fam.get(&10).map(String::as_str), Some("AF_INET6"));

        let f = parse(TCP_RETRANSMIT_SYNACK);
        assert_eq!(f.name, "tcp_retransmit_synack");
        assert_eq!(field(&f, "req").offset, 16);
        assert_eq!(field(&f, "daddr_v6").offset, 54);
        assert_eq!(f.symbols("family").map(|m| m.len()), Some(2));
        assert_eq!(f.symbols("sport"), None);
    }

    #[test]
    fn inet_sock_set_state() {
        let f = parse(INET_SOCK_SET_STATE);
        let newstate = f.symbols("newstate").expect("newstate symbols");
        assert_eq!(newstate.get(&3).map(String::as_str), Some("TCP_SYN_RECV"));
        assert_eq!(newstate.get(&7).map(String::as_str), Some("TCP_CLOSE"));
        assert_eq!(newstate.len(), 12);
        assert_eq!(f.symbols("oldstate"), Some(newstate));
        let proto = f.symbols("protocol").expect("protocol symbols");
        assert_eq!(proto.get(&262).map(String::as_str), Some("IPPROTO_MPTCP"));
        assert_eq!(field(&f, "newstate").offset, 20);
        assert!(field(&f, "newstate").signed);
    }

    #[test]
    fn symbols_nested_and_tricky() {
        let text = "name: x\nID: 1\nformat:\n\tfield:int a;\toffset:8;\tsize:4;\tsigned:1;\n\n\
            print fmt: \"a=%s b=%s\", REC->a > 0 ? (__print_symbolic(REC->a, { 0x10, \"HEX, (x)\" }, \
            { (2), \"PAREN}\" }, { -1, \"NEG\" }, { FOO, \"SYM\" }, { 5UL, \"SUFFIX\" \"CAT\" })) : \"?\", \
            __print_symbolic(REC->ab, { 9, \"OTHER\" }), __print_symbolic(REC->a, { 2, \"DUP\" }, { 3, \"LATE\" })";
        let f = parse(text);
        let a = f.symbols("a").expect("a symbols");
        assert_eq!(a.get(&16).map(String::as_str), Some("HEX, (x)"));
        assert_eq!(a.get(&2).map(String::as_str), Some("PAREN}"));
        assert_eq!(a.get(&u64::MAX).map(String::as_str), Some("NEG"));
        assert_eq!(a.get(&5).map(String::as_str), Some("SUFFIXCAT"));
        assert_eq!(a.get(&3).map(String::as_str), Some("LATE"));
        assert_eq!(a.len(), 5);
        assert_eq!(f.symbols("ab").map(|m| m.len()), Some(1));
        assert_eq!(f.symbols("b"), None);
    }

    #[test]
    fn symbols_unbalanced_does_not_panic() {
        for fmt in [
            "__print_symbolic(REC->a, { 1, \"X\" }",
            "__print_symbolic(REC->a, { 1, \"X }",
            "__print_symbolic(REC->a, { 1, \"X\" ))",
            "__print_symbolic(REC->a, { 1 \"X\" })",
            "__print_symbolic",
            "__print_symbolic(",
            "\"unterminated __print_symbolic(REC->a, { 1, \"X\" })",
            "__print_symbolic(REC->a, { 1, \"\\",
        ] {
            let f = Format {
                name: "x".into(),
                id: 1,
                fields: vec![],
                print_fmt: fmt.into(),
            };
            assert_eq!(f.symbols("a"), None, "{fmt}");
        }
    }

    #[test]
    fn symbolic_array_length() {
        let text = "name: x\nID: 1\nformat:\n\
            \tfield:__u8 saddr[sizeof(struct sockaddr_in6)];\toffset:8;\tsize:28;\tsigned:0;\n\
            \tfield:__u32 w[N];\toffset:36;\tsize:16;\tsigned:0;\n\
            \tfield:struct foo f[N];\toffset:52;\tsize:16;\tsigned:0;\n\
            \tfield:__data_loc char[] dev;\toffset:68;\tsize:4;\tsigned:0;\n\
            \tfield:void *p;\toffset:72;\tsize:8;\tsigned:0;\n";
        let f = parse(text);
        assert_eq!(field(&f, "saddr").array_len, Some(28));
        assert_eq!(field(&f, "w").array_len, Some(4));
        assert_eq!(field(&f, "f").array_len, Some(0));
        let dev = field(&f, "dev");
        assert_eq!(
            (dev.c_type.as_str(), dev.array_len),
            ("__data_loc char[]", None)
        );
        assert_eq!(field(&f, "p").c_type, "void *");
        assert_eq!(f.print_fmt, "");
    }

    #[test]
    fn malformed_input_is_an_error() {
        let header = "name: kfree_skb\nID: 2310\nformat:\n";
        let bad_fields = [
            "\tfield:int common_pid;\toffset:4;\tsize", // truncated mid-key
            "\tfield:int common_pid;\toffset:4;\tsize:", // truncated value
            "\tfield:int common_pid;\toffset:4",        // no size
            "\tfield:int common_pid;\tsize:4;\tsigned:1;", // no offset
            "\tfield:int common_pid;\toffset:x;\tsize:4;", // bad number
            "\tfield:int common_pid;\toffset:-4;\tsize:4;", // negative
            "\tfield:common_pid;\toffset:4;\tsize:4;",  // no type
            "\tfield:int ;\toffset:4;\tsize:4;",        // no name
            "\tfield:int a];\toffset:4;\tsize:4;",      // unbalanced
            "\tfield:int a;\toffset:4;\tsize:4;\tsigned:2;", // bad signed
            "\tfield:int a;\toffset:99999999999;\tsize:4;", // overflow
        ];
        for bad in bad_fields {
            let text = format!("{header}{bad}\n");
            match Format::parse(&text) {
                Err(TracefsError::Malformed { line: 4, .. }) => {}
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        for garbage in [
            "",
            "garbage",
            "\u{0}\u{1}\u{2}",
            "name: x\n",
            "name: x\nID: 1\n",
            "name: x\nID: y\nformat:\n",
            "name: x\nID: 1\nID: 2\nformat:\n",
            "ID: 1\nformat:\n",
            "name: x\nID: 1\n\tfield:int a;\toffset:4;\tsize:4;\n",
            "name: x\nID: 1\nformat:\nwhat is this\n",
            "name:\nID: 1\nformat:\n",
        ] {
            assert!(Format::parse(garbage).is_err(), "{garbage:?} parsed");
        }
        // Every prefix of a real format either parses or errors; none panics.
        for (i, _) in KFREE_SKB.char_indices() {
            let _ = Format::parse(&KFREE_SKB[..i]);
            let _ = Format::parse(&KFREE_SKB[i..]);
        }
        // A prefix cut inside a field line is an error.
        let cut = KFREE_SKB.find("offset:36").expect("fixture has reason") + 3;
        assert!(Format::parse(&KFREE_SKB[..cut]).is_err());
    }

    #[test]
    fn read_format_from_directory() {
        let root = std::env::temp_dir().join(format!("tracefs-test-{}", std::process::id()));
        let dir = root.join("events/skb/kfree_skb");
        std::fs::create_dir_all(&dir).expect("create temp dir");
        std::fs::write(dir.join("format"), KFREE_SKB).expect("write format");
        let got = read_format(&root, "skb", "kfree_skb").expect("read ok");
        assert_eq!(got.map(|f| f.id), Some(2310));
        assert!(matches!(read_format(&root, "skb", "nope"), Ok(None)));
        assert!(matches!(read_format(&root, "nope", "nope"), Ok(None)));
        assert!(matches!(
            read_format(&root, "..", "x"),
            Err(TracefsError::InvalidName(_))
        ));
        assert!(matches!(
            read_format(&root, "skb", "a/b"),
            Err(TracefsError::InvalidName(_))
        ));
        std::fs::remove_dir_all(&root).expect("cleanup");
    }

    #[test]
    fn live_tracefs_if_mounted() {
        let root = Path::new(TRACEFS_ROOT);
        if !root.join("events").is_dir() {
            eprintln!("skipping: tracefs not mounted at {TRACEFS_ROOT}");
            return;
        }
        match read_format(root, "skb", "kfree_skb") {
            Ok(Some(f)) => assert!(f.field("skbaddr").is_some()),
            Ok(None) => eprintln!("kernel has no skb/kfree_skb"),
            Err(e) => panic!("{e}"),
        }
        assert!(matches!(
            read_format(root, "skb", "no_such_event_xyz"),
            Ok(None)
        ));
        assert_eq!(ensure_mounted().ok().as_deref(), Some(root));
    }
}
