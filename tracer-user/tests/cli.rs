//! Black-box tests of the real binary that need no root: bad input gives one
//! clear line and a usage exit code before anything touches the kernel.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_origin-tracer"))
        .args(args)
        .output()
        .expect("run origin-tracer")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn malformed_cidr_is_named() {
    let o = run(&["--edge-ranges", "198.18.0.0/15,300.1.2.3/8"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("300.1.2.3/8") && e.contains("invalid CIDR"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    assert!(o.stdout.is_empty());
}

#[test]
fn range_file_errors_name_file_and_line() {
    let dir = std::env::temp_dir().join(format!("otr-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ips-v4");
    std::fs::write(&file, "# Cloudflare\n173.245.48.0/20\n173.245.48.0/33\n").unwrap();
    let o = run(&["--edge-ranges", &format!("@{}", file.display())]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("{}:3", file.display())) && e.contains("exceeds 32"),
        "{e}"
    );
    let missing = run(&["--edge-ranges", "@/nonexistent/ips-v4"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("/nonexistent/ips-v4"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        &["--ports", "0"][..],
        &["--ports", "http"],
        &["--syn-timeout", "fast"],
        &["--duration", "-3s"],
        &["--all-sources", "--edge-ranges", "198.18.0.1"],
        &["--format", "xml"],
        &["--write-pcap-raw"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn help_documents_the_contract() {
    let o = run(&["--help"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--iface",
        "--ports",
        "--edge-ranges",
        "--all-sources",
        "--format",
        "--events",
        "--duration",
        "--syn-timeout",
        "--write-pcap-raw",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn schema_prints_the_published_schema() {
    let o = run(&["schema"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let published = include_str!("../../docs/schema-v1.json");
    assert_eq!(String::from_utf8_lossy(&o.stdout), published);
}

#[test]
fn without_privileges_it_says_so() {
    // As root this needs a user without capabilities: setpriv drops them all.
    let is_root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    });
    let o = if is_root {
        if let Ok(o) = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
            ])
            .arg(env!("CARGO_BIN_EXE_origin-tracer"))
            .args(["--format", "json"])
            .output()
        {
            o
        } else {
            eprintln!("SKIPPED: setpriv (util-linux) is not installed");
            return;
        }
    } else {
        run(&["--format", "json"])
    };
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("must run as root") && e.contains("CAP_BPF"),
        "{e}"
    );
    assert!(o.stdout.is_empty());
}
