//! certstream server: the `certstream-server` binary's library.
//!
//! # Layout
//! - [`cli`]: command-line options and environment variables; `main` dispatches here.
//! - [`tools`]: the `decode` and `cert` subcommands (the format, checkable offline).
//! - [`service`]: the running service: ingest (watchers) and its sink.

pub mod cli;
pub mod service;
pub mod tools;
