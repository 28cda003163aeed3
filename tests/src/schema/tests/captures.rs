//! Real output: `$ORIGIN_TRACER_BIN analyze` of the shared captures
//! (shared/captures beside the repository, see its README) with every source
//! watched, each run passed through [`check_run`]. No root needed; skipped,
//! saying so, without the binary or the captures.

use std::path::PathBuf;

use serde_json::Value;

use crate::capture::analyze;
use crate::schema::check_run;

/// Each capture, its origin port and the cause of its one failed connection
/// (`None`: healthy), as the captures' README says.
const CAPTURES: [(&str, u16, Option<&str>); 5] = [
    (
        "tls-1.2-handshake-failure.pcap",
        443,
        Some("tls_alert_from_origin"),
    ),
    ("https-to-http.pcap", 80, Some("not_tls")),
    ("get-to-ssh-server.pcap", 22, Some("malformed_response")),
    ("chrome-1250-tls-x25519-kyber.pcap", 443, None),
    ("get.pcap", 80, None),
];

/// The captures directory beside the repository, `None` (said loudly) if it
/// is not there.
fn captures_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/captures");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED analyze_of_the_shared_captures_passes_the_checker: no capture directory {}",
            dir.display()
        );
        None
    }
}

#[test]
fn analyze_of_the_shared_captures_passes_the_checker() {
    if std::env::var_os("ORIGIN_TRACER_BIN").is_none_or(|b| b.is_empty()) {
        eprintln!(
            "SKIPPED analyze_of_the_shared_captures_passes_the_checker: ORIGIN_TRACER_BIN is not set \
             (`cargo build -p tracer-user`, then ORIGIN_TRACER_BIN=target/debug/origin-tracer)"
        );
        return;
    }
    let Some(dir) = captures_dir() else {
        return;
    };
    for (file, port, cause) in CAPTURES {
        let path = dir.join(file);
        let port = port.to_string();
        // Plain, and with every raw event and the request path.
        for extra in [&[][..], &["--events", "all", "--show-path"][..]] {
            let mut args = vec!["--all-sources", "-p", port.as_str()];
            args.extend_from_slice(extra);
            let (_, lines) = analyze(&path, &args);
            let errors = check_run(&lines);
            let run: Vec<String> = lines.iter().map(Value::to_string).collect();
            assert!(
                errors.is_empty(),
                "analyze {file} {args:?} breaks the schema:\n{}\nrun:\n{}",
                errors.join("\n"),
                run.join("\n")
            );
            let causes: Vec<&str> = lines
                .iter()
                .filter(|l| l["type"] == "finding")
                .filter_map(|l| l["cause"].as_str())
                .collect();
            assert_eq!(
                causes,
                Vec::from_iter(cause),
                "analyze {file} {args:?}:\n{}",
                run.join("\n")
            );
        }
    }
}
