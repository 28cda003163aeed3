//! The ABI shared by the kernel programs and the agent: event records, flow keys
//! and the start-up configuration. Every type is `#[repr(C)]` with explicit
//! padding so both sides agree byte for byte; userspace reads records with
//! `read_unaligned`.
#![no_std]

/// What a [`RawEvent`] reports. Direction is part of the kind: "edge" is the
/// remote peer in the watched ranges, "origin" is this host.
pub mod kind {
    /// TC ingress: the edge's SYN (no ACK) to a watched port.
    pub const EDGE_SYN: u32 = 1;
    /// TC ingress: the edge's first ACK of a tracked flow (handshake complete).
    pub const EDGE_ACK: u32 = 2;
    /// TC ingress: the edge sent a RST on a watched port.
    pub const EDGE_RST: u32 = 3;
    /// TC ingress: the edge sent a FIN on a tracked flow.
    pub const EDGE_FIN: u32 = 4;
    /// TC egress: the origin's SYN-ACK toward the edge.
    pub const ORIGIN_SYNACK: u32 = 5;
    /// TC egress: the origin's RST toward the edge.
    pub const ORIGIN_RST: u32 = 6;
    /// TC egress: the origin's FIN on a tracked flow.
    pub const ORIGIN_FIN: u32 = 7;
    /// TC egress: an ICMP/ICMPv6 destination-unreachable toward the edge about
    /// a TCP segment the edge sent; `aux0` = ICMP type, `aux1` = code.
    pub const ORIGIN_ICMP_UNREACH: u32 = 8;
    /// skb:kfree_skb for a segment of a watched flow; `aux0` = drop reason
    /// (the running kernel's enum value), `aux1` = 1 if the dropped segment
    /// travelled origin -> edge, `tcp_flags` = its TCP flags.
    pub const KERNEL_DROP: u32 = 9;
    /// tcp:tcp_send_reset; `aux0` = reset reason if the kernel reports one
    /// (else `u32::MAX`), `aux1` = socket state (or `u32::MAX`).
    pub const KERNEL_SEND_RESET: u32 = 10;
    /// tcp:tcp_receive_reset on an origin socket.
    pub const KERNEL_RECV_RESET: u32 = 11;
    /// tcp:tcp_retransmit_synack.
    pub const KERNEL_RETRANS_SYNACK: u32 = 12;
    /// sock:inet_sock_set_state for a TCP socket; `aux0` = old, `aux1` = new state.
    pub const KERNEL_SET_STATE: u32 = 13;
    /// A [`super::Snapshot`]: bytes of a packet of a tracked flow, as the TC
    /// programs saw it; `aux0` = 1 when it travelled origin -> edge.
    pub const PACKET: u32 = 14;
    /// A [`super::History`]: what the kernel kept of a quiet flow, sent once,
    /// just before the first event userspace gets of it.
    pub const HISTORY: u32 = 15;
    /// A TLS connection's `ClientHello` (a [`super::Hello`]): sent before
    /// the connection's [`super::History`], and for every TLS connection
    /// when the agent asked for them (`--check-certs`).
    pub const HELLO: u32 = 16;
}

/// Address family tags used in [`RawEvent::family`].
pub const FAMILY_V4: u32 = 4;
/// IPv6.
pub const FAMILY_V6: u32 = 6;

/// TCP flag bits as carried in [`RawEvent::tcp_flags`].
pub mod tcp_flag {
    pub const FIN: u32 = 0x01;
    pub const SYN: u32 = 0x02;
    pub const RST: u32 = 0x04;
    pub const PSH: u32 = 0x08;
    pub const ACK: u32 = 0x10;
}

