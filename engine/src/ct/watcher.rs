//! One task per RFC 6962 log: poll `get-sth`, fetch new ranges with `get-entries`, decode,
//! encode and publish every entry exactly once and in order, through the fetch pipeline both
//! log kinds share ([`crate::fetch`]: pipelining, backoff, rate limits, positions). What is
//! RFC 6962's own is here:
//!
//! - **Tree size.** `ct/v1/get-sth`'s `tree_size`.
//! - **Batches.** A request asks for `batch` entries; the log may return fewer (logs cap
//!   batches, commonly 32..1024). The pipeline advances by however many came back and fetches
//!   the rest of the range next; the watcher learns the cap (the most entries a short answer
//!   held) and cuts later ranges to it.
//! - **Messages.** `cert_link` is the `get-entries` URL of the entry alone.
//!
//! The shared settings and handles ([`WatcherConfig`], [`StartAt`], [`Ctx`], [`Log`],
//! [`Backoff`], [`RateLimiter`], [`Sink`]) are re-exported here, where the server names them.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::watch;

use crate::error::Error;
use crate::fetch::{self, get, now_secs, publish_entry, Failure, LogApi};
use crate::http::Response;
use crate::json::{Encoder, Link};
use crate::leaf;

pub use crate::fetch::{Backoff, Ctx, Log, RateLimiter, StartAt, WatcherConfig};
/// The fanout side's hand-off, which watchers publish into (defined in [`crate::hub`]; also
/// named here, the path the server has used).
pub use crate::hub::Sink;

#[derive(Deserialize)]
struct Sth {
    tree_size: u64,
}

async fn get_sth(ctx: &Ctx, log: &Log) -> Result<u64, Failure> {
    let url = format!("{}ct/v1/get-sth", log.source.url);
    let r = get(ctx, log, &url).await?;
    let mut body = r.body.to_vec();
    let sth: Sth = simd_json::serde::from_slice(&mut body).map_err(|_| {
        ctx.stats.bad_responses.fetch_add(1, Relaxed);
        Failure {
            error: Error::Protocol("get-sth answer is not the expected JSON"),
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

/// An RFC 6962 log's side of the fetch pipeline: its batch cap, learned from short answers.
struct Rfc6962 {
    cap: u64,
    learned: bool,
}

impl LogApi for Rfc6962 {
    /// A `get-entries` answer; decoded in order, when it is published.
    type Fetched = Response;

    const TREE_SIZE: &'static str = "get-sth";

    async fn tree_size(&mut self, ctx: &Ctx, log: &Log) -> Result<u64, Failure> {
        get_sth(ctx, log).await
    }

    fn range_end(&self, start: u64, tree_size: u64) -> u64 {
        (start + self.cap).min(tree_size)
    }

    fn describe(pos: u64, end: u64) -> String {
        format!("get-entries {pos}..={}", end - 1)
    }

    fn fetch(
        ctx: Arc<Ctx>,
        log: Arc<Log>,
        start: u64,
        end: u64,
    ) -> impl std::future::Future<Output = Result<Response, Failure>> + Send + 'static {
        get_entries(ctx, log, start, end)
    }

    async fn publish(
        &mut self,
        ctx: &Ctx,
        log: &Log,
        encoder: &mut Encoder,
        r: Response,
        pos: u64,
        end: u64,
    ) -> Result<u64, (Failure, Option<Response>)> {
        let requested = end - pos;
        let n = publish_body(ctx, log, encoder, r.body, pos, requested).map_err(|f| (f, None))?;
        // A short answer inside the tree: the log's cap (or a smaller answer than it allows).
        if n < requested && (!self.learned || n > self.cap) {
            self.learned = true;
            self.cap = n;
            log.stats.batch_cap.store(n, Relaxed);
            tracing::info!(log = %log.source.url, cap = n, "learned get-entries batch cap");
        }
        Ok(pos + n)
    }
}

/// Watches one RFC 6962 log until `stop` turns true.
pub async fn run_rfc6962(ctx: Arc<Ctx>, log: Arc<Log>, stop: watch::Receiver<bool>) {
    let mut cap = log.stats.batch_cap.load(Relaxed);
    if cap == 0 {
        cap = ctx.config.max_batch.max(1);
    }
    let api = Rfc6962 {
        cap,
        learned: false,
    };
    fetch::run(ctx, log, api, stop).await;
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
    let bad = |error: Error| {
        ctx.stats.bad_responses.fetch_add(1, Relaxed);
        Failure {
            error,
            retry_after: None,
        }
    };
    let mut body = body.to_vec();
    let entries = leaf::parse_get_entries(&mut body).map_err(bad)?;
    if entries.is_empty() {
        return Err(bad(Error::Protocol("get-entries answer holds no entries")));
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
