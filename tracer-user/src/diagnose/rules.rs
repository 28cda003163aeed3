//! The rules that name a cause from what a connection showed: the
//! handshake's (521/522) and, after it, the payload's (520/524/525/526).

use super::{
    finding::{Cause, Confidence},
    payload::is_certificate_alert,
};
use super::{FlowState, Phase};
use crate::source::{event::FlowEventKind, names::DropReason};

/// Drops that are routine, not evidence, and would read like a cause: the
/// retransmitted SYN the kernel frees once its request socket has answered
/// (it re-sends the SYN-ACK instead), and the segments a closing socket
/// purges from its queues (`QUEUE_PURGE`).
pub(super) fn is_routine_drop(f: &FlowState, kind: &FlowEventKind) -> bool {
    match kind {
        FlowEventKind::KernelDrop {
            reason: DropReason::QueuePurge,
            ..
        } => true,
        FlowEventKind::KernelDrop {
            reason,
            outbound: false,
            tcp_flags,
        } => {
            *reason == DropReason::NotSpecified
                && is_syn(*tcp_flags)
                && (f.synack > 0 || f.synack_retrans > 0)
        }
        _ => false,
    }
}

pub(super) fn is_syn(flags: u8) -> bool {
    u32::from(flags) & tracer_ebpf::tcp_flag::SYN != 0
        && u32::from(flags) & tracer_ebpf::tcp_flag::ACK == 0
}

/// The rules. `None` while the evidence is not conclusive yet.
pub(super) fn classify(f: &FlowState, timed_out: bool) -> Option<(Cause, Confidence)> {
    use Cause::{
        FirewallDrop, FirewallReject, KernelDrop, ListenOverflow, NoListener, SynUnanswered,
        SynackUnacked,
    };
    use Confidence::{High, Medium};
    if f.phase != Phase::Handshake {
        return None;
    }
    let drop = f.drop_in.as_ref();
    if drop == Some(&DropReason::TcpListenOverflow) {
        return Some((ListenOverflow, High));
    }
    if f.icmp {
        return Some((FirewallReject, High));
    }
    if f.rst_out || f.send_reset {
        return Some(match drop {
            Some(DropReason::NetfilterDrop) if !f.send_reset => (FirewallReject, High),
            _ if f.send_reset || drop == Some(&DropReason::NoSocket) => (NoListener, High),
            // A RST and no word from the kernel: the packets alone say "closed port".
            _ => (NoListener, Medium),
        });
    }
    match drop {
        Some(DropReason::NoSocket) => return Some((NoListener, High)),
        Some(DropReason::NetfilterDrop) => return Some((FirewallDrop, High)),
        Some(_) => return Some((KernelDrop, High)),
        None => {}
    }
    if let Some(overflow) = f.listen_overflow {
        if f.synack == 0 && f.synack_retrans == 0 {
            return Some((
                ListenOverflow,
                if overflow.queue.is_some() {
                    High
                } else {
                    Medium
                },
            ));
        }
    }
    if !timed_out {
        return None;
    }
    // Retransmitted SYN-ACKs: seen by the kernel, or on the wire (a capture).
    if f.synack_retrans > 0 || f.synack >= 2 {
        return Some((SynackUnacked, High));
    }
    if f.synack > 0 {
        return Some((SynackUnacked, Medium));
    }
    Some((SynUnanswered, Medium))
}

