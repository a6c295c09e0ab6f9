//! certstream server: HTTP and websocket serving, thread per core, and the binary's library.
//!
//! # Layout
//! In the order a connection meets them:
//! - [`listen`]: one `SO_REUSEPORT` listener per core.
//! - [`http`]: request heads (`httparse`), routes, responses.
//! - [`handshake`]: the websocket upgrade.
//! - [`conn`]: one client: bounded queue, vectored writer, fastwebsockets reader.
//! - [`core`]: a serving core: monoio runtime, ring drain, heartbeats, slow clients.
//! - [`report`]: `/latest.json`, `/example.json`, `/stats`, `/metrics`; [`page`]: the index.
//! - [`service`]: ingest thread + cores; `start`/`run` (tests start it on `127.0.0.1:0`).
//! - [`cli`]: options and subcommands; [`tools`]: `decode` and `cert`.

pub mod cli;
pub mod conn;
pub mod core;
pub mod handshake;
pub mod http;
pub mod listen;
pub mod page;
pub mod report;
pub mod service;
pub mod tools;

pub use service::{run, start, Config, Server};
