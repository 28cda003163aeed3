//! Questions asked of a parsed [`Btf`]: a struct member's offset and size
//! (through anonymous members and modifiers), an enum's values, one
//! enumerator's value.

use std::collections::HashSet;

use super::{kind, us, Btf, BtfError, Found, MAX_DEPTH, POINTER_SIZE};

impl Btf {
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
