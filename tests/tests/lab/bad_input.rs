//! Bad input ends the agent at once with a non-zero status and one clear
//! line on stderr naming what is wrong. Run inside a lab's origin namespace
//! so that an agent that wrongly starts touches nothing of the host.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use integration_tests::agent::{agent_bin, run_once};
use integration_tests::netns::Outcome;
use integration_tests::{require_root, Lab};

const LIMIT: Duration = Duration::from_secs(10);

fn assert_refused(out: &Outcome, needles: &[&str]) {
    assert!(
        out.status.is_some() && !out.success(),
        "want a non-zero exit, got {} (stdout {:?}, stderr {:?})",
        out.describe_status(),
        out.stdout,
        out.stderr
    );
    let err = out.stderr.trim();
    assert_eq!(
        err.lines().count(),
        1,
        "want one line on stderr, got:\n{err}"
    );
    for n in needles {
        assert!(err.contains(n), "stderr does not name {n:?}: {err}");
    }
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn unknown_interface_is_named() {
    if !require_root("unknown_interface_is_named") {
        return;
    }
    let lab = Lab::new("badif");
    let ranges = lab.edge_ranges();
    let out = run_once(
        Some(&lab),
        &["--edge-ranges", &ranges, "-i", "nosuch0"],
        LIMIT,
    );
    assert_refused(&out, &["nosuch0"]);
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn malformed_cidr_is_named() {
    if !require_root("malformed_cidr_is_named") {
        return;
    }
    let lab = Lab::new("badcidr");
    let out = run_once(Some(&lab), &["--edge-ranges", "300.1.2.3/8"], LIMIT);
    assert_refused(&out, &["300.1.2.3/8"]);
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn bad_line_of_a_range_file_is_named() {
    if !require_root("bad_line_of_a_range_file_is_named") {
        return;
    }
    let lab = Lab::new("badfile");
    let file = lab.dir().join("edge-ranges.txt");
    std::fs::write(&file, "198.18.0.0/24\n2001:db8::/32\n198.18.0.0/33\n").expect("write");
    let arg = format!("@{}", file.display());
    let out = run_once(Some(&lab), &["--edge-ranges", &arg], LIMIT);
    let path = file.display().to_string();
    assert_refused(&out, &[&path]);
    let err = out.stderr.trim();
    assert!(
        err.contains("line 3") || err.contains(&format!("{path}:3")),
        "stderr does not name line 3: {err}"
    );
}

#[test]
#[ignore = "privileged: run with cargo xtask test"]
fn not_root_is_refused() {
    if !require_root("not_root_is_refused") {
        return;
    }
    let lab = Lab::new("notroot");
    // A copy that the unprivileged user can surely reach and execute.
    let bin = lab.dir().join("origin-tracer");
    std::fs::copy(agent_bin(), &bin).expect("copy the agent");
    for (path, mode) in [(lab.dir(), 0o755), (bin.as_path(), 0o755)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let ranges = lab.edge_ranges();
    let bin_arg = bin.display().to_string();
    let mut cmd = lab.origin.command("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        &bin_arg,
        "--edge-ranges",
        &ranges,
    ]);
    let out = integration_tests::netns::run_bounded(&mut cmd, LIMIT);
    assert!(
        out.status.is_some() && !out.success(),
        "want a non-zero exit, got {}: {}",
        out.describe_status(),
        out.stderr
    );
    let err = out.stderr.to_lowercase();
    assert!(
        err.contains("root") || err.contains("cap_bpf"),
        "stderr mentions neither root nor CAP_BPF: {}",
        out.stderr
    );
}
