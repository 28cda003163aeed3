//! `build-ebpf [--check]`: build the kernel programs with the pinned nightly
//! and bpf-linker, commit-ready copy the object to tracer-ebpf/prebuilt/ with
//! a stamp of the sources it came from, and verify that stamp later.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// The toolchain the committed object is built with (rustup's `nightly` on
/// this machine kind: rustc 1.97.0-nightly e50aa6fba 2026-05-19, LLVM 22).
const TOOLCHAIN: &str = "nightly";
const OBJECT: &str = "tracer-ebpf/prebuilt/tracer-ebpf.bpf.o";
const STAMP: &str = "tracer-ebpf/prebuilt/tracer-ebpf.stamp";

/// Files whose content decides the object: the crate's sources, its manifest,
/// the workspace manifest (profiles) and the lock file entries of aya-ebpf.
fn inputs(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = vec![root.join("Cargo.toml"), root.join("tracer-ebpf/Cargo.toml")];
    let mut stack = vec![root.join("tracer-ebpf/src")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Lock-file entries of the crates the kernel side is built from.
fn locked_ebpf_deps(root: &Path) -> Result<String> {
    let lock = fs::read_to_string(root.join("Cargo.lock")).context("reading Cargo.lock")?;
    Ok(lock
        .split("\n[[package]]")
        .filter(|p| p.contains("name = \"aya-ebpf") || p.contains("name = \"aya-build"))
        .collect::<Vec<_>>()
        .join("\n"))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn sources_hash(root: &Path) -> Result<String> {
    let mut h = Sha256::new();
    for f in inputs(root)? {
        let rel = f.strip_prefix(root).unwrap_or(&f);
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(fs::read(&f).with_context(|| format!("reading {}", f.display()))?);
        h.update([0]);
    }
    h.update(locked_ebpf_deps(root)?.as_bytes());
    Ok(hex(&h.finalize()))
}

fn toolchain_version() -> Option<String> {
    let rustc = Command::new("rustc")
        .arg(format!("+{TOOLCHAIN}"))
        .arg("-V")
        .output()
        .ok()?;
    let linker = Command::new("bpf-linker").arg("--version").output().ok()?;
    if !rustc.status.success() || !linker.status.success() {
        return None;
    }
    Some(format!(
        "{}; {}",
        String::from_utf8_lossy(&rustc.stdout).trim(),
        String::from_utf8_lossy(&linker.stdout).trim()
    ))
}

fn stamp_text(sources: &str, object: &[u8], toolchain: &str) -> String {
    format!(
        "sources-sha256 {sources}\nobject-sha256 {}\ntoolchain {toolchain}\n",
        hex(&Sha256::digest(object))
    )
}

fn stamp_field<'a>(stamp: &'a str, key: &str) -> Option<&'a str> {
    stamp
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
}

/// Build into `target_dir` and return the object's bytes.
fn compile(root: &Path, target_dir: &Path) -> Result<Vec<u8>> {
    let Some(toolchain) = toolchain_version() else {
        bail!(
            "the eBPF toolchain is missing: needs `rustup component add rust-src --toolchain {TOOLCHAIN}` and \
             bpf-linker (`cargo install bpf-linker --no-default-features --features llvm-22` with llvm-22-dev); see README, Developing"
        );
    };
    eprintln!("xtask: building tracer-ebpf with {toolchain}");
    let status = Command::new("cargo")
        .arg(format!("+{TOOLCHAIN}"))
        .args([
            "build",
            "-Z",
            "build-std=core",
            "--target",
            "bpfel-unknown-none",
            "--release",
        ])
        .args(["-p", "tracer-ebpf", "--bin", "tracer-ebpf"])
        .env("CARGO_TARGET_DIR", target_dir)
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER")
        .current_dir(root)
        .status()
        .context("running cargo for the bpf target")?;
    if !status.success() {
        bail!("building tracer-ebpf failed");
    }
    let built = target_dir.join("bpfel-unknown-none/release/tracer-ebpf");
    fs::read(&built).with_context(|| format!("reading {}", built.display()))
}

fn ebpf_target_dir(root: &Path) -> PathBuf {
    // Next to the workspace's own target directory, whatever it is called.
    let meta = Command::new("cargo")
        .args(["metadata", "--format-version=1", "--no-deps"])
        .current_dir(root)
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| v["target_directory"].as_str().map(PathBuf::from));
    meta.unwrap_or_else(|| root.join("target")).join("ebpf")
}

pub fn build(root: &Path) -> Result<()> {
    let object = compile(root, &ebpf_target_dir(root))?;
    let toolchain = toolchain_version().unwrap_or_default();
    fs::create_dir_all(root.join("tracer-ebpf/prebuilt"))?;
    fs::write(root.join(OBJECT), &object)?;
    fs::write(
        root.join(STAMP),
        stamp_text(&sources_hash(root)?, &object, &toolchain),
    )?;
    eprintln!(
        "xtask: wrote {OBJECT} ({} bytes) and {STAMP}; commit both",
        object.len()
    );
    Ok(())
}

pub fn check(root: &Path) -> Result<()> {
    let stamp = fs::read_to_string(root.join(STAMP)).with_context(|| format!("reading {STAMP}"))?;
    let object = fs::read(root.join(OBJECT)).with_context(|| format!("reading {OBJECT}"))?;
    let sources = sources_hash(root)?;
    if stamp_field(&stamp, "sources-sha256") != Some(sources.as_str()) {
        bail!("tracer-ebpf's sources changed since {OBJECT} was built: run `cargo xtask build-ebpf` and commit the result");
    }
    if stamp_field(&stamp, "object-sha256") != Some(hex(&Sha256::digest(&object)).as_str()) {
        bail!("{OBJECT} does not match its stamp: rebuild it with `cargo xtask build-ebpf`");
    }
    // Reproduce the object from the sources when the toolchain is here.
    match toolchain_version() {
        None => eprintln!("xtask: eBPF toolchain absent: checked the stamp only, not a rebuild"),
        Some(tc) if Some(tc.as_str()) != stamp_field(&stamp, "toolchain") => {
            bail!(
                "the object was built with `{}`, this machine has `{tc}`: cannot reproduce it",
                stamp_field(&stamp, "toolchain").unwrap_or("?")
            );
        }
        Some(_) => {
            let dir = ebpf_target_dir(root).join("check");
            let rebuilt = compile(root, &dir)?;
            if rebuilt != object {
                bail!("rebuilding tracer-ebpf from its sources gives a different object than {OBJECT}: run `cargo xtask build-ebpf`");
            }
        }
    }
    eprintln!("xtask: {OBJECT} matches its sources");
    Ok(())
}
