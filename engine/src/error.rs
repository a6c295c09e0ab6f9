//! The engine's error type. Variants are small and carry no allocation on the hot paths
//! (`&'static str` says what and where); I/O and network variants carry their source.

/// Everything that can go wrong between a CT log and a frame.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A JSON body (get-entries, get-sth, log list, positions) does not parse or has the
    /// wrong shape.
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
    /// A certificate does not parse.
    #[error(transparent)]
    X509(#[from] crate::x509::X509Error),
    /// An HTTP request failed before a status arrived (connect, TLS, timeout, body).
    #[error("HTTP request to {url} failed: {reason}")]
    Http { url: String, reason: String },
    /// The log answered with an unexpected status.
    #[error("HTTP {status} from {url}")]
    Status { url: String, status: u16 },
    /// A response is well-formed JSON but says something impossible (entries out of range,
    /// shrinking tree).
    #[error("log misbehaved: {0}")]
    Protocol(String),
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
