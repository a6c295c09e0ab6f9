//! certstream engine: from Certificate Transparency logs to pre-encoded certstream frames.
#![forbid(unsafe_code)]

pub mod x509;
