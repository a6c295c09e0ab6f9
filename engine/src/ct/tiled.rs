//! One task per static-ct-api log: poll its checkpoint, verify it, fetch the data tiles it
//! covers, resolve their issuers, and publish every entry exactly once and in order, through
//! the same encoder, sink, positions and counters as RFC 6962 logs ([`crate::watcher`]).
//!
//! - **Checkpoints.** `<monitoring>/checkpoint` is verified against the log's key and origin
//!   from the log list ([`crate::checkpoint`]). One that does not parse, names another
//!   origin, or carries no valid signature by the log's key is counted (`bad_checkpoints`),
//!   retried with backoff, and never followed. A checkpoint smaller than one already verified
//!   (a stale cache) does not move the tree back.
//! - **Tiles.** From the position on: full data tiles, then the partial tile at the right
//!   edge (`size mod 256` entries, `.p/<W>`). Up to `max_in_flight` tiles are fetched at
//!   once and consumed strictly in order. A partial tile that is gone (404: the log has since
//!   filled it) is read from the full tile instead, up to the verified size. A tile that is
//!   cut short, holds the wrong number of entries or does not decode is fetched again after
//!   backoff, never skipped; a tile the position is inside of (a partial tile that grew, a
//!   restart) is published from the position on.
//! - **Issuers.** Chain fingerprints are resolved from `<monitoring>/issuer/<hex>`; a body
//!   must hash to its fingerprint. Issuers are immutable, so they stay in a bounded cache. A
//!   tile's entries are published only once all their issuers are known.
//! - **Messages.** `cert_index` is the leaf index, `cert_link` the data tile's URL,
//!   `source.url` the monitoring prefix (the log's key in [`crate::positions::Positions`]).
//! - Backoff, `Retry-After` and the per-operator rate limit are the RFC 6962 watcher's.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::checkpoint::{self, Checkpoint, Verifier};
use crate::error::Error;
use crate::json::{Encoder, Link};
use crate::leaf::Entry;
use crate::tile::{self, TileLeaf, TILE_WIDTH};
use crate::watcher::{self, back_off, first_position, sleep_or_stop, Backoff, Ctx, Failure, Log};

/// Issuers kept per log (a log has a handful; the cache starts over when full).
const ISSUER_CACHE: usize = 256;

/// A fetched, decoded data tile (possibly cut to the verified tree size).
struct Tile {
    url: String,
    /// Leaf index of `leaves[0]`.
    first: u64,
    leaves: Vec<TileLeaf>,
}

/// Issuer certificates by SHA-256, bounded.
struct Issuers {
    map: HashMap<[u8; 32], Bytes>,
    cap: usize,
}

impl Issuers {
    fn new(cap: usize) -> Self {
        Issuers {
            map: HashMap::new(),
            cap: cap.max(1),
        }
    }

    /// The issuer with this fingerprint, from the cache or the log.
    async fn get(&mut self, ctx: &Ctx, log: &Log, fp: &[u8; 32]) -> Result<Bytes, Failure> {
        if let Some(c) = self.map.get(fp) {
            return Ok(c.clone());
        }
        let url = format!("{}{}", log.source.url, tile::issuer_path(fp));
        let r = watcher::get(ctx, log, &url).await?;
        if checkpoint::sha256(&r.body) != *fp {
            ctx.stats.bad_responses.fetch_add(1, Relaxed);
            return Err(Failure {
                error: Error::Protocol(format!("{url}: body does not hash to its fingerprint")),
                retry_after: None,
            });
        }
        if self.map.len() >= self.cap {
            self.map.clear();
        }
        self.map.insert(*fp, r.body.clone());
        Ok(r.body)
    }
}

async fn get_checkpoint(ctx: &Ctx, log: &Log, verifier: &Verifier) -> Result<Checkpoint, Failure> {
    let url = format!("{}checkpoint", log.source.url);
    let r = watcher::get(ctx, log, &url).await?;
    verifier.verify(&r.body).map_err(|error| {
        ctx.stats.bad_checkpoints.fetch_add(1, Relaxed);
        Failure {
            error,
            retry_after: None,
        }
    })
}

/// Fetches and decodes data tile `n`, of which the verified tree holds `width` entries.
async fn fetch_tile(ctx: Arc<Ctx>, log: Arc<Log>, n: u64, width: u64) -> Result<Tile, Failure> {
    let mut url = format!("{}{}", log.source.url, tile::data_tile_path(n, width));
    let mut r = watcher::request(&ctx, &log, &url).await?;
    let mut served = width;
    if r.status == 404 && width < TILE_WIDTH {
        // Logs may drop a partial tile once the full one exists; its first entries are the same.
        url = format!("{}{}", log.source.url, tile::data_tile_path(n, TILE_WIDTH));
        r = watcher::request(&ctx, &log, &url).await?;
        served = TILE_WIDTH;
    }
    let r = watcher::check_status(&ctx, &url, r)?;
    let mut leaves = tile::decode_tile(&r.body, served as usize).map_err(|error| {
        ctx.stats.bad_responses.fetch_add(1, Relaxed);
        Failure {
            error,
            retry_after: None,
        }
    })?;
    leaves.truncate(width as usize);
    Ok(Tile {
        url,
        first: n * TILE_WIDTH,
        leaves,
    })
}

