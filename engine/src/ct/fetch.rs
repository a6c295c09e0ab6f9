//! The fetch pipeline both log kinds run: learn the tree size, fetch the ranges up to it
//! (several at once), publish every entry exactly once and in order, save where the log was
//! left. What differs between RFC 6962 logs ([`crate::watcher`]) and static-ct-api logs
//! ([`crate::tiled`]) is a `LogApi`: how the tree size is learned, how one range is fetched
//! and decoded, and how its entries are named in `cert_link`. Everything else is here, once:
//! settings, [`Ctx`], [`Log`], [`Backoff`], [`RateLimiter`], requests, publishing.
//!
//! - **Ranges.** From the position on, the log kind cuts the tree into ranges
//!   (`LogApi::range_end`: a `get-entries` batch, a data tile). A range whose answer
//!   covers only part of it (a log's batch cap) is completed, from where the answer ended,
//!   before anything after it is published.
//! - **Pipelining.** Up to `max_in_flight` consecutive ranges are requested at once, each in
//!   a task of its own; answers are consumed strictly in order, so publication order is log
//!   order. Requests still in flight when the watcher stops are aborted.
//! - **Errors.** A failed, throttled, truncated or garbage answer is retried with
//!   exponential backoff and jitter (`Retry-After` honoured); an undecodable entry inside a
//!   good answer is skipped and counted. Nothing here panics or stops on bad input.
//! - **Rate limit.** Requests of all logs of one operator share a [`RateLimiter`].
//! - **Positions.** After each published answer the log's next index goes to
//!   [`Positions`]; a restart resumes from it (see that module for the guarantees).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::http::{HttpClient, Response};
use crate::hub::Sink;
use crate::json::{Encoder, Link, LogSource};
use crate::leaf;
use crate::positions::Positions;
use crate::stats::{LogStats, Stats};

/// Where a log without a saved position starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// At the current tree size: only new entries.
    Head,
    /// `n` entries before the current tree size.
    HeadMinus(u64),
    /// At this index.
    Index(u64),
}

impl std::str::FromStr for StartAt {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "head" {
            Ok(StartAt::Head)
        } else if let Some(n) = s.strip_prefix("head-") {
            n.parse()
                .map(StartAt::HeadMinus)
                .map_err(|_| format!("bad start {s:?}: expected head, head-N or an index"))
        } else {
            s.parse()
                .map(StartAt::Index)
                .map_err(|_| format!("bad start {s:?}: expected head, head-N or an index"))
        }
    }
}

impl StartAt {
    /// The first index to fetch for a tree of `tree_size` entries.
    pub fn resolve(self, tree_size: u64) -> u64 {
        match self {
            StartAt::Head => tree_size,
            StartAt::HeadMinus(n) => tree_size.saturating_sub(n),
            StartAt::Index(i) => i,
        }
    }
}

/// Watcher settings.
#[derive(Debug, Clone)]
pub struct WatcherConfig {
    /// How often `get-sth` is polled when caught up.
    pub poll_interval: Duration,
    /// Entries asked for per `get-entries` until the log's cap is learned.
    pub max_batch: u64,
    /// `get-entries` requests in flight per log.
    pub max_in_flight: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub start: StartAt,
    /// Requests per second per operator, all its logs together (0: unlimited).
    pub operator_rate: f64,
}

impl Default for WatcherConfig {
    fn default() -> Self {
        WatcherConfig {
            poll_interval: Duration::from_secs(5),
            max_batch: 1024,
            max_in_flight: 4,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(120),
            start: StartAt::Head,
            operator_rate: 20.0,
        }
    }
}

/// Spaces requests of one operator at least `1/rate` apart.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next: tokio::sync::Mutex<Instant>,
}

