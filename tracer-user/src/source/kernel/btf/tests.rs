//! BTF reader tests: synthetic blobs (nested anonymous members, bitfields,
//! every kind, enums), malformed and cyclic input, and the running kernel's BTF.

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
            let at =
                usize::try_from(next() % u64::try_from(good.len()).expect("small")).expect("small");
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
