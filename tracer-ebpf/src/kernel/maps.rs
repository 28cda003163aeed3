//! Maps shared by every program, plus the small helpers that consult them:
//! the edge filter (LPM tries + port set), the event emitter, and a quiet
//! flow's two ways out (counted healthy, or turned loud with its history).

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{
        lpm_trie::Key, Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray, RingBuf,
    },
};
use tracer_ebpf::{
    counter, flow_flag, hist_bucket, kind, prog_slot, DropLayout, FlowKey, FlowValue, Hello,
    History, RawEvent, Settings, SnapArgs, Snapshot, TpLayout, FAMILY_V4, FLOW_CAPACITY,
    HELLO_CAPACITY, HIST_BUCKETS, RINGBUF_BYTES,
};

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(RINGBUF_BYTES, 0);
#[map]
pub static EDGE_V4: LpmTrie<[u8; 4], u8> = LpmTrie::with_max_entries(16_384, 0);
#[map]
pub static EDGE_V6: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(16_384, 0);
/// Indexed by the origin's port (host order); non-zero = watched.
#[map]
pub static PORTS: Array<u8> = Array::with_max_entries(65_536, 0);
#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);
#[map]
pub static TP_LAYOUTS: Array<TpLayout> = Array::with_max_entries(tracer_ebpf::tp_index::COUNT, 0);
#[map]
pub static DROP_LAYOUT: Array<DropLayout> = Array::with_max_entries(1, 0);
/// ifindex -> 1 + length of the link-layer header the TC program skips
/// (see [`tracer_ebpf::L2_DIRECT`]).
#[map]
pub static IFACE_L2: Array<u8> = Array::with_max_entries(tracer_ebpf::L2_DIRECT, 0);
/// The same, for interfaces with a larger index.
#[map]
pub static IFACE_L2_FAR: HashMap<u32, u32> = HashMap::with_max_entries(1_024, 0);

/// Length of the link-layer header of the interface a packet is on
/// (Ethernet's when the agent did not say).
#[inline(always)]
pub fn l2_len(ifindex: u32) -> usize {
    if ifindex < tracer_ebpf::L2_DIRECT {
        match IFACE_L2.get(ifindex) {
            Some(v) if *v != 0 => usize::from(*v - 1),
            _ => 14,
        }
    } else {
        // SAFETY: plain map lookup; the value is copied out.
        unsafe { IFACE_L2_FAR.get(&ifindex) }.map_or(14, |v| *v as usize)
    }
}
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);
/// Latency histograms of quiet flows: `measure * HIST_BUCKETS + bucket`.
#[map]
pub static HIST: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(tracer_ebpf::measure::COUNT * HIST_BUCKETS, 0);
#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::with_max_entries(FLOW_CAPACITY, 0);
/// The programs the TC programs tail-call (see [`prog_slot`]).
#[map]
pub static SNAP_PROGS: ProgramArray = ProgramArray::with_max_entries(prog_slot::COUNT, 0);
/// The snapshot being built (one chunk), per CPU.
#[map]
pub static SNAP_BUF: PerCpuArray<Snapshot> = PerCpuArray::with_max_entries(1, 0);
/// What a TC program hands the program it tail-calls.
#[map]
pub static SNAP_ARGS: PerCpuArray<SnapArgs> = PerCpuArray::with_max_entries(1, 0);
/// A new flow or a history record being built, per CPU (too big for the
/// stack next to the rest).
#[map]
pub static HISTORY_BUF: PerCpuArray<History> = PerCpuArray::with_max_entries(1, 0);
/// Quiet TLS connections' `ClientHello`s: userspace reads a connection's
/// when the connection is handed over (its history says TLS).
#[map]
pub static HELLOS: LruHashMap<FlowKey, Hello> = LruHashMap::with_max_entries(HELLO_CAPACITY, 0);
/// A `ClientHello` being kept, per CPU.
#[map]
pub static HELLO_BUF: PerCpuArray<Hello> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn bump(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
pub fn port_watched(port: u16) -> bool {
    matches!(PORTS.get(u32::from(port)), Some(v) if *v != 0)
}

#[inline(always)]
fn all_sources() -> bool {
    matches!(SETTINGS.get(0), Some(s) if s.all_sources != 0)
}

/// Healthy flows stay in the kernel (else every flow is loud).
#[inline(always)]
pub fn quiet_mode() -> bool {
    matches!(SETTINGS.get(0), Some(s) if s.quiet != 0)
}

/// Is `addr` (first 4 bytes for IPv4) inside the configured edge ranges?
#[inline(always)]
pub fn is_edge(family: u32, addr: &[u8; 16]) -> bool {
    if all_sources() {
        return true;
    }
    if family == FAMILY_V4 {
        let key = Key::new(32, [addr[0], addr[1], addr[2], addr[3]]);
        EDGE_V4.get(&key).is_some()
    } else {
        let key = Key::new(128, *addr);
        EDGE_V6.get(&key).is_some()
    }
}

const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;

/// Ring-buffer flags for a record: the reader is only woken once an eighth
/// of the ring is used. A wake-up per event costs microseconds (an IPI, a VM
/// exit in a guest), and the agent drains the ring on a short timer anyway.
#[inline(always)]
pub fn wake_flags() -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA) >= u64::from(RINGBUF_BYTES / 8) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// Stamp and send an event; a full ring buffer is counted, never silent.
#[inline(always)]
pub fn emit(ev: &mut RawEvent) {
    ev.ts_ns = now_ns();
    if EVENTS.output::<RawEvent>(&*ev, wake_flags()).is_err() {
        bump(counter::RINGBUF_LOST);
    }
}

