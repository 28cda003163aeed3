//! Maps shared by every program, plus the small helpers that consult them:
//! the edge filter (LPM tries + port set) and the event emitter.

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{
        lpm_trie::Key, Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray, RingBuf,
    },
};
use tracer_ebpf::{
    counter, DropLayout, FlowKey, FlowValue, RawEvent, Settings, SnapArgs, Snapshot, TpLayout,
    FAMILY_V4, FLOW_CAPACITY, RINGBUF_BYTES,
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
/// ifindex -> length of the link-layer header the TC program skips.
#[map]
pub static IFACE_L2: HashMap<u32, u32> = HashMap::with_max_entries(1_024, 0);
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);
#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::with_max_entries(FLOW_CAPACITY, 0);
/// Slot 0: the snapshot program (`otr_tc_snapshot`), set by the agent.
#[map]
pub static SNAP_PROGS: ProgramArray = ProgramArray::with_max_entries(1, 0);
/// The snapshot being built (one chunk), per CPU.
#[map]
pub static SNAP_BUF: PerCpuArray<Snapshot> = PerCpuArray::with_max_entries(1, 0);
/// What a TC program hands the snapshot program it tail-calls.
#[map]
pub static SNAP_ARGS: PerCpuArray<SnapArgs> = PerCpuArray::with_max_entries(1, 0);

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

/// Stamp and send an event; a full ring buffer is counted, never silent.
#[inline(always)]
pub fn emit(ev: &mut RawEvent) {
    // SAFETY: helper without preconditions.
    ev.ts_ns = unsafe { bpf_ktime_get_ns() };
    if EVENTS.output::<RawEvent>(&*ev, wake_flags()).is_err() {
        bump(counter::RINGBUF_LOST);
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
