//! One task per RFC 6962 log: poll `get-sth`, fetch new ranges with `get-entries`, decode,
//! encode and publish every entry exactly once and in order. The pieces both log kinds use
//! (settings, [`Ctx`], [`Log`], [`Backoff`], [`RateLimiter`], requests, publishing) live here;
//! static-ct-api logs are watched by [`crate::tiled`].
//!
//! - **Batches.** A request asks for `batch` entries; the log may return fewer (logs cap
//!   batches, commonly 32..1024). The watcher advances by however many came back, fetches
//!   the rest of the range next, and learns the cap (the most entries a short answer held).
//! - **Pipelining.** Up to `max_in_flight` consecutive ranges are requested at once;
//!   answers are consumed strictly in order, so publication order is log order.
//! - **Errors.** A failed, throttled, truncated or garbage answer is retried with
//!   exponential backoff and jitter (`Retry-After` honoured); an undecodable entry inside a
//!   good answer is skipped and counted. Nothing here panics or stops on bad input.
//! - **Rate limit.** Requests of all logs of one operator share a [`RateLimiter`].
//! - **Positions.** After each published answer the log's next index goes to
//!   [`Positions`]; a restart resumes from it (see that module for the guarantees).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tokio::sync::watch;

use crate::error::Error;
use crate::http::{HttpClient, Response};
use crate::json::{Encoder, Link, LogSource};
use crate::leaf;
use crate::positions::Positions;
use crate::stats::{LogStats, Stats};

/// The fanout side's hand-off, which watchers publish into (defined in [`crate::hub`]; also
/// named here, the path the server has used).
pub use crate::hub::Sink;

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

#[derive(Deserialize)]
struct Sth {
    tree_size: u64,
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

async fn get_sth(ctx: &Ctx, log: &Log) -> Result<u64, Failure> {
    let url = format!("{}ct/v1/get-sth", log.source.url);
    let r = get(ctx, log, &url).await?;
    let mut body = r.body.to_vec();
    let sth: Sth = simd_json::serde::from_slice(&mut body).map_err(|e| {
        ctx.stats.bad_responses.fetch_add(1, Relaxed);
        Failure {
            error: Error::Json(format!("get-sth from {url}: {e}")),
            retry_after: None,
        }
    })?;
    Ok(sth.tree_size)
}

async fn get_entries(
    ctx: Arc<Ctx>,
    log: Arc<Log>,
    start: u64,
    end: u64,
) -> Result<Response, Failure> {
    let url = format!(
        "{}ct/v1/get-entries?start={start}&end={}",
        log.source.url,
        end - 1
    );
    get(&ctx, &log, &url).await
}

/// A `get-entries` request running in the background: `(start, end, task)`.
type Pending = (u64, u64, tokio::task::JoinHandle<Result<Response, Failure>>);

/// Aborts the requests still in flight when the watcher stops.
struct InFlight(std::collections::VecDeque<Pending>);

impl Drop for InFlight {
    fn drop(&mut self) {
        for (_, _, h) in &self.0 {
            h.abort();
        }
    }
}

/// Watches one RFC 6962 log until `stop` turns true.
pub async fn run_rfc6962(ctx: Arc<Ctx>, log: Arc<Log>, mut stop: watch::Receiver<bool>) {
    let url = log.source.url.clone();
    let cfg = ctx.config.clone();
    let mut backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max);
    let mut encoder = Encoder::default();
    let mut next = ctx.positions.get(&url);
    let mut cap = log.stats.batch_cap.load(Relaxed);
    if cap == 0 {
        cap = cfg.max_batch.max(1);
    }
    let mut learned = false;
    log.stats.active.store(1, Relaxed);
    if let Some(n) = next {
        log.stats.position.store(n, Relaxed);
        tracing::info!(log = %url, next = n, "resuming from saved position");
    }

