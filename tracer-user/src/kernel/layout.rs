//! Everything kernel-version-dependent, read from the running kernel at
//! start-up: tracepoint field offsets (tracefs formats), `struct sk_buff`
//! offsets and enum names (BTF). Nothing here is hard-coded to one kernel.

use std::collections::HashMap;

use tracer_ebpf::{addr_layout, DropLayout, Settings, TpLayout};

use super::{btf::Btf, tracefs::Format};
use crate::event::KernelNames;

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
    let split = (
        offset_if(format, "family", 2, None),
        offset_if(format, "sport", 2, None),
        offset_if(format, "dport", 2, None),
        offset_if(format, "saddr", 4, Some(4)),
        offset_if(format, "daddr", 4, Some(4)),
        offset_if(format, "saddr_v6", 16, Some(16)),
        offset_if(format, "daddr_v6", 16, Some(16)),
    );
    if let (Some(family), Some(sport), Some(dport), Some(saddr), Some(daddr), Some(s6), Some(d6)) = split {
        l.addr_layout = addr_layout::SPLIT;
        (l.family, l.sport, l.dport, l.saddr, l.daddr, l.saddr_v6, l.daddr_v6) =
            (family, sport, dport, saddr, daddr, s6, d6);
    } else if let (Some(saddr), Some(daddr)) =
        (offset_if(format, "saddr", 28, Some(28)), offset_if(format, "daddr", 28, Some(28)))
    {
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
    let extra = |name: Option<&str>| name.and_then(|n| offset_if(format, n, 4, None)).unwrap_or(u32::MAX);
    l.extra0 = extra(probe.extras.0);
    l.extra1 = extra(probe.extras.1);
    Ok(l)
}

/// Offsets for the `kfree_skb` program, or why it cannot run.
pub fn drop_layout(format: &Format, btf: &Btf) -> Result<DropLayout, String> {
    let need = |name: &str, size: u32| {
        offset_if(format, name, size, None)
            .ok_or_else(|| format!("skb:kfree_skb has no {size}-byte field {name} on this kernel"))
    };
    let tp_skbaddr = need("skbaddr", 8)?;
    let tp_protocol = need("protocol", 2)?;
    let tp_reason = need("reason", 4)?;
    let member = |m: &str, size: u32| -> Result<u32, String> {
        let off = btf.member_offset("sk_buff", m).map_err(|e| format!("BTF: sk_buff.{m}: {e}"))?;
        let got = btf.member_size("sk_buff", m).map_err(|e| format!("BTF: sk_buff.{m}: {e}"))?;
        if got != size {
            return Err(format!("BTF: sk_buff.{m} is {got} bytes, expected {size}"));
        }
        Ok(off)
    };
    Ok(DropLayout {
        enabled: 1,
        tp_skbaddr,
        tp_protocol,
        tp_reason,
        skb_head: member("head", 8)?,
        skb_network_header: member("network_header", 2)?,
    })
}

fn from_symbols(format: Option<&Format>, field: &str) -> Option<HashMap<u32, String>> {
    let symbols = format?.symbols(field)?;
    Some(symbols.into_iter().filter_map(|(k, v)| Some((u32::try_from(k).ok()?, v))).collect())
}

fn from_btf_enum(btf: &Btf, name: &str, prefix: &str) -> HashMap<u32, String> {
    btf.enum_values(name)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(n, v)| Some((u32::try_from(v).ok()?, n.strip_prefix(prefix).unwrap_or(&n).to_owned())))
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
    let drop_reasons = from_symbols(kfree_skb, "reason")
        .unwrap_or_else(|| from_btf_enum(btf, "skb_drop_reason", "SKB_DROP_REASON_"));
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
    KernelNames { drop_reasons, reset_reasons, tcp_states }
}

/// The global settings map, with TCP state values from the running kernel.
pub fn settings(names: &KernelNames, all_sources: bool) -> Settings {
    let state = |name: &str| {
        names.tcp_states.iter().find(|(_, n)| n.as_str() == name).map_or(u32::MAX - 1, |(v, _)| *v)
    };
    Settings {
        all_sources: u32::from(all_sources),
        tcp_syn_recv: state("TCP_SYN_RECV"),
        tcp_close: state("TCP_CLOSE"),
        tcp_established: state("TCP_ESTABLISHED"),
    }
}
