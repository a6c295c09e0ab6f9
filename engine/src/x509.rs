//! X.509 → the certificate fields of a certstream message.
//!
//! The texts follow what the original Python server produced through pyOpenSSL on
//! OpenSSL 1.1.1 (`X509V3_EXT_print`, `X509_NAME` one-line forms); `../shared/corpus/expected/`
//! is the ground truth.

/// A distinguished name as certstream prints it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Name {
    /// Every attribute in certificate order as `/<short name>=<value>`.
    pub aggregated: String,
    pub c: Option<String>,
    pub st: Option<String>,
    pub l: Option<String>,
    pub o: Option<String>,
    pub ou: Option<String>,
    pub cn: Option<String>,
}

/// Everything certstream prints about one certificate, except `as_der`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CertFields {
    pub subject: Name,
    pub issuer: Name,
    /// `(OpenSSL short name, X509V3_EXT_print text)` in certificate order.
    pub extensions: Vec<(String, String)>,
    /// Epoch seconds, UTC.
    pub not_before: i64,
    pub not_after: i64,
    /// Lowercase hex, no leading zeros.
    pub serial_number: String,
    /// SHA-1 of the DER, uppercase colon-separated hex.
    pub fingerprint: String,
    /// SHA-256 of the DER, uppercase hex.
    pub sha256: String,
    /// Subject CN, then every SAN dNSName, exact duplicates removed.
    pub all_domains: Vec<String>,
}

/// Why a certificate could not be turned into fields.
#[derive(Debug, thiserror::Error)]
pub enum X509Error {
    #[error("certificate DER does not parse: {0}")]
    Der(String),
}

/// Parses one DER certificate into its certstream fields.
pub fn parse_cert(_der: &[u8]) -> Result<CertFields, X509Error> {
    Err(X509Error::Der("not implemented".into()))
}
