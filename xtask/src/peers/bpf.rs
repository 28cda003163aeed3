//! The loaded BPF programs as `bpftool` lists them: which belong to an
//! observer (new since it started; for bpftrace, attached under its pid) and
//! their `bpf_stats` run time and count.

use std::process::Command;

use serde_json::Value;

fn bpftool(args: &[&str]) -> Value {
    Command::new("bpftool")
        .arg("-j")
        .args(args)
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice(&o.stdout).ok())
        .unwrap_or_default()
}

/// A loaded program as `bpftool prog show` lists it.
pub struct Prog {
    pub id: u64,
    pub name: String,
    /// A TC program (`sched_cls`).
    pub tc: bool,
    /// `bpf_stats`: its run time and runs.
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// Every loaded program.
pub fn progs() -> Vec<Prog> {
    let v = bpftool(&["prog", "show"]);
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some(Prog {
                id: p["id"].as_u64()?,
                name: p["name"].as_str().unwrap_or_default().to_owned(),
                tc: p["type"] == "sched_cls",
                run_time_ns: p["run_time_ns"].as_u64().unwrap_or(0),
                run_cnt: p["run_cnt"].as_u64().unwrap_or(0),
            })
        })
        .collect()
}

/// The programs `pid` has attached to tracepoints (`bpftool perf show`).
pub fn perf_progs(pid: i32) -> Vec<u64> {
    let v = bpftool(&["perf", "show"]);
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["pid"].as_i64() == Some(i64::from(pid)) && p["fd_type"] == "tracepoint")
        .filter_map(|p| p["prog_id"].as_u64())
        .collect()
}
