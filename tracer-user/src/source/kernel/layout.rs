//! Everything kernel-version-dependent, read from the running kernel at
//! start-up: tracepoint field offsets (tracefs formats), `struct sk_buff`
//! offsets and enum names (BTF). Nothing here is hard-coded to one kernel.

use std::collections::HashMap;

use tracer_ebpf::{addr_layout, DropLayout, Settings, TpLayout};

use super::{btf::Btf, tracefs::Format};
use crate::source::kernel::records::KernelNames;

/// The socket tracepoints we use, with the kind-specific fields they carry.
pub struct SockProbe {
    pub category: &'static str,
    pub name: &'static str,
    pub program: &'static str,
    pub index: u32,
    /// (field for `extra0`, field for `extra1`), optional ones may be absent.
    pub extras: (Option<&'static str>, Option<&'static str>),
    /// Fields that must exist for the program to make sense.
    pub required_extras: &'static [&'static str],
}

pub const SOCK_PROBES: [SockProbe; 4] = [
    SockProbe {
        category: "tcp",
        name: "tcp_send_reset",
        program: tracer_ebpf::names::TP_SEND_RESET,
        index: tracer_ebpf::tp_index::SEND_RESET,
        extras: (Some("reason"), Some("state")),
        required_extras: &[],
    },
    SockProbe {
        category: "tcp",
        name: "tcp_receive_reset",
        program: tracer_ebpf::names::TP_RECV_RESET,
        index: tracer_ebpf::tp_index::RECV_RESET,
        extras: (None, None),
        required_extras: &[],
    },
    SockProbe {
        category: "tcp",
        name: "tcp_retransmit_synack",
        program: tracer_ebpf::names::TP_RETRANS_SYNACK,
        index: tracer_ebpf::tp_index::RETRANS_SYNACK,
        extras: (None, None),
        required_extras: &[],
    },
    SockProbe {
        category: "sock",
        name: "inet_sock_set_state",
        program: tracer_ebpf::names::TP_SET_STATE,
        index: tracer_ebpf::tp_index::SET_STATE,
        extras: (Some("oldstate"), Some("newstate")),
        required_extras: &["oldstate", "newstate"],
    },
];

fn offset_if(format: &Format, name: &str, size: u32, array: Option<u32>) -> Option<u32> {
    let f = format.field(name)?;
    (f.size == size && f.array_len == array).then_some(f.offset)
}

/// Field offsets of a socket tracepoint, or why it cannot be used.
pub fn sock_layout(format: &Format, probe: &SockProbe) -> Result<TpLayout, String> {
    let mut l = TpLayout::ABSENT;
    // `family` is optional: 5.10's tcp events lack it (the program then
    // tells the families apart by the v4-mapped `daddr_v6`).
    let family = offset_if(format, "family", 2, None).unwrap_or(u32::MAX);
    let split = (
        offset_if(format, "sport", 2, None),
        offset_if(format, "dport", 2, None),
        offset_if(format, "saddr", 4, Some(4)),
        offset_if(format, "daddr", 4, Some(4)),
        offset_if(format, "saddr_v6", 16, Some(16)),
        offset_if(format, "daddr_v6", 16, Some(16)),
    );
    if let (Some(sport), Some(dport), Some(saddr), Some(daddr), Some(s6), Some(d6)) = split {
        l.addr_layout = addr_layout::SPLIT;
        (
            l.family, l.sport, l.dport, l.saddr, l.daddr, l.saddr_v6, l.daddr_v6,
        ) = (family, sport, dport, saddr, daddr, s6, d6);
    } else if let (Some(saddr), Some(daddr)) = (
        offset_if(format, "saddr", 28, Some(28)),
        offset_if(format, "daddr", 28, Some(28)),
    ) {
        l.addr_layout = addr_layout::SOCKADDR;
        l.saddr = saddr;
        l.daddr = daddr;
    } else {
        return Err("its format has neither split address fields nor sockaddr fields".into());
    }
    if let Some(p) = offset_if(format, "protocol", 2, None) {
        l.protocol = p;
    }
    for needed in probe.required_extras {
        if format.field(needed).is_none() {
            return Err(format!("its format lacks the field {needed}"));
        }
    }
    let extra = |name: Option<&str>| {
        name.and_then(|n| offset_if(format, n, 4, None))
            .unwrap_or(u32::MAX)
    };
    l.extra0 = extra(probe.extras.0);
    l.extra1 = extra(probe.extras.1);
    Ok(l)
}

