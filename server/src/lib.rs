//! certstream server: HTTP and websocket serving, thread per core, and the binary's library.
//!
//! # Layout
//! In the order a connection meets them:
//! - [`listen`]: one `SO_REUSEPORT` listener per core.
//! - [`core`]: a serving core: monoio runtime, accept loop, the coalescing tick.
//! - [`router`]: one accepted connection: request head, route, response or upgrade.
//! - [`http`]: request heads (`httparse`), routes, stream query parameters, responses.
//! - [`filter`]: a client's `domain=`/`match=`/`dedup=` subscription, and the core's
//!   matcher that evaluates each certificate once for all of its filters.
//! - [`access`]: the real address behind trusted proxies, the allow list, bearer tokens.
//! - [`handshake`]: the websocket upgrade; [`deflate`]: permessage-deflate, shared.
//! - [`sse`]: the streams as Server-Sent Events (`Accept: text/event-stream`, `/sse`).
//! - [`fanout`]: a core's stream log and clients: ring drain, heartbeats, slow clients.
//! - [`stream_log`]: the recent stream, once per core, in cursor order; resume by cursor.
//! - [`wire`]: a certificate's wire forms (websocket, deflated, SSE), made once per core.
//! - [`conn`]: one client: a position in the log, vectored writer, fastwebsockets reader.
//! - [`shared`]: settings, per-core counters and connection limits every core shares.
//! - [`report`]: `/latest.json`, `/example.json`, `/stats`, `/metrics`; [`page`]: the index.
//! - [`health`]: `/health` and `/health/deep` (each log's state, a log behind its position).
//! - [`upstream`]: beyond one machine: the ingest node publishes to NATS JetStream, edge
//!   nodes consume it into their hub (same bytes, same cursors) and replay old `since`.
//! - [`service`]: ingest thread + cores; `start`/`run` (tests start it on `127.0.0.1:0`).
//! - [`cli`]: options and subcommands; [`tools`]: `decode` and `cert`.

pub mod access;
pub mod cli;
pub mod conn;
pub mod core;
pub mod deflate;
pub mod fanout;
pub mod filter;
pub mod handshake;
pub mod health;
pub mod http;
pub mod listen;
pub mod page;
pub mod report;
pub mod router;
pub mod service;
pub mod shared;
pub mod sse;
pub mod stream_log;
pub mod tools;
pub mod upstream;
pub mod wire;

pub use service::{run, start, Config, Server};