/// One kernel observation, normalised so that `edge_*` is always the remote
/// peer and `origin_*` this host, whatever the packet's direction.
/// IPv4 addresses occupy the first four bytes of the 16-byte arrays.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawEvent {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// One of [`kind`].
    pub kind: u32,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u32,
    pub edge_addr: [u8; 16],
    pub origin_addr: [u8; 16],
    /// Host byte order.
    pub edge_port: u16,
    /// Host byte order.
    pub origin_port: u16,
    /// TCP flags of the segment, when the event is about one.
    pub tcp_flags: u32,
    /// Sequence number of the segment (host order), 0 when not applicable.
    pub seq: u32,
    /// Interface index for TC events, 0 otherwise.
    pub ifindex: u32,
    /// Kind-specific, see [`kind`].
    pub aux0: u32,
    /// Kind-specific, see [`kind`].
    pub aux1: u32,
}

/// How a tracepoint stores the flow's addresses, as read from its tracefs
/// format at start-up.
pub mod addr_layout {
    /// The tracepoint is not used.
    pub const ABSENT: u32 = 0;
    /// Separate `family`, `sport`, `dport` (host order), `saddr[4]`,
    /// `daddr[4]`, `saddr_v6[16]`, `daddr_v6[16]` fields. Before Linux 5.13
    /// (5.10's tcp events) there is no `family`: `family` is `u32::MAX` and an
    /// IPv4 socket shows as a v4-mapped (or unset) `daddr_v6`.
    pub const SPLIT: u32 = 1;
    /// `saddr[28]` / `daddr[28]` holding a `sockaddr_in` or `sockaddr_in6`.
    pub const SOCKADDR: u32 = 2;
}

/// Field offsets of one classic tracepoint, from
/// `/sys/kernel/tracing/events/<sys>/<name>/format`. `u32::MAX` marks an
/// absent field.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TpLayout {
    /// One of [`addr_layout`].
    pub addr_layout: u32,
    pub family: u32,
    pub sport: u32,
    pub dport: u32,
    pub saddr: u32,
    pub daddr: u32,
    pub saddr_v6: u32,
    pub daddr_v6: u32,
    /// `protocol` (IPPROTO_*), where the record has one.
    pub protocol: u32,
    /// First kind-specific field (reason, old state ...).
    pub extra0: u32,
    /// Second kind-specific field (state, new state ...).
    pub extra1: u32,
}

impl TpLayout {
    pub const ABSENT: Self = Self {
        addr_layout: addr_layout::ABSENT,
        family: u32::MAX,
        sport: u32::MAX,
        dport: u32::MAX,
        saddr: u32::MAX,
        daddr: u32::MAX,
        saddr_v6: u32::MAX,
        daddr_v6: u32::MAX,
        protocol: u32::MAX,
        extra0: u32::MAX,
        extra1: u32::MAX,
    };
}

/// Offsets into `struct sk_buff` and the kfree_skb tracepoint, read from BTF
/// and tracefs at start-up.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropLayout {
    /// 1 when the kfree_skb program may run.
    pub enabled: u32,
    /// Offset of `skbaddr` in the tracepoint record.
    pub tp_skbaddr: u32,
    /// Offset of `protocol` in the tracepoint record.
    pub tp_protocol: u32,
    /// Offset of `reason` in the tracepoint record; `u32::MAX` before Linux
    /// 5.17, where drops are recognised by their caller instead.
    pub tp_reason: u32,
    /// Offset of `head` in `struct sk_buff`.
    pub skb_head: u32,
    /// Offset of `network_header` (u16) in `struct sk_buff`.
    pub skb_network_header: u32,
    /// Offset of `location` (the caller of kfree_skb) in the record.
    pub tp_location: u32,
    pub _pad: u32,
    /// Without `reason`: `[nf_start, nf_end)` is the text of
    /// `nf_hook_slow` (from /proc/kallsyms); a drop called from there is
    /// reported as [`DROP_BY_NETFILTER`], every other one is not reported.
    pub nf_start: u64,
    pub nf_end: u64,
}

/// The reason reported for a netfilter drop on a kernel without drop
/// reasons (outside the kernel's own `enum skb_drop_reason` values).
pub const DROP_BY_NETFILTER: u32 = 0xffff_0001;

