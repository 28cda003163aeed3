//! Minimal reader for kernel BTF (`/sys/kernel/btf/vmlinux`): struct member offsets and sizes, enum values.
//!
//! Why the project reads BTF itself (decided 2026-12, for the three lookups above):
//! - aya-obj parses BTF but keeps member offsets and enum values behind private accessors.
//! - `btf-rs` (retis) is LGPL, this binary is MIT/Apache.
//! - `btfparse` 1.3 (Apache-2.0, tried) keeps one type id per *name*, the last one read, of
//!   any kind: a later typedef, forward declaration or function of the same name replaces
//!   the struct we ask for; and it copies every type of the kernel into owned values at
//!   start-up.
//!
//! This reader walks the type section once, resolves only structs, unions and enums by name
//! and kind, bounds every offset and depth, and is tested on synthetic and malformed blobs.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

mod query;

/// Where the running kernel exposes its own BTF.
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
/// `btf_header.magic`.
const BTF_MAGIC: u16 = 0xEB9F;
/// Size of the version-1 `btf_header`.
const HEADER_LEN: usize = 24;
/// Size of `struct btf_type` (`name_off`, `info`, `size`/`type`).
const TYPE_LEN: usize = 12;
/// Bound on typedef/modifier chains and anonymous-member nesting (guards against cycles).
const MAX_DEPTH: usize = 64;
/// BTF does not record pointer sizes; the kernel we read is the one we run on.
const POINTER_SIZE: u32 = if cfg!(target_pointer_width = "64") {
    8
} else {
    4
};

/// BTF kinds (`BTF_KIND_*`).
mod kind {
    pub const INT: u8 = 1;
    pub const PTR: u8 = 2;
    pub const ARRAY: u8 = 3;
    pub const STRUCT: u8 = 4;
    pub const UNION: u8 = 5;
    pub const ENUM: u8 = 6;
    pub const FWD: u8 = 7;
    pub const TYPEDEF: u8 = 8;
    pub const VOLATILE: u8 = 9;
    pub const CONST: u8 = 10;
    pub const RESTRICT: u8 = 11;
    pub const FUNC: u8 = 12;
    pub const FUNC_PROTO: u8 = 13;
    pub const VAR: u8 = 14;
    pub const DATASEC: u8 = 15;
    pub const FLOAT: u8 = 16;
    pub const DECL_TAG: u8 = 17;
    pub const TYPE_TAG: u8 = 18;
    pub const ENUM64: u8 = 19;
}

/// Errors from loading BTF or looking things up in it.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The BTF file does not exist: the kernel was built without BTF.
    #[error("kernel has no BTF (CONFIG_DEBUG_INFO_BTF): {} does not exist", path.display())]
    NotAvailable {
        /// The path that was looked for.
        path: PathBuf,
    },
    /// Reading the BTF file failed.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The path that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The blob does not start with the BTF magic.
    #[error("not BTF data (magic {0:#06x}, expected 0xeb9f)")]
    BadMagic(u16),
    /// The blob is BTF of the other byte order.
    #[error("BTF data is of foreign byte order (only little-endian BTF is supported)")]
    ForeignEndian,
    /// The BTF version is not 1.
    #[error("unsupported BTF version {0}")]
    UnsupportedVersion(u8),
    /// The header or a section lies outside the blob, or a type record is cut short.
    #[error("truncated or inconsistent BTF: {0}")]
    Truncated(&'static str),
    /// A type record has a kind this reader does not know (so later ids cannot be found).
    #[error("BTF type id {id} has unknown kind {kind}")]
    UnknownKind {
        /// The type id.
        id: u32,
        /// The raw kind value.
        kind: u8,
    },
    /// A string offset points outside the string section, is unterminated, or is not UTF-8.
    #[error("bad BTF string offset {0}")]
    BadString(u32),
    /// A type id refers past the last type.
    #[error("BTF type id {0} out of range")]
    BadTypeId(u32),
    /// Type references nest too deeply (probably a cycle).
    #[error("BTF type references nest too deeply at type id {0} (cycle?)")]
    TooDeep(u32),
    /// No struct or union of that name.
    #[error("no struct or union named `{0}` in BTF")]
    StructNotFound(String),
    /// The struct exists but has no such member (also not in anonymous sub-structs).
    #[error("struct `{struct_name}` has no member `{member}`")]
    MemberNotFound {
        /// The struct searched.
        struct_name: String,
        /// The member looked for.
        member: String,
    },
    /// The member is a bitfield, so it has no byte offset.
    #[error("`{struct_name}.{member}` is a bitfield")]
    Bitfield {
        /// The struct searched.
        struct_name: String,
        /// The member looked for.
        member: String,
    },
    /// The member does not start on a byte boundary.
    #[error("`{struct_name}.{member}` is at bit offset {bit_offset}, not byte aligned")]
    Unaligned {
        /// The struct searched.
        struct_name: String,
        /// The member looked for.
        member: String,
        /// Its bit offset from the start of the struct.
        bit_offset: u64,
    },
    /// The type has no size (void, function, forward declaration) or it overflows.
    #[error("BTF type id {0} has no usable size")]
    Unsized(u32),
}

