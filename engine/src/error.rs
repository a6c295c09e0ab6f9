//! The engine's one error type.
//!
//! Variants on the decode path (every response body, entry, tile, checkpoint and
//! certificate) carry no allocation: a `&'static str` says what and where, so a bad input
//! costs nothing to report. The variants that carry a `String` are off that path: a failed
//! request, which is followed by a backoff (`Http`, `Status`: the URL), and setup or shutdown
//! (`Json` for the positions file, `LogList`, `Tls`, `Io`: the path and the reason).

/// Everything that can go wrong between a CT log and a frame.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The positions file does not parse or has the wrong shape (read once, at start).
    #[error("bad JSON: {0}")]
    Json(String),
    /// A base64 field does not decode.
    #[error("bad base64 in {0}")]
    Base64(&'static str),
    /// A `MerkleTreeLeaf`, `extra_data` or tile is malformed.
    #[error("bad log entry: {0}")]
    Leaf(&'static str),
    /// A static-ct-api checkpoint does not parse, names another origin, or carries no valid
    /// signature by the log's key.
    #[error("bad checkpoint: {0}")]
    Checkpoint(&'static str),
    /// A log's public key (from the log list) is not one this build verifies with.
    #[error("unusable log key: {0}")]
    Key(&'static str),
    /// A certificate's DER does not parse (empty, truncated, not a SEQUENCE, no
    /// certificate structure).
    #[error("certificate DER does not parse: {0}")]
    X509(&'static str),
    /// An HTTP request failed before a status arrived (connect, TLS, timeout, body).
    #[error("HTTP request to {url} failed: {reason}")]
    Http { url: String, reason: String },
    /// The log answered with an unexpected status.
    #[error("HTTP {status} from {url}")]
    Status { url: String, status: u16 },
    /// A log's answer is not the JSON it should be, or says something impossible (no
    /// entries, an issuer whose body does not hash to its fingerprint).
    #[error("log misbehaved: {0}")]
    Protocol(&'static str),
    /// TLS configuration (CA file, certificates, keys).
    #[error("TLS setup: {0}")]
    Tls(String),
    /// A log list is unusable.
    #[error("log list: {0}")]
    LogList(String),
    /// Reading or writing local files (positions, log lists, corpora).
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
