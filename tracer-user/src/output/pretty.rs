//! Human-readable rendering of the schema's lines (`--format pretty`), from
//! the line types themselves.

use std::net::IpAddr;

use super::line::{
    CertCheckLine, FindingLine, Inconclusive, Line, Loss, ProbeStatus, Source, Start, Summary,
};
use crate::{
    diagnose::finding::{Evidence, EvidenceKind},
    source::event::{flags_name, icmp_name, Flow, FlowEventKind},
};

fn endpoint(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

fn flow_text(f: &Flow) -> String {
    format!(
        "{} -> {}",
        endpoint(f.edge, f.edge_port),
        endpoint(f.origin, f.origin_port)
    )
}

/// An observation in a few words: `kernel_drop NO_SOCKET in SYN`.
fn what_text(what: &EvidenceKind) -> String {
    let mut t = what.event().to_owned();
    let mut add = |x: &str| {
        t.push(' ');
        t.push_str(x);
    };
    match what {
        EvidenceKind::Payload { detail, .. } => add(detail),
        EvidenceKind::ListenOverflowCounter { queue, .. } => {
            if let Some((_, q)) = queue {
                add(&format!("accept_queue={q}"));
            }
        }
        EvidenceKind::Flow(kind) => match kind {
            FlowEventKind::KernelDrop {
                reason,
                outbound,
                tcp_flags,
            } => {
                add(reason.as_str());
                add(if *outbound { "out" } else { "in" });
                add(&flags_name(*tcp_flags));
            }
            FlowEventKind::KernelSendReset {
                reason: Some(reason),
            } => add(reason),
            FlowEventKind::IcmpUnreachOut { v6, code, .. } => add(icmp_name(*v6, *code)),
            FlowEventKind::StateChange { from, to } => add(&format!("{from}->{to}")),
            FlowEventKind::Resume { requests, .. } => add(&format!("{requests} answered before")),
            _ => {}
        },
    }
    t
}

fn evidence_text(e: &Evidence) -> String {
    let mut t = what_text(&e.what);
    t.push_str(&format!(" +{}us", e.t_us));
    if e.repeat > 1 {
        t.push_str(&format!(" x{}", e.repeat));
    }
    t
}

fn evidence_list(items: &[Evidence]) -> String {
    items
        .iter()
        .map(evidence_text)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `HH:MM:SS.mmm` of an RFC 3339 time.
fn time_of(ts: &str) -> &str {
    ts.get(11..23).unwrap_or(ts)
}

fn ports(p: &[u16]) -> String {
    p.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn prefixes(l: &Start) -> String {
    let all = if l.all_sources { ", all sources" } else { "" };
    format!(
        "{} IPv4 + {} IPv6 edge prefixes{all}",
        l.edge_prefixes.ipv4, l.edge_prefixes.ipv6
    )
}

fn start(l: &Start) -> String {
    if l.source == Some(Source::Capture) {
        return format!(
            "origin-tracer {}: analysing {} for ports {} ({})",
            l.version,
            l.capture_file.as_deref().unwrap_or(""),
            ports(&l.ports),
            prefixes(l)
        );
    }
    let ifaces: Vec<&str> = l.interfaces.iter().map(|i| i.name.as_str()).collect();
    let attached = l
        .probes
        .iter()
        .filter(|p| p.status == ProbeStatus::Attached)
        .count();
    let mut out = format!(
        "origin-tracer {} on Linux {}: watching {} ports {} ({}), {attached} probes attached via {}",
        l.version,
        l.kernel,
        ifaces.join(","),
        ports(&l.ports),
        prefixes(l),
        l.attach_mode.as_str(),
    );
    let skipped: Vec<String> = l
        .probes
        .iter()
        .filter(|p| p.status == ProbeStatus::Skipped)
        .map(|p| format!("{} ({})", p.name, p.reason.as_deref().unwrap_or("")))
        .collect();
    if !skipped.is_empty() {
        out.push_str(&format!("\n  skipped: {}", skipped.join("; ")));
    }
    for p in &l.probes {
        if let Some(limits) = &p.limits {
            out.push_str(&format!("\n  limited: {} ({limits})", p.name));
        }
    }
    for stale in &l.stale_removed {
        out.push_str(&format!("\n  removed leftover of an earlier run: {stale}"));
    }
    out
}

fn summary(l: &Summary) -> String {
    let causes: Vec<String> = l
        .findings
        .0
        .iter()
        .filter(|(_, n)| **n != 0)
        .map(|(c, n)| format!("{} {n}", c.as_str()))
        .collect();
    let causes = if causes.is_empty() {
        String::new()
    } else {
        format!(" ({})", causes.join(", "))
    };
    let off = &l.per_request_off;
    let off = if off.http2 + off.upgraded == 0 {
        String::new()
    } else {
        format!(
            " (requests not followed on {} HTTP/2 and {} upgraded connections)",
            off.http2, off.upgraded
        )
    };
    let head = format!(
        "summary: {} findings{causes}, {} healthy handshakes, {} healthy requests{off}",
        l.findings_total, l.healthy_handshakes, l.healthy_requests
    );
    if let Some(c) = &l.capture {
        let skipped: u64 = c.packets_skipped.values().sum();
        let damage = c
            .damage
            .as_deref()
            .map(|d| format!("; {d}"))
            .unwrap_or_default();
        return format!(
            "{head}, {} inconclusive, {} packets read, {skipped} skipped{damage}",
            l.pending_at_exit, c.packets
        );
    }
    format!(
        "{head}, {} kernel events, {} lost, {} pending at exit",
        l.events_received, l.events_lost, l.pending_at_exit
    )
}

fn finding(l: &FindingLine) -> String {
    format!(
        "{} {} {} [{}] {}{}\n    evidence: {}\n    hint: {}",
        time_of(l.ts.as_str()),
        l.class.0,
        l.cause.as_str(),
        l.confidence.as_str(),
        flow_text(&l.flow),
        match l.count {
            Some(n) if n > 1 => format!(" (and {} more like it)", n - 1),
            _ => String::new(),
        },
        evidence_list(&l.evidence),
        l.hint
    )
}

fn inconclusive(l: &Inconclusive) -> String {
    format!(
        "{} inconclusive {}\n    evidence: {}\n    why: {}",
        time_of(l.ts.as_str()),
        flow_text(&l.flow),
        evidence_list(&l.evidence),
        l.reason
    )
}

fn loss(l: &Loss) -> String {
    format!(
        "{} WARNING: {} kernel events lost (ring buffer full), {} in all",
        time_of(l.ts.as_str()),
        l.events_lost,
        l.events_lost_total
    )
}

fn cert_check(l: &CertCheckLine) -> String {
    let verdict = if l.problems.is_empty() {
        "ok".to_owned()
    } else {
        format!(
            "FAILS Full (strict): {}",
            l.problems
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let expiry = l
        .days_until_expiry
        .map(|d| format!(", expires in {d} days"))
        .unwrap_or_default();
    format!(
        "{} cert_check {} at {}: {verdict}{expiry}",
        time_of(l.ts.as_str()),
        l.sni,
        endpoint(l.addr, l.port)
    )
}

/// One human-readable rendering of a schema line.
pub fn render(line: &Line) -> String {
    match line {
        Line::Start(l) => start(l),
        Line::Finding(l) => finding(l),
        Line::Inconclusive(l) => inconclusive(l),
        Line::Event(l) => {
            let flow = l.flow.as_ref().map(flow_text).unwrap_or_default();
            format!(
                "{} event {} {flow}",
                time_of(l.ts.as_str()),
                what_text(&l.what)
            )
            .trim_end()
            .to_owned()
        }
        Line::Loss(l) => loss(l),
        Line::Summary(l) => summary(l),
        Line::CertCheck(l) => cert_check(l),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        diagnose::finding::{Cause, Confidence, Finding},
        output::lines,
        source::names::DropReason,
    };

    #[test]
    fn pretty_finding_names_cause_flow_and_hint() {
        let f = Finding {
            ts_ns: 0,
            flow: Flow {
                edge: "2001:db8::1".parse().unwrap(),
                edge_port: 4000,
                origin: "2001:db8::2".parse().unwrap(),
                origin_port: 81,
            },
            cause: Cause::NoListener,
            confidence: Confidence::High,
            evidence: vec![
                Evidence {
                    t_us: 0,
                    what: EvidenceKind::Flow(FlowEventKind::SynIn),
                    repeat: 1,
                },
                Evidence {
                    t_us: 30,
                    what: EvidenceKind::Flow(FlowEventKind::KernelDrop {
                        reason: DropReason::NoSocket,
                        outbound: false,
                        tcp_flags: 0x02,
                    }),
                    repeat: 1,
                },
            ],
            hint: "check ss".into(),
            tls: None,
            http: None,
            count: None,
        };
        let line = lines::finding(
            &f,
            "2026-11-21T16:00:00.123456Z".into(),
            Source::Kernel,
            None,
        );
        let p = render(&line);
        assert!(
            p.starts_with(
                "16:00:00.123 521 no_listener [high] [2001:db8::1]:4000 -> [2001:db8::2]:81"
            ),
            "{p}"
        );
        assert!(p.contains("kernel_drop NO_SOCKET in SYN +30us"), "{p}");
        assert!(p.contains("hint: check ss"));
    }
}
