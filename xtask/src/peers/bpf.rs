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

/// Every loaded program: (id, name, is a TC program).
pub fn progs() -> Vec<(u64, String, bool)> {
    let v = bpftool(&["prog", "show"]);
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p["id"].as_u64()?,
                p["name"].as_str().unwrap_or_default().to_owned(),
                p["type"] == "sched_cls",
            ))
        })
        .collect()
}

/// Every loaded program's `bpf_stats`: (id, `run_time_ns`, `run_cnt`).
pub fn prog_stats() -> Vec<(u64, u64, u64)> {
    let v = bpftool(&["prog", "show"]);
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p["id"].as_u64()?,
                p["run_time_ns"].as_u64().unwrap_or(0),
                p["run_cnt"].as_u64().unwrap_or(0),
            ))
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