impl DropLayout {
    pub const ABSENT: Self = Self {
        enabled: 0,
        tp_skbaddr: 0,
        tp_protocol: 0,
        tp_reason: 0,
        skb_head: 0,
        skb_network_header: 0,
        tp_location: 0,
        _pad: 0,
        nf_start: 0,
        nf_end: 0,
    };
}

/// Indexes into the `TP_LAYOUTS` array map.
pub mod tp_index {
    pub const SEND_RESET: u32 = 0;
    pub const RECV_RESET: u32 = 1;
    pub const RETRANS_SYNACK: u32 = 2;
    pub const SET_STATE: u32 = 3;
    pub const COUNT: u32 = 4;
}

/// Global settings, the single entry of the `SETTINGS` array map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// 1: every source address counts as edge (`--all-sources`).
    pub all_sources: u32,
    /// The kernel's value of `TCP_SYN_RECV` (for inet_sock_set_state).
    pub tcp_syn_recv: u32,
    /// The kernel's value of `TCP_CLOSE`.
    pub tcp_close: u32,
    /// The kernel's value of `TCP_ESTABLISHED`.
    pub tcp_established: u32,
    /// Which packets of tracked flows to send as [`Snapshot`]s: one of
    /// [`snapshot_mode`].
    pub snapshots: u32,
    /// Snapshot budget per flow, edge -> origin, in bytes.
    pub snap_budget_in: u32,
    /// Snapshot budget per flow, origin -> edge, in bytes.
    pub snap_budget_out: u32,
    /// 1: healthy connections stay in the kernel (see [`FlowValue`]); 0:
    /// every flow is loud from its SYN (`--write-pcap`, `--events all`).
    pub quiet: u32,
    /// 1: send every quiet TLS connection's `ClientHello` ([`Hello`]), for
    /// the server names it asks for (`--check-certs`).
    pub hellos: u32,
    pub _pad: u32,
}

/// Values of [`Settings::snapshots`].
pub mod snapshot_mode {
    /// No snapshots.
    pub const OFF: u32 = 0;
    /// Segments that carry payload (for the TLS/HTTP diagnosis).
    pub const PAYLOAD: u32 = 1;
    /// Every packet, control segments too (for `--write-pcap`).
    pub const ALL: u32 = 2;
}

/// Most bytes of a packet one [`Snapshot`] carries; longer packets (GSO/GRO
/// super-packets) are sent in several, up to the flow's budget.
pub const SNAP_CHUNK: usize = 2048;
/// Most snapshots one packet is split into.
pub const SNAP_CHUNKS_PER_PACKET: u32 = 8;

/// Bytes of a packet: `head.kind` is [`kind::PACKET`], `head` names the flow.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Snapshot {
    pub head: RawEvent,
    /// The packet's length on the wire (`skb->len`).
    pub wire_len: u32,
    /// Where in the packet this chunk starts.
    pub offset: u32,
    /// Valid bytes in `data`.
    pub len: u32,
    /// Length of the link-layer header at the packet's start.
    pub l2_len: u32,
    pub data: [u8; SNAP_CHUNK],
}

/// What the TC programs hand the snapshot program they tail-call
/// (per-CPU, `SNAP_ARGS`): the packet's flow and where its headers end.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SnapArgs {
    /// The flow, `kind` [`kind::PACKET`].
    pub head: RawEvent,
    pub key: FlowKey,
    /// Link-layer header length.
    pub l2: u32,
    /// Where the TCP header ends.
    pub header_end: u32,
    /// Snapshot bytes this direction may use per flow.
    pub budget: u32,
    /// 1: edge -> origin.
    pub ingress: u32,
    /// 1: remove the flow afterwards (a RST ended it).
    pub remove: u32,
    /// The segment's acknowledgement number (host order).
    pub ack: u32,
    /// 1: the segment also carries a FIN.
    pub fin: u32,
    pub _pad: u32,
}

