//! The generated schema against the lines the code builds: docs/schema-v1.json
//! is what the types give, every line builder's output validates (every
//! cause, every evidence kind, both sources), and the rules added by hand to
//! the derived schema reject what they should.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use clap::Parser;
use serde_json::{json, Value};

use super::*;
use crate::{
    certcheck::{CertCheck, Evaluation, Problem},
    cli::Args,
    diagnose::{
        finding::{Evidence, EvidenceKind, Finding, HttpFacts, PayloadEvent, TlsAlert, TlsFacts},
        Pending, Stats,
    },
    output::{
        line::{AttachMode, CaptureReport, PcapPayload, PcapReport, Source},
        lines::{self, Attached},
        summary::{summary, Counts, Extra},
    },
    source::kernel::listeners::Listening,
    source::{
        capture::decode::Skip,
        event::{Flow, FlowEventKind},
        names::{DropReason, TcpState},
    },
};

const TS: &str = "2026-12-02T10:00:00.000001Z";

fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&generate())
        .expect("the generated schema compiles")
}

fn assert_valid(v: &jsonschema::Validator, line: &Value) {
    let errors: Vec<String> = v.iter_errors(line).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{line}: {errors:?}");
}

fn flow(v6: bool) -> Flow {
    let (edge, origin) = if v6 {
        (
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
        )
    } else {
        (
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
        )
    };
    Flow {
        edge,
        edge_port: 40_000,
        origin,
        origin_port: 443,
    }
}

/// One of every evidence kind the diagnoser and the sources produce.
fn every_kind() -> Vec<EvidenceKind> {
    let mut kinds: Vec<EvidenceKind> = [
        FlowEventKind::SynIn,
        FlowEventKind::AckIn,
        FlowEventKind::RstIn,
        FlowEventKind::FinIn,
        FlowEventKind::SynAckOut,
        FlowEventKind::RstOut,
        FlowEventKind::FinOut,
        FlowEventKind::IcmpUnreachOut {
            v6: false,
            icmp_type: 3,
            code: 3,
        },
        FlowEventKind::KernelDrop {
            reason: DropReason::from_kernel("NETFILTER_DROP"),
            outbound: false,
            tcp_flags: 0x02,
        },
        FlowEventKind::KernelSendReset { reason: None },
        FlowEventKind::KernelSendReset {
            reason: Some("TCP_RESET_NO_SOCKET".into()),
        },
        FlowEventKind::KernelRecvReset,
        FlowEventKind::SynAckRetransmit,
        FlowEventKind::StateChange {
            from: TcpState::SynRecv,
            to: TcpState::from_kernel("TCP_CLOSE"),
        },
        FlowEventKind::Payload {
            outbound: false,
            ack: 0,
            bytes: vec![1],
        },
        FlowEventKind::Payload {
            outbound: true,
            ack: 0,
            bytes: vec![1],
        },
    ]
    .into_iter()
    .map(EvidenceKind::Flow)
    .collect();
    for event in [
        PayloadEvent::ClientHelloIn,
        PayloadEvent::ServerHelloOut,
        PayloadEvent::TlsAlertIn,
        PayloadEvent::TlsAlertOut,
        PayloadEvent::RequestIn,
        PayloadEvent::ResponseOut,
        PayloadEvent::DataOut,
    ] {
        kinds.push(EvidenceKind::Payload {
            event,
            detail: "x".into(),
        });
    }
    kinds.push(EvidenceKind::ListenOverflowCounter {
        count: 2,
        queue: Some((443, 129)),
    });
    kinds.push(EvidenceKind::ListenOverflowCounter {
        count: 1,
        queue: None,
    });
    kinds
}

fn evidence() -> Vec<Evidence> {
    every_kind()
        .into_iter()
        .enumerate()
        .map(|(i, what)| Evidence {
            t_us: i as u64 * 10,
            what,
            repeat: if i == 1 { 3 } else { 1 },
        })
        .collect()
}

/// The finding the diagnoser would write for a cause.
fn finding(cause: Cause, v6: bool) -> Finding {
    let class = cause.class();
    let from = if cause == Cause::EdgeRejectedCertificate {
        Side::Edge
    } else {
        Side::Origin
    };
    Finding {
        ts_ns: 1,
        flow: flow(v6),
        cause,
        confidence: crate::diagnose::finding::Confidence::High,
        evidence: evidence(),
        hint: "check it".into(),
        tls: class.is_tls().then(|| TlsFacts {
            sni: Some("example.com".into()),
            offered_versions: vec!["TLSv1.3"],
            negotiated_version: None,
            alert: Some(TlsAlert {
                level: "fatal",
                description: "handshake_failure",
                from,
            }),
        }),
        http: class.is_http().then(|| HttpFacts {
            method: Some("GET".into()),
            status: (cause == Cause::OriginErrorStatus).then_some(502),
            header_bytes: Some(20_000),
            path: Some("/a".into()),
            request_index: Some(2),
        }),
        count: (cause == Cause::OriginErrorStatus).then_some(3),
    }
}

fn json_of(line: &Line) -> Value {
    serde_json::to_value(line).expect("a line serializes")
}

#[test]
fn the_published_file_is_the_generated_schema() {
    let published = include_str!("../../../docs/schema-v1.json");
    assert!(
        published == to_file_text(),
        "docs/schema-v1.json is stale: run `cargo xtask schema` and commit it"
    );
}

