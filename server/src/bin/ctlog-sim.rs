//! `ctlog-sim`: the CT log simulator on its own (see `certstream_engine::sim`).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    certstream_server::cli::sim_main()
}