/// The entries of `tile` from leaf index `from` on, with their chains.
async fn resolve_entries(
    ctx: &Ctx,
    log: &Log,
    issuers: &mut Issuers,
    tile: &Tile,
    from: u64,
) -> Result<Vec<Entry>, Failure> {
    let skip = (from.saturating_sub(tile.first) as usize).min(tile.leaves.len());
    let mut out = Vec::with_capacity(tile.leaves.len() - skip);
    for leaf in &tile.leaves[skip..] {
        let mut chain = Vec::with_capacity(leaf.chain.len());
        for fp in &leaf.chain {
            chain.push(issuers.get(ctx, log, fp).await?);
        }
        out.push(leaf.to_entry(chain));
    }
    Ok(out)
}

/// Publishes `entries`, the leaves of `tile` from index `from` on.
fn publish_tile(
    ctx: &Ctx,
    log: &Log,
    encoder: &mut Encoder,
    tile: &Tile,
    from: u64,
    entries: &[Entry],
) {
    let seen = watcher::now_secs();
    let skip = from.saturating_sub(tile.first) as usize;
    for (i, (entry, leaf)) in entries.iter().zip(&tile.leaves[skip..]).enumerate() {
        let index = from + i as u64;
        if let Some(claimed) = leaf.leaf_index.filter(|&l| l != index) {
            ctx.stats.bad_responses.fetch_add(1, Relaxed);
            tracing::warn!(log = %log.source.url, index, claimed, "entry's leaf_index extension disagrees with its position; published at its position");
        }
        watcher::publish_entry(ctx, log, encoder, index, Link::Url(&tile.url), entry, seen);
    }
}

/// A data tile request running in the background: `(n, width, task)`.
type Pending = (u64, u64, JoinHandle<Result<Tile, Failure>>);

/// The requests in flight, aborted when the watcher stops.
struct InFlight(VecDeque<Pending>);

impl Drop for InFlight {
    fn drop(&mut self) {
        for (_, _, h) in &self.0 {
            h.abort();
        }
    }
}

/// Watches one static-ct-api log until `stop` turns true. `verifier` holds the log's origin
/// and key; `log.source.url` is its monitoring prefix (ending in `/`).
pub async fn run_static_ct(
    ctx: Arc<Ctx>,
    log: Arc<Log>,
    verifier: Arc<Verifier>,
    mut stop: watch::Receiver<bool>,
) {
    let url = log.source.url.clone();
    let cfg = ctx.config.clone();
    let mut backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max);
    let mut encoder = Encoder::default();
    let mut issuers = Issuers::new(ISSUER_CACHE);
    let mut next = ctx.positions.get(&url);
    let mut verified = 0u64;
    log.stats.active.store(1, Relaxed);
    if let Some(n) = next {
        log.stats.position.store(n, Relaxed);
        tracing::info!(log = %url, next = n, "resuming from saved position");
    }

    'outer: loop {
        if *stop.borrow() {
            break;
        }
        let checkpoint = tokio::select! {
            r = get_checkpoint(&ctx, &log, &verifier) => r,
            _ = stop.changed() => break,
        };
        let tree_size = match checkpoint {
            Ok(cp) => {
                backoff.reset();
                if cp.tree_size < verified {
                    tracing::debug!(log = %url, size = cp.tree_size, verified, "checkpoint older than one already verified");
                }
                verified = verified.max(cp.tree_size);
                verified
            }
            Err(f) => {
                if !back_off(
                    &log,
                    &mut backoff,
                    &f,
                    "checkpoint (fetch or verification)",
                    &mut stop,
                )
                .await
                {
                    break;
                }
                continue;
            }
        };
        let start = first_position(&ctx, &log, &mut next, tree_size);

        let mut inflight = InFlight(VecDeque::new());
        let mut dispatched = start / TILE_WIDTH;
        let mut pos = start;
        while pos < tree_size {
            while inflight.0.len() < cfg.max_in_flight.max(1) && dispatched * TILE_WIDTH < tree_size
            {
                let width = (tree_size - dispatched * TILE_WIDTH).min(TILE_WIDTH);
                let h = tokio::spawn(fetch_tile(ctx.clone(), log.clone(), dispatched, width));
                inflight.0.push_back((dispatched, width, h));
                dispatched += 1;
            }
            let Some((n, width, h)) = inflight.0.pop_front() else {
                break;
            };
            let mut result = tokio::select! {
                r = h => r.unwrap_or_else(|j| Err(Failure { error: Error::Http { url: url.clone(), reason: j.to_string() }, retry_after: None })),
                _ = stop.changed() => break 'outer,
            };
            // Complete tile n before anything after it is published.
            let mut kept = None;
            loop {
                let failure = match result {
                    Ok(t) => {
                        let resolved = tokio::select! {
                            r = resolve_entries(&ctx, &log, &mut issuers, &t, pos) => r,
                            _ = stop.changed() => break 'outer,
                        };
                        match resolved {
                            Ok(entries) => {
                                publish_tile(&ctx, &log, &mut encoder, &t, pos, &entries);
                                backoff.reset();
                                pos = t.first + t.leaves.len() as u64;
                                next = Some(pos);
                                ctx.positions.set(&url, pos);
                                log.stats.position.store(pos, Relaxed);
                                break;
                            }
                            Err(f) => {
                                kept = Some(t);
                                f
                            }
                        }
                    }
                    Err(f) => f,
                };
                let what = format!("data tile {n} (width {width})");
                if !back_off(&log, &mut backoff, &failure, what, &mut stop).await {
                    break 'outer;
                }
                result = match kept.take() {
                    Some(t) => Ok(t),
                    None => tokio::select! {
                        r = fetch_tile(ctx.clone(), log.clone(), n, width) => r,
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
