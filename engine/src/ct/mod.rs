//! From the CT logs to decoded entries: which logs, how they are fetched, where each was left.
//!
//! # Layout
//! In pipeline order:
//! - [`loglist`]: Google's v3 log list → the logs to watch.
//! - [`ingest`]: the supervisor: log list refresh, one watcher per log, position saving.
//! - [`http`]: the HTTPS client (rustls) every watcher shares.
//! - [`watcher`]: one task per RFC 6962 log: `get-sth`, `get-entries`, backoff, rate limits.
//! - [`tiled`]: one task per static-ct-api log: checkpoint, data tiles, issuers; the same
//!   backoff, rate limits, positions and publishing as [`watcher`].
//! - [`checkpoint`]: static-ct-api checkpoints (signed notes) → a verified tree size.
//! - [`leaf`]: `get-entries` bodies → `MerkleTreeLeaf` + `extra_data` → DER certificates.
//! - [`tile`]: static-ct-api data tiles → `TileLeaf`s → the same entries as [`leaf`].
//! - [`positions`]: where each log was left, saved atomically, resumed on restart.

pub mod checkpoint;
pub mod http;
pub mod ingest;
pub mod leaf;
pub mod loglist;
pub mod positions;
pub mod tile;
pub mod tiled;
pub mod watcher;
