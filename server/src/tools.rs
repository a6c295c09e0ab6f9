//! `decode` and `cert`: certstream's format from files, without a network.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context as _;
use certstream_engine::json::{cert_object, Encoder, Link, LogSource};
use certstream_engine::{frame, leaf};

/// Which message variant to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stream {
    Lite,
    Full,
    Domains,
}

/// Options of `decode`.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    pub stream: Stream,
    pub index: u64,
    pub source_url: String,
    pub source_name: String,
    /// Fixed `seen` (for reproducible output); the current time when `None`.
    pub seen: Option<f64>,
}

/// What `decode` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DecodeReport {
    pub printed: u64,
    pub skipped: u64,
    pub leaf_errors: u64,
}

/// Reads a file, or stdin for `-`.
pub fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut data = Vec::new();
    if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut data)?;
    } else {
        data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(data)
}

/// Turns a get-entries body into one message per line on `out`.
pub fn decode(
    mut body: Vec<u8>,
    opts: &DecodeOptions,
    out: &mut dyn Write,
) -> anyhow::Result<DecodeReport> {
    let entries = leaf::parse_get_entries(&mut body).context("not a get-entries body")?;
    let source = LogSource::new(0, &opts.source_url, &opts.source_name, None);
    let mut encoder = Encoder::default();
    let mut report = DecodeReport::default();
    for (i, raw) in entries.iter().enumerate() {
        let index = opts.index + i as u64;
        let entry = match leaf::decode(raw) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(index, error = %e, "entry skipped");
                report.skipped += 1;
                continue;
            }
        };
        let seen = opts.seen.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)
        });
        let enc = encoder.encode(&source, index, Link::GetEntries, &entry, seen);
        if let Some(e) = &enc.leaf_error {
            tracing::warn!(index, error = %e, "leaf certificate does not parse; printed with what could be read");
            report.leaf_errors += 1;
        }
        // `decode` prints the original server's messages: no cursor.
        let frames = enc.draft.unstamped();
        let f = match opts.stream {
            Stream::Lite => &frames.lite,
            Stream::Full => &frames.full,
            Stream::Domains => &frames.domains,
        };
        out.write_all(frame::payload(f))?;
        out.write_all(b"\n")?;
        report.printed += 1;
    }
    Ok(report)
}

/// Reads one certificate, DER or PEM.
pub fn read_cert(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let trimmed = data.trim_ascii_start();
    if trimmed.starts_with(b"-----BEGIN") {
        use rustls_pki_types::pem::PemObject as _;
        let cert = rustls_pki_types::CertificateDer::from_pem_slice(trimmed)
            .map_err(|e| anyhow::anyhow!("bad PEM certificate: {e}"))?;
        Ok(cert.to_vec())
    } else {
        Ok(data.to_vec())
    }
}

/// The `leaf_cert` object of one certificate (as the full stream shows it).
pub fn cert(data: &[u8], out: &mut dyn Write) -> anyhow::Result<()> {
    let der = read_cert(data)?;
    let (json, err) = cert_object(&der);
    if let Some(e) = err {
        tracing::warn!(error = %e, "certificate does not parse; printed with what could be read");
    }
    out.write_all(&json)?;
    out.write_all(b"\n")?;
    Ok(())
}
