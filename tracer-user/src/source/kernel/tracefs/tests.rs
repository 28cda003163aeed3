//! Tracefs tests: format files of real kernels (testdata/), fields, symbol
//! tables, malformed input.

use super::*;

const KFREE_SKB: &str = include_str!("../testdata/kfree_skb.format");
const TCP_SEND_RESET: &str = include_str!("../testdata/tcp_send_reset.format");
const TCP_RECEIVE_RESET: &str = include_str!("../testdata/tcp_receive_reset.format");
const TCP_RETRANSMIT_SYNACK: &str = include_str!("../testdata/tcp_retransmit_synack.format");
const INET_SOCK_SET_STATE: &str = include_str!("../testdata/inet_sock_set_state.format");

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
