//! certstream engine: from Certificate Transparency logs to pre-encoded certstream frames.
//!
//! # Layout
//! One folder per stage, in pipeline order:
//! - [`ct`]: the CT logs' side, from the log list to decoded entries:
//!   - [`loglist`]: Google's v3 log list → the logs to watch.
//!   - [`ingest`]: the supervisor: log list refresh, one watcher per log, position saving.
//!   - [`http`]: the HTTPS client (rustls) every watcher shares.
//!   - [`fetch`]: the fetch pipeline every watcher runs: ranges in flight, consumed in order,
//!     backoff, rate limits, positions, publishing; a log kind says only what differs.
//!   - [`watcher`]: RFC 6962 logs: `get-sth`, `get-entries` batches, the learned batch cap.
//!   - [`tiled`]: static-ct-api logs: verified checkpoints, data tiles, issuers.
//!   - [`checkpoint`]: static-ct-api checkpoints (signed notes) → a verified tree size.
//!   - [`leaf`]: `get-entries` bodies → `MerkleTreeLeaf` + `extra_data` → DER certificates.
//!   - [`tile`]: static-ct-api data tiles → `TileLeaf`s → the same entries as [`leaf`].
//!   - [`positions`]: where each log was left, saved atomically, resumed on restart.
//! - [`cert`]: [`x509`]: a DER certificate → certstream's certificate fields (OpenSSL 1.1.1
//!   texts).
//! - [`encode`]: the bytes every client is sent, written once:
//!   - [`json`]: fields → the lite, full and domains-only messages.
//!   - [`frame`]: websocket frame headers around those messages; [`frame::Frames`].
//!   - [`issuance`]: a certificate's issuance key (the same in every log, and for a
//!     precertificate and its certificate), for dedup at publish.
//! - [`hub`]: fanout hand-off: the [`hub::Sink`] watchers publish into, and one bounded SPSC
//!   ring per serving core behind it; a full ring sheds.
//!
//! Beside the data path: [`stats`] (counters the server exposes in `/stats` and `/metrics`)
//! and [`error`] (the crate's one error type). The CT log simulator the tests, benches and
//! `--demo` run is the `certstream-sim` crate (`sim/`), so this library does not build a
//! certificate generator or an HTTP server.
//!
//! Every stage's module is also re-exported at the crate root (`certstream_engine::frame`,
//! `certstream_engine::watcher`, ...), the paths the server, benches and fuzz targets use.
#![forbid(unsafe_code)]

pub mod cert;
pub mod ct;
pub mod encode;
pub mod error;
pub mod hub;
pub mod stats;

pub use cert::x509;
pub use ct::{checkpoint, fetch, http, ingest, leaf, loglist, positions, tile, tiled, watcher};
pub use encode::{frame, issuance, json};

pub use error::Error;
pub use frame::Frames;