/// One `struct btf_type` record (minus the name, only needed while indexing) plus where
/// its trailing data starts.
#[derive(Debug, Clone, Copy)]
struct TypeRec {
    info: u32,
    size_or_type: u32,
    /// Offset of the kind-specific trailing data within the type section.
    data: usize,
}

impl TypeRec {
    const VOID: TypeRec = TypeRec {
        info: 0,
        size_or_type: 0,
        data: 0,
    };

    fn kind(self) -> u8 {
        // Bits 24..29 of info.
        self.info.to_be_bytes()[0] & 0x1f
    }

    fn vlen(self) -> usize {
        (self.info & 0xffff) as usize
    }

    fn kind_flag(self) -> bool {
        self.info >> 31 == 1
    }
}

/// A member found by name: bit offset from the outer struct, bitfield size, type id.
struct Found {
    bit_offset: u64,
    bitfield_size: u32,
    type_id: u32,
}

/// Parsed BTF: raw sections plus a per-type index and a name index for structs/unions/enums.
pub struct Btf {
    types: Vec<u8>,
    strings: Vec<u8>,
    /// Indexed by type id; entry 0 is void.
    recs: Vec<TypeRec>,
    /// Names of STRUCT/UNION/ENUM/ENUM64 types -> ids, in id order.
    by_name: HashMap<String, Vec<u32>>,
    /// Ids of all ENUM/ENUM64 types (named or not).
    enum_ids: Vec<u32>,
}

impl fmt::Debug for Btf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Btf")
            .field("types", &(self.recs.len() - 1))
            .field("type_bytes", &self.types.len())
            .field("string_bytes", &self.strings.len())
            .finish_non_exhaustive()
    }
}