impl RateLimiter {
    /// `rate` requests per second; 0 or less means unlimited.
    pub fn new(rate: f64) -> Self {
        let interval = if rate > 0.0 {
            Duration::from_secs_f64(1.0 / rate)
        } else {
            Duration::ZERO
        };
        RateLimiter {
            interval,
            next: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    /// Waits for this request's turn.
    pub async fn acquire(&self) {
        if self.interval.is_zero() {
            return;
        }
        let wait = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + self.interval;
            at - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Exponential backoff with full jitter in `[d/2, d]`.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        Backoff {
            min,
            max,
            attempt: 0,
            rng: seed,
        }
    }

    /// Forgets past failures.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay before the next retry; `retry_after` (from the server) wins when given.
    pub fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        if let Some(r) = retry_after {
            return r.min(Duration::from_secs(3600));
        }
        let exp = self
            .min
            .saturating_mul(1u32 << self.attempt.saturating_sub(1).min(20));
        let d = exp.min(self.max);
        // xorshift64: jitter needs no cryptographic randomness.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let frac = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        d.mul_f64(0.5 + 0.5 * frac)
    }
}

/// What a watcher needs from the engine.
pub struct Ctx {
    pub client: HttpClient,
    pub sink: Arc<dyn Sink>,
    pub positions: Arc<Positions>,
    pub stats: Arc<Stats>,
    pub config: WatcherConfig,
}

/// One log being watched.
pub struct Log {
    pub source: Arc<LogSource>,
    pub stats: Arc<LogStats>,
    pub limiter: Arc<RateLimiter>,
}

/// A failed request: what to count and how long the server asked us to wait.
pub(crate) struct Failure {
    pub(crate) error: Error,
    pub(crate) retry_after: Option<Duration>,
}

pub(crate) fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Sleeps unless shutdown comes first; returns false on shutdown.
pub(crate) async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.changed() => false,
    }
}

/// GETs `url` in the operator's turn; any status comes back (failures before one are counted).
pub(crate) async fn request(ctx: &Ctx, log: &Log, url: &str) -> Result<Response, Failure> {
    log.limiter.acquire().await;
    ctx.client.get(url).await.map_err(|error| {
        ctx.stats.http_errors.fetch_add(1, Relaxed);
        Failure {
            error,
            retry_after: None,
        }
    })
}

/// GETs `url` in the operator's turn; anything but a 200 is a counted failure.
pub(crate) async fn get(ctx: &Ctx, log: &Log, url: &str) -> Result<Response, Failure> {
    let r = request(ctx, log, url).await?;
    check_status(ctx, url, r)
}

/// A 200 passes; 429 and other statuses are counted failures (`Retry-After` kept).
pub(crate) fn check_status(ctx: &Ctx, url: &str, r: Response) -> Result<Response, Failure> {
    match r.status {
        200 => Ok(r),
        429 => {
            ctx.stats.rate_limited.fetch_add(1, Relaxed);
            Err(Failure {
                error: Error::Status {
                    url: url.to_owned(),
                    status: 429,
                },
                retry_after: r.retry_after,
            })
        }
        status => {
            ctx.stats.http_status_errors.fetch_add(1, Relaxed);
            Err(Failure {
                error: Error::Status {
                    url: url.to_owned(),
                    status,
                },
                retry_after: r.retry_after.filter(|_| status == 503),
            })
        }
    }
}

/// What one kind of log does differently; [`run`] does the rest.
pub(crate) trait LogApi: Send + 'static {
    /// One range as its background request leaves it (a response body, a decoded tile).
    type Fetched: Send + 'static;

    /// What learning the tree size is called in warnings ("get-sth").
    const TREE_SIZE: &'static str;

    /// Learns the log's tree size.
    async fn tree_size(&mut self, ctx: &Ctx, log: &Log) -> Result<u64, Failure>;

    /// The first index of the range that holds `pos` (a range may start before the
    /// position: a data tile the position is inside of).
    fn range_start(&self, pos: u64) -> u64 {
        pos
    }

    /// The end (exclusive, at most `tree_size`) of the range that starts at `start`.
    fn range_end(&self, start: u64, tree_size: u64) -> u64;

    /// How what is left of a range, `[pos, end)`, is named in warnings.
    fn describe(pos: u64, end: u64) -> String;

    /// Fetches (and decodes what it can of) `[start, end)`, in a task of its own.
    fn fetch(
        ctx: Arc<Ctx>,
        log: Arc<Log>,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<Self::Fetched, Failure>> + Send + 'static;

    /// Publishes the entries of `fetched` from `pos` on (each with its `cert_link`, through
    /// [`publish_entry`]) and returns the index after the last one its answer covered (more
    /// than `pos`, at most `end`). A failure says whether `fetched` can be tried again after
    /// the backoff (`Some`: what failed came later, as an issuer) or the range must be
    /// fetched again (`None`).
    async fn publish(
        &mut self,
        ctx: &Ctx,
        log: &Log,
        encoder: &mut Encoder,
        fetched: Self::Fetched,
        pos: u64,
        end: u64,
    ) -> Result<u64, (Failure, Option<Self::Fetched>)>;
}

