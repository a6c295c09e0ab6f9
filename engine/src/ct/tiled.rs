//! One task per static-ct-api log: poll its checkpoint, verify it, fetch the data tiles it
//! covers, resolve their issuers, and publish every entry exactly once and in order, through
//! the same encoder, sink, positions and counters as RFC 6962 logs ([`crate::watcher`]).
//!
//! - **Checkpoints.** `<monitoring>/checkpoint` is verified against the log's key and origin
//!   from the log list ([`crate::checkpoint`]). One that does not parse, names another
//!   origin, or carries no valid signature by the log's key is counted (`bad_checkpoints`),
//!   retried with backoff, and never followed. A checkpoint smaller than one already verified
//!   (a stale cache) does not move the tree back.
//! - **Tiles.** A range is a data tile: from the position on, full data tiles, then the
//!   partial tile at the right edge (`size mod 256` entries, `.p/<W>`). A partial tile that is gone (404: the log has since
//!   filled it) is read from the full tile instead, up to the verified size. A tile that is
//!   cut short, holds the wrong number of entries or does not decode is fetched again after
//!   backoff, never skipped; a tile the position is inside of (a partial tile that grew, a
//!   restart) is published from the position on.
//! - **Issuers.** Chain fingerprints are resolved from `<monitoring>/issuer/<hex>`; a body
//!   must hash to its fingerprint. Issuers are immutable, so they stay in a bounded cache. A
//!   tile's entries are published only once all their issuers are known.
//! - **Messages.** `cert_index` is the leaf index, `cert_link` the data tile's URL,
//!   `source.url` the monitoring prefix (the log's key in [`crate::positions::Positions`]).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

use crate::checkpoint::{self, Checkpoint, Verifier};
use crate::error::Error;
use crate::fetch::{self, Ctx, Failure, Log, LogApi};
use crate::json::{Encoder, Link};
use crate::leaf::Entry;
use crate::tile::{self, TileLeaf, TILE_WIDTH};

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
        let r = fetch::get(ctx, log, &url).await?;
        if checkpoint::sha256(&r.body) != *fp {
            ctx.stats.bad_responses.fetch_add(1, Relaxed);
            return Err(Failure {
                error: Error::Protocol("an issuer's body does not hash to its fingerprint"),
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
    let r = fetch::get(ctx, log, &url).await?;
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
    let mut r = fetch::request(&ctx, &log, &url).await?;
    let mut served = width;
    if r.status == 404 && width < TILE_WIDTH {
        // Logs may drop a partial tile once the full one exists; its first entries are the same.
        url = format!("{}{}", log.source.url, tile::data_tile_path(n, TILE_WIDTH));
        r = fetch::request(&ctx, &log, &url).await?;
        served = TILE_WIDTH;
    }
    let r = fetch::check_status(&ctx, &url, r)?;
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
    let seen = fetch::now_secs();
    let skip = from.saturating_sub(tile.first) as usize;
    for (i, (entry, leaf)) in entries.iter().zip(&tile.leaves[skip..]).enumerate() {
        let index = from + i as u64;
        if let Some(claimed) = leaf.leaf_index.filter(|&l| l != index) {
            ctx.stats.bad_responses.fetch_add(1, Relaxed);
            tracing::warn!(log = %log.source.url, index, claimed, "entry's leaf_index extension disagrees with its position; published at its position");
        }
        fetch::publish_entry(ctx, log, encoder, index, Link::Url(&tile.url), entry, seen);
    }
}

/// A static-ct-api log's side of the fetch pipeline: its key and origin, the largest tree
/// size verified so far, and the issuers it has served.
struct StaticCt {
    verifier: Arc<Verifier>,
    verified: u64,
    issuers: Issuers,
}

impl LogApi for StaticCt {
    /// A data tile, decoded (and cut to the verified tree size) by its request's task.
    type Fetched = Tile;

    const TREE_SIZE: &'static str = "checkpoint (fetch or verification)";

    async fn tree_size(&mut self, ctx: &Ctx, log: &Log) -> Result<u64, Failure> {
        let cp = get_checkpoint(ctx, log, &self.verifier).await?;
        if cp.tree_size < self.verified {
            tracing::debug!(log = %log.source.url, size = cp.tree_size, verified = self.verified, "checkpoint older than one already verified");
        }
        self.verified = self.verified.max(cp.tree_size);
        Ok(self.verified)
    }

    fn range_start(&self, pos: u64) -> u64 {
        pos - pos % TILE_WIDTH
    }

    fn range_end(&self, start: u64, tree_size: u64) -> u64 {
        (start + TILE_WIDTH).min(tree_size)
    }

    fn describe(pos: u64, end: u64) -> String {
        let n = pos / TILE_WIDTH;
        format!("data tile {n} (width {})", end - n * TILE_WIDTH)
    }

    fn fetch(
        ctx: Arc<Ctx>,
        log: Arc<Log>,
        start: u64,
        end: u64,
    ) -> impl std::future::Future<Output = Result<Tile, Failure>> + Send + 'static {
        let n = start / TILE_WIDTH;
        fetch_tile(ctx, log, n, end - n * TILE_WIDTH)
    }

    /// Resolves the tile's issuers, then publishes; a tile whose issuers could not all be
    /// fetched is kept and tried again after the backoff, not fetched again.
    async fn publish(
        &mut self,
        ctx: &Ctx,
        log: &Log,
        encoder: &mut Encoder,
        t: Tile,
        pos: u64,
        _end: u64,
    ) -> Result<u64, (Failure, Option<Tile>)> {
        match resolve_entries(ctx, log, &mut self.issuers, &t, pos).await {
            Ok(entries) => {
                publish_tile(ctx, log, encoder, &t, pos, &entries);
                Ok(t.first + t.leaves.len() as u64)
            }
            Err(f) => Err((f, Some(t))),
        }
    }
}

/// Watches one static-ct-api log until `stop` turns true. `verifier` holds the log's origin
/// and key; `log.source.url` is its monitoring prefix (ending in `/`).
pub async fn run_static_ct(
    ctx: Arc<Ctx>,
    log: Arc<Log>,
    verifier: Arc<Verifier>,
    stop: watch::Receiver<bool>,
) {
    let api = StaticCt {
        verifier,
        verified: 0,
        issuers: Issuers::new(ISSUER_CACHE),
    };
    fetch::run(ctx, log, api, stop).await;
}
