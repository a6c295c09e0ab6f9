//! `certstream-server`: see `certstream_server::cli` for the options.

#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    certstream_server::cli::main()
}
