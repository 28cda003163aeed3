//! Loading the kernel programs, filling their maps, attaching them (TCX links
//! or netlink tc) and taking everything down again, including leftovers of an
//! earlier run that was killed.

use std::fs;

use anyhow::{bail, Context, Result};
use aya::{
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, MapData, PerCpuArray, ProgramArray, RingBuf},
    programs::{
        tc::{self, NlOptions, TcAttachOptions},
        LinkOrder, SchedClassifier, TcAttachType, TracePoint,
    },
    util::KernelVersion,
    Ebpf, EbpfLoader,
};
use tracer_ebpf::{counter, names, prog_slot, DropLayout, TpLayout};

use super::{
    btf::Btf,
    kallsyms,
    layout::{self, DropHook, SOCK_PROBES},
    stale::{delete_clsact, qdisc_marker, remove_stale},
    tracefs, verifier,
};
use crate::{
    cli::{AttachMode, Settings},
    source::{kernel::records::KernelNames, ranges::Cidr},
};

/// The kernel object, built by `cargo xtask build-ebpf` and committed.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tracer-ebpf/prebuilt/tracer-ebpf.bpf.o"
));

/// A network interface to attach to.
#[derive(Clone, Debug)]
pub struct Iface {
    pub name: String,
    pub ifindex: u32,
    /// Bytes of link-layer header before the IP header (14 for Ethernet).
    pub l2_len: u32,
}

/// One probe's outcome, for the start line.
#[derive(Clone, Debug)]
pub struct Probe {
    pub name: String,
    pub attached: bool,
    pub reason: Option<String>,
    /// What an attached hook cannot say on this kernel.
    pub limits: Option<&'static str>,
    /// Instructions the verifier processed for its program (5.16+).
    pub verified_insns: Option<u32>,
}

/// Everything attached; dropping it detaches everything.
pub struct Kernel {
    pub events: Option<RingBuf<MapData>>,
    counters: PerCpuArray<MapData, u64>,
    /// The flow map and histograms of quiet connections.
    pub quiet: super::quiet::Quiet,
    pub names: KernelNames,
    pub probes: Vec<Probe>,
    pub stale_removed: Vec<String>,
    /// The TC programs hang off TCX links (else netlink tc filters).
    pub tcx: bool,
    /// Interfaces on which we created the clsact qdisc (netlink mode).
    our_qdiscs: Vec<String>,
    ebpf: Option<Ebpf>,
}

fn load_object() -> Result<Ebpf> {
    EbpfLoader::new()
        .load(OBJECT)
        .context("loading the eBPF object into the kernel")
}

/// The object with its configuration maps filled and nothing loaded or
/// attached: for running the programs on synthetic packets
/// (`BPF_PROG_TEST_RUN`) in tests and benchmarks. Tracepoint layouts are left
/// absent, so the tracepoint programs would do nothing.
pub fn load_configured(s: &Settings, ifaces: &[Iface], names_: &KernelNames) -> Result<Ebpf> {
    let mut ebpf = load_object()?;
    fill_maps(&mut ebpf, s, ifaces, names_, None, &[])?;
    load_tail(&mut ebpf, names::TC_SNAPSHOT, prog_slot::SNAPSHOT)
        .map_err(|e| anyhow::anyhow!(e))?;
    load_tail(&mut ebpf, names::TC_TURN, prog_slot::TURN).map_err(|e| anyhow::anyhow!(e))?;
    load_tail(&mut ebpf, names::TC_TLS, prog_slot::TLS).map_err(|e| anyhow::anyhow!(e))?;
    Ok(ebpf)
}

/// Load a program the TC programs tail-call (the snapshot program, the turn
/// program, the TLS program) and put it in their jump table; without them
/// they take no snapshots and judge no turn (without the TLS program, TLS
/// connections are read in userspace).
fn load_tail(ebpf: &mut Ebpf, program: &str, slot: u32) -> Result<(), String> {
    let prog: &mut SchedClassifier = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("eBPF object lacks program {program}"))?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    prog.load().map_err(|e| verifier::refusal(program, e))?;
    let fd = prog
        .fd()
        .and_then(|fd| fd.try_clone().map_err(Into::into))
        .map_err(|e| format!("{e}"))?;
    let map = ebpf
        .map_mut(names::SNAP_PROGS)
        .ok_or_else(|| format!("eBPF object lacks map {}", names::SNAP_PROGS))?;
    let mut table = ProgramArray::try_from(map).map_err(|e| format!("{e}"))?;
    table.set(slot, &fd, 0).map_err(|e| format!("{e}"))
}

fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::maps::Map> {
    ebpf.map_mut(name)
        .with_context(|| format!("eBPF object lacks map {name}"))
}

/// Fill the configuration maps. They stay owned by `ebpf`: programs loaded
/// later refer to them by file descriptor.
fn fill_maps(
    ebpf: &mut Ebpf,
    s: &Settings,
    ifaces: &[Iface],
    names_: &KernelNames,
    drop_layout: Option<DropLayout>,
    tp: &[(u32, TpLayout)],
) -> Result<()> {
    {
        let mut v4: LpmTrie<&mut MapData, [u8; 4], u8> =
            map_mut(ebpf, names::EDGE_V4)?.try_into()?;
        for Cidr { addr, prefix_len } in s.ranges.v4() {
            if let std::net::IpAddr::V4(a) = addr {
                v4.insert(&Key::new(u32::from(*prefix_len), a.octets()), 1, 0)?;
            }
        }
    }
    {
        let mut v6: LpmTrie<&mut MapData, [u8; 16], u8> =
            map_mut(ebpf, names::EDGE_V6)?.try_into()?;
        for Cidr { addr, prefix_len } in s.ranges.v6() {
            if let std::net::IpAddr::V6(a) = addr {
                v6.insert(&Key::new(u32::from(*prefix_len), a.octets()), 1, 0)?;
            }
        }
    }
    {
        let mut ports: Array<&mut MapData, u8> = map_mut(ebpf, names::PORTS)?.try_into()?;
        for p in &s.ports {
            ports.set(u32::from(*p), 1, 0)?;
        }
    }
    {
        let mut settings: Array<&mut MapData, tracer_ebpf::Settings> =
            map_mut(ebpf, names::SETTINGS)?.try_into()?;
        // The first bytes of each direction: a ClientHello or request, a
        // response head just past 16 KiB.
        let wanted = !s.no_payload || s.write_pcap.is_some();
        let snap = wanted.then_some(layout::SnapBudget {
            inbound: 8 * 1024,
            outbound: 20 * 1024,
            every_packet: s.write_pcap.is_some(),
        });
        let quiet = s.write_pcap.is_none() && s.events != crate::cli::EventsMode::All;
        settings.set(
            0,
            layout::settings(names_, s.all_sources, snap, quiet, s.check_certs),
            0,
        )?;
    }
    {
        let mut near: Array<&mut MapData, u8> = map_mut(ebpf, names::IFACE_L2)?.try_into()?;
        for i in ifaces.iter().filter(|i| i.ifindex < tracer_ebpf::L2_DIRECT) {
            let v = u8::try_from(i.l2_len + 1).context("a link-layer header over 254 bytes")?;
            near.set(i.ifindex, v, 0)?;
        }
        let mut far: HashMap<&mut MapData, u32, u32> =
            map_mut(ebpf, names::IFACE_L2_FAR)?.try_into()?;
        for i in ifaces
            .iter()
            .filter(|i| i.ifindex >= tracer_ebpf::L2_DIRECT)
        {
            far.insert(i.ifindex, i.l2_len, 0)?;
        }
    }
    if let Some(l) = drop_layout {
        let mut m: Array<&mut MapData, DropLayout> =
            map_mut(ebpf, names::DROP_LAYOUT)?.try_into()?;
        m.set(0, l, 0)?;
    }
    let mut m: Array<&mut MapData, TpLayout> = map_mut(ebpf, names::TP_LAYOUTS)?.try_into()?;
    for (index, l) in tp {
        m.set(*index, *l, 0)?;
    }
    Ok(())
}

