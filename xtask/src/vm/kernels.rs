//! Debian's kernel packages for the matrix, from Debian's archive through
//! apt with a private configuration (the host's sources, state and /boot
//! are never touched), unpacked with `dpkg -x` and indexed with `depmod`,
//! all cached under /var/cache/origin-tracer so a second run downloads
//! nothing.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

/// The cache outside the clone.
pub const CACHE: &str = "/var/cache/origin-tracer";

/// One kernel of the matrix: the suite whose `linux-image-amd64`
/// metapackage names it.
#[derive(Clone, Copy, Debug)]
pub struct Suite {
    /// What the report calls it.
    pub label: &'static str,
    /// The apt suite (`bookworm-security` ...).
    pub suite: &'static str,
}

/// Debian 12's own kernel, Debian 12's backports kernel, Debian 11's.
pub const MATRIX: [Suite; 3] = [
    Suite {
        label: "6.1",
        suite: "bookworm-security",
    },
    Suite {
        label: "6.12",
        suite: "bookworm-backports",
    },
    Suite {
        label: "5.10",
        suite: "bullseye-security",
    },
];

/// An unpacked kernel package.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub label: &'static str,
    /// `6.1.0-57-amd64`.
    pub release: String,
    /// Where the package is unpacked (`boot/`, `lib/modules/`).
    pub root: PathBuf,
}

impl Kernel {
    pub fn vmlinuz(&self) -> PathBuf {
        self.root.join(format!("boot/vmlinuz-{}", self.release))
    }

    pub fn modules(&self) -> PathBuf {
        self.root.join(format!("lib/modules/{}", self.release))
    }
}

const SOURCES: &str = "\
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bullseye main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bullseye-security main
";

/// apt-get or apt-cache with the private configuration.
fn apt(tool: &str) -> Command {
    let base = Path::new(CACHE).join("apt");
    let mut c = Command::new(tool);
    for (key, value) in [
        ("Dir::Etc::SourceList", base.join("sources.list")),
        ("Dir::Etc::SourceParts", "/dev/null".into()),
        ("Dir::Etc::Preferences", "/dev/null".into()),
        ("Dir::Etc::PreferencesParts", "/dev/null".into()),
        ("Dir::State", base.join("state")),
        ("Dir::State::status", base.join("state/status")),
        ("Dir::Cache", base.join("cache")),
    ] {
        c.arg("-o").arg(format!("{key}={}", value.display()));
    }
    c.args([
        "-o",
        "Debug::NoLocking=1",
        "-o",
        "APT::Get::List-Cleanup=0",
        "-o",
        "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
        "-q",
    ]);
    c
}

/// Run a command; its stdout, or an error with its stderr.
pub(super) fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The private apt's package lists, fetched at most once a day.
pub fn update() -> Result<()> {
    let base = Path::new(CACHE).join("apt");
    for dir in ["state/lists/partial", "cache/archives/partial"] {
        fs::create_dir_all(base.join(dir))?;
    }
    fs::write(base.join("sources.list"), SOURCES)?;
    let status = base.join("state/status");
    if !status.exists() {
        fs::write(&status, "")?;
    }
    let stamp = base.join("state/updated");
    let fresh = fs::metadata(&stamp)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() < 86_400));
    if !fresh {
        eprintln!("xtask vm-test: apt-get update (private sources list)");
        output(apt("apt-get").arg("update"))?;
        fs::write(&stamp, "")?;
    }
    Ok(())
}

/// The image package the suite's `linux-image-amd64` depends on.
fn image_package(suite: &str) -> Result<(String, String)> {
    let policy = output(apt("apt-cache").args(["madison", "linux-image-amd64"]))?;
    let version = policy
        .lines()
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
        .find(|cols| {
            cols.len() >= 3
                && cols[2]
                    .split_whitespace()
                    .any(|s| s.starts_with(&format!("{suite}/")))
        })
        .map(|cols| cols[1].to_owned())
        .with_context(|| format!("no linux-image-amd64 in {suite}"))?;
    let show = output(apt("apt-cache").args(["show", &format!("linux-image-amd64={version}")]))?;
    let depends = show
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .with_context(|| format!("linux-image-amd64 {version} names no image"))?;
    let package = depends
        .split([',', ' '])
        .find(|p| p.starts_with("linux-image-"))
        .with_context(|| format!("no linux-image-* in {depends:?}"))?;
    let release = package.trim_start_matches("linux-image-").to_owned();
    Ok((package.to_owned(), release))
}

/// Download (once), unpack (once) and index (once) a suite's kernel.
pub fn fetch(s: Suite) -> Result<Kernel> {
    let (package, release) = image_package(s.suite)?;
    let dir = Path::new(CACHE).join("kernels");
    fs::create_dir_all(&dir)?;
    let root = dir.join("x").join(&package);
    let kernel = Kernel {
        label: s.label,
        release,
        root,
    };
    if !kernel.vmlinuz().exists() {
        let deb = download(&dir, &package)?;
        let unpacking = dir.join("x").join(format!("{package}.partial"));
        let _ = fs::remove_dir_all(&unpacking);
        fs::create_dir_all(&unpacking)?;
        output(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacking))?;
        fs::rename(&unpacking, &kernel.root)?;
    }
    if !kernel.modules().join("modules.dep").exists() {
        output(
            Command::new("depmod")
                .arg("-b")
                .arg(&kernel.root)
                .arg(&kernel.release),
        )
        .context("depmod (package kmod)")?;
    }
    Ok(kernel)
}

/// `apt-get download` into `dir` unless a .deb of the package is there.
pub fn download(dir: &Path, package: &str) -> Result<PathBuf> {
    let find = || -> Option<PathBuf> {
        fs::read_dir(dir)
            .ok()?
            .filter_map(|e| Some(e.ok()?.path()))
            .find(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with(&format!("{package}_"))
                        && Path::new(n).extension().is_some_and(|e| e == "deb")
                })
            })
    };
    if let Some(deb) = find() {
        return Ok(deb);
    }
    eprintln!("xtask vm-test: downloading {package}");
    output(apt("apt-get").arg("download").arg(package).current_dir(dir))?;
    find().with_context(|| format!("apt-get download {package} left no .deb"))
}

/// Static busybox for the initramfs (downloaded, unpacked, never installed).
pub fn busybox() -> Result<PathBuf> {
    let dir = Path::new(CACHE).join("kernels");
    fs::create_dir_all(&dir)?;
    let root = dir.join("x/busybox-static");
    let bin = root.join("bin/busybox");
    if !bin.exists() {
        let deb = download(&dir, "busybox-static")?;
        fs::create_dir_all(&root)?;
        output(Command::new("dpkg").arg("-x").arg(&deb).arg(&root))?;
    }
    Ok(bin)
}