/// After the handshake. `None` while nothing conclusive happened.
pub(super) fn classify_app(
    f: &FlowState,
    response_timed_out: bool,
    ack_timed_out: bool,
) -> Option<(Cause, Confidence, Option<String>)> {
    let a = &f.app;
    // Cloudflare's second 522: the request was never taken (resent, or
    // dropped on the way in), and nothing came back.
    if ack_timed_out && a.request_ns.is_some() && a.first_out_ns.is_none() {
        let confidence = if f.data_drop.is_some() {
            Confidence::High
        } else {
            Confidence::Medium
        };
        let detail = f.data_drop.as_ref().map(ToString::to_string);
        return Some((Cause::RequestUnacked, confidence, detail));
    }
    if a.is_tls() {
        // close_notify (0) is not a refusal.
        if let Some(al) = a
            .alerts
            .iter()
            .find(|x| x.from_origin && x.alert.description != 0)
        {
            return Some((
                Cause::TlsAlertFromOrigin,
                Confidence::High,
                Some(al.alert.description_name().to_owned()),
            ));
        }
        if let Some(al) = a
            .alerts
            .iter()
            .find(|x| !x.from_origin && is_certificate_alert(x.alert.description))
        {
            return Some((
                Cause::EdgeRejectedCertificate,
                Confidence::High,
                Some(al.alert.description_name().to_owned()),
            ));
        }
        if a.not_tls {
            return Some((Cause::NotTls, Confidence::High, None));
        }
        if a.server_hello.is_none() && (f.fin_out || f.rst_out_late) {
            return Some((Cause::TlsClosedDuringHandshake, Confidence::High, None));
        }
        let tls13 = a
            .server_hello
            .is_some_and(|s| s.version == 0x0304 && !s.hello_retry_request);
        if tls13 && !a.handshake_done && (f.fin_in || f.rst_in) && a.in_after_server_hello <= 64 {
            return Some((Cause::EdgeAbortedAfterCertificate, Confidence::Low, None));
        }
        if a.records.lost {
            return None;
        }
        // TLS 1.2 record types leave no doubt; TLS 1.3 records are told
        // apart by their lengths (see tls_records).
        let confidence = if a.server_hello.is_some_and(|s| s.version == 0x0304) {
            Confidence::Medium
        } else {
            Confidence::High
        };
        let detail = match a.server_hello.map(|s| s.version) {
            Some(0x0304) => format!(
                "TLS1.3: the request and the response are encrypted, told apart by record lengths; {} session tickets came first",
                a.tls_tickets()
            ),
            Some(v) => format!(
                "{}: the request and the response are encrypted, told apart by record types",
                crate::proto::tls::version_name(v)
            ),
            None => String::new(),
        };
        return no_response(f, response_timed_out).map(|c| (c, confidence, Some(detail)));
    }
    a.request.as_ref()?;
    if a.not_http() {
        return Some((Cause::MalformedResponse, Confidence::High, None));
    }
    if let Some((bytes, complete)) = a.oversized_headers() {
        let detail = if complete {
            format!("{bytes} bytes")
        } else {
            format!("over {bytes} bytes, not ended")
        };
        return Some((Cause::HeadersTooLarge, Confidence::High, Some(detail)));
    }
    no_response(f, response_timed_out).map(|c| (c, Confidence::High, None))
}

/// A request and no response byte: the origin reset, closed, or ran out of
/// time. Not when the origin sent bytes that were not seen (a snapshot lost
/// or the snapshot budget spent): they may have been the response.
fn no_response(f: &FlowState, response_timed_out: bool) -> Option<Cause> {
    let a = &f.app;
    if a.request_ns.is_none() || a.first_out_ns.is_some() || a.origin_blind() {
        return None;
    }
    let unseen = |seq: Option<u32>| seq.is_some_and(|s| a.origin_sent_unseen(s, f.origin_isn));
    if (f.rst_out_late || f.fin_out) && a.tls_client_auth_refused() {
        return None;
    }
    // The origin's FIN went out before the request came in: whatever it
    // does with the request now (a RST, nothing), the two crossed.
    if f.request_after_fin_out {
        return Some(Cause::KeepaliveRace);
    }
    // The edge gave up first (its own timeout, shorter than the response
    // timeout): a close or reset after that is no answer refused.
    if f.edge_closed_first {
        return response_timed_out.then_some(Cause::ResponseTimeout);
    }
    if f.rst_out_late {
        return (!unseen(f.rst_out_seq)).then_some(Cause::ResetAfterRequest);
    }
    if f.fin_out {
        return (!unseen(f.fin_out_seq)).then_some(Cause::ClosedWithoutResponse);
    }
    response_timed_out.then_some(Cause::ResponseTimeout)
}