#[test]
fn every_line_the_code_builds_validates() {
    let v = validator();
    for cause in Cause::ALL {
        for v6 in [false, true] {
            for source in [Source::Kernel, Source::Capture] {
                let line = lines::finding(&finding(cause, v6), TS.into(), source, None);
                assert_valid(&v, &json_of(&line));
            }
            // Live, with what does listen on the port.
            let listening = [Listening {
                addr: "127.0.0.1".parse().unwrap(),
                inode: 7,
                process: Some((42, "nginx".to_owned())),
            }];
            for l in [&listening[..], &[]] {
                let line = lines::finding(&finding(cause, v6), TS.into(), Source::Kernel, Some(l));
                assert_valid(&v, &json_of(&line));
            }
        }
    }
    for what in every_kind() {
        let host_wide = matches!(what, EvidenceKind::ListenOverflowCounter { .. });
        let flow = (!host_wide).then(|| flow(true));
        assert_valid(
            &v,
            &json_of(&lines::event(TS.into(), Source::Kernel, what, flow)),
        );
    }
    assert_valid(&v, &json_of(&lines::loss(TS.into(), 3, 5)));
    let settings = Args::parse_from(["origin-tracer", "--format", "json"])
        .resolve()
        .expect("default settings");
    let attached = Attached::Kernel {
        mode: AttachMode::Tcx,
        interfaces: vec![("eth0", 2)],
        probes: &[],
        stale_removed: &["old".into()],
    };
    assert_valid(&v, &json_of(&lines::start(&settings, &attached, TS.into())));
    let capture = Attached::Capture {
        file: "/tmp/a.pcap",
    };
    assert_valid(&v, &json_of(&lines::start(&settings, &capture, TS.into())));
    let pending = Pending {
        flow: flow(false),
        first_ns: 0,
        waiting_since_ns: 0,
        for_response: true,
        evidence: evidence(),
    };
    let line = lines::inconclusive(pending, 1_000_000, &settings, TS.into());
    assert_valid(&v, &json_of(&line));
    let mut stats = Stats::default();
    stats.findings.insert(Cause::NotTls, 2);
    stats.timing.syn_to_synack.add(40);
    let extra = Extra {
        source: Some(Source::Capture),
        pcap: Some(PcapReport {
            file: "/tmp/e.pcap".into(),
            flows_written: 1,
            packets_written: 4,
            packets_not_written: 0,
            complete: true,
            payload: PcapPayload::Masked,
            packets_masked: 1,
        }),
        capture: Some(CaptureReport {
            file: "/tmp/a.pcap".into(),
            packets: 10,
            packets_skipped: [(Skip::Malformed, 1), (Skip::TruncatedHeaders, 2)].into(),
            damage: Some("cut short".into()),
        }),
    };
    let line = summary(&stats, &Counts::default(), TS.into(), extra);
    assert_valid(&v, &json_of(&line));
    assert_valid(
        &v,
        &json_of(&summary(
            &stats,
            &Counts::default(),
            TS.into(),
            Extra::default(),
        )),
    );
    let addr = SocketAddr::from(([198, 18, 0, 2], 443));
    let mut check = CertCheck {
        sni: "example.com".into(),
        addr: addr.ip(),
        port: addr.port(),
        eval: Evaluation::default(),
        client_cert_requested: false,
    };
    assert_valid(&v, &json_of(&check.to_line(TS.into())));
    check.eval.problems = vec![Problem::Expired, Problem::SelfSigned];
    check.eval.not_after_unix = Some(1_700_000_000);
    check.eval.days_until_expiry = Some(-3);
    assert_valid(&v, &json_of(&check.to_line(TS.into())));
}

#[test]
fn the_rules_added_to_the_derived_schema_hold() {
    let v = validator();
    let good = json_of(&lines::finding(
        &finding(Cause::HeadersTooLarge, false),
        TS.into(),
        Source::Kernel,
        None,
    ));
    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut l = good.clone();
        edit(&mut l);
        assert!(!v.is_valid(&l), "accepted: {l}");
    };
    broken(&|l| l["class"] = json!("522"));
    broken(&|l| l["http"]["header_bytes"] = json!(100));
    broken(&|l| {
        l.as_object_mut().expect("object").remove("http");
    });
    broken(&|l| l["flow"]["family"] = json!("ipv6"));
    broken(&|l| l["flow"]["src"] = json!("not an address"));
    broken(&|l| l["evidence"][1]["repeat"] = json!(1));
    broken(&|l| l["evidence"][0]["event"] = json!("syn"));
    let tls = json_of(&lines::finding(
        &finding(Cause::TlsAlertFromOrigin, false),
        TS.into(),
        Source::Kernel,
        None,
    ));
    let mut l = tls.clone();
    l["tls"]["alert"]["from"] = json!("edge");
    assert!(!v.is_valid(&l), "accepted: {l}");
    let overflow = json_of(&lines::event(
        TS.into(),
        Source::Kernel,
        EvidenceKind::ListenOverflowCounter {
            count: 1,
            queue: None,
        },
        Some(flow(false)),
    ));
    assert!(
        !v.is_valid(&overflow),
        "a host-wide event with a flow: {overflow}"
    );
}
