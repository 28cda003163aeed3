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

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;

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

    /// Size in bytes of a type.
    fn type_size(&self, id: u32, depth: usize) -> Result<u32, BtfError> {
        if depth > MAX_DEPTH {
            return Err(BtfError::TooDeep(id));
        }
        let id = self.strip_modifiers(id)?;
        let rec = self.rec(id)?;
        match rec.kind() {
            kind::INT
            | kind::STRUCT
            | kind::UNION
            | kind::ENUM
            | kind::ENUM64
            | kind::FLOAT
            | kind::DATASEC => Ok(rec.size_or_type),
            kind::PTR => Ok(POINTER_SIZE),
            kind::ARRAY => {
                let elem = self.data_u32(rec, 0)?;
                let nelems = self.data_u32(rec, 2)?;
                self.type_size(elem, depth + 1)?
                    .checked_mul(nelems)
                    .ok_or(BtfError::Unsized(id))
            }
            _ => Err(BtfError::Unsized(id)),
        }
    }

    /// Struct/union ids with this name.
    fn composites(&self, name: &str) -> impl Iterator<Item = u32> + '_ {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&id| {
                self.recs
                    .get(us(id))
                    .is_some_and(|r| matches!(r.kind(), kind::STRUCT | kind::UNION))
            })
    }

    /// Depth-first search for `member` in struct/union `id`, descending into anonymous
    /// struct/union members. `visited` bounds the work on malformed (cyclic/shared) input;
    /// a type that lacked the member once lacks it everywhere.
    fn search(
        &self,
        id: u32,
        member: &str,
        base_bits: u64,
        depth: usize,
        visited: &mut HashSet<u32>,
    ) -> Result<Option<Found>, BtfError> {
        if depth > MAX_DEPTH {
            return Err(BtfError::TooDeep(id));
        }
        if !visited.insert(id) {
            return Ok(None);
        }
        let rec = self.rec(id)?;
        for i in 0..rec.vlen() {
            let name_off = self.data_u32(rec, i * 3)?;
            let type_id = self.data_u32(rec, i * 3 + 1)?;
            let raw = self.data_u32(rec, i * 3 + 2)?;
            let (bitfield_size, bit_offset) = if rec.kind_flag() {
                (raw >> 24, raw & 0x00ff_ffff)
            } else {
                (0, raw)
            };
            let bit_offset = base_bits + u64::from(bit_offset);
            let name = self.str_at(name_off)?;
            if name == member {
                return Ok(Some(Found {
                    bit_offset,
                    bitfield_size,
                    type_id,
                }));
            }
            if name.is_empty() {
                let inner = self.strip_modifiers(type_id)?;
                if matches!(self.rec(inner)?.kind(), kind::STRUCT | kind::UNION) {
                    if let Some(found) =
                        self.search(inner, member, bit_offset, depth + 1, visited)?
                    {
                        return Ok(Some(found));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Find a non-bitfield, byte-aligned member: (byte offset, type id).
    fn find_member(&self, struct_name: &str, member: &str) -> Result<(u32, u32), BtfError> {
        let mut any = false;
        let mut visited = HashSet::new();
        for id in self.composites(struct_name) {
            any = true;
            let Some(found) = self.search(id, member, 0, 0, &mut visited)? else {
                continue;
            };
            let names = || (struct_name.to_owned(), member.to_owned());
            let mut bitfield = found.bitfield_size != 0;
            // Old-style (kind_flag = 0) bitfields are encoded in the INT type itself.
            let target = self.rec(self.strip_modifiers(found.type_id)?)?;
            if target.kind() == kind::INT {
                let enc = self.data_u32(target, 0)?;
                let (int_offset, nr_bits) = ((enc >> 16) & 0xff, enc & 0xff);
                bitfield |=
                    int_offset != 0 || u64::from(nr_bits) != u64::from(target.size_or_type) * 8;
            }
            if bitfield {
                let (struct_name, member) = names();
                return Err(BtfError::Bitfield {
                    struct_name,
                    member,
                });
            }
            if found.bit_offset % 8 != 0 {
                let (struct_name, member) = names();
                return Err(BtfError::Unaligned {
                    struct_name,
                    member,
                    bit_offset: found.bit_offset,
                });
            }
            let bytes = u32::try_from(found.bit_offset / 8).map_err(|_| BtfError::Unsized(id))?;
            return Ok((bytes, found.type_id));
        }
        if any {
            Err(BtfError::MemberNotFound {
                struct_name: struct_name.to_owned(),
                member: member.to_owned(),
            })
        } else {
            Err(BtfError::StructNotFound(struct_name.to_owned()))
        }
    }

    /// Byte offset of a member of a named struct (or union), looking through anonymous
    /// struct/union members recursively and adding their offsets. Errors if the struct or
    /// member does not exist, or the member is a bitfield or not byte aligned.
    pub fn member_offset(&self, struct_name: &str, member: &str) -> Result<u32, BtfError> {
        self.find_member(struct_name, member)
            .map(|(offset, _)| offset)
    }

    /// Size in bytes of a member's type (typedef/const/volatile resolved). Same errors as
    /// [`Btf::member_offset`], plus [`BtfError::Unsized`] for types without a size.
    pub fn member_size(&self, struct_name: &str, member: &str) -> Result<u32, BtfError> {
        let (_, type_id) = self.find_member(struct_name, member)?;
        self.type_size(type_id, 0)
    }

    /// Enumerators of an ENUM/ENUM64 type, in declaration order. Values of unsigned enums
    /// above `i64::MAX` wrap to negative numbers.
    fn enum_entries(&self, id: u32) -> Result<Vec<(String, i64)>, BtfError> {
        let rec = self.rec(id)?;
        let signed = rec.kind_flag();
        (0..rec.vlen())
            .map(|i| {
                let (name_off, value) = if rec.kind() == kind::ENUM64 {
                    let lo = u64::from(self.data_u32(rec, i * 3 + 1)?);
                    let hi = u64::from(self.data_u32(rec, i * 3 + 2)?);
                    (
                        self.data_u32(rec, i * 3)?,
                        i64::from_le_bytes(((hi << 32) | lo).to_le_bytes()),
                    )
                } else {
                    let raw = self.data_u32(rec, i * 2 + 1)?;
                    let value = if signed {
                        i64::from(i32::from_le_bytes(raw.to_le_bytes()))
                    } else {
                        i64::from(raw)
                    };
                    (self.data_u32(rec, i * 2)?, value)
                };
                Ok((self.str_at(name_off)?.to_owned(), value))
            })
            .collect()
    }

    /// Enumerators of a named enum (ENUM or ENUM64): name -> value. `None` if there is no
    /// such enum (with at least one enumerator) or its data is corrupt.
    #[must_use]
    pub fn enum_values(&self, enum_name: &str) -> Option<Vec<(String, i64)>> {
        let id = self.by_name.get(enum_name)?.iter().copied().find(|&id| {
            self.recs
                .get(us(id))
                .is_some_and(|r| matches!(r.kind(), kind::ENUM | kind::ENUM64) && r.vlen() > 0)
        })?;
        self.enum_entries(id).ok()
    }

    /// Value of an enumerator found by its own name in any enum, including anonymous
    /// ones (e.g. `"TCP_SYN_RECV"`). Linear scan over all enums; first match wins.
    #[must_use]
    pub fn enumerator(&self, name: &str) -> Option<i64> {
        self.enum_ids.iter().find_map(|&id| {
            let rec = self.rec(id).ok()?;
            let stride = if rec.kind() == kind::ENUM64 { 3 } else { 2 };
            let hit = (0..rec.vlen()).any(|i| {
                self.data_u32(rec, i * stride)
                    .and_then(|off| self.str_at(off))
                    .is_ok_and(|s| s == name)
            });
            if !hit {
                return None;
            }
            self.enum_entries(id)
                .ok()?
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-builds little-endian BTF blobs.
    struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Builder {
        fn new() -> Self {
            Builder {
                types: Vec::new(),
                strings: vec![0],
                next_id: 1,
            }
        }

        fn s(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let off = u32::try_from(self.strings.len()).expect("small");
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            off
        }

        fn raw(
            &mut self,
            name: &str,
            kind: u8,
            kflag: bool,
            vlen: usize,
            size_or_type: u32,
            extra: &[u32],
        ) -> u32 {
            let name_off = self.s(name);
            let info = (u32::from(kflag) << 31)
                | (u32::from(kind) << 24)
                | u32::try_from(vlen).expect("small");
            for w in [name_off, info, size_or_type].iter().chain(extra) {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
            self.next_id += 1;
            self.next_id - 1
        }

        fn int(&mut self, name: &str, size: u32) -> u32 {
            self.raw(name, kind::INT, false, 0, size, &[size * 8])
        }

        fn composite(
            &mut self,
            kind: u8,
            name: &str,
            size: u32,
            kflag: bool,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let mut extra = Vec::new();
            for &(n, t, off) in members {
                extra.extend([self.s(n), t, off]);
            }
            self.raw(name, kind, kflag, members.len(), size, &extra)
        }

        fn strukt(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
            self.composite(kind::STRUCT, name, size, false, members)
        }

        fn union(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
            self.composite(kind::UNION, name, size, false, members)
        }

        fn enum32(&mut self, name: &str, signed: bool, values: &[(&str, i32)]) -> u32 {
            let mut extra = Vec::new();
            for &(n, v) in values {
                extra.extend([self.s(n), u32::from_le_bytes(v.to_le_bytes())]);
            }
            self.raw(name, kind::ENUM, signed, values.len(), 4, &extra)
        }

        fn enum64(&mut self, name: &str, signed: bool, values: &[(&str, u64)]) -> u32 {
            let mut extra = Vec::new();
            for &(n, v) in values {
                extra.extend([
                    self.s(n),
                    u32::try_from(v & 0xffff_ffff).expect("masked"),
                    u32::try_from(v >> 32).expect("shifted"),
                ]);
            }
            self.raw(name, kind::ENUM64, signed, values.len(), 8, &extra)
        }

        fn finish(&self) -> Vec<u8> {
            let type_len = u32::try_from(self.types.len()).expect("small");
            let str_len = u32::try_from(self.strings.len()).expect("small");
            let mut out = Vec::new();
            out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            for w in [24, 0, type_len, type_len, str_len] {
                out.extend_from_slice(&u32::to_le_bytes(w));
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    fn parse(bytes: &[u8]) -> Btf {
        Btf::parse(bytes).unwrap_or_else(|e| panic!("parse failed: {e}"))
    }

    /// A struct like `sk_buff`'s header group: members inside anonymous union/struct nests.
    fn nested_blob() -> Vec<u8> {
        let mut b = Builder::new();
        let u16_t = b.int("unsigned short", 2); // 1
        let u32_t = b.int("unsigned int", 4); // 2
        let u8_t = b.int("unsigned char", 1); // 3
        let typedef = b.raw("__u16", kind::TYPEDEF, false, 0, u16_t, &[]); // 4
        let inner = b.strukt(
            "",
            4,
            &[
                ("transport_header", typedef, 0),
                ("network_header", u16_t, 16),
            ],
        ); // 5
        let konst = b.raw("", kind::CONST, false, 0, inner, &[]); // 6: anonymous member via a modifier
        let anon_union = b.union("", 4, &[("", konst, 0), ("whole", u32_t, 0)]); // 7
        let named = b.strukt("headers", 4, &[("hidden", u32_t, 0)]); // 8: named members are not searched
        let flags = b.composite(
            kind::STRUCT,
            "",
            4,
            true,
            &[
                ("cloned", u8_t, (1 << 24) | 8),
                ("nohdr", u8_t, (1 << 24) | 9),
                ("plain", u8_t, 16),
                ("odd", u8_t, 17),
            ],
        ); // 9
        b.strukt(
            "pkt",
            64,
            &[
                ("first", u32_t, 0),
                ("", anon_union, 64),
                ("hdrs", named, 96),
                ("", flags, 128),
                ("last", u16_t, 256),
            ],
        ); // 10
        b.finish()
    }

    #[test]
    fn nested_anonymous_members() {
        let btf = parse(&nested_blob());
        assert_eq!(btf.member_offset("pkt", "first").ok(), Some(0));
        assert_eq!(btf.member_offset("pkt", "transport_header").ok(), Some(8));
        assert_eq!(btf.member_offset("pkt", "network_header").ok(), Some(10));
        assert_eq!(btf.member_offset("pkt", "whole").ok(), Some(8));
        assert_eq!(btf.member_offset("pkt", "last").ok(), Some(32));
        assert_eq!(btf.member_offset("pkt", "plain").ok(), Some(18));
        assert_eq!(btf.member_size("pkt", "transport_header").ok(), Some(2));
        assert_eq!(btf.member_size("pkt", "network_header").ok(), Some(2));
        assert_eq!(btf.member_size("pkt", "whole").ok(), Some(4));
        assert_eq!(btf.member_size("pkt", "hdrs").ok(), Some(4));
        assert_eq!(btf.member_offset("headers", "hidden").ok(), Some(0));
        assert!(matches!(
            btf.member_offset("pkt", "hidden"),
            Err(BtfError::MemberNotFound { .. })
        ));
        assert!(matches!(
            btf.member_offset("nope", "first"),
            Err(BtfError::StructNotFound(_))
        ));
        assert!(matches!(
            btf.member_size("nope", "first"),
            Err(BtfError::StructNotFound(_))
        ));
    }

    #[test]
    fn bitfields_and_alignment() {
        let btf = parse(&nested_blob());
        assert!(matches!(
            btf.member_offset("pkt", "cloned"),
            Err(BtfError::Bitfield { .. })
        ));
        assert!(matches!(
            btf.member_size("pkt", "nohdr"),
            Err(BtfError::Bitfield { .. })
        ));
        assert!(matches!(
            btf.member_offset("pkt", "odd"),
            Err(BtfError::Unaligned {
                bit_offset: 145,
                ..
            })
        ));

        // Old-style bitfield (kind_flag = 0): the INT encoding carries the bit width.
        let mut b = Builder::new();
        let bits3 = b.raw("unsigned int", kind::INT, false, 0, 4, &[3]);
        let int = b.int("int", 4);
        b.strukt("old", 8, &[("flags", bits3, 0), ("n", int, 32)]);
        let btf = parse(&b.finish());
        assert!(matches!(
            btf.member_offset("old", "flags"),
            Err(BtfError::Bitfield { .. })
        ));
        assert_eq!(btf.member_offset("old", "n").ok(), Some(4));
    }

    /// One of every kind before the structs, so a wrong trailing-data size shifts the ids.
    #[test]
    fn all_kinds_keep_ids_aligned() {
        let mut b = Builder::new();
        let int = b.int("int", 4); // 1
        let ptr = b.raw("", kind::PTR, false, 0, int, &[]); // 2
        let arr = b.raw("", kind::ARRAY, false, 0, 0, &[int, int, 4]); // 3
        b.raw("fwd", kind::FWD, false, 0, 0, &[]); // 4
        let td = b.raw("int_t", kind::TYPEDEF, false, 0, int, &[]); // 5
        let vol = b.raw("", kind::VOLATILE, false, 0, td, &[]); // 6
        let cst = b.raw("", kind::CONST, false, 0, vol, &[]); // 7
        let rst = b.raw("", kind::RESTRICT, false, 0, ptr, &[]); // 8
        let a = b.s("a");
        let proto = b.raw("", kind::FUNC_PROTO, false, 2, int, &[a, int, 0, int]); // 9
        b.raw("f", kind::FUNC, false, 0, proto, &[]); // 10
        let var = b.raw("v", kind::VAR, false, 0, int, &[1]); // 11
        b.raw(".data", kind::DATASEC, false, 1, 4, &[var, 0, 4]); // 12
        let float = b.raw("double", kind::FLOAT, false, 0, 8, &[]); // 13
        b.raw("tag", kind::DECL_TAG, false, 0, var, &[u32::MAX]); // 14
        let ttag = b.raw("user", kind::TYPE_TAG, false, 0, ptr, &[]); // 15
        b.enum64("e64", false, &[("BIG", 1 << 40)]); // 16
        b.enum32("e32", false, &[("SMALL", 7)]); // 17
        let arr2 = b.raw("", kind::ARRAY, false, 0, 0, &[arr, int, 3]); // 18: int[3][4]
        assert_eq!(arr2, 18);
        b.strukt(
            "s",
            96,
            &[
                ("p", ptr, 0),
                ("arr", arr, 64),
                ("c", cst, 192),
                ("r", rst, 256),
                ("d", float, 320),
                ("t", ttag, 384),
                ("m", arr2, 448),
                ("fn", proto, 0),
                ("bad", 999, 0),
            ],
        );
        let btf = parse(&b.finish());
        let size = |m| btf.member_size("s", m).ok();
        assert_eq!(size("p"), Some(POINTER_SIZE));
        assert_eq!(size("arr"), Some(16));
        assert_eq!(size("c"), Some(4));
        assert_eq!(size("r"), Some(POINTER_SIZE));
        assert_eq!(size("d"), Some(8));
        assert_eq!(size("t"), Some(POINTER_SIZE));
        assert_eq!(size("m"), Some(48));
        assert_eq!(btf.member_offset("s", "m").ok(), Some(56));
        assert!(matches!(
            btf.member_size("s", "fn"),
            Err(BtfError::Unsized(9))
        ));
        assert!(matches!(
            btf.member_size("s", "bad"),
            Err(BtfError::BadTypeId(999))
        ));
        assert_eq!(btf.enumerator("BIG"), Some(1 << 40));
        assert_eq!(btf.enumerator("SMALL"), Some(7));
    }

    #[test]
    fn enums() {
        let mut b = Builder::new();
        b.enum32(
            "",
            false,
            &[
                ("TCP_ESTABLISHED", 1),
                ("TCP_SYN_SENT", 2),
                ("TCP_SYN_RECV", 3),
            ],
        );
        b.enum32("neg", true, &[("MINUS", -5), ("ZERO", 0)]);
        b.enum32("unsigned_big", false, &[("HIGH", -1)]);
        b.enum32("fwd_only", false, &[]);
        b.enum32("fwd_only", false, &[("REAL", 9)]);
        b.enum64(
            "wide",
            false,
            &[
                ("W_SMALL", 3),
                ("W_BIG", 0x1_0000_0001),
                ("W_MAX", u64::MAX),
            ],
        );
        b.enum64(
            "wide_signed",
            true,
            &[("WS_NEG", u64::from_le_bytes((-2i64).to_le_bytes()))],
        );
        let btf = parse(&b.finish());
        assert_eq!(btf.enumerator("TCP_SYN_RECV"), Some(3));
        assert_eq!(btf.enumerator("MINUS"), Some(-5));
        assert_eq!(btf.enumerator("HIGH"), Some(0xffff_ffff));
        assert_eq!(btf.enumerator("W_BIG"), Some(0x1_0000_0001));
        assert_eq!(btf.enumerator("W_MAX"), Some(-1));
        assert_eq!(btf.enumerator("WS_NEG"), Some(-2));
        assert_eq!(btf.enumerator("NOPE"), None);
        assert_eq!(
            btf.enum_values("neg"),
            Some(vec![("MINUS".to_owned(), -5), ("ZERO".to_owned(), 0)])
        );
        assert_eq!(
            btf.enum_values("fwd_only"),
            Some(vec![("REAL".to_owned(), 9)])
        );
        assert_eq!(btf.enum_values("wide").map(|v| v.len()), Some(3));
        assert_eq!(btf.enum_values("nope"), None);
        assert!(matches!(
            btf.member_offset("neg", "MINUS"),
            Err(BtfError::StructNotFound(_))
        ));
    }

    #[test]
    fn malformed_blobs_are_errors() {
        let good = nested_blob();
        // Every truncation either fails cleanly or (when only the string tail is cut) errors.
        for len in 0..good.len() {
            assert!(Btf::parse(&good[..len]).is_err(), "prefix {len} parsed");
        }
        let mut big_endian = good.clone();
        big_endian.swap(0, 1);
        assert!(matches!(
            Btf::parse(&big_endian),
            Err(BtfError::ForeignEndian)
        ));
        assert!(matches!(
            Btf::parse(b"\x00\x00garbage garbage garbage"),
            Err(BtfError::BadMagic(0))
        ));
        let mut v2 = good.clone();
        v2[2] = 2;
        assert!(matches!(
            Btf::parse(&v2),
            Err(BtfError::UnsupportedVersion(2))
        ));
        let mut huge_len = good.clone();
        huge_len[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Btf::parse(&huge_len), Err(BtfError::Truncated(_))));
        let mut huge_off = good.clone();
        huge_off[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Btf::parse(&huge_off), Err(BtfError::Truncated(_))));

        // Unknown kind, bad string offset in a struct name, vlen past the end.
        let mut b = Builder::new();
        b.raw("x", 31, false, 0, 0, &[]);
        assert!(matches!(
            Btf::parse(&b.finish()),
            Err(BtfError::UnknownKind { id: 1, kind: 31 })
        ));
        let mut b = Builder::new();
        b.raw("", kind::STRUCT, false, 0, 0, &[]);
        let mut blob = b.finish();
        blob[24..28].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(Btf::parse(&blob), Err(BtfError::BadString(1000))));
        let mut b = Builder::new();
        b.raw("s", kind::STRUCT, false, 500, 0, &[]);
        assert!(matches!(
            Btf::parse(&b.finish()),
            Err(BtfError::Truncated(_))
        ));

        // Bad member string offset and member type id surface at lookup time.
        let mut b = Builder::new();
        b.strukt("s", 4, &[("", 77, 0)]);
        let mut blob = b.finish();
        let member_name = 24 + 12;
        blob[member_name..member_name + 4].copy_from_slice(&5000u32.to_le_bytes());
        let btf = parse(&blob);
        assert!(matches!(
            btf.member_offset("s", "x"),
            Err(BtfError::BadString(5000))
        ));
        let mut b = Builder::new();
        b.strukt("s", 4, &[("", 77, 0)]);
        assert!(matches!(
            parse(&b.finish()).member_offset("s", "x"),
            Err(BtfError::BadTypeId(77))
        ));
    }

    #[test]
    fn cycles_terminate() {
        let mut b = Builder::new();
        // 1: typedef to itself; 2: struct with two anonymous members of itself.
        b.raw("loop_t", kind::TYPEDEF, false, 0, 1, &[]);
        b.strukt("selfish", 4, &[("", 2, 0), ("", 2, 0), ("x", 1, 0)]);
        b.strukt("holder", 4, &[("l", 1, 0)]);
        let btf = parse(&b.finish());
        assert!(matches!(
            btf.member_size("holder", "l"),
            Err(BtfError::TooDeep(_))
        ));
        assert!(matches!(
            btf.member_offset("selfish", "nope"),
            Err(BtfError::MemberNotFound { .. })
        ));
        assert!(matches!(
            btf.member_size("selfish", "x"),
            Err(BtfError::TooDeep(_))
        ));
    }

    #[test]
    fn random_corruption_never_panics() {
        let good = nested_blob();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut blob = good.clone();
            for _ in 0..=(next() % 4) {
                let at = usize::try_from(next() % u64::try_from(good.len()).expect("small"))
                    .expect("small");
                blob[at] = next().to_le_bytes()[0];
            }
            if let Ok(btf) = Btf::parse(&blob) {
                for m in ["transport_header", "network_header", "cloned", "last", "x"] {
                    let _ = btf.member_offset("pkt", m);
                    let _ = btf.member_size("pkt", m);
                }
                let _ = btf.enumerator("x");
                let _ = btf.enum_values("pkt");
            }
        }
    }

    #[test]
    fn vmlinux() {
        if !std::path::Path::new(VMLINUX_BTF).exists() {
            eprintln!("skipping: {VMLINUX_BTF} does not exist");
            return;
        }
        let start = std::time::Instant::now();
        let btf = Btf::from_sys_fs().unwrap_or_else(|e| panic!("{e}"));
        eprintln!("parsed {btf:?} in {:?}", start.elapsed());
        let mut offsets = Vec::new();
        for (member, size) in [
            ("head", 8),
            ("data", 8),
            ("network_header", 2),
            ("transport_header", 2),
        ] {
            let off = btf
                .member_offset("sk_buff", member)
                .unwrap_or_else(|e| panic!("{e}"));
            let sz = btf
                .member_size("sk_buff", member)
                .unwrap_or_else(|e| panic!("{e}"));
            eprintln!("sk_buff.{member}: offset {off} size {sz}");
            assert_eq!(sz, size, "{member}");
            assert!(off < 256, "{member} at {off}");
            offsets.push(off);
        }
        offsets.sort_unstable();
        offsets.dedup();
        assert_eq!(offsets.len(), 4);
        assert!(matches!(
            btf.member_offset("sk_buff", "cloned"),
            Err(BtfError::Bitfield { .. })
        ));
        let reasons = btf
            .enum_values("skb_drop_reason")
            .expect("enum skb_drop_reason");
        assert!(reasons
            .iter()
            .any(|(n, _)| n == "SKB_DROP_REASON_NETFILTER_DROP"));
        assert_eq!(btf.enumerator("TCP_SYN_RECV"), Some(3));
        assert_eq!(btf.enumerator("TCP_CLOSE"), Some(7));
    }
}
