//! From certificate fields to the bytes every client is sent, encoded once.
//!
//! # Layout
//! In pipeline order:
//! - [`json`]: fields → the lite, full and domains-only messages, written once.
//! - [`frame`]: websocket frame headers around those messages; [`frame::Frames`].

pub mod frame;
pub mod json;
