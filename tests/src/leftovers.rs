//! What of the agent is left in the kernel: BPF programs named `otr_*`, tc
//! filters and clsact qdiscs on the origin's interfaces, BPF links of those
//! programs (tcx), and pinned objects under /sys/fs/bpf.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::lab::Lab;
use crate::netns::host;

/// Name prefix of every BPF program of the agent.
pub const PROG_PREFIX: &str = "otr_";

/// One look at the kernel; each list holds human-readable descriptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Loaded programs named `otr_*` (`bpftool prog show`; global).
    pub programs: Vec<String>,
    /// BPF links whose program is an `otr_*` one (tcx and others; global).
    pub links: Vec<String>,
    /// tc filters on the origin's interfaces (`tc filter show`).
    pub tc_filters: Vec<String>,
    /// Interfaces of the origin with a clsact qdisc.
    pub clsact: Vec<String>,
    /// BPF programs attached to the origin's interfaces as `bpftool net
    /// show` sees them from inside the origin namespace.
    pub net_attachments: Vec<String>,
    /// Pinned objects under /sys/fs/bpf whose name contains `otr`.
    pub pinned: Vec<String>,
}

impl Leftovers {
    /// Looks now.
    pub fn probe(lab: &Lab) -> Leftovers {
        let programs = otr_programs();
        let mut left = Leftovers {
            links: otr_links(&programs),
            programs: programs
                .iter()
                .map(|(id, name)| format!("prog {id} {name}"))
                .collect(),
            pinned: pinned_otr(Path::new("/sys/fs/bpf")),
            ..Leftovers::default()
        };
        for dev in lab.origin_interfaces() {
            for dir in ["ingress", "egress"] {
                let out = lab.origin.run("tc", &["filter", "show", "dev", &dev, dir]);
                for line in out.stdout.lines().filter(|l| l.starts_with("filter")) {
                    left.tc_filters.push(format!("{dev} {dir}: {line}"));
                }
            }
            let qdiscs = lab.origin.run("tc", &["qdisc", "show", "dev", &dev]);
            if qdiscs.stdout.contains("clsact") {
                left.clsact.push(dev.clone());
            }
        }
        let net = lab.origin.run("bpftool", &["-j", "net", "show"]);
        left.net_attachments = net_attachments(&net.stdout);
        left
    }

    /// What is here but was not in `before` (lists compared item by item).
    #[must_use]
    pub fn minus(&self, before: &Leftovers) -> Leftovers {
        let diff = |now: &[String], then: &[String]| -> Vec<String> {
            now.iter().filter(|x| !then.contains(x)).cloned().collect()
        };
        Leftovers {
            programs: diff(&self.programs, &before.programs),
            links: diff(&self.links, &before.links),
            tc_filters: diff(&self.tc_filters, &before.tc_filters),
            clsact: diff(&self.clsact, &before.clsact),
            net_attachments: diff(&self.net_attachments, &before.net_attachments),
            pinned: diff(&self.pinned, &before.pinned),
        }
    }

    /// Nothing at all.
    pub fn is_empty(&self) -> bool {
        self.programs.is_empty()
            && self.links.is_empty()
            && self.tc_filters.is_empty()
            && self.clsact.is_empty()
            && self.net_attachments.is_empty()
            && self.pinned.is_empty()
    }

    /// Polls until nothing new compared with `before` is left (freeing a
    /// program after its last user is asynchronous) or `limit` passes;
    /// returns what is left then.
    pub fn wait_clean(lab: &Lab, before: &Leftovers, limit: Duration) -> Leftovers {
        let deadline = Instant::now() + limit;
        loop {
            let left = Leftovers::probe(lab).minus(before);
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// (id, name) of loaded programs named `otr_*`.
fn otr_programs() -> Vec<(u64, String)> {
    let out = host("bpftool", &["-j", "prog", "show"]);
    let progs: Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    progs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let name = p["name"].as_str()?;
            name.starts_with(PROG_PREFIX)
                .then(|| (p["id"].as_u64().unwrap_or(0), name.to_owned()))
        })
        .collect()
}

/// BPF links of the given programs (`bpftool link show`).
fn otr_links(programs: &[(u64, String)]) -> Vec<String> {
    let out = host("bpftool", &["-j", "link", "show"]);
    let links: Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    links
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            let prog = l["prog_id"].as_u64()?;
            let (_, name) = programs.iter().find(|(id, _)| *id == prog)?;
            Some(format!("link {} type {} prog {name}", l["id"], l["type"]))
        })
        .collect()
}

/// Entries of `bpftool -j net show` output (tc and xdp attachments).
fn net_attachments(json: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(json).unwrap_or_default();
    let mut found = Vec::new();
    for section in v.as_array().into_iter().flatten() {
        for kind in ["tc", "xdp", "tcx"] {
            for a in section[kind].as_array().into_iter().flatten() {
                found.push(format!(
                    "{kind} {} {} {}",
                    a["devname"].as_str().unwrap_or("?"),
                    a["kind"].as_str().or(a["mode"].as_str()).unwrap_or("?"),
                    a["name"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    found
}

fn pinned_otr(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let path = e.path();
        if e.file_name().to_string_lossy().contains("otr") {
            found.push(path.display().to_string());
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(pinned_otr(&path));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_show_entries_are_listed() {
        let json = r#"[{"xdp":[],"tc":[{"devname":"otl7o","ifindex":2,"kind":"clsact/ingress","name":"otr_tc_ingress","prog_id":31}],"flow_dissector":[]}]"#;
        assert_eq!(
            net_attachments(json),
            vec!["tc otl7o clsact/ingress otr_tc_ingress".to_owned()]
        );
        assert!(net_attachments("[]").is_empty());
        assert!(net_attachments("").is_empty());
    }
}
