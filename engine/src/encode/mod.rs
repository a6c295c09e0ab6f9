//! From certificate fields to the bytes every client is sent, encoded once.
//!
//! # Layout
//! In pipeline order:
//! - [`json`]: fields → the lite, full and domains-only messages, written once.
//! - [`frame`]: websocket frame headers around those messages; [`frame::Frames`].
//! - [`issuance`]: the key that is the same for a certificate in every log and for a
//!   precertificate and its certificate (dedup at publish).

pub mod frame;
pub mod issuance;
pub mod json;
