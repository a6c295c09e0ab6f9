//! The ingest side as a whole: fetch the log list, start one watcher per selected log
//! ([`watcher::run_rfc6962`] for RFC 6962 logs, [`tiled::run_static_ct`] for static-ct-api
//! logs), refresh the list every hour (start watchers for new logs, stop those that left),
//! save positions every few seconds, and on shutdown stop every watcher and save once more.
//!
//! After a restart (positions were loaded), nothing is fetched for `resume_delay`: the
//! service streams only to clients connected when it publishes, so clients that the restart
//! dropped get that long to reconnect before the entries they missed go out.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::checkpoint;
use crate::error::Error;
use crate::fetch::{self, Ctx, Log, RateLimiter, WatcherConfig};
use crate::http::{self, ClientConfig, HttpClient};
use crate::hub::Sink;
use crate::json::LogSource;
use crate::loglist::{self, LogInfo, LogKind, StateFilter};
use crate::positions::Positions;
use crate::stats::Stats;
use crate::tiled;
use crate::watcher;

/// Everything the ingest side is configured with.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Log list URL or file.
    pub log_list: String,
    /// More lists (URLs or files) merged with it by log ID: a log in several is watched
    /// once. Each keeps its last good version while it cannot be fetched.
    pub more_log_lists: Vec<String>,
    pub states: StateFilter,
    pub client: ClientConfig,
    pub watcher: WatcherConfig,
    /// How often the log list is fetched again.
    pub refresh: Duration,
    /// How old the positions file may get: it is written every half interval with the
    /// positions of half an interval before (see [`crate::positions`]).
    pub save_interval: Duration,
    /// When resuming saved positions, how long to wait before fetching anything (clients
    /// dropped by the restart reconnect meanwhile).
    pub resume_delay: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            log_list: loglist::GOOGLE_LOG_LIST.to_owned(),
            more_log_lists: Vec::new(),
            states: StateFilter::default(),
            client: ClientConfig::default(),
            watcher: WatcherConfig::default(),
            refresh: Duration::from_secs(3600),
            save_interval: Duration::from_secs(2),
            resume_delay: Duration::ZERO,
        }
    }
}

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Runs until `shutdown` turns true, then stops every watcher and saves positions.
pub async fn run(
    cfg: IngestConfig,
    sink: Arc<dyn Sink>,
    positions: Arc<Positions>,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let client = HttpClient::new(&cfg.client)?;
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        sink,
        positions: positions.clone(),
        stats: stats.clone(),
        config: cfg.watcher.clone(),
    });
    // Before anything is published, a cursor lease on disk: a crash at any point of this run
    // then restarts past every cursor it gave (see `positions`).
    {
        let p = positions.clone();
        let lease = p.cursor_lease(ctx.sink.next_cursor().unwrap_or(1));
        let save = move || p.save_snapshot(&p.snapshot(), lease);
        if let Ok(Err(e)) = tokio::task::spawn_blocking(save).await {
            stats.position_save_errors.fetch_add(1, Relaxed);
            tracing::error!(error = %e, "saving the cursor lease failed");
        }
    }
    let saver = {
        let positions = positions.clone();
        let stats = stats.clone();
        let sink = ctx.sink.clone();
        let mut stop = shutdown.clone();
        let half = (cfg.save_interval / 2).max(Duration::from_millis(1));
        tokio::spawn(async move {
            // Every half interval, the positions as they were half an interval ago (see
            // `positions`: what they cover has reached the clients by then).
            let mut pending = None;
            while fetch::sleep_or_stop(half, &mut stop).await {
                let Some(snapshot) = pending.replace(positions.snapshot()) else {
                    continue;
                };
                // A lease ahead of every cursor given so far (see `positions`).
                let lease = positions.cursor_lease(sink.next_cursor().unwrap_or(1));
                let p = positions.clone();
                let save = move || p.save_snapshot(&snapshot, lease);
                if let Ok(Err(e)) = tokio::task::spawn_blocking(save).await {
                    stats.position_save_errors.fetch_add(1, Relaxed);
                    tracing::error!(error = %e, "saving positions failed");
                }
            }
        })
    };

    let mut running: HashMap<String, Running> = HashMap::new();
    let mut limiters: HashMap<String, Arc<RateLimiter>> = HashMap::new();
    let mut retry = fetch::Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
    let resuming = !positions.snapshot().is_empty();
    if resuming && !cfg.resume_delay.is_zero() {
        tracing::info!(delay = ?cfg.resume_delay, "resuming saved positions after a pause, so that clients can reconnect first");
    }
    let mut stopped = resuming && !fetch::sleep_or_stop(cfg.resume_delay, &mut shutdown).await;
    let sources: Vec<&String> = std::iter::once(&cfg.log_list)
        .chain(&cfg.more_log_lists)
        .collect();
    let mut last_good: Vec<Option<Vec<LogInfo>>> = vec![None; sources.len()];
    while !stopped {
        let mut failed = None;
        for (source, good) in sources.iter().zip(last_good.iter_mut()) {
            match load_list(&client, source).await {
                Ok(all) => *good = Some(all),
                Err(e) => {
                    stats.loglist_errors.fetch_add(1, Relaxed);
                    tracing::error!(source = %source, error = %e, "log list unavailable; keeping its last good version");
                    failed = Some(e);
                }
            }
        }
        if last_good.iter().any(Option::is_some) {
            let lists = last_good.iter().flatten().map(Vec::as_slice);
            let selected = loglist::merge(lists, &cfg.states);
            reconcile(&ctx, &selected, &mut running, &mut limiters, &cfg);
        }
        let wait = match failed {
            None => {
                retry.reset();
                cfg.refresh
            }
            Some(_) => {
                let d = if running.is_empty() {
                    retry.next(None)
                } else {
                    retry
                        .next(None)
                        .max(Duration::from_secs(60))
                        .min(cfg.refresh)
                };
                tracing::info!(retry_in = ?d, watchers = running.len(), "fetching the log lists again sooner");
                d
            }
        };
        stopped = !fetch::sleep_or_stop(wait, &mut shutdown).await;
    }

    for (_, r) in running.iter() {
        let _ = r.stop.send(true);
    }
    for (_, r) in running.drain() {
        let _ = r.task.await;
    }
    let _ = saver.await;
    let p = positions.clone();
    let next_cursor = ctx.sink.next_cursor().unwrap_or(1);
    tokio::task::spawn_blocking(move || p.save(next_cursor))
        .await
        .map_err(|e| Error::io("positions file", std::io::Error::other(e)))??;
    tracing::info!("ingest stopped; positions saved");
    Ok(())
}

