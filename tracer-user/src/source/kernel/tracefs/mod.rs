//! Tracefs access: locating (or mounting) tracefs and parsing tracepoint `format` files.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

mod print_fmt;

use print_fmt::{mentions_field, parse_entry, symbolic_calls};

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

#[cfg(test)]
mod tests;