/// A range requested in the background: `(start, end, task)`.
type Pending<T> = (u64, u64, JoinHandle<Result<T, Failure>>);

/// Aborts the requests still in flight when the watcher stops.
struct InFlight<T>(VecDeque<Pending<T>>);

impl<T> Drop for InFlight<T> {
    fn drop(&mut self) {
        for (_, _, h) in &self.0 {
            h.abort();
        }
    }
}

/// Watches one log through `api` until `stop` turns true.
pub(crate) async fn run<A: LogApi>(
    ctx: Arc<Ctx>,
    log: Arc<Log>,
    mut api: A,
    mut stop: watch::Receiver<bool>,
) {
    let url = log.source.url.clone();
    let cfg = ctx.config.clone();
    let mut backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max);
    let mut encoder = Encoder::default();
    let mut next = ctx.positions.get(&url);
    log.stats.active.store(1, Relaxed);
    if let Some(n) = next {
        log.stats.position.store(n, Relaxed);
        tracing::info!(log = %url, next = n, "resuming from saved position");
    }

    'outer: loop {
        if *stop.borrow() {
            break;
        }
        let tree_size = tokio::select! {
            r = api.tree_size(&ctx, &log) => r,
            _ = stop.changed() => break,
        };
        let tree_size = match tree_size {
            Ok(t) => {
                backoff.reset();
                t
            }
            Err(f) => {
                if !back_off(&log, &mut backoff, &f, A::TREE_SIZE, &mut stop).await {
                    break;
                }
                continue;
            }
        };
        let start = first_position(&ctx, &log, &mut next, tree_size);

        let mut inflight = InFlight(VecDeque::new());
        let mut dispatched = api.range_start(start);
        let mut pos = start;
        while pos < tree_size {
            while inflight.0.len() < cfg.max_in_flight.max(1) && dispatched < tree_size {
                let end = api.range_end(dispatched, tree_size);
                let h = tokio::spawn(A::fetch(ctx.clone(), log.clone(), dispatched, end));
                inflight.0.push_back((dispatched, end, h));
                dispatched = end;
            }
            let Some((s, e, h)) = inflight.0.pop_front() else {
                break;
            };
            debug_assert!(s <= pos && pos < e);
            let mut result = tokio::select! {
                r = h => r.unwrap_or_else(|j| Err(Failure { error: Error::Http { url: url.clone(), reason: j.to_string() }, retry_after: None })),
                _ = stop.changed() => break 'outer,
            };
            // Complete [pos, e) before anything after it is published.
            loop {
                let kept = match result {
                    Ok(fetched) => {
                        let published = tokio::select! {
                            r = api.publish(&ctx, &log, &mut encoder, fetched, pos, e) => r,
                            _ = stop.changed() => break 'outer,
                        };
                        match published {
                            Ok(p) => {
                                backoff.reset();
                                pos = p;
                                next = Some(pos);
                                ctx.positions.set(&url, pos);
                                log.stats.position.store(pos, Relaxed);
                                if pos >= e {
                                    break;
                                }
                                None
                            }
                            Err((f, kept)) => {
                                if !back_off(&log, &mut backoff, &f, A::describe(pos, e), &mut stop)
                                    .await
                                {
                                    break 'outer;
                                }
                                kept
                            }
                        }
                    }
                    Err(f) => {
                        if !back_off(&log, &mut backoff, &f, A::describe(pos, e), &mut stop).await {
                            break 'outer;
                        }
                        None
                    }
                };
                result = match kept {
                    Some(fetched) => Ok(fetched),
                    None => tokio::select! {
                        r = A::fetch(ctx.clone(), log.clone(), pos, e) => r,
                        _ = stop.changed() => break 'outer,
                    },
                };
            }
        }
        drop(inflight);
        if !sleep_or_stop(cfg.poll_interval, &mut stop).await {
            break;
        }
    }
    log.stats.active.store(0, Relaxed);
}

