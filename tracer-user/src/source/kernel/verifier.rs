//! The verifier's word on each program: a refusal becomes one line naming
//! the program, the error and where its log was written (the log itself can
//! run to thousands of lines; it also goes to the debug log), and a loaded
//! program's verified instruction count (`verified_insns`, reported by
//! Linux 5.16 and later) goes to the start line, so that a program creeping
//! toward the verifier's limit is seen before an older kernel refuses it.

use std::path::PathBuf;

use aya::{programs::ProgramError, Ebpf};

/// The complexity limit of the verifier (instructions processed).
pub const COMPLEXITY_LIMIT: u32 = 1_000_000;

/// Where a refused program's verifier log is written: the agent's own
/// root-only directory (not a shared /tmp, where a planted link could
/// redirect a root write).
pub fn log_path(program: &str) -> PathBuf {
    PathBuf::from(format!("/run/origin-tracer/verifier-{program}.log"))
}

fn write_log(path: &std::path::Path, log: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut f, log.as_bytes())
}

/// One line for a program the kernel refused to load.
pub fn refusal(program: &str, e: ProgramError) -> String {
    let ProgramError::LoadError {
        io_error,
        verifier_log,
    } = e
    else {
        return format!("the kernel refused program {program}: {e}");
    };
    let log = format!("{verifier_log:?}");
    tracing::debug!("verifier log of {program}:\n{log}");
    let path = log_path(program);
    let saved = match write_log(&path, &log) {
        Ok(()) => format!(
            "its log ({} lines) is in {}",
            log.lines().count(),
            path.display()
        ),
        Err(_) => "its log is in the debug output (ORIGIN_TRACER_LOG=debug)".to_owned(),
    };
    let why = if io_error.raw_os_error() == Some(libc::E2BIG) {
        " (the program needs more verification than this kernel's verifier allows)"
    } else {
        ""
    };
    format!("the kernel's verifier refused program {program}: {io_error}{why}; {saved}")
}

/// How many instructions the verifier processed for a loaded program, where
/// the kernel says (5.16+).
pub fn instructions(ebpf: &Ebpf, program: &str) -> Option<u32> {
    ebpf.program(program)?
        .info()
        .ok()?
        .verified_instruction_count()
}