    'outer: loop {
        if *stop.borrow() {
            break;
        }
        let tree_size = match get_sth(&ctx, &log).await {
            Ok(t) => {
                backoff.reset();
                t
            }
            Err(f) => {
                if !back_off(&log, &mut backoff, &f, "get-sth", &mut stop).await {
                    break;
                }
                continue;
            }
        };
        let start = first_position(&ctx, &log, &mut next, tree_size);

        let mut inflight = InFlight(Default::default());
        let mut dispatched = start;
        let mut pos = start;
        while pos < tree_size {
            while inflight.0.len() < cfg.max_in_flight.max(1) && dispatched < tree_size {
                let end = (dispatched + cap).min(tree_size);
                let h = tokio::spawn(get_entries(ctx.clone(), log.clone(), dispatched, end));
                inflight.0.push_back((dispatched, end, h));
                dispatched = end;
            }
            let Some((s, e, h)) = inflight.0.pop_front() else {
                break;
            };
            debug_assert_eq!(s, pos);
            let mut result = tokio::select! {
                r = h => r.unwrap_or_else(|j| Err(Failure { error: Error::Http { url: url.clone(), reason: j.to_string() }, retry_after: None })),
                _ = stop.changed() => break 'outer,
            };
            // Complete [pos, e) before anything after it is published.
            loop {
                let requested = e - pos;
                match result
                    .and_then(|r| publish_body(&ctx, &log, &mut encoder, r.body, pos, requested))
                {
                    Ok(n) => {
                        backoff.reset();
                        pos += n;
                        next = Some(pos);
                        ctx.positions.set(&url, pos);
                        log.stats.position.store(pos, Relaxed);
                        if n < requested && pos < tree_size && (!learned || n > cap) {
                            learned = true;
                            cap = n;
                            log.stats.batch_cap.store(cap, Relaxed);
                            tracing::info!(log = %url, cap, "learned get-entries batch cap");
                        }
                        if pos >= e {
                            break;
                        }
                    }
                    Err(f) => {
                        let what = format!("get-entries {pos}..={}", e - 1);
                        if !back_off(&log, &mut backoff, &f, what, &mut stop).await {
                            break 'outer;
                        }
                    }
                }
                result = tokio::select! {
                    r = get_entries(ctx.clone(), log.clone(), pos, e) => r,
                    _ = stop.changed() => break 'outer,
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

/// Decodes a get-entries body whose first entry has index `start`, publishes each entry and
/// returns how many indices it covered (≥ 1).
fn publish_body(
    ctx: &Ctx,
    log: &Log,
    encoder: &mut Encoder,
    body: bytes::Bytes,
    start: u64,
    requested: u64,
) -> Result<u64, Failure> {
    let bad = |msg: String| {
        ctx.stats.bad_responses.fetch_add(1, Relaxed);
        Failure {
            error: Error::Protocol(msg),
            retry_after: None,
        }
    };
    let mut body = body.to_vec();
    let entries = leaf::parse_get_entries(&mut body)
        .map_err(|e| bad(format!("get-entries at {start}: {e}")))?;
    if entries.is_empty() {
        return Err(bad(format!("get-entries at {start}: no entries")));
    }
    let n = (entries.len() as u64).min(requested);
    if entries.len() as u64 > requested {
        tracing::warn!(log = %log.source.url, start, requested, got = entries.len(), "log returned more entries than asked; extra ignored");
    }
    let seen = now_secs();
    for (i, raw) in entries.iter().take(n as usize).enumerate() {
        let index = start + i as u64;
        let entry = match leaf::decode(raw) {
            Ok(e) => e,
            Err(e) => {
                ctx.stats.bad_entries.fetch_add(1, Relaxed);
                tracing::warn!(log = %log.source.url, index, error = %e, "undecodable entry skipped");
                continue;
            }
        };
        publish_entry(ctx, log, encoder, index, Link::GetEntries, &entry, seen);
    }
    Ok(n)
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
