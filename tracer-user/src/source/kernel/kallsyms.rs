//! Where a kernel function's code lies, from /proc/kallsyms: used on kernels
//! without drop reasons (before 5.17) to know a netfilter drop by its caller.
//! Hand-written: a few lines of parsing, no crate reads kallsyms ranges.

use std::fs;

/// `[start, end)` of the text symbol `name` in `kallsyms` (its text): the
/// symbol's address up to the next higher text address.
pub fn text_range(kallsyms: &str, name: &str) -> Result<(u64, u64), String> {
    let mut start = None;
    let mut texts = Vec::new();
    for line in kallsyms.lines() {
        let mut parts = line.split_ascii_whitespace();
        let (Some(addr), Some(kind), Some(sym)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if !matches!(kind, "t" | "T") {
            continue;
        }
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        if sym == name && parts.next().is_none() {
            start = Some(addr);
        }
        texts.push(addr);
    }
    let start = start.ok_or_else(|| format!("/proc/kallsyms has no text symbol {name}"))?;
    if start == 0 {
        return Err("/proc/kallsyms hides addresses (kernel.kptr_restrict)".into());
    }
    let end = texts
        .into_iter()
        .filter(|a| *a > start)
        .min()
        .ok_or_else(|| format!("/proc/kallsyms has nothing after {name}"))?;
    Ok((start, end))
}

/// [`text_range`] of the running kernel.
pub fn running(name: &str) -> Result<(u64, u64), String> {
    let text = fs::read_to_string("/proc/kallsyms")
        .map_err(|e| format!("/proc/kallsyms cannot be read: {e}"))?;
    text_range(&text, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
ffffffff81a3b0c0 T nf_hook_entries_insert_raw
ffffffff81a3b400 T nf_hook_slow
ffffffff81a3b4d0 t nf_hook_slow_list
ffffffff81a3b390 T nf_hook_entries_delete_raw
ffffffff81a3b4c8 d some_data
ffffffffc0a01000 t nf_hook_slow\t[some_module]
";

    #[test]
    fn a_symbol_runs_to_the_next_text_symbol() {
        assert_eq!(
            text_range(SAMPLE, "nf_hook_slow"),
            Ok((0xffff_ffff_81a3_b400, 0xffff_ffff_81a3_b4d0))
        );
    }

    #[test]
    fn hidden_or_missing_symbols_say_why() {
        let hidden = SAMPLE.replace("ffffffff81a3b400", "0000000000000000");
        assert!(text_range(&hidden, "nf_hook_slow")
            .unwrap_err()
            .contains("kptr_restrict"));
        assert!(text_range(SAMPLE, "tcp_v4_rcv")
            .unwrap_err()
            .contains("no text symbol tcp_v4_rcv"));
        assert!(text_range("", "nf_hook_slow").is_err());
    }

    #[test]
    fn the_running_kernel_has_the_netfilter_hook() {
        // Addresses are hidden from non-root readers.
        match running("nf_hook_slow") {
            Ok((start, end)) => assert!(start < end && end - start < 1 << 16),
            Err(e) => eprintln!("SKIPPED: {e}"),
        }
    }
}