/// Slots of the TC programs' jump table (`SNAP_PROGS`), set by the agent.
pub mod prog_slot {
    /// [`super::names::TC_SNAPSHOT`].
    pub const SNAPSHOT: u32 = 0;
    /// [`super::names::TC_TURN`].
    pub const TURN: u32 = 1;
    /// [`super::names::TC_TLS`].
    pub const TLS: u32 = 2;
    pub const COUNT: u32 = 3;
}

/// Key of the per-flow LRU map (`FLOWS`): the edge's 4-tuple.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    pub edge_addr: [u8; 16],
    pub origin_addr: [u8; 16],
    pub edge_port: u16,
    pub origin_port: u16,
    pub family: u32,
}

/// Flow states kept by the TC programs.
pub mod flow_state {
    /// SYN seen, handshake not complete.
    pub const SYN_SEEN: u32 = 1;
    /// The edge acknowledged; the handshake is complete.
    pub const ESTABLISHED: u32 = 2;
}

/// Bits of [`FlowValue::flags`].
pub mod flow_flag {
    /// Userspace follows the flow: every event of it goes out (a flow is
    /// quiet until something about it may be a failure, then loud for good).
    pub const LOUD: u32 = 1;
    /// A request came in and no response byte went out yet.
    pub const WAITING: u32 = 2;
    /// The origin sent its FIN (`fin_out_ns`, `fin_out_seq`).
    pub const FIN_OUT: u32 = 4;
    /// The edge sent its FIN (`fin_in_ns`).
    pub const FIN_IN: u32 = 8;
    /// The handshake was counted healthy in the kernel
    /// ([`counter::HANDSHAKES`]): userspace must not count it again.
    pub const COUNTED: u32 = 16;
    /// The connection speaks TLS (its first bytes were a `ClientHello`):
    /// the TLS program follows its records ([`tls_phase`]).
    pub const TLS: u32 = 32;
    /// TLS 1.3: the origin's session tickets after the edge's `Finished`
    /// went by (two of one length), or none came before a longer record.
    pub const TICKETS_DONE: u32 = 64;
    /// HTTP/2: the edge sent the h2c preface (`PRI * HTTP/2.0`) or offered
    /// ALPN `h2`. Frames of many streams are no request/response turns:
    /// none is followed ([`counter::HTTP2`]).
    pub const H2: u32 = 128;
}

/// [`FlowValue::tls_phase`]: how far a quiet TLS connection's handshake got.
pub mod tls_phase {
    pub const NONE: u32 = 0;
    /// The edge's `ClientHello` came (kept in the `HELLOS` map).
    pub const HELLO: u32 = 1;
    /// The origin's `ServerHello` came (`tls_version`, `tls_cipher`).
    pub const SHAKE: u32 = 2;
    /// The edge finished its side: application data from here on, one
    /// request/response turn after another.
    pub const DONE: u32 = 3;
}

/// Bytes of a `ClientHello` the kernel keeps (longer ones are read in
/// userspace: the connection is loud from its first record then).
pub const HELLO_BYTES: usize = 1024;

/// A TLS connection's `ClientHello`: `head.kind` is [`kind::HELLO`], `head`
/// names the flow (`seq`: the hello's first byte, `ts_ns`: when it came).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Hello {
    pub head: RawEvent,
    /// Valid bytes in `bytes` (the whole record, header included).
    pub len: u32,
    /// The edge's initial sequence number (whose connection this is).
    pub isn: u32,
    pub bytes: [u8; HELLO_BYTES],
}

/// Bytes of each request's head the kernel keeps while it waits for the
/// response (its request line, for a finding's `http` object).
pub const HEAD_BYTES: usize = 128;

