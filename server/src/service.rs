//! The running service: the ingest side (log list, watchers, positions) feeding a sink.
//!
//! Until the websocket fanout lands, the sink counts what would be broadcast and keeps the
//! latest lite messages; a progress line is logged every few seconds.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certstream_engine::ingest::{self, IngestConfig};
use certstream_engine::positions::Positions;
use certstream_engine::sim::{self, SimConfig};
use certstream_engine::stats::Stats;
use certstream_engine::watcher::Sink;
use certstream_engine::Frames;
use tokio::sync::watch;

/// Keeps counts and the 25 most recent frames.
#[derive(Debug, Default)]
pub struct Recorder {
    pub frames: AtomicU64,
    pub bytes_lite: AtomicU64,
    pub bytes_full: AtomicU64,
    latest: Mutex<VecDeque<Frames>>,
}

impl Recorder {
    /// The most recent frames, oldest first.
    pub fn latest(&self) -> Vec<Frames> {
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

impl Sink for Recorder {
    fn publish(&self, frames: Frames) {
        self.frames.fetch_add(1, Relaxed);
        self.bytes_lite.fetch_add(frames.lite.len() as u64, Relaxed);
        self.bytes_full.fetch_add(frames.full.len() as u64, Relaxed);
        let mut l = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        if l.len() == 25 {
            l.pop_front();
        }
        l.push_back(frames);
    }
}

/// What the service runs with.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub ingest: IngestConfig,
    pub positions_file: Option<std::path::PathBuf>,
    /// Start the simulator in-process and watch it instead of the configured log list.
    pub demo: Option<SimConfig>,
}

/// Runs until `shutdown` turns true.
pub async fn run(
    mut cfg: ServiceConfig,
    recorder: Arc<Recorder>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let _sim = match cfg.demo.take() {
        Some(sim_cfg) => {
            let sim = sim::start(sim_cfg).await?;
            tracing::info!(log_list = %sim.log_list_url, "demo: simulated CT logs started");
            cfg.ingest.log_list = sim.log_list_url.clone();
            Some(sim)
        }
        None => None,
    };
    let positions = Arc::new(match &cfg.positions_file {
        Some(p) => Positions::load(p)?,
        None => Positions::in_memory(),
    });
    let stats = Stats::new();
    let progress = {
        let stats = stats.clone();
        let recorder = recorder.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let mut last = 0;
            let every = Duration::from_secs(10);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.changed() => break,
                }
                let n = recorder.frames.load(Relaxed);
                let logs = stats.logs();
                let active = logs.iter().filter(|l| l.active.load(Relaxed) == 1).count();
                tracing::info!(
                    certificates = n,
                    per_sec = (n - last) as f64 / every.as_secs_f64(),
                    logs = active,
                    errors = stats.http_errors.load(Relaxed) + stats.http_status_errors.load(Relaxed) + stats.bad_responses.load(Relaxed),
                    "progress"
                );
                last = n;
            }
        })
    };
    let sink: Arc<dyn Sink> = recorder;
    let r = ingest::run(cfg.ingest, sink, positions, stats, shutdown).await;
    progress.abort();
    r.map_err(Into::into)
}
