//! What the side-by-side bench prints: per load the spread of each
//! observer's ratio and what each observer did in its last round; at the
//! end one markdown table (a row per load, a column per observer) ready to
//! paste into the README.

#![expect(
    clippy::cast_precision_loss,
    reason = "rates and ratios of counts, far below 2^52"
)]

use super::{
    loads::Load,
    observers::{Observer, OBSERVERS},
    LoadResult, Phase,
};

/// (median, min, max) of `v`, `None` when empty.
fn stats(v: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    Some((v.get(v.len() / 2).copied()?, v[0], v[v.len() - 1]))
}

/// The cell of observer `i`: a ratio's median (min .. max), or the rate
/// for nothing attached.
fn cell(r: &LoadResult, i: usize, detailed: bool) -> String {
    if let Some(why) = &r.not_run[i] {
        return if detailed {
            format!("not run ({why})")
        } else {
            "not run".to_owned()
        };
    }
    let Some((med, lo, hi)) = stats(&r.ratios[i]) else {
        return "no round counted".to_owned();
    };
    let mut s = if OBSERVERS[i] == Observer::Nothing {
        let (med, lo, hi) = (r.load.rate(med), r.load.rate(lo), r.load.rate(hi));
        format!("{med} ({lo} .. {hi})")
    } else if detailed {
        format!("x{med:.3} (x{lo:.3} .. x{hi:.3})")
    } else {
        format!("x{med:.2} ({lo:.2} .. {hi:.2})")
    };
    if r.left_out[i] > 0 {
        let all = r.ratios[i].len() + r.left_out[i];
        s.push_str(&format!(", {} of {all} rounds", r.ratios[i].len()));
    }
    s
}

/// Per load: the spreads, then each observer's last round.
pub fn load(r: &LoadResult) {
    println!("\n  {}:", r.load.name());
    for (i, who) in OBSERVERS.iter().enumerate() {
        println!("    {:<28} {}", who.name(), cell(r, i, true));
    }
    for (who, left) in OBSERVERS.iter().zip(&r.left_out) {
        if *left > 0 {
            let why = if who.is_agent() && r.load != Load::Bulk {
                "its summary did not count the load, or it stopped"
            } else {
                "it stopped before the load ended"
            };
            println!("    ({}: {left} rounds left out: {why})", who.name());
        }
    }
    if r.load == Load::Bulk {
        println!(
            "    (bulk: an agent round counts when the agent ran through the phase; iperf3's \
             connections are not HTTP, so findings and health are not required)"
        );
    }
    for (who, p) in OBSERVERS.iter().zip(&r.last) {
        if let Some(p) = p {
            observer(r.load, *who, p);
        }
    }
}

fn per(x: f64, n: u64) -> f64 {
    x / n.max(1) as f64
}

/// What one observer did and cost in its last round of `load`.
fn observer(load: Load, who: Observer, p: &Phase) {
    let (d, o) = (&p.done, &p.seen);
    let work = if load == Load::Bulk {
        format!(
            "{:.2} GB in {} connections",
            d.bytes as f64 / 1e9,
            d.connections
        )
    } else {
        format!("{} requests, {} connections", d.requests, d.connections)
    };
    let cpu = if load == Load::Bulk {
        format!(
            "{:.3} ms CPU per GB",
            o.cpu * 1e3 / (d.bytes as f64 / 1e9).max(1e-9)
        )
    } else {
        format!(
            "{:.2} us CPU per connection, {:.2} per request",
            per(o.cpu * 1e6, d.connections),
            per(o.cpu * 1e6, d.requests)
        )
    };
    match who {
        Observer::Nothing => {
            println!(
                "    {}, last round: {work}, {}",
                who.name(),
                load.rate(d.rate)
            );
        }
        Observer::Tcpdump => println!(
            "    {}, last round: {work}; {cpu}; RSS {} KiB; {}",
            who.name(),
            o.rss,
            o.note.trim()
        ),
        Observer::Bpftrace => println!(
            "    {}, last round: {work}; {} event lines ({:.2} per connection), {} events \
             lost; {cpu}; RSS {} KiB; start-up {:.1} s{}",
            who.name(),
            o.lines,
            per(o.lines as f64, d.connections),
            o.lost,
            o.rss,
            p.startup.as_secs_f64(),
            programs("its tracepoint programs", o.tp, "run")
        ),
        Observer::Agent | Observer::AgentNoPayload => agent(who, p, &work, &cpu),
    }
}

fn agent(who: Observer, phase: &Phase, work: &str, cpu: &str) {
    let (done, seen) = (&phase.done, &phase.seen);
    let Some(s) = &seen.summary else {
        println!("    {}, last round: no summary", who.name());
        return;
    };
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    let records = n("events_received") + n("snapshots_received");
    let per_request = if done.requests == 0 {
        String::new()
    } else {
        format!(", {:.3} per request", per(records as f64, done.requests))
    };
    println!(
        "    {}, last round: {work}; {records} ring-buffer records ({:.3} per connection\
         {per_request}: {} events, {} snapshots, {} lost); {} handshakes and {} requests \
         counted in the kernel, {} connections handed over; {} findings; {cpu}; RSS {} KiB; \
         start-up {:.1} s{}{}",
        who.name(),
        per(records as f64, done.connections),
        n("events_received"),
        n("snapshots_received"),
        n("events_lost"),
        s["in_kernel"]["handshakes"],
        s["in_kernel"]["requests"],
        s["in_kernel"]["handed_over"],
        n("findings_total"),
        seen.rss,
        phase.startup.as_secs_f64(),
        programs("TC programs", seen.tc, "packet"),
        programs("tracepoint programs", seen.tp, "run")
    );
}

/// `bpf_stats` of a set of programs: ns per run.
fn programs(what: &str, (ns, runs): (u64, u64), unit: &str) -> String {
    if runs == 0 {
        return String::new();
    }
    format!(
        "; {what} (bpf_stats): {:.0} ns per {unit} over {runs}",
        ns as f64 / runs as f64
    )
}

/// The markdown table for the README.
pub fn table(results: &[LoadResult]) {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!(
        "\nFor the README (kernel {}, {cores} cores; median (min .. max) of the ratio to \
         nothing attached in the same round, {} rounds):\n",
        kernel.trim(),
        results.first().map_or(0, |r| r.ratios[0].len())
    );
    let mut head = "| workload (lab nginx, iperf3) |".to_owned();
    let mut rule = "|---|".to_owned();
    for who in OBSERVERS {
        let name = match who {
            Observer::Nothing => "nothing attached (rate)".to_owned(),
            Observer::Tcpdump => "tcpdump -w (`tcp port P`)".to_owned(),
            Observer::Bpftrace => "bpftrace (peer.bt)".to_owned(),
            Observer::AgentNoPayload => "origin-tracer `--no-payload`".to_owned(),
            Observer::Agent => who.name().to_owned(),
        };
        head.push_str(&format!(" {name} |"));
        rule.push_str("---|");
    }
    println!("{head}\n{rule}");
    for r in results {
        let mut row = format!("| {} |", r.load.name());
        for i in 0..OBSERVERS.len() {
            row.push_str(&format!(" {} |", cell(r, i, false)));
        }
        println!("{row}");
    }
}
