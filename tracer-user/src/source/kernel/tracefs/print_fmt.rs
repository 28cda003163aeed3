//! The symbol tables in a tracepoint's `print fmt`: the `__print_symbolic`
//! calls, split at top-level commas with C literals honoured, their numeric
//! keys and string names. Hand-written: the text is C, not a data format.

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
pub(super) fn symbolic_calls(fmt: &str) -> Vec<Vec<&str>> {
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
pub(super) fn mentions_field(expr: &str, field: &str) -> bool {
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
pub(super) fn parse_entry(entry: &str) -> Option<(u64, String)> {
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