fn attach_tc(
    ebpf: &mut Ebpf,
    ifaces: &[Iface],
    mode: AttachMode,
    our_qdiscs: &mut Vec<String>,
) -> Result<bool> {
    let tcx_possible = KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0));
    let use_tcx = match mode {
        AttachMode::Tcx if !tcx_possible => bail!("--attach-mode tcx needs Linux 6.6 or later"),
        AttachMode::Tcx => true,
        AttachMode::Netlink => false,
        AttachMode::Auto => tcx_possible,
    };
    for (prog_name, dir) in [
        (names::TC_INGRESS, TcAttachType::Ingress),
        (names::TC_EGRESS, TcAttachType::Egress),
    ] {
        let prog: &mut SchedClassifier = ebpf
            .program_mut(prog_name)
            .with_context(|| format!("eBPF object lacks program {prog_name}"))?
            .try_into()?;
        prog.load()
            .map_err(|e| anyhow::anyhow!(verifier::refusal(prog_name, e)))?;
        for iface in ifaces {
            if use_tcx {
                prog.attach_with_options(
                    &iface.name,
                    dir,
                    TcAttachOptions::TcxOrder(LinkOrder::default()),
                )
                .with_context(|| format!("attaching {prog_name} to {} through TCX", iface.name))?;
            } else {
                if !our_qdiscs.contains(&iface.name) {
                    match tc::qdisc_add_clsact(&iface.name) {
                        Ok(()) => {
                            our_qdiscs.push(iface.name.clone());
                            let marker = qdisc_marker(&iface.name);
                            let _ = fs::create_dir_all(marker.parent().unwrap_or(&marker));
                            let _ = fs::write(&marker, std::process::id().to_string());
                        }
                        Err(tc::TcError::NetlinkError(e))
                            if e.raw_os_error() == Some(libc::EEXIST) => {}
                        Err(e) => {
                            return Err(e).with_context(|| {
                                format!("adding the clsact qdisc to {}", iface.name)
                            })
                        }
                    }
                }
                prog.attach_with_options(
                    &iface.name,
                    dir,
                    TcAttachOptions::Netlink(NlOptions::default()),
                )
                .with_context(|| {
                    format!("attaching {prog_name} to {} through netlink tc", iface.name)
                })?;
            }
        }
    }
    Ok(use_tcx)
}

fn attach_tracepoint(
    ebpf: &mut Ebpf,
    program: &str,
    category: &str,
    name: &str,
) -> Result<(), String> {
    let prog: &mut TracePoint = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("eBPF object lacks program {program}"))?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    prog.load().map_err(|e| verifier::refusal(program, e))?;
    prog.attach(category, name)
        .map_err(|e| format!("attach failed: {e}"))?;
    Ok(())
}

/// Attach the TC programs (fatal on failure, after undoing what was done)
/// and the tracepoints (skipped with a reason on failure).
fn attach_all(
    ebpf: &mut Ebpf,
    s: &Settings,
    ifaces: &[Iface],
    drop_layout: Result<DropHook, String>,
    sock_layouts: Vec<Result<TpLayout, String>>,
) -> Result<(bool, Vec<String>, Vec<Probe>)> {
    let mut our_qdiscs = Vec::new();
    // Before the TC programs: their first packets already tail-call them.
    let (snapshot, turn, tls) = if s.no_payload && s.write_pcap.is_none() {
        let off = || Err("--no-payload: no packet snapshots".to_owned());
        (off(), off(), off())
    } else {
        (
            load_tail(ebpf, names::TC_SNAPSHOT, prog_slot::SNAPSHOT),
            load_tail(ebpf, names::TC_TURN, prog_slot::TURN),
            load_tail(ebpf, names::TC_TLS, prog_slot::TLS),
        )
    };
    let tcx = match attach_tc(ebpf, ifaces, s.attach_mode, &mut our_qdiscs) {
        Ok(m) => m,
        Err(e) => {
            for q in &our_qdiscs {
                delete_clsact(q);
                let _ = fs::remove_file(qdisc_marker(q));
            }
            return Err(e);
        }
    };
    let mut probes: Vec<Probe> = [
        ("tc_ingress", names::TC_INGRESS),
        ("tc_egress", names::TC_EGRESS),
    ]
    .iter()
    .map(|(n, program)| Probe {
        name: (*n).into(),
        attached: true,
        reason: None,
        limits: None,
        verified_insns: verifier::instructions(ebpf, program),
    })
    .collect();
    for (name, program, result) in [
        ("tc_snapshot", names::TC_SNAPSHOT, snapshot),
        ("tc_turn", names::TC_TURN, turn),
        ("tc_tls", names::TC_TLS, tls),
    ] {
        probes.push(Probe {
            name: name.into(),
            attached: result.is_ok(),
            reason: result.err(),
            limits: None,
            verified_insns: verifier::instructions(ebpf, program),
        });
    }

    let kfree_result = drop_layout.and_then(|d| {
        attach_tracepoint(ebpf, names::TP_KFREE_SKB, "skb", "kfree_skb").map(|()| d.limits)
    });
    probes.push(Probe {
        name: "skb:kfree_skb".into(),
        attached: kfree_result.is_ok(),
        limits: kfree_result.as_ref().ok().copied().flatten(),
        reason: kfree_result.err(),
        verified_insns: verifier::instructions(ebpf, names::TP_KFREE_SKB),
    });
    for (probe, layout) in SOCK_PROBES.iter().zip(sock_layouts) {
        let result =
            layout.and_then(|_| attach_tracepoint(ebpf, probe.program, probe.category, probe.name));
        probes.push(Probe {
            name: format!("{}:{}", probe.category, probe.name),
            attached: result.is_ok(),
            reason: result.err(),
            limits: None,
            verified_insns: verifier::instructions(ebpf, probe.program),
        });
    }

    Ok((tcx, our_qdiscs, probes))
}

