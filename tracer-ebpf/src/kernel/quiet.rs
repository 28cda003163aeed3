//! A quiet flow's bookkeeping, shared by the TC programs and the turn
//! program: its handshake counted, its closes noted, and the per-turn
//! snapshot budgets of a loud flow.

use tracer_ebpf::{counter, flow_flag, flow_state, handover, measure, FlowValue, RawEvent};

use super::maps::{bump, go_loud, now_ns, observe};

/// The edge acknowledged the SYN-ACK of a quiet flow: a healthy handshake,
/// counted and timed here.
#[inline(always)]
pub fn established(f: *mut FlowValue) {
    // SAFETY: LRU value pointer valid for this program run.
    unsafe {
        (*f).state = flow_state::ESTABLISHED;
        (*f).ack_ns = now_ns();
        (*f).flags |= flow_flag::COUNTED;
        if (*f).synack_ns != 0 {
            observe(measure::SYN_TO_SYNACK, (*f).synack_ns - (*f).syn_ns);
        }
    }
    bump(counter::HANDSHAKES);
}

/// A FIN of a quiet flow. While a request waits (or before the handshake
/// completed) it may be a failure: the flow turns loud. Otherwise it is
/// noted; true when both sides have now closed and the flow can go.
#[inline(always)]
pub fn fin(f: *mut FlowValue, ingress: bool, ev: &RawEvent) -> bool {
    // SAFETY: as above.
    unsafe {
        if (*f).flags & flow_flag::WAITING != 0 || (*f).state != flow_state::ESTABLISHED {
            go_loud(f, ev, handover::CLOSED_WAITING);
            return false;
        }
        if ingress {
            (*f).flags |= flow_flag::FIN_IN;
            (*f).fin_in_ns = now_ns();
        } else if (*f).flags & flow_flag::FIN_OUT == 0 {
            (*f).flags |= flow_flag::FIN_OUT;
            (*f).fin_out_ns = now_ns();
            (*f).fin_out_seq = ev.seq;
        }
        let both = flow_flag::FIN_IN | flow_flag::FIN_OUT;
        (*f).flags & both == both
    }
}

/// Payload of a loud flow: the edge's next payload after the origin
/// answered starts a new turn, with fresh snapshot budgets.
#[inline(always)]
pub fn loud_turn(f: *mut FlowValue, ingress: bool) {
    // SAFETY: as above.
    unsafe {
        if !ingress {
            (*f).answered = 1;
        } else if (*f).answered != 0 {
            (*f).answered = 0;
            (*f).snap_in = 0;
            (*f).snap_out = 0;
        }
    }
}
