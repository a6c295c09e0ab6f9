//! `certstream-server`: see `certstream_server::cli` for the options.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    certstream_server::cli::main()
}