/// Load, configure and attach everything; report what was skipped and why.
pub fn attach(s: &Settings, ifaces: &[Iface], btf: &Btf) -> Result<Kernel> {
    let root = tracefs::ensure_mounted()?;
    let read = |category: &str, name: &str| tracefs::read_format(&root, category, name);
    let kfree = read("skb", "kfree_skb").context("reading skb:kfree_skb's format")?;
    let sock_formats: Vec<_> = SOCK_PROBES
        .iter()
        .map(|p| {
            read(p.category, p.name)
                .with_context(|| format!("reading {}:{}'s format", p.category, p.name))
        })
        .collect::<Result<_>>()?;
    let names_ = layout::kernel_names(
        kfree.as_ref(),
        sock_formats[0].as_ref(),
        sock_formats[3].as_ref(),
        btf,
    );

    let mut stale_removed = Vec::new();
    for i in ifaces {
        stale_removed.extend(remove_stale(&i.name));
    }

    // Layouts first: a probe is only attached with its layout in place.
    let drop_layout = match &kfree {
        None => Err("this kernel has no skb:kfree_skb tracepoint".to_owned()),
        Some(f) => layout::drop_layout(f, btf, || kallsyms::running("nf_hook_slow")),
    };
    let sock_layouts: Vec<Result<TpLayout, String>> = SOCK_PROBES
        .iter()
        .zip(&sock_formats)
        .map(|(probe, format)| match format {
            None => Err(format!(
                "this kernel has no {}:{} tracepoint",
                probe.category, probe.name
            )),
            Some(f) => layout::sock_layout(f, probe),
        })
        .collect();
    let tp: Vec<(u32, TpLayout)> = SOCK_PROBES
        .iter()
        .zip(&sock_layouts)
        .filter_map(|(p, l)| Some((p.index, *l.as_ref().ok()?)))
        .collect();

    let mut ebpf = load_object()?;
    fill_maps(
        &mut ebpf,
        s,
        ifaces,
        &names_,
        drop_layout.as_ref().ok().map(|d| d.layout),
        &tp,
    )?;

    let (tcx, our_qdiscs, probes) = attach_all(&mut ebpf, s, ifaces, drop_layout, sock_layouts)?;
    let events = RingBuf::try_from(
        ebpf.take_map(names::EVENTS)
            .context("eBPF object lacks EVENTS")?,
    )?;
    let counters = PerCpuArray::try_from(
        ebpf.take_map(names::COUNTERS)
            .context("eBPF object lacks COUNTERS")?,
    )?;
    let quiet = super::quiet::Quiet::take(&mut ebpf)?;
    Ok(Kernel {
        events: Some(events),
        counters,
        quiet,
        names: names_,
        probes,
        stale_removed,
        tcx,
        our_qdiscs,
        ebpf: Some(ebpf),
    })
}

impl Kernel {
    /// Per-CPU counters summed: index by [`tracer_ebpf::counter`].
    pub fn counters(&self) -> [u64; counter::COUNT as usize] {
        let mut out = [0u64; counter::COUNT as usize];
        for (i, slot) in (0u32..).zip(out.iter_mut()) {
            if let Ok(values) = self.counters.get(&i, 0) {
                *slot = values.iter().sum();
            }
        }
        out
    }

    /// Detach everything now (also done on drop).
    pub fn detach(&mut self) {
        // Programs, links and tc filters go with the object's file descriptors.
        self.events.take();
        self.ebpf.take();
        for q in self.our_qdiscs.drain(..) {
            if !delete_clsact(&q) {
                tracing::warn!(
                    "could not remove the clsact qdisc from {q}: run `tc qdisc del dev {q} clsact`"
                );
            }
            let _ = fs::remove_file(qdisc_marker(&q));
        }
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        self.detach();
    }
}
