//! `cargo xtask schema [--check]`: docs/schema-v1.json is what
//! `origin-tracer schema` prints (the schema derived from the line types);
//! write it, or fail when the committed file is stale.

use std::{fs, path::Path, process::Command};

use anyhow::{bail, Context, Result};

const FILE: &str = "docs/schema-v1.json";

pub fn run(bin: &Path, root: &Path, check: bool) -> Result<()> {
    let out = Command::new(bin)
        .arg("schema")
        .output()
        .with_context(|| format!("running {} schema", bin.display()))?;
    if !out.status.success() {
        bail!(
            "{} schema failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let path = root.join(FILE);
    if check {
        let committed = fs::read(&path).with_context(|| format!("reading {FILE}"))?;
        if committed != out.stdout {
            bail!(
                "{FILE} is stale: the line types changed; run `cargo xtask schema` and commit it"
            );
        }
        eprintln!("xtask: {FILE} matches the line types");
    } else {
        fs::write(&path, &out.stdout).with_context(|| format!("writing {FILE}"))?;
        eprintln!("xtask: wrote {FILE}");
    }
    Ok(())
}
