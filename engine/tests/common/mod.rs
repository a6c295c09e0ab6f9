//! Shared by the engine's integration tests: run `ingest::run` against the simulator over
//! real sockets and collect what it publishes.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certstream_engine::http::ClientConfig;
use certstream_engine::ingest::{self, IngestConfig};
use certstream_engine::positions::Positions;
use certstream_engine::stats::Stats;
use certstream_engine::watcher::{StartAt, WatcherConfig};
use certstream_engine::Frames;
use certstream_sim::{self as sim, Faults, LogConfig, SimConfig, SimHandle, Source};
use tokio::sync::{watch, Notify};

/// `CERTSTREAM_CORPUS` (`../shared/corpus`), or a message that the test is skipped.
pub fn corpus() -> Option<PathBuf> {
    match std::env::var_os("CERTSTREAM_CORPUS") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            eprintln!("skipping: CERTSTREAM_CORPUS is not set (point it at ../shared/corpus)");
            None
        }
    }
}

/// Collects `(log, index)` of every published frame in publication order, and the first
/// `keep` frames themselves.
pub struct Collector {
    pub seen: Mutex<Vec<(u32, u64)>>,
    pub frames: Mutex<Vec<Frames>>,
    keep: usize,
    notify: Notify,
}

impl Collector {
    pub fn keeping(keep: usize) -> Self {
        Collector {
            seen: Mutex::default(),
            frames: Mutex::default(),
            keep,
            notify: Notify::new(),
        }
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Waits until `n` frames arrived (or panics after a generous guard against hangs).
    pub async fn wait_for(&self, n: usize) {
        let guard = tokio::time::Instant::now() + Duration::from_secs(180);
        while self.count() < n {
            assert!(
                tokio::time::Instant::now() < guard,
                "only {} of {n} entries arrived",
                self.count()
            );
            let _ = tokio::time::timeout(Duration::from_millis(100), self.notify.notified()).await;
        }
    }

    /// Indices per log, in publication order.
    pub fn by_log(&self) -> BTreeMap<u32, Vec<u64>> {
        let mut m: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for (log, i) in self.seen.lock().unwrap().iter() {
            m.entry(*log).or_default().push(*i);
        }
        m
    }
}

impl certstream_engine::hub::Sink for Collector {
    fn publish(&self, draft: certstream_engine::frame::Draft) {
        let f: Frames = draft.unstamped();
        self.seen.lock().unwrap().push((f.log, f.index));
        let mut frames = self.frames.lock().unwrap();
        if frames.len() < self.keep {
            frames.push(f);
        }
        drop(frames);
        self.notify.notify_waiters();
    }
}

/// Polls every 50 ms, retries after 5-50 ms, starts at index 0.
pub fn fast_watcher() -> WatcherConfig {
    WatcherConfig {
        poll_interval: Duration::from_millis(50),
        max_batch: 1024,
        max_in_flight: 3,
        backoff_min: Duration::from_millis(5),
        backoff_max: Duration::from_millis(50),
        start: StartAt::Index(0),
        operator_rate: 0.0,
    }
}

/// Ingest of `log_list` with the fast watcher, a 2 s client timeout and 100 ms saves.
pub fn ingest_cfg(log_list: String) -> IngestConfig {
    IngestConfig {
        log_list,
        client: ClientConfig {
            timeout: Duration::from_secs(2),
            ..ClientConfig::default()
        },
        watcher: fast_watcher(),
        save_interval: Duration::from_millis(100),
        ..IngestConfig::default()
    }
}

/// Simulator faults from a spec (`Faults::parse`), with 30 ms slow answers.
pub fn faults(spec: &str) -> Faults {
    let mut f = Faults::parse(spec).unwrap();
    f.slow_delay = Duration::from_millis(30);
    f
}

/// A log of 40 made-up certificates growing from `size / 2` to `size` entries at 2,000/s.
pub fn growing_log(name: &str, size: u64, faults: Faults) -> LogConfig {
    LogConfig {
        name: name.into(),
        source: Source::Generated(40),
        initial_size: size / 2,
        rate: 2000.0,
        max_size: Some(size),
        faults,
        ..LogConfig::default()
    }
}

/// The simulator serving these logs (plain HTTP, default settings otherwise).
pub async fn start_sim(logs: Vec<LogConfig>) -> SimHandle {
    sim::start(SimConfig {
        logs,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// `ingest::run` in the background.
pub struct Run {
    pub collector: Arc<Collector>,
    pub stats: Arc<Stats>,
    pub stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<Result<(), certstream_engine::Error>>,
}

/// Starts `ingest::run`, keeping the first `keep` frames.
pub fn start_ingest_keeping(cfg: IngestConfig, positions: Arc<Positions>, keep: usize) -> Run {
    let collector = Arc::new(Collector::keeping(keep));
    let stats = Stats::new();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(ingest::run(
        cfg,
        collector.clone(),
        positions,
        stats.clone(),
        rx,
    ));
    Run {
        collector,
        stats,
        stop,
        task,
    }
}

/// Starts `ingest::run` on the simulator's log list from no saved positions.
pub fn start_fresh_keeping(sim: &SimHandle, keep: usize) -> Run {
    start_ingest_keeping(
        ingest_cfg(sim.log_list_url.clone()),
        Arc::new(Positions::in_memory()),
        keep,
    )
}

impl Run {
    /// Stops ingest and waits for it to end cleanly.
    pub async fn finish(self) -> (Arc<Collector>, Arc<Stats>) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap().unwrap();
        (self.collector, self.stats)
    }
}

/// Panics unless `indices` is exactly 0..size.
pub fn assert_exactly_once(indices: &[u64], size: u64, what: &str) {
    let want: Vec<u64> = (0..size).collect();
    assert!(
        indices == want,
        "{what}: {} indices, first divergence at {:?}",
        indices.len(),
        indices.iter().zip(&want).position(|(a, b)| a != b)
    );
}