/// Value of the per-flow LRU map. A quiet flow's story is kept here, not
/// sent: healthy handshakes and request/response turns are counted and
/// timed in the kernel ([`counter`], `HIST`). When something may be a
/// failure, the value goes out once as a [`History`] and the flow is loud.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowValue {
    pub state: u32,
    /// Snapshot bytes used, edge -> origin.
    pub snap_in: u32,
    /// Snapshot bytes used, origin -> edge.
    pub snap_out: u32,
    /// 1 once the origin sent payload after the edge's: the edge's next
    /// payload starts a new request/response turn, and both snapshot
    /// budgets start afresh (each request's head and its response's are
    /// seen, not only the first ones of the connection).
    pub answered: u32,
    /// [`flow_flag`] bits.
    pub flags: u32,
    /// Requests answered healthy in the kernel.
    pub turns: u32,
    /// The edge's initial sequence number.
    pub isn: u32,
    /// The origin's (from its SYN-ACK).
    pub origin_isn: u32,
    /// `bpf_ktime_get_ns()` of the edge's SYN, the SYN-ACK, the handshake's
    /// ACK, the origin's FIN, the edge's FIN, the current request (0: not
    /// seen).
    pub syn_ns: u64,
    pub synack_ns: u64,
    pub ack_ns: u64,
    pub fin_out_ns: u64,
    pub fin_in_ns: u64,
    pub req_ns: u64,
    pub fin_out_seq: u32,
    /// Sequence number of the current request's first byte.
    pub req_seq: u32,
    /// What that segment acknowledged: where the response begins.
    pub req_ack: u32,
    /// The edge's next sequence number after the request bytes seen.
    pub in_next: u32,
    /// Interface of the SYN.
    pub ifindex: u32,
    /// Valid bytes in `head`.
    pub head_len: u32,
    /// TLS ([`flow_flag::TLS`]): the handshake's [`tls_phase`].
    pub tls_phase: u32,
    /// The `ServerHello`'s version (0x0303 for TLS 1.2, 0x0304 for 1.3)
    /// and cipher suite; 0 before it.
    pub tls_version: u32,
    pub tls_cipher: u32,
    /// TLS 1.3: length of the edge's `Finished` record (fixed by the
    /// cipher suite) and the longest record that is only an alert or a
    /// `KeyUpdate`.
    pub finished_len: u32,
    pub control_len: u32,
    /// TLS 1.3: length of the first session ticket record (0: none yet).
    pub ticket_len: u32,
    /// Sequence number of the next record header, edge -> origin and
    /// origin -> edge.
    pub rec_in: u32,
    pub rec_out: u32,
    /// The origin's next sequence number after the bytes seen (TLS).
    pub out_next: u32,
    pub _pad: u32,
    /// When the `ServerHello` went out (0: not yet).
    pub server_hello_ns: u64,
    /// TLS 1.3: when the origin's second session ticket went out (0: not
    /// yet, or none came).
    pub tickets_ns: u64,
    /// The current request's first bytes.
    pub head: [u8; HEAD_BYTES],
}

impl FlowValue {
    pub const fn new(flags: u32) -> Self {
        Self {
            state: flow_state::SYN_SEEN,
            snap_in: 0,
            snap_out: 0,
            answered: 0,
            flags,
            turns: 0,
            isn: 0,
            origin_isn: 0,
            syn_ns: 0,
            synack_ns: 0,
            ack_ns: 0,
            fin_out_ns: 0,
            fin_in_ns: 0,
            req_ns: 0,
            fin_out_seq: 0,
            req_seq: 0,
            req_ack: 0,
            in_next: 0,
            ifindex: 0,
            head_len: 0,
            tls_phase: tls_phase::NONE,
            tls_version: 0,
            tls_cipher: 0,
            finished_len: 0,
            control_len: 0,
            ticket_len: 0,
            rec_in: 0,
            rec_out: 0,
            out_next: 0,
            _pad: 0,
            server_hello_ns: 0,
            tickets_ns: 0,
            head: [0; HEAD_BYTES],
        }
    }
}

/// A quiet flow turned loud: `head.kind` is [`kind::HISTORY`], `head` names
/// the flow, `value` is what the kernel kept of it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct History {
    pub head: RawEvent,
    pub value: FlowValue,
}

