//! certstream engine: from Certificate Transparency logs to pre-encoded certstream frames.
//!
//! # Layout
//! In pipeline order:
//! - [`loglist`]: Google's v3 log list → the logs to watch.
//! - [`http`]: the HTTPS client (rustls) every watcher shares.
//! - [`ingest`]: the supervisor: log list refresh, one watcher per log, position saving.
//! - [`watcher`]: one task per RFC 6962 log: `get-sth`, `get-entries`, backoff, rate limits.
//! - [`tiled`]: one task per static-ct-api log: checkpoint, data tiles, issuers; the same
//!   backoff, rate limits, positions and publishing as [`watcher`].
//! - [`checkpoint`]: static-ct-api checkpoints (signed notes) → a verified tree size.
//! - [`positions`]: where each log was left, saved atomically, resumed on restart.
//! - [`leaf`]: `get-entries` bodies → `MerkleTreeLeaf` + `extra_data` → DER certificates.
//! - [`tile`]: static-ct-api data tiles → `TileLeaf`s → the same entries as [`leaf`].
//! - [`x509`]: a DER certificate → certstream's certificate fields (OpenSSL 1.1.1 texts).
//! - [`json`]: fields → the lite, full and domains-only messages, written once.
//! - [`frame`]: websocket frame headers around those messages; [`frame::Frames`].
//! - [`hub`]: fanout hand-off: one bounded SPSC ring per serving core; a full ring sheds.
//! - [`stats`]: counters the server exposes in `/stats` and `/metrics`.
//! - [`sim`]: a CT log simulator (tests, benchmarks, `--demo`).
#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod error;
pub mod frame;
pub mod http;
pub mod hub;
pub mod ingest;
pub mod json;
pub mod leaf;
pub mod loglist;
pub mod positions;
pub mod sim;
pub mod stats;
pub mod tile;
pub mod tiled;
pub mod watcher;
pub mod x509;

pub use error::Error;
pub use frame::Frames;