/// Counts a failed request, logs it (`what` says which: "get-sth", "get-entries 5..260")
/// and waits out its backoff; false when stopping instead.
pub(crate) async fn back_off(
    log: &Log,
    backoff: &mut Backoff,
    f: &Failure,
    what: impl std::fmt::Display,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    log.stats.errors.fetch_add(1, Relaxed);
    *log.stats
        .last_error
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some((
        crate::stats::now_ms(),
        format!("{what} failed: {}", f.error),
    ));
    let d = backoff.next(f.retry_after);
    tracing::warn!(log = %log.source.url, error = %f.error, retry_in = ?d, "{what} failed");
    sleep_or_stop(d, stop).await
}

/// Records the tree size; for a log without a position, resolves and records where it starts.
/// A tree smaller than the position is warned about at each poll and counted: it is followed
/// all the same (waiting for that size), but `/health/deep` tells why nothing comes.
pub(crate) fn first_position(ctx: &Ctx, log: &Log, next: &mut Option<u64>, tree_size: u64) -> u64 {
    log.stats.tree_size.store(tree_size, Relaxed);
    log.stats
        .last_success_ms
        .store(crate::stats::now_ms(), Relaxed);
    let behind = next.filter(|&n| tree_size < n);
    log.stats.behind.store(behind.is_some() as u64, Relaxed);
    if let Some(n) = behind {
        ctx.stats.behind_position.fetch_add(1, Relaxed);
        tracing::warn!(log = %log.source.url, tree_size, position = n, "the log's tree is smaller than the position to continue from: the log went backwards, or the positions file belongs to another deployment; waiting for it to reach the position");
    }
    *next.get_or_insert_with(|| {
        let url = &log.source.url;
        let s = ctx.config.start.resolve(tree_size);
        tracing::info!(log = %url, tree_size, start = s, "starting");
        ctx.positions.set(url, s);
        log.stats.position.store(s, Relaxed);
        s
    })
}

/// Encodes one decoded entry, publishes its frames and counts it (both log kinds).
pub(crate) fn publish_entry(
    ctx: &Ctx,
    log: &Log,
    encoder: &mut Encoder,
    index: u64,
    link: Link<'_>,
    entry: &leaf::Entry,
    seen: f64,
) {
    let enc = encoder.encode(&log.source, index, link, entry, seen);
    if let Some(e) = &enc.leaf_error {
        ctx.stats.leaf_parse_errors.fetch_add(1, Relaxed);
        tracing::warn!(log = %log.source.url, index, error = %e, "leaf certificate does not parse; sent with what could be read");
    }
    if enc.chain_errors > 0 {
        ctx.stats
            .chain_parse_errors
            .fetch_add(u64::from(enc.chain_errors), Relaxed);
    }
    ctx.sink.publish(enc.draft);
    ctx.stats.entries.fetch_add(1, Relaxed);
    log.stats.entries.fetch_add(1, Relaxed);
    log.stats
        .last_advance_ms
        .store((seen * 1000.0) as u64, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions() {
        assert_eq!("head".parse::<StartAt>().unwrap().resolve(100), 100);
        assert_eq!("head-10".parse::<StartAt>().unwrap().resolve(100), 90);
        assert_eq!("head-1000".parse::<StartAt>().unwrap().resolve(100), 0);
        assert_eq!("42".parse::<StartAt>().unwrap().resolve(100), 42);
        assert!("tail".parse::<StartAt>().is_err());
        assert!("head-x".parse::<StartAt>().is_err());
    }

    #[test]
    fn backoff_grows_with_jitter_and_honours_retry_after() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d1 = b.next(None);
        assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
        let d3 = {
            b.next(None);
            b.next(None)
        };
        assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
        for _ in 0..30 {
            assert!(b.next(None) <= Duration::from_secs(1));
        }
        assert_eq!(b.next(Some(Duration::from_secs(7))), Duration::from_secs(7));
        b.reset();
        assert!(b.next(None) <= Duration::from_millis(100));
    }
}
