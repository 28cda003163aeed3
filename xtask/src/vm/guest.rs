//! One guest: a small initramfs (static busybox, the kernel's own virtio,
//! 9p and overlay modules, `xtask/vm/init`) that mounts the host's root
//! read-only over virtio-9p under a tmpfs overlay and runs a script there
//! (`xtask/vm/stage2.sh`), booted under qemu's TCG (`/dev/kvm` on this
//! machine kind is nested and cannot boot stock Debian kernels). The script's
//! output and exit code come back through a second, writable 9p share.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::kernels::{output as run, Kernel, CACHE};

/// Modules the initramfs loads to reach the host's root (with their
/// dependencies; those built in are skipped).
const BOOT_MODULES: [&str; 4] = ["virtio_pci", "9pnet_virtio", "9p", "overlay"];

/// Files that decide an initramfs.
const INIT: &str = include_str!("../../vm/init");
const STAGE2: &str = include_str!("../../vm/stage2.sh");

/// The module files to load, in order, from host kmod's view of the
/// package's tree.
fn boot_modules(k: &Kernel) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = Vec::new();
    for m in BOOT_MODULES {
        let deps = run(Command::new("modprobe").arg("-d").arg(&k.root).args([
            "-S",
            &k.release,
            "--show-depends",
            m,
        ]))?;
        for line in deps.lines() {
            if let Some(path) = line.strip_prefix("insmod ") {
                let path = PathBuf::from(path.trim());
                if !files.contains(&path) {
                    files.push(path);
                }
            }
        }
    }
    Ok(files)
}

/// Build (or reuse) the kernel's initramfs.
pub fn initramfs(k: &Kernel, busybox: &Path) -> Result<PathBuf> {
    let out = Path::new(CACHE).join(format!("kernels/initramfs-{}.cpio", k.release));
    let stamp = out.with_extension("stamp");
    let want = format!("{INIT}\n{STAGE2}");
    if out.exists() && fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        return Ok(out);
    }
    let tree = Path::new(CACHE).join(format!("kernels/initramfs-{}.d", k.release));
    let _ = fs::remove_dir_all(&tree);
    for d in ["bin", "dev", "proc", "sys", "newroot", "ro", "rw", "mods"] {
        fs::create_dir_all(tree.join(d))?;
    }
    fs::copy(busybox, tree.join("bin/busybox"))?;
    std::os::unix::fs::symlink("busybox", tree.join("bin/sh"))?;
    let mut order = String::new();
    for file in boot_modules(k)? {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .context("a module file name")?
            .trim_end_matches(".xz")
            .trim_end_matches(".zst")
            .to_owned();
        let bytes = if file.extension().is_some_and(|e| e == "xz") {
            Command::new("xz")
                .arg("-dc")
                .arg(&file)
                .output()
                .context("xz -dc (package xz-utils)")?
                .stdout
        } else if file.extension().is_some_and(|e| e == "zst") {
            Command::new("zstd").arg("-qdc").arg(&file).output()?.stdout
        } else {
            fs::read(&file)?
        };
        fs::write(tree.join("mods").join(&name), bytes)?;
        order.push_str(&name);
        order.push('\n');
    }
    fs::write(tree.join("mods/order"), order)?;
    fs::write(tree.join("init"), INIT)?;
    fs::write(tree.join("stage2.sh"), STAGE2)?;
    fs::write(tree.join("kver"), format!("{}\n", k.release))?;
    fs::set_permissions(tree.join("init"), fs::Permissions::from_mode(0o755))?;
    let _ = Command::new("mknod")
        .args(["-m", "600"])
        .arg(tree.join("dev/console"))
        .args(["c", "5", "1"])
        .status();
    let list = run(Command::new("find")
        .args([".", "-mindepth", "1"])
        .current_dir(&tree))?;
    let mut cpio = Command::new(busybox)
        .args(["cpio", "-o", "-H", "newc"])
        .current_dir(&tree)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    {
        use std::io::Write;
        let mut stdin = cpio.stdin.take().context("cpio stdin")?;
        stdin.write_all(list.as_bytes())?;
    }
    let archive = cpio.wait_with_output()?;
    if !archive.status.success() {
        bail!("busybox cpio failed");
    }
    // Under a temporary name first: a guest may be booting the old one.
    let partial = out.with_extension("cpio.partial");
    fs::write(&partial, archive.stdout)?;
    fs::rename(&partial, &out)?;
    fs::write(&stamp, want)?;
    let _ = fs::remove_dir_all(&tree);
    Ok(out)
}

/// What came back from a guest.
pub struct Outcome {
    /// The script's exit code; `None` if it never reported one.
    pub rc: Option<i32>,
    /// The results share: the script's files and `log`.
    pub out: PathBuf,
    /// The serial console.
    pub console: String,
    pub wall: Duration,
    pub timed_out: bool,
}

/// Boot the kernel and run `script` (a host path, the same inside) as root;
/// bounded by `limit`.
pub fn boot(
    k: &Kernel,
    initrd: &Path,
    script: &Path,
    out: &Path,
    limit: Duration,
) -> Result<Outcome> {
    fs::create_dir_all(out)?;
    let console = out.join("console.log");
    let start = Instant::now();
    let status = Command::new("timeout")
        .args(["-k", "5", &limit.as_secs().to_string()])
        .arg("qemu-system-x86_64")
        .args(["-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "2048"])
        .args([
            "-machine",
            "pc",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
        ])
        .args(["-no-reboot", "-monitor", "none", "-nic", "none"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(k.vmlinuz())
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 panic=-1 loglevel=4 mitigations=off otscript={}",
            script.display()
        ))
        .args([
            "-virtfs",
            "local,path=/,mount_tag=root,security_model=none,readonly=on,multidevs=remap",
        ])
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=out,security_model=none,multidevs=remap",
            out.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .context("running qemu-system-x86_64 (package qemu-system-x86)")?;
    let rc = fs::read_to_string(out.join("rc"))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    Ok(Outcome {
        rc,
        out: out.to_path_buf(),
        console: fs::read_to_string(&console).unwrap_or_default(),
        wall: start.elapsed(),
        timed_out: status.code() == Some(124),
    })
}
