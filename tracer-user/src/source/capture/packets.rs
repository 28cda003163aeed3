//! Packets to events, by the same rules as the kernel's TC programs
//! (tracer-ebpf/src/kernel/tc.rs): the edge's SYN, first ACK, RST and FIN,
//! the origin's SYN-ACK, RST, FIN and ICMP unreachables, for watched ports
//! and edge sources only; per-flow state bounded like the kernel's LRU map.

use std::collections::{HashMap, VecDeque};

use super::decode::{Decoded, Transport};
use crate::source::{
    event::{Flow, FlowEvent, FlowEventKind},
    ranges::EdgeRanges,
};

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    SynSeen,
    Established,
}

/// Per-flow state, like the kernel's `FlowValue`.
#[derive(Clone, Copy)]
struct State {
    phase: Phase,
    /// Payload bytes handed on, per direction (the kernel's snapshot budget).
    used_in: u32,
    used_out: u32,
    /// The last payload went to the edge: the edge's next payload starts a
    /// new request/response turn, whose budgets start afresh.
    answered: bool,
}

/// The kernel's snapshot budgets per turn (tracer-user/src/source/kernel/attach.rs).
const BUDGET_IN: u32 = 8 * 1024;
const BUDGET_OUT: u32 = 20 * 1024;

pub struct Packetizer {
    ranges: EdgeRanges,
    all_sources: bool,
    watched: Vec<bool>,
    flows: HashMap<Flow, State>,
    order: VecDeque<Flow>,
    capacity: usize,
}

impl Packetizer {
    pub fn new(ranges: EdgeRanges, all_sources: bool, ports: &[u16], capacity: usize) -> Self {
        let mut watched = vec![false; 65_536];
        for p in ports {
            watched[usize::from(*p)] = true;
        }
        Self {
            ranges,
            all_sources,
            watched,
            flows: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    fn is_edge(&self, ip: std::net::IpAddr) -> bool {
        self.all_sources || self.ranges.contains(ip)
    }

    fn track(&mut self, flow: Flow) {
        let fresh = State {
            phase: Phase::SynSeen,
            used_in: 0,
            used_out: 0,
            answered: false,
        };
        if self.flows.insert(flow, fresh).is_none() {
            self.order.push_back(flow);
            while self.flows.len() > self.capacity {
                let Some(old) = self.order.pop_front() else {
                    break;
                };
                self.flows.remove(&old);
            }
        }
        if self.order.len() > 2 * self.capacity {
            let flows = &self.flows;
            self.order.retain(|f| flows.contains_key(f));
        }
    }

    /// The events a packet amounts to: a control event, and for tracked
    /// flows its payload (within the same budget the kernel uses).
    pub fn on_packet(&mut self, ts_ns: u64, p: &Decoded<'_>) -> Vec<FlowEvent> {
        let mut out = Vec::new();
        match p.transport {
            Transport::Tcp {
                sport,
                dport,
                flags,
                seq,
                ack,
                payload,
            } => {
                let inbound = self.watched[usize::from(dport)] && self.is_edge(p.src);
                let outbound = !inbound && self.watched[usize::from(sport)] && self.is_edge(p.dst);
                let flow = if inbound {
                    Flow {
                        edge: p.src,
                        edge_port: sport,
                        origin: p.dst,
                        origin_port: dport,
                    }
                } else if outbound {
                    Flow {
                        edge: p.dst,
                        edge_port: dport,
                        origin: p.src,
                        origin_port: sport,
                    }
                } else {
                    return out;
                };
                if let Some(kind) = self.tcp_kind(flow, flags, inbound) {
                    out.push(FlowEvent {
                        ts_ns,
                        flow,
                        kind,
                        seq,
                    });
                }
                if !payload.is_empty() {
                    if let Some(bytes) = self.take_payload(flow, inbound, payload) {
                        out.push(FlowEvent {
                            ts_ns,
                            flow,
                            kind: FlowEventKind::Payload {
                                outbound: !inbound,
                                ack,
                                bytes,
                            },
                            seq,
                        });
                    }
                }
            }
            Transport::IcmpUnreach {
                v6,
                icmp_type,
                code,
                quoted,
            } => {
                // From the origin to the edge, about the edge's segment.
                if self.watched[usize::from(quoted.dport)] && self.is_edge(p.dst) {
                    let flow = Flow {
                        edge: quoted.src,
                        edge_port: quoted.sport,
                        origin: quoted.dst,
                        origin_port: quoted.dport,
                    };
                    let kind = FlowEventKind::IcmpUnreachOut {
                        v6,
                        icmp_type,
                        code,
                    };
                    out.push(FlowEvent {
                        ts_ns,
                        flow,
                        kind,
                        seq: quoted.seq,
                    });
                }
            }
        }
        out
    }

    /// The part of a payload the flow's budget still allows.
    fn take_payload(&mut self, flow: Flow, inbound: bool, payload: &[u8]) -> Option<Vec<u8>> {
        let state = self.flows.get_mut(&flow)?;
        if inbound && std::mem::replace(&mut state.answered, false) {
            (state.used_in, state.used_out) = (0, 0);
        }
        state.answered |= !inbound;
        let (used, budget) = if inbound {
            (&mut state.used_in, BUDGET_IN)
        } else {
            (&mut state.used_out, BUDGET_OUT)
        };
        let room = usize::try_from(budget.saturating_sub(*used)).unwrap_or(0);
        if room == 0 {
            return None;
        }
        let take = payload.len().min(room);
        *used += u32::try_from(take).unwrap_or(budget);
        Some(payload[..take].to_vec())
    }

    fn tcp_kind(&mut self, flow: Flow, flags: u8, inbound: bool) -> Option<FlowEventKind> {
        let (syn, ack) = (flags & SYN != 0, flags & ACK != 0);
        if flags & RST != 0 {
            self.flows.remove(&flow);
            return Some(if inbound {
                FlowEventKind::RstIn
            } else {
                FlowEventKind::RstOut
            });
        }
        if inbound && syn && !ack {
            self.track(flow);
            return Some(FlowEventKind::SynIn);
        }
        if !inbound && syn && ack {
            return Some(FlowEventKind::SynAckOut);
        }
        let state = self.flows.get_mut(&flow)?;
        if flags & FIN != 0 {
            return Some(if inbound {
                FlowEventKind::FinIn
            } else {
                FlowEventKind::FinOut
            });
        }
        if inbound && ack && state.phase == Phase::SynSeen {
            state.phase = Phase::Established;
            return Some(FlowEventKind::AckIn);
        }
        None
    }
}

#[cfg(test)]
#[path = "packets_tests.rs"]
mod tests;
