//! Developer tasks: build the committed eBPF object (and check it matches its
//! sources), keep docs/schema-v1.json generated, run every test, run the
//! demo lab and the benchmarks.

mod bench;
mod bench_analyze;
mod demo;
mod deps;
mod ebpf;
mod flood;
mod peers;
mod schema;
mod vm;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build tracer-ebpf for the bpf target and commit-ready copy it to
    /// tracer-ebpf/prebuilt/ with the stamp of its sources.
    BuildEbpf {
        /// Fail if the committed object does not match its sources.
        #[arg(long)]
        check: bool,
    },
    /// Run every test: unit and no-root tests, then the privileged lab tests (root).
    Test {
        /// Only the tests that need no root.
        #[arg(long)]
        no_root: bool,
        /// Extra arguments for the privileged test binary (e.g. a test name filter).
        #[arg(last = true)]
        filter: Vec<String>,
    },
    /// Build, create a throwaway lab, break the origin in every way and show
    /// origin-tracer naming each failure; cleans up after itself.
    Demo,
    /// Measure what the agent costs: per-packet cost of the TC programs and
    /// connection rate through the lab with the agent attached vs detached.
    Bench {
        /// Run only these parts (default: all of them).
        #[arg(long, value_enum)]
        only: Vec<bench::Part>,
    },
    /// The side-by-side bench's load client (run by `bench` in the lab's edge
    /// namespace, from the xtask built in release).
    #[command(hide = true)]
    BenchClient(peers::ClientArgs),
    /// Offline analysis speed: a synthetic capture of ~1.5 million packets
    /// (and one twice as large) through `origin-tracer analyze` and through
    /// `tshark -z conv,tcp` (installed with apt-get if missing); packets per
    /// second and peak memory. Needs no root unless tshark must be installed.
    BenchAnalyze,
    /// The kernel matrix: boot Debian's 6.1 and 6.12 kernels (5.10 on request) in qemu
    /// (TCG) and run the agent and a smoke set of the lab scenarios inside
    /// each; fails on a start-up error, a probe skipped that the kernel has,
    /// a program over half the verifier's limit or a wrong verdict.
    VmTest {
        /// Only these kernels (`6.1`, `6.12`, `5.10`); 6.1 and 6.12 by default.
        #[arg(long = "kernel")]
        kernels: Vec<String>,
    },
    /// Write docs/schema-v1.json from the output line types (what
    /// `origin-tracer schema` prints).
    Schema {
        /// Fail if the committed file differs from what the types give.
        #[arg(long)]
        check: bool,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::BuildEbpf { check } => {
            if check {
                ebpf::check(&workspace_root())
            } else {
                ebpf::build(&workspace_root())
            }
        }
        Cmd::Test { no_root, filter } => test(no_root, &filter),
        Cmd::Bench { only } => {
            require_root("cargo xtask bench")?;
            deps::ensure_lab_tools()?;
            let peers = only.is_empty() || only.contains(&bench::Part::Peers);
            if peers {
                // Without them the bench still runs, their columns "not run".
                if let Err(e) = deps::ensure_bench_tools() {
                    eprintln!("xtask: {e:#}");
                }
            }
            let bin = build_agent()?;
            let client = if peers {
                Some(build_bench_client()?)
            } else {
                None
            };
            bench::run(&bin, client.as_deref(), &only)
        }
        Cmd::BenchClient(args) => peers::client_main(&args),
        Cmd::BenchAnalyze => {
            deps::ensure_tshark()?;
            let bin = build_agent()?;
            bench_analyze::run(&bin)
        }
        Cmd::VmTest { kernels } => {
            require_root("cargo xtask vm-test")?;
            deps::ensure_lab_tools()?;
            deps::ensure_vm_tools()?;
            let bin = build_agent()?;
            let lab = build_lab_tests()?;
            vm::run(&bin, &lab, &kernels)
        }
        Cmd::Schema { check } => schema::run(&build_agent()?, &workspace_root(), check),
        Cmd::Demo => {
            require_root("cargo xtask demo")?;
            deps::ensure_lab_tools()?;
            let bin = build_agent()?;
            demo::run(&bin)
        }
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc_geteuid() == 0 }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn require_root(what: &str) -> Result<()> {
    if !is_root() {
        bail!("{what} needs root (it loads eBPF programs and creates network namespaces): run it with sudo");
    }
    Ok(())
}

/// Run a cargo build (`args`, JSON messages) and return the executable of
/// the artifact `target` (from cargo's own report, not a guessed target/
/// path).
fn built_executable(what: &str, args: &[&str], target: &str) -> Result<PathBuf> {
    eprintln!("xtask: building {what}");
    let out = cargo()
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("building {what} failed");
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == target)
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("cargo did not report the {what} binary"))
}

/// Build the agent (release) and return its binary.
fn build_agent() -> Result<PathBuf> {
    built_executable(
        "origin-tracer",
        &[
            "build",
            "--release",
            "-p",
            "tracer-user",
            "--bin",
            "origin-tracer",
        ],
        "origin-tracer",
    )
}

/// Build this xtask in release for the side-by-side bench's load client
/// (`bench-client`): a debug build's TLS limits the rate it measures.
fn build_bench_client() -> Result<PathBuf> {
    built_executable(
        "the bench's load client (xtask, release)",
        &["build", "--release", "-p", "xtask", "--bin", "xtask"],
        "xtask",
    )
}

/// Build the privileged lab tests and return their binary.
fn build_lab_tests() -> Result<PathBuf> {
    built_executable(
        "the lab tests",
        &[
            "test",
            "-p",
            "integration-tests",
            "--test",
            "lab",
            "--no-run",
        ],
        "lab",
    )
}

fn test(no_root: bool, filter: &[String]) -> Result<()> {
    eprintln!("xtask: the published schema is the one the line types give");
    schema::run(&build_agent()?, &workspace_root(), true)?;
    eprintln!("xtask: unit and no-root tests");
    run(cargo().args(["test", "--workspace"]))?;
    if no_root {
        eprintln!("xtask: --no-root: privileged lab tests NOT run");
        return Ok(());
    }
    require_root("the privileged lab tests (cargo xtask test)")?;
    deps::ensure_lab_tools()?;
    let bin = build_agent()?;
    eprintln!("xtask: privileged lab tests with {}", bin.display());
    // Every privileged test of the workspace: the TC programs on synthetic
    // frames, then the network-namespace lab; one at a time.
    run(cargo()
        .args(["test", "--workspace", "--", "--ignored", "--test-threads=1"])
        .args(filter)
        .env("ORIGIN_TRACER_BIN", &bin))
}
