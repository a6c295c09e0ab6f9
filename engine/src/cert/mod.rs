//! From a DER certificate to certstream's certificate fields.
//!
//! # Layout
//! - [`x509`]: a DER certificate → certstream's certificate fields (OpenSSL 1.1.1 texts).

pub mod x509;
