//! Entry point of the kernel side: maps, the shared emit path and the programs.

mod alpn;
mod maps;
mod quiet;
mod snapshot;
mod tc;
mod tls;
mod tp;
mod turn;

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
