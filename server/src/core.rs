//! A serving core: one thread, one monoio runtime (io_uring, or the legacy epoll driver
//! where io_uring is unavailable), its own listener, its own connections and its own
//! [`Fanout`].
//!
//! Every `coalesce` interval the core moves new certificates from its SPSC ring into its
//! stream log and wakes its clients' writers once. Nothing here takes a lock or waits for
//! another core.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use certstream_engine::Frames;

use crate::fanout::Fanout;
use crate::router;
use crate::shared::{Driver, Shared};

/// Runs core `id` on the current thread until shutdown.
pub fn run_core(
    id: usize,
    listener: std::net::TcpListener,
    ring: rtrb::Consumer<Frames>,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let uring = match shared.config.driver {
        Driver::Auto => crate::shared::io_uring_available(),
        Driver::IoUring => true,
        Driver::Legacy => false,
    };
    let counters = shared.cores[id].clone();
    if uring {
        let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(4096)
            .enable_timer()
            .build()?;
        counters.driver.store(1, Relaxed);
        tracing::info!(core = id, driver = "io_uring", "serving core started");
        rt.block_on(core_main(id, listener, ring, shared))
    } else {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()?;
        counters.driver.store(2, Relaxed);
        tracing::info!(core = id, driver = "legacy (epoll)", "serving core started");
        rt.block_on(core_main(id, listener, ring, shared))
    }
}

async fn core_main(
    id: usize,
    listener: std::net::TcpListener,
    mut ring: rtrb::Consumer<Frames>,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let listener = monoio::net::TcpListener::from_std(listener)?;
    let core = Rc::new(Fanout::new(id, shared.clone()));
    let acceptor = monoio::spawn(accept_loop(core.clone(), listener));
    let cfg = &shared.config;
    let mut next_heartbeat = Instant::now() + cfg.heartbeat;
    let mut next_sweep = Instant::now();
    // The sweep visits every connection: a tenth of the slow-client timeout is soon enough
    // (100 ms to 1 s; at 10,000 connections a sweep every 100 ms was 15 % of the core).
    let sweep_every =
        (cfg.slow_client_timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(1));
    loop {
        monoio::time::sleep(cfg.coalesce).await;
        if shared.shutdown.load(Relaxed) {
            break;
        }
        core.drain(&mut ring);
        let now = Instant::now();
        if now >= next_heartbeat {
            next_heartbeat = now + cfg.heartbeat;
            core.heartbeat();
        }
        if now >= next_sweep {
            next_sweep = now + sweep_every;
            core.sweep(now);
        }
    }
    tracing::info!(core = id, "closing clients");
    core.close_all(&mut ring).await;
    drop(acceptor);
    Ok(())
}

async fn accept_loop(core: Rc<Fanout>, listener: monoio::net::TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(core = core.id, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if core.shared.shutdown.load(Relaxed) {
            return;
        }
        core.counters.accepted.fetch_add(1, Relaxed);
        let shared = &core.shared;
        let admission = if crate::access::any_contains(&shared.config.trusted_proxies, peer.ip()) {
            shared.admit_proxied()
        } else {
            shared.admit(peer.ip())
        };
        let Some(admission) = admission else {
            core.counters.rejected.fetch_add(1, Relaxed);
            tracing::debug!(%peer, "connection refused: limit reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        monoio::spawn(router::handle(core.clone(), stream, peer, admission));
    }
}