/// What the `kfree_skb` program can say on this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropHook {
    pub layout: DropLayout,
    /// `Some` when the kernel has no drop reasons and only netfilter drops
    /// are recognised (by their caller): what the start line says.
    pub limits: Option<&'static str>,
}

/// The start line's word for a kernel without drop reasons.
pub const NO_DROP_REASONS: &str = "no drop reasons before Linux 5.17: netfilter drops are named \
     by their caller (nf_hook_slow), closed ports from the packets alone (medium confidence), \
     other kernel drops are not seen";

/// Offsets for the `kfree_skb` program, or why it cannot run. `nf_hook_slow`
/// is where the running kernel's netfilter hook code lies, needed only
/// without drop reasons.
pub fn drop_layout(
    format: &Format,
    btf: &Btf,
    nf_hook_slow: impl FnOnce() -> Result<(u64, u64), String>,
) -> Result<DropHook, String> {
    let need = |name: &str, size: u32| {
        offset_if(format, name, size, None)
            .ok_or_else(|| format!("skb:kfree_skb has no {size}-byte field {name} on this kernel"))
    };
    let tp_skbaddr = need("skbaddr", 8)?;
    let tp_protocol = need("protocol", 2)?;
    let (tp_reason, tp_location, (nf_start, nf_end), limits) =
        if let Some(reason) = offset_if(format, "reason", 4, None) {
            (reason, 0, (0, 0), None)
        } else {
            let location = need("location", 8).map_err(|e| format!("{e} (nor reason)"))?;
            let range = nf_hook_slow()
                .map_err(|e| format!("skb:kfree_skb has no drop reasons on this kernel and {e}"))?;
            (u32::MAX, location, range, Some(NO_DROP_REASONS))
        };
    let member = |m: &str, size: u32| -> Result<u32, String> {
        let off = btf
            .member_offset("sk_buff", m)
            .map_err(|e| format!("BTF: sk_buff.{m}: {e}"))?;
        let got = btf
            .member_size("sk_buff", m)
            .map_err(|e| format!("BTF: sk_buff.{m}: {e}"))?;
        if got != size {
            return Err(format!("BTF: sk_buff.{m} is {got} bytes, expected {size}"));
        }
        Ok(off)
    };
    Ok(DropHook {
        layout: DropLayout {
            enabled: 1,
            tp_skbaddr,
            tp_protocol,
            tp_reason,
            skb_head: member("head", 8)?,
            skb_network_header: member("network_header", 2)?,
            tp_location,
            _pad: 0,
            nf_start,
            nf_end,
        },
        limits,
    })
}

fn from_symbols(format: Option<&Format>, field: &str) -> Option<HashMap<u32, String>> {
    let symbols = format?.symbols(field)?;
    Some(
        symbols
            .into_iter()
            .filter_map(|(k, v)| Some((u32::try_from(k).ok()?, v)))
            .collect(),
    )
}

fn from_btf_enum(btf: &Btf, name: &str, prefix: &str) -> HashMap<u32, String> {
    btf.enum_values(name)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(n, v)| {
            Some((
                u32::try_from(v).ok()?,
                n.strip_prefix(prefix).unwrap_or(&n).to_owned(),
            ))
        })
        .collect()
}

/// Names of drop reasons, reset reasons and TCP states: from the tracepoint
/// formats' symbol tables, else from BTF enums.
pub fn kernel_names(
    kfree_skb: Option<&Format>,
    send_reset: Option<&Format>,
    set_state: Option<&Format>,
    btf: &Btf,
) -> KernelNames {
    let mut drop_reasons = from_symbols(kfree_skb, "reason")
        .unwrap_or_else(|| from_btf_enum(btf, "skb_drop_reason", "SKB_DROP_REASON_"));
    // What the program reports for a drop called from nf_hook_slow when the
    // kernel has no reasons: the kernel's own name for it since 5.17.
    drop_reasons.insert(tracer_ebpf::DROP_BY_NETFILTER, "NETFILTER_DROP".to_owned());
    let reset_reasons = from_symbols(send_reset, "reason")
        .unwrap_or_else(|| from_btf_enum(btf, "sk_rst_reason", "SK_RST_REASON_"));
    let tcp_states = from_symbols(set_state, "newstate").unwrap_or_else(|| {
        [
            "TCP_ESTABLISHED",
            "TCP_SYN_SENT",
            "TCP_SYN_RECV",
            "TCP_FIN_WAIT1",
            "TCP_FIN_WAIT2",
            "TCP_TIME_WAIT",
            "TCP_CLOSE",
            "TCP_CLOSE_WAIT",
            "TCP_LAST_ACK",
            "TCP_LISTEN",
            "TCP_CLOSING",
            "TCP_NEW_SYN_RECV",
        ]
        .iter()
        .filter_map(|n| Some((u32::try_from(btf.enumerator(n)?).ok()?, (*n).to_owned())))
        .collect()
    });
    KernelNames {
        drop_reasons,
        reset_reasons,
        tcp_states,
    }
}

