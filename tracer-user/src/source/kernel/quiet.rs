//! What the kernel keeps of quiet connections, read by the agent: the flows
//! whose handshake or request waited too long without a single event (the
//! kernel has no timers: the agent sweeps the flow map, takes such a flow
//! over and decodes its history itself), and at the end the kernel's counts
//! and latency histograms of healthy connections.

use anyhow::{Context, Result};
use aya::{
    maps::{HashMap, MapData, PerCpuArray},
    Ebpf,
};
use tracer_ebpf::{
    flow_flag, flow_state, kind, measure, names, FlowKey, FlowValue, Hello, History, RawEvent,
    HELLO_BYTES, HIST_BUCKETS,
};

/// `BPF_EXIST`: update only an entry that is still there.
const BPF_EXIST: u64 = 2;

/// The flow map, the kept `ClientHello`s and the histograms, taken from
/// the loaded object.
pub struct Quiet {
    flows: HashMap<MapData, FlowKey, FlowValue>,
    hellos: HashMap<MapData, FlowKey, Hello>,
    hist: PerCpuArray<MapData, u64>,
}

/// How long a quiet flow may wait before the agent takes it over (a little
/// before the diagnoser's deadline, which then decides on time).
#[derive(Clone, Copy, Debug)]
pub struct Waits {
    /// A handshake (SYN seen, not acknowledged).
    pub handshake_ns: u64,
    /// A request without a response byte.
    pub request_ns: u64,
}

/// Should the agent take this quiet flow over at `now_ns`?
pub fn overdue(v: &FlowValue, now_ns: u64, w: Waits) -> bool {
    if v.flags & flow_flag::LOUD != 0 {
        return false;
    }
    let past = |since: u64, wait: u64| since != 0 && now_ns >= since.saturating_add(wait);
    (v.state == flow_state::SYN_SEEN && past(v.syn_ns, w.handshake_ns))
        || (v.flags & flow_flag::WAITING != 0 && past(v.req_ns, w.request_ns))
}

/// The history record of a flow taken over from the map.
pub fn history_of(key: &FlowKey, value: FlowValue, now_ns: u64) -> History {
    History {
        head: RawEvent {
            ts_ns: now_ns,
            kind: kind::HISTORY,
            family: key.family,
            edge_addr: key.edge_addr,
            origin_addr: key.origin_addr,
            edge_port: key.edge_port,
            origin_port: key.origin_port,
            tcp_flags: 0,
            seq: 0,
            ifindex: value.ifindex,
            aux0: 0,
            aux1: 0,
        },
        value,
    }
}

impl Quiet {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let flows = HashMap::try_from(
            ebpf.take_map(names::FLOWS)
                .context("eBPF object lacks FLOWS")?,
        )?;
        let hellos = HashMap::try_from(
            ebpf.take_map(names::HELLOS)
                .context("eBPF object lacks HELLOS")?,
        )?;
        let hist = PerCpuArray::try_from(
            ebpf.take_map(names::HIST)
                .context("eBPF object lacks HIST")?,
        )?;
        Ok(Self {
            flows,
            hellos,
            hist,
        })
    }

    /// The `ClientHello` the kernel kept of a TLS connection handed over,
    /// if it still has it (and it is this connection's, not an earlier
    /// one's on the same addresses and ports).
    /// `(when it came, its bytes)`.
    pub fn hello_of(&self, h: &History) -> Option<(u64, Vec<u8>)> {
        if h.value.flags & flow_flag::TLS == 0 {
            return None;
        }
        let r = &h.head;
        let key = FlowKey {
            edge_addr: r.edge_addr,
            origin_addr: r.origin_addr,
            edge_port: r.edge_port,
            origin_port: r.origin_port,
            family: r.family,
        };
        let hello = self.hellos.get(&key, 0).ok()?;
        (hello.isn == h.value.isn).then(|| {
            let bytes = hello.bytes[..(hello.len as usize).min(HELLO_BYTES)].to_vec();
            (hello.head.ts_ns, bytes)
        })
    }

    /// Take over every quiet flow that waited past `w`: mark it loud (its
    /// next events go out) and return what the kernel kept of it.
    pub fn take_overdue(&mut self, now_ns: u64, w: Waits) -> Vec<History> {
        let due: Vec<(FlowKey, FlowValue)> = self
            .flows
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| overdue(v, now_ns, w))
            .collect();
        let mut out = Vec::with_capacity(due.len());
        for (key, value) in due {
            let mut loud = value;
            loud.flags |= flow_flag::LOUD;
            // Gone meanwhile (closed, evicted): nothing to take over.
            if self.flows.insert(key, loud, BPF_EXIST).is_ok() {
                out.push(history_of(&key, value, now_ns));
            }
        }
        out
    }

    /// Flows in the flow map now.
    pub fn live_flows(&self) -> u64 {
        self.flows.keys().filter_map(Result::ok).count() as u64
    }

    /// The kernel's latency histograms, summed over CPUs, in
    /// [`tracer_ebpf::measure`] order.
    pub fn histograms(&self) -> Vec<Vec<u64>> {
        (0..measure::COUNT)
            .map(|m| {
                (0..HIST_BUCKETS)
                    .map(|b| {
                        self.hist
                            .get(&(m * HIST_BUCKETS + b), 0)
                            .map_or(0, |v| v.iter().sum())
                    })
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_quiet_flows_past_their_wait_are_taken_over() {
        let w = Waits {
            handshake_ns: 10,
            request_ns: 100,
        };
        let mut v = FlowValue::new(0);
        v.syn_ns = 1_000;
        assert!(!overdue(&v, 1_009, w));
        assert!(overdue(&v, 1_010, w), "a handshake past its wait");
        v.flags |= flow_flag::LOUD;
        assert!(!overdue(&v, 5_000, w), "loud flows are the agent's already");
        let mut r = FlowValue::new(flow_flag::COUNTED | flow_flag::WAITING);
        r.state = flow_state::ESTABLISHED;
        r.syn_ns = 1_000;
        r.req_ns = 2_000;
        assert!(!overdue(&r, 2_099, w));
        assert!(overdue(&r, 2_100, w), "a request past its wait");
        r.flags &= !flow_flag::WAITING;
        assert!(
            !overdue(&r, 9_000, w),
            "an idle kept-alive connection waits for nothing"
        );
    }
}