/// Latency histograms (per-CPU array `HIST`, [`HIST_BUCKETS`] per measure).
pub mod measure {
    /// The edge's SYN to the origin's SYN-ACK.
    pub const SYN_TO_SYNACK: u32 = 0;
    /// A request's first byte in to its response's first byte out.
    pub const REQUEST_TO_FIRST_BYTE: u32 = 1;
    /// TLS: the edge's `ClientHello` in to the origin's `ServerHello` out.
    pub const CLIENT_HELLO_TO_SERVER_HELLO: u32 = 2;
    pub const COUNT: u32 = 3;
}

/// Buckets per histogram: four per power of two of microseconds, up to
/// 2^32 us.
pub const HIST_BUCKETS: u32 = 128;

/// The bucket of a latency in microseconds: values under 4 have their own;
/// above, bucket `4 * log2(us) + the next two bits` (within 19% of the
/// value).
#[inline(always)]
pub fn hist_bucket(us: u64) -> u32 {
    if us < 4 {
        return us as u32;
    }
    let msb = 63 - us.leading_zeros();
    let sub = ((us >> (msb - 2)) & 3) as u32;
    let b = msb * 4 + sub;
    if b >= HIST_BUCKETS {
        HIST_BUCKETS - 1
    } else {
        b
    }
}

/// The smallest latency (us) of a bucket and the bucket's width.
pub fn hist_bucket_range(bucket: u32) -> (u64, u64) {
    if bucket < 4 {
        return (u64::from(bucket), 1);
    }
    let (msb, sub) = (bucket / 4, u64::from(bucket % 4));
    ((4 + sub) << (msb - 2), 1 << (msb - 2))
}

/// Indexes into the per-CPU `COUNTERS` array.
pub mod counter {
    /// An event could not be written to the ring buffer (full).
    pub const RINGBUF_LOST: u32 = 0;
    /// Kernel memory that could not be read (probe_read failed).
    pub const READ_ERRORS: u32 = 1;
    /// New flows that could not be recorded in the LRU flow map.
    pub const FLOW_INSERT_ERRORS: u32 = 2;
    /// Handshakes completed by quiet flows (healthy, counted here only).
    pub const HANDSHAKES: u32 = 3;
    /// Requests answered healthy on quiet flows (counted here only).
    pub const REQUESTS: u32 = 4;
    /// Quiet flows that turned loud (a [`super::History`] went out).
    pub const LOUD_FLOWS: u32 = 5;
    /// Of [`REQUESTS`], those over TLS.
    pub const TLS_REQUESTS: u32 = 6;
    /// Quiet connections that speak HTTP/2 ([`super::flow_flag::H2`]).
    pub const HTTP2: u32 = 7;
    /// Of [`LOUD_FLOWS`], by why: `HANDED_OVER + ` a [`super::handover`]
    /// reason.
    pub const HANDED_OVER: u32 = 8;
    /// Flows recorded in the flow map at a SYN (not a reused 4-tuple).
    pub const FLOWS_NEW: u32 = HANDED_OVER + super::handover::COUNT;
    /// Flows removed from it (both sides closed, or reset). What is neither
    /// removed nor still in the map was evicted (the map is full).
    pub const FLOWS_GONE: u32 = FLOWS_NEW + 1;
    pub const COUNT: u32 = FLOWS_GONE + 1;
}

/// Why a quiet flow turned loud (counted at [`counter::HANDED_OVER`]).
pub mod handover {
    /// A RST, from either side.
    pub const RESET: u32 = 0;
    /// The edge sent its SYN again (no answer reached it in time).
    pub const SYN_RESENT: u32 = 1;
    /// The origin sent its SYN-ACK again.
    pub const SYNACK_RESENT: u32 = 2;
    /// An ICMP unreachable about one of its segments.
    pub const ICMP: u32 = 3;
    /// A TCP tracepoint: the kernel sent or took a reset, or resent the
    /// SYN-ACK.
    pub const TCP_EVENT: u32 = 4;
    /// The kernel dropped one of its segments.
    pub const DROP: u32 = 5;
    /// A FIN while a request waited, or before the handshake completed.
    pub const CLOSED_WAITING: u32 = 6;
    /// A payload segment that may be a failure: a 1xx or 5xx status, bytes
    /// that are no HTTP, a longer head, a request sent again, a TLS record
    /// that fits no rule (an alert, a `HelloRetryRequest`, a split header).
    pub const PAYLOAD: u32 = 7;
    pub const COUNT: u32 = 8;
}