#[inline(always)]
pub fn is_loud(flow: *const FlowValue) -> bool {
    // SAFETY: LRU value pointer valid for this program run.
    unsafe { (*flow).flags & flow_flag::LOUD != 0 }
}

/// Something about a quiet flow may be a failure: send what the kernel kept
/// of it (once), so that userspace sees its whole story; it is loud from
/// now on. `ev` names the flow, `why` is a [`tracer_ebpf::handover`] reason.
#[inline(always)]
pub fn go_loud(flow: *mut FlowValue, ev: &RawEvent, why: u32) {
    if is_loud(flow) {
        return;
    }
    // SAFETY: as in is_loud.
    unsafe { (*flow).flags |= flow_flag::LOUD };
    bump(counter::LOUD_FLOWS);
    bump(counter::HANDED_OVER + why);
    let Some(rec) = HISTORY_BUF.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's buffer; `flow` as above.
    unsafe {
        (*rec).head = *ev;
        (*rec).head.kind = kind::HISTORY;
        (*rec).head.ts_ns = now_ns();
        (*rec).value = *flow;
        if EVENTS.output::<History>(&*rec, wake_flags()).is_err() {
            bump(counter::RINGBUF_LOST);
        }
    }
}

/// Record the edge's SYN as a new flow (loud from the start when `loud`;
/// `reused`: it replaces the flow of an earlier connection on its 4-tuple).
#[inline(always)]
pub fn new_flow(key: &FlowKey, ev: &RawEvent, loud: bool, reused: bool) -> Option<*mut FlowValue> {
    let rec = HISTORY_BUF.get_ptr_mut(0)?;
    // SAFETY: this CPU's buffer, used as the new value's template.
    unsafe {
        let v = &mut (*rec).value;
        *v = FlowValue::new(if loud { flow_flag::LOUD } else { 0 });
        v.isn = ev.seq;
        v.syn_ns = now_ns();
        v.ifindex = ev.ifindex;
        if FLOWS.insert(key, v, 0).is_err() {
            bump(counter::FLOW_INSERT_ERRORS);
        } else if !reused {
            bump(counter::FLOWS_NEW);
        }
    }
    FLOWS.get_ptr_mut(key)
}

/// The flow is over (both sides closed, or reset): forget it, counted (so
/// that userspace can tell evictions from the removals).
#[inline(always)]
pub fn forget(key: &FlowKey) {
    if FLOWS.remove(key).is_ok() {
        bump(counter::FLOWS_GONE);
    }
}

/// Count a latency of a healthy quiet flow in its histogram.
#[inline(always)]
pub fn observe(measure: u32, elapsed_ns: u64) {
    let us = elapsed_ns / 1_000;
    let index = measure * HIST_BUCKETS + hist_bucket(us);
    if let Some(slot) = HIST.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
pub const fn blank_event(kind: u32, family: u32) -> RawEvent {
    RawEvent {
        ts_ns: 0,
        kind,
        family,
        edge_addr: [0; 16],
        origin_addr: [0; 16],
        edge_port: 0,
        origin_port: 0,
        tcp_flags: 0,
        seq: 0,
        ifindex: 0,
        aux0: 0,
        aux1: 0,
    }
}

#[inline(always)]
pub fn flow_key(ev: &RawEvent) -> FlowKey {
    FlowKey {
        edge_addr: ev.edge_addr,
        origin_addr: ev.origin_addr,
        edge_port: ev.edge_port,
        origin_port: ev.origin_port,
        family: ev.family,
    }
}
