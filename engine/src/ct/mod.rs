//! From the CT logs to decoded entries: which logs, how they are fetched, where each was left.
//!
//! # Layout
//! In pipeline order:
//! - [`loglist`]: Google's v3 log list → the logs to watch.
//! - [`ingest`]: the supervisor: log list refresh, one watcher per log, position saving.
//! - [`http`]: the HTTPS client (rustls) every watcher shares.
//! - [`fetch`]: the fetch pipeline every watcher runs: ranges in flight, consumed in order,
//!   backoff, rate limits, positions, publishing; a log kind says only what differs.
//! - [`watcher`]: RFC 6962 logs: `get-sth`, `get-entries` batches, the learned batch cap.
//! - [`tiled`]: static-ct-api logs: verified checkpoints, data tiles, issuers.
//! - [`checkpoint`]: static-ct-api checkpoints (signed notes) → a verified tree size.
//! - [`leaf`]: `get-entries` bodies → `MerkleTreeLeaf` + `extra_data` → DER certificates.
//! - [`tile`]: static-ct-api data tiles → `TileLeaf`s → the same entries as [`leaf`].
//! - [`positions`]: where each log was left, saved atomically, resumed on restart.

pub mod checkpoint;
pub mod fetch;
pub mod http;
pub mod ingest;
pub mod leaf;
pub mod loglist;
pub mod positions;
pub mod tile;
pub mod tiled;
pub mod watcher;