/// Interfaces whose index is below this have their link-layer header length
/// in the `IFACE_L2` array (stored plus one; 0 = not attached), a lookup the
/// verifier inlines; larger indexes are in the `IFACE_L2_FAR` hash map.
pub const L2_DIRECT: u32 = 16_384;
/// The longest link-layer header the agent attaches behind (Ethernet with
/// two VLAN tags is 22 bytes).
pub const L2_MAX: u32 = 64;

/// Map and program names, shared so that neither side spells them twice.
pub mod names {
    pub const EVENTS: &str = "EVENTS";
    pub const EDGE_V4: &str = "EDGE_V4";
    pub const EDGE_V6: &str = "EDGE_V6";
    pub const PORTS: &str = "PORTS";
    pub const SETTINGS: &str = "SETTINGS";
    pub const TP_LAYOUTS: &str = "TP_LAYOUTS";
    pub const DROP_LAYOUT: &str = "DROP_LAYOUT";
    pub const IFACE_L2: &str = "IFACE_L2";
    pub const IFACE_L2_FAR: &str = "IFACE_L2_FAR";
    pub const COUNTERS: &str = "COUNTERS";
    pub const FLOWS: &str = "FLOWS";
    pub const SNAP_ARGS: &str = "SNAP_ARGS";
    pub const SNAP_PROGS: &str = "SNAP_PROGS";
    pub const HIST: &str = "HIST";
    pub const HELLOS: &str = "HELLOS";
    /// Program names start with this prefix, so that stale netlink filters of
    /// ours can be found and removed (`BPF_OBJ_NAME_LEN` is 16).
    pub const PROG_PREFIX: &str = "otr_";
    pub const TC_INGRESS: &str = "otr_tc_ingress";
    pub const TC_EGRESS: &str = "otr_tc_egress";
    /// Tail-called by both TC programs: verified once, on its own.
    pub const TC_SNAPSHOT: &str = "otr_tc_snapshot";
    /// Tail-called for payload of quiet flows: judges each turn.
    pub const TC_TURN: &str = "otr_tc_turn";
    /// Tail-called by the turn program for TLS connections: follows the
    /// records of the handshake and of each turn.
    pub const TC_TLS: &str = "otr_tc_tls";
    pub const TP_KFREE_SKB: &str = "otr_kfree_skb";
    pub const TP_SEND_RESET: &str = "otr_send_reset";
    pub const TP_RECV_RESET: &str = "otr_recv_reset";
    pub const TP_RETRANS_SYNACK: &str = "otr_retr_synack";
    pub const TP_SET_STATE: &str = "otr_set_state";
}

/// Capacity of the LRU map of `ClientHello`s (`HELLOS`): the TLS
/// connections whose hello is still at hand when they are handed over.
pub const HELLO_CAPACITY: u32 = 8_192;

/// Capacity of the LRU flow map.
pub const FLOW_CAPACITY: u32 = 65_536;
/// Ring buffer size in bytes (power of two, page multiple).
pub const RINGBUF_BYTES: u32 = 4 * 1024 * 1024;

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain `#[repr(C)]` data without padding or pointers.
    unsafe impl aya::Pod for super::RawEvent {}
    unsafe impl aya::Pod for super::TpLayout {}
    unsafe impl aya::Pod for super::DropLayout {}
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowValue {}
    unsafe impl aya::Pod for super::Snapshot {}
    unsafe impl aya::Pod for super::SnapArgs {}
    unsafe impl aya::Pod for super::History {}
    unsafe impl aya::Pod for super::Hello {}
}
