//! The kernel programs of origin-tracer, built for the bpf target only
//! (`cargo xtask build-ebpf`); the agent embeds the committed object.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

#[cfg(target_arch = "bpf")]
mod kernel;

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("tracer-ebpf builds for the bpf target only: run `cargo xtask build-ebpf`");
}