async fn load_list(client: &HttpClient, source: &str) -> Result<Vec<LogInfo>, Error> {
    let body = http::fetch_url_or_file(client, source).await?;
    loglist::parse(&mut body.to_vec())
}

fn reconcile(
    ctx: &Arc<Ctx>,
    selected: &[LogInfo],
    running: &mut HashMap<String, Running>,
    limiters: &mut HashMap<String, Arc<RateLimiter>>,
    cfg: &IngestConfig,
) {
    let wanted: HashMap<&str, &LogInfo> = selected.iter().map(|l| (l.url.as_str(), l)).collect();
    running.retain(|url, r| {
        let keep = wanted.contains_key(url.as_str());
        if !keep {
            tracing::info!(log = %url, "log left the list; stopping its watcher");
            let _ = r.stop.send(true);
        }
        keep
    });
    for info in selected {
        if running.contains_key(&info.url) {
            continue;
        }
        // A static-ct-api log's checkpoints are checked against its key and its origin: the
        // submission URL without scheme and trailing slash (the monitoring URL if the list
        // names no submission URL).
        let verifier = match info.kind {
            LogKind::Rfc6962 => None,
            LogKind::StaticCt => {
                let origin =
                    checkpoint::origin_of(info.submission_url.as_deref().unwrap_or(&info.url));
                match checkpoint::Verifier::new(&origin, &info.key) {
                    Ok(v) => Some(Arc::new(v)),
                    Err(e) => {
                        tracing::warn!(log = %info.url, error = %e, "static-ct-api log without a usable key; not watched");
                        continue;
                    }
                }
            }
        };
        let kind = if verifier.is_some() {
            "static-ct"
        } else {
            "rfc6962"
        };
        let stats = ctx
            .stats
            .log(&info.url, &info.description, &info.operator, kind);
        let limiter = limiters
            .entry(info.operator.clone())
            .or_insert_with(|| Arc::new(RateLimiter::new(cfg.watcher.operator_rate)))
            .clone();
        let log = Arc::new(Log {
            source: Arc::new(LogSource::new(
                stats.id,
                &info.url,
                &info.description,
                Some(&info.operator),
            )),
            stats,
            limiter,
        });
        let (stop, stop_rx) = watch::channel(false);
        tracing::info!(log = %info.url, name = %info.description, state = info.state.as_str(), "watching");
        let task = match verifier {
            Some(v) => tokio::spawn(tiled::run_static_ct(ctx.clone(), log, v, stop_rx)),
            None => tokio::spawn(watcher::run_rfc6962(ctx.clone(), log, stop_rx)),
        };
        running.insert(info.url.clone(), Running { stop, task });
    }
}
