//! The running service: the ingest thread (log list, watchers, positions; the demo
//! simulator when asked) publishing into the hub, and one serving thread per core.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use certstream_engine::hub::Hub;
use certstream_engine::hub::Sink;
use certstream_engine::ingest::{self, IngestConfig};
use certstream_engine::positions::Positions;
use certstream_engine::stats::Stats;
use certstream_sim::{self as sim, SimConfig};
use tokio::sync::watch;

use crate::core;
use crate::listen;
use crate::shared::{CoreConfig, Shared};
use crate::upstream::{self, NatsConfig, Publisher, Role, Status};

/// How long a stopping ingest node keeps publishing what it still holds to NATS.
const PUBLISH_DRAIN: Duration = Duration::from_secs(10);

/// Everything the service runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub ingest: IngestConfig,
    /// Where positions are saved (`None`: in memory only).
    pub positions_file: Option<std::path::PathBuf>,
    /// Start the simulator in-process and watch it instead of the configured log list.
    pub demo: Option<SimConfig>,
    pub serve: CoreConfig,
    /// NATS JetStream: publish (ingest node), consume (edge node), or neither.
    pub nats: NatsConfig,
}

/// A started service.
pub struct Server {
    /// The address clients connect to.
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    ingest: JoinHandle<anyhow::Result<()>>,
    cores: Vec<JoinHandle<std::io::Result<()>>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

/// Raises the open-files limit: every client holds one descriptor (its socket). Tries 2^20 (root may raise the hard limit), else soft = hard.
fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass, which lives on our stack.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        let want = libc::rlimit {
            rlim_cur: lim.rlim_max.max(1 << 20),
            rlim_max: lim.rlim_max.max(1 << 20),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            tracing::debug!(open_files = lim.rlim_cur, "open-files limit");
        }
    }
}

/// Starts ingest and the serving cores; `listener` is core 0's socket (see [`listen::bind`]).
pub fn start(mut cfg: Config, listener: TcpListener) -> anyhow::Result<Server> {
    raise_nofile_limit();
    let cores = cfg.serve.cores.max(1);
    cfg.serve.cores = cores;
    let addr = listener.local_addr()?;
    let listeners = listen::per_core(listener, cores).context("binding per-core listeners")?;
    let status = Arc::new(Status::new(&cfg.nats));
    let role = status.role;
    // An edge numbers nothing: it keeps the ingest's cursors.
    let positions = Arc::new(match &cfg.positions_file {
        Some(p) if role != Role::Edge => Positions::load(p)?,
        _ => Positions::in_memory(),
    });
    let mut first_cursor = positions.first_cursor();
    if role == Role::Ingest {
        // Never behind the stream: edges refuse cursors they have seen (no positions file,
        // or one older than the stream).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let wait = Duration::from_secs(3);
        if let Some(next) = rt.block_on(upstream::next_cursor_in_stream(&cfg.nats, wait)) {
            first_cursor = first_cursor.max(next);
        }
    }
    let (hub, consumers) = Hub::new(cores, cfg.serve.ring_capacity, first_cursor);
    hub.set_dedup(cfg.serve.dedup_window, cfg.serve.dedup_capacity);
    tracing::info!(first_cursor = hub.first_cursor, "stream cursors");
    let stats = Stats::new();
    let shared = Shared::with_upstream(
        cfg.serve.clone(),
        hub.clone(),
        stats.clone(),
        status.clone(),
    );
    if role != Role::Single {
        tracing::info!(role = role.name(), nats = %status.servers, stream = %status.stream, "NATS JetStream");
    }
    let (stop, stop_rx) = watch::channel(false);
    let ingest = {
        let demo = cfg.demo.take();
        let mut ingest_cfg = cfg.ingest.clone();
        let nats = cfg.nats.clone();
        let hub_for_nats = hub.clone();
        let sink: Arc<dyn Sink> = hub;
        std::thread::Builder::new()
            .name("ingest".into())
            .spawn(move || -> anyhow::Result<()> {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("ingest")
                    .enable_all()
                    .build()
                    .context("starting the ingest runtime")?;
                rt.block_on(async move {
                    if role == Role::Edge {
                        upstream::run_edge(nats, hub_for_nats, status, stop_rx).await?;
                        return Ok(());
                    }
                    let publisher = match role {
                        Role::Ingest => {
                            // The positions file never claims what JetStream has not
                            // acknowledged: a crash loses the publisher's queue, and the
                            // next run fetches it again.
                            let (st, logs) = (status.clone(), stats.clone());
                            let floor = move |url: &str| {
                                let log = logs.logs().iter().position(|l| l.url == url)?;
                                st.unacked.floor(log as u32)
                            };
                            if positions.set_floor(Box::new(floor)).is_err() {
                                anyhow::bail!("the positions have a floor already");
                            }
                            Some(
                                Publisher::start(nats, &hub_for_nats, stats.clone(), status)
                                    .await?,
                            )
                        }
                        _ => None,
                    };
                    let _sim = match demo {
                        Some(sim_cfg) => {
                            let sim = sim::start(sim_cfg).await?;
                            tracing::info!(log_list = %sim.log_list_url, "demo: simulated CT log started");
                            ingest_cfg.log_list = sim.log_list_url.clone();
                            ingest_cfg.more_log_lists.clear();
                            ingest_cfg.client.ca_file = None;
                            Some(sim)
                        }
                        None => None,
                    };
                    let saved = positions.clone();
                    let ran = ingest::run(ingest_cfg, sink, positions, stats, stop_rx).await;
                    if let Some(p) = publisher {
                        p.finish(PUBLISH_DRAIN).await;
                        // Saved again now that the queue is acknowledged (or dropped and
                        // counted): the stop's save was held back to what was in flight.
                        if ran.is_ok() {
                            let next = hub_for_nats.next_cursor();
                            tokio::task::spawn_blocking(move || saved.save(next)).await??;
                        }
                    }
                    ran?;
                    Ok(())
                })
            })?
    };
    let mut core_threads = Vec::with_capacity(cores);
    for (id, (l, ring)) in listeners.into_iter().zip(consumers).enumerate() {
        let shared = shared.clone();
        core_threads.push(
            std::thread::Builder::new()
                .name(format!("core-{id}"))
                .spawn(move || core::run_core(id, l, ring, shared))?,
        );
    }
    tracing::info!(%addr, cores, "serving");
    Ok(Server {
        addr,
        shared,
        stop,
        ingest,
        cores: core_threads,
    })
}

impl Server {
    /// Stops ingest (saving positions), then closes every client with 1001 and stops the
    /// cores.
    pub fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let ingest = self
            .ingest
            .join()
            .map_err(|_| anyhow::anyhow!("ingest thread panicked"))?;
        self.shared.shutdown.store(true, Relaxed);
        for c in self.cores {
            match c.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "serving core failed"),
                Err(_) => tracing::error!("serving core panicked"),
            }
        }
        ingest
    }
}

/// Runs the service until `shutdown` turns true.
pub fn run(
    cfg: Config,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let server = start(cfg, listener)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    rt.block_on(async {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
    });
    tracing::info!("shutting down: saving positions, closing clients");
    let r = server.shutdown();
    std::thread::sleep(Duration::from_millis(10));
    r
}