fn u16_at(buf: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        buf.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(buf: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        buf.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// `off` as usize (lossless on the 32/64-bit targets we support).
fn us(off: u32) -> usize {
    off as usize
}

impl Btf {
    /// Load the running kernel's BTF from `/sys/kernel/btf/vmlinux`.
    pub fn from_sys_fs() -> Result<Btf, BtfError> {
        let path = PathBuf::from(VMLINUX_BTF);
        match std::fs::read(&path) {
            Ok(bytes) => Btf::parse(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(BtfError::NotAvailable { path })
            }
            Err(source) => Err(BtfError::Io { path, source }),
        }
    }

    /// Parse a BTF blob. Never panics on malformed input.
    pub fn parse(bytes: &[u8]) -> Result<Btf, BtfError> {
        let magic = u16_at(bytes, 0).ok_or(BtfError::Truncated("header"))?;
        if magic != BTF_MAGIC {
            return Err(if magic.swap_bytes() == BTF_MAGIC {
                BtfError::ForeignEndian
            } else {
                BtfError::BadMagic(magic)
            });
        }
        if bytes.len() < HEADER_LEN {
            return Err(BtfError::Truncated("header"));
        }
        let version = bytes[2];
        if version != 1 {
            return Err(BtfError::UnsupportedVersion(version));
        }
        let field = |off| {
            u32_at(bytes, off)
                .map(us)
                .ok_or(BtfError::Truncated("header"))
        };
        let hdr_len = field(4)?;
        if hdr_len < HEADER_LEN || hdr_len > bytes.len() {
            return Err(BtfError::Truncated("header length"));
        }
        let section = |off: usize, len: usize, what| {
            hdr_len
                .checked_add(off)
                .and_then(|start| Some(start..start.checked_add(len)?))
                .and_then(|range| bytes.get(range))
                .ok_or(BtfError::Truncated(what))
        };
        let types = section(field(8)?, field(12)?, "type section out of bounds")?;
        let strings = section(field(16)?, field(20)?, "string section out of bounds")?;

        let mut btf = Btf {
            types: types.to_vec(),
            strings: strings.to_vec(),
            recs: vec![TypeRec::VOID],
            by_name: HashMap::new(),
            enum_ids: Vec::new(),
        };
        btf.index()?;
        Ok(btf)
    }

    /// Walk the type section, recording each type and indexing named structs/enums.
    fn index(&mut self) -> Result<(), BtfError> {
        let mut pos = 0usize;
        while pos < self.types.len() {
            let id = u32::try_from(self.recs.len())
                .map_err(|_| BtfError::Truncated("too many types"))?;
            let truncated = BtfError::Truncated("type record cut short");
            let name_off = u32_at(&self.types, pos).ok_or(truncated)?;
            let info =
                u32_at(&self.types, pos + 4).ok_or(BtfError::Truncated("type record cut short"))?;
            let size_or_type =
                u32_at(&self.types, pos + 8).ok_or(BtfError::Truncated("type record cut short"))?;
            let rec = TypeRec {
                info,
                size_or_type,
                data: pos + TYPE_LEN,
            };
            let vlen = rec.vlen();
            let extra = match rec.kind() {
                kind::INT | kind::VAR | kind::DECL_TAG => 4,
                kind::ARRAY => 12,
                kind::PTR
                | kind::FWD
                | kind::TYPEDEF
                | kind::VOLATILE
                | kind::CONST
                | kind::RESTRICT
                | kind::FUNC
                | kind::FLOAT
                | kind::TYPE_TAG => 0,
                kind::STRUCT | kind::UNION | kind::DATASEC | kind::ENUM64 => vlen * 12,
                kind::ENUM | kind::FUNC_PROTO => vlen * 8,
                other => return Err(BtfError::UnknownKind { id, kind: other }),
            };
            let end = rec.data + extra;
            if end > self.types.len() {
                return Err(BtfError::Truncated("type record cut short"));
            }
            match rec.kind() {
                kind::STRUCT | kind::UNION | kind::ENUM | kind::ENUM64 => {
                    if matches!(rec.kind(), kind::ENUM | kind::ENUM64) {
                        self.enum_ids.push(id);
                    }
                    let name = self.str_at(name_off)?;
                    if !name.is_empty() {
                        let name = name.to_owned();
                        self.by_name.entry(name).or_default().push(id);
                    }
                }
                _ => {}
            }
            self.recs.push(rec);
            pos = end;
        }
        Ok(())
    }

    /// The NUL-terminated string at `off` in the string section.
    fn str_at(&self, off: u32) -> Result<&str, BtfError> {
        let tail = self
            .strings
            .get(us(off)..)
            .ok_or(BtfError::BadString(off))?;
        let len = tail
            .iter()
            .position(|&b| b == 0)
            .ok_or(BtfError::BadString(off))?;
        std::str::from_utf8(&tail[..len]).map_err(|_| BtfError::BadString(off))
    }

    fn rec(&self, id: u32) -> Result<TypeRec, BtfError> {
        self.recs
            .get(us(id))
            .copied()
            .ok_or(BtfError::BadTypeId(id))
    }

    /// The `i`th u32 of a type's trailing data.
    fn data_u32(&self, rec: TypeRec, i: usize) -> Result<u32, BtfError> {
        u32_at(&self.types, rec.data + i * 4).ok_or(BtfError::Truncated("type data"))
    }

    /// Follow TYPEDEF/CONST/VOLATILE/RESTRICT/`TYPE_TAG` to the underlying type id.
    fn strip_modifiers(&self, mut id: u32) -> Result<u32, BtfError> {
        for _ in 0..MAX_DEPTH {
            let rec = self.rec(id)?;
            match rec.kind() {
                kind::TYPEDEF | kind::VOLATILE | kind::CONST | kind::RESTRICT | kind::TYPE_TAG => {
                    id = rec.size_or_type;
                }
                _ => return Ok(id),
            }
        }
        Err(BtfError::TooDeep(id))
    }
}

#[cfg(test)]
mod tests;
