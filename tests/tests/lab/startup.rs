//! Start-up on a host where tracefs is not mounted: the agent mounts it and
//! attaches every probe. Runs in a private mount namespace (unshare), so the
//! host's own mounts are never touched, inside a lab's origin namespace.

use std::time::Duration;

use integration_tests::agent::agent_bin;
use integration_tests::netns::run_bounded;
use integration_tests::{require_root, Lab};

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn mounts_tracefs_when_it_is_missing() {
    if !require_root("mounts_tracefs_when_it_is_missing") {
        return;
    }
    let host_had_tracefs = std::path::Path::new("/sys/kernel/tracing/events").is_dir();
    let lab = Lab::new("tfs");
    let ranges = lab.edge_ranges();
    let script = format!(
        "umount /sys/kernel/debug/tracing 2>/dev/null; umount /sys/kernel/tracing 2>/dev/null; \
         umount /sys/kernel/debug 2>/dev/null; \
         if [ -d /sys/kernel/tracing/events ]; then echo 'STILL MOUNTED' >&2; exit 99; fi; \
         exec '{}' --format json --duration 1s --edge-ranges {ranges}",
        agent_bin().display()
    );
    let mut cmd = lab.origin.command("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    let out = run_bounded(&mut cmd, Duration::from_secs(20));
    assert!(
        out.success(),
        "agent failed: {} stderr {:?}",
        out.describe_status(),
        out.stderr
    );
    let start: serde_json::Value =
        serde_json::from_str(out.stdout.lines().next().expect("a start line"))
            .expect("JSON start line");
    assert_eq!(start["type"], "start");
    let probes = start["probes"].as_array().expect("probes");
    let skipped: Vec<_> = probes
        .iter()
        .filter(|p| p["status"] != "attached")
        .collect();
    assert!(
        skipped.is_empty(),
        "probes skipped after mounting tracefs: {skipped:?}"
    );
    assert!(probes.iter().any(|p| p["name"] == "skb:kfree_skb"));
    // The host's mounts are as they were.
    assert_eq!(
        std::path::Path::new("/sys/kernel/tracing/events").is_dir(),
        host_had_tracefs
    );
}