/// The global settings map, with TCP state values from the running kernel.
/// Per-flow snapshot budgets (edge -> origin, origin -> edge) when the
/// TC programs should send packet bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapBudget {
    pub inbound: u32,
    pub outbound: u32,
    /// Control segments too (for `--write-pcap`), not only data.
    pub every_packet: bool,
}

/// `quiet`: healthy flows stay in the kernel (not with `--write-pcap` or
/// `--events all`, which want every packet or event); `hellos`: every TLS
/// connection's `ClientHello` is sent all the same (`--check-certs` wants
/// each server name).
pub fn settings(
    names: &KernelNames,
    all_sources: bool,
    snap: Option<SnapBudget>,
    quiet: bool,
    hellos: bool,
) -> Settings {
    let state = |name: &str| {
        names
            .tcp_states
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map_or(u32::MAX - 1, |(v, _)| *v)
    };
    Settings {
        all_sources: u32::from(all_sources),
        tcp_syn_recv: state("TCP_SYN_RECV"),
        tcp_close: state("TCP_CLOSE"),
        tcp_established: state("TCP_ESTABLISHED"),
        snapshots: match snap {
            None => tracer_ebpf::snapshot_mode::OFF,
            Some(b) if b.every_packet => tracer_ebpf::snapshot_mode::ALL,
            Some(_) => tracer_ebpf::snapshot_mode::PAYLOAD,
        },
        snap_budget_in: snap.map_or(0, |b| b.inbound),
        snap_budget_out: snap.map_or(0, |b| b.outbound),
        quiet: u32::from(quiet),
        hellos: u32::from(hellos),
        _pad: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(name: &str) -> Format {
        let text = match name {
            "kfree_skb" => include_str!("testdata/kfree_skb.format"),
            "tcp_send_reset" => include_str!("testdata/tcp_send_reset.format"),
            "tcp_receive_reset" => include_str!("testdata/tcp_receive_reset.format"),
            "tcp_retransmit_synack" => include_str!("testdata/tcp_retransmit_synack.format"),
            "inet_sock_set_state" => include_str!("testdata/inet_sock_set_state.format"),
            _ => unreachable!(),
        };
        Format::parse(text).unwrap()
    }

    #[test]
    fn split_and_sockaddr_layouts_from_a_6_18_kernel() {
        // tcp_send_reset stores sockaddrs since 6.x; the others split fields.
        let reset = sock_layout(&format("tcp_send_reset"), &SOCK_PROBES[0]).unwrap();
        assert_eq!(reset.addr_layout, addr_layout::SOCKADDR);
        assert_eq!((reset.saddr, reset.daddr), (32, 60));
        assert_eq!((reset.extra0, reset.extra1), (28, 24), "reason, state");
        let synack = sock_layout(&format("tcp_retransmit_synack"), &SOCK_PROBES[2]).unwrap();
        assert_eq!(synack.addr_layout, addr_layout::SPLIT);
        assert_eq!((synack.sport, synack.dport, synack.family), (24, 26, 28));
        assert_eq!((synack.saddr_v6, synack.daddr_v6), (38, 54));
        assert_eq!(synack.extra0, u32::MAX);
        let state = sock_layout(&format("inet_sock_set_state"), &SOCK_PROBES[3]).unwrap();
        assert_eq!((state.extra0, state.extra1, state.protocol), (16, 20, 30));
        assert!(sock_layout(&format("tcp_receive_reset"), &SOCK_PROBES[1]).is_ok());
    }

    #[test]
    fn the_5_10_formats_without_family_or_drop_reasons() {
        // Debian 11's kernel: split fields without `family`, and kfree_skb
        // with only the caller's address.
        let parse = |text| Format::parse(text).unwrap();
        let reset = parse(include_str!("testdata/5.10/tcp_send_reset.format"));
        let l = sock_layout(&reset, &SOCK_PROBES[0]).unwrap();
        assert_eq!(l.addr_layout, addr_layout::SPLIT);
        assert_eq!(l.family, u32::MAX, "the program infers it");
        assert_eq!((l.sport, l.dport, l.saddr, l.daddr), (28, 30, 32, 36));
        assert_eq!((l.saddr_v6, l.daddr_v6, l.extra1), (40, 56, 24));
        let synack = parse(include_str!("testdata/5.10/tcp_retransmit_synack.format"));
        assert!(sock_layout(&synack, &SOCK_PROBES[2]).is_ok());
        let Ok(btf) = Btf::from_sys_fs() else {
            eprintln!("SKIPPED: no /sys/kernel/btf/vmlinux on this machine");
            return;
        };
        let kfree = parse(include_str!("testdata/5.10/kfree_skb.format"));
        let hook = drop_layout(&kfree, &btf, || Ok((0x1000, 0x1100))).unwrap();
        assert_eq!(hook.limits, Some(NO_DROP_REASONS));
        let d = hook.layout;
        assert_eq!((d.tp_reason, d.tp_location), (u32::MAX, 16));
        assert_eq!((d.nf_start, d.nf_end), (0x1000, 0x1100));
        let err = drop_layout(
            &kfree,
            &btf,
            || Err("/proc/kallsyms hides addresses".into()),
        )
        .unwrap_err();
        assert!(
            err.contains("no drop reasons") && err.contains("kallsyms"),
            "{err}"
        );
        let names = kernel_names(Some(&kfree), Some(&reset), None, &btf);
        assert_eq!(
            names.drop_reasons[&tracer_ebpf::DROP_BY_NETFILTER],
            "NETFILTER_DROP"
        );
    }

    #[test]
    fn a_format_without_addresses_is_refused_with_a_reason() {
        let kfree = format("kfree_skb");
        let err = sock_layout(&kfree, &SOCK_PROBES[1]).unwrap_err();
        assert!(err.contains("address"), "{err}");
        // inet_sock_set_state needs its state fields.
        let reset = format("tcp_receive_reset");
        assert!(sock_layout(&reset, &SOCK_PROBES[3])
            .unwrap_err()
            .contains("oldstate"));
    }

    #[test]
    fn names_come_from_the_formats() {
        let kfree = format("kfree_skb");
        let reset = format("tcp_send_reset");
        let state = format("inet_sock_set_state");
        let Ok(btf) = Btf::from_sys_fs() else {
            eprintln!("SKIPPED: no /sys/kernel/btf/vmlinux on this machine");
            return;
        };
        let names = kernel_names(Some(&kfree), Some(&reset), Some(&state), &btf);
        assert_eq!(names.drop_reasons[&12], "NETFILTER_DROP");
        assert_eq!(names.reset_reasons[&1], "NO_SOCKET");
        assert_eq!(names.tcp_states[&3], "TCP_SYN_RECV");
        let s = settings(&names, false, None, true, false);
        assert_eq!((s.tcp_syn_recv, s.tcp_close, s.tcp_established), (3, 7, 1));
        // Without formats, BTF names the same values.
        let from_btf = kernel_names(None, None, None, &btf);
        let netfilter = from_btf
            .drop_reasons
            .iter()
            .find(|(_, n)| n.as_str() == "NETFILTER_DROP");
        assert!(netfilter.is_some());
        assert_eq!(
            from_btf
                .tcp_states
                .get(&settings(&names, false, None, true, false).tcp_syn_recv)
                .map(String::as_str),
            Some("TCP_SYN_RECV")
        );
        let hook = drop_layout(&kfree, &btf, || unreachable!("reasons need no kallsyms")).unwrap();
        assert_eq!(hook.limits, None);
        let layout = hook.layout;
        assert_eq!(
            (layout.tp_skbaddr, layout.tp_protocol, layout.tp_reason),
            (8, 32, 36)
        );
        assert_ne!(layout.skb_head, layout.skb_network_header);
    }
}
