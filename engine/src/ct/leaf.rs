//! RFC 6962 `get-entries` bodies → decoded log entries.
//!
//! A body is `{"entries":[{"leaf_input":b64,"extra_data":b64},...]}` (parsed with simd-json).
//! `leaf_input` is a `MerkleTreeLeaf` (RFC 6962 §3.4): version, leaf type, then a
//! `TimestampedEntry` whose `entry_type` says whether it carries an X.509 certificate or a
//! precertificate's TBS. `extra_data` carries the chain (§4.6): for an `x509_entry` the
//! `certificate_chain`; for a `precert_entry` the `pre_certificate` (the leaf certstream
//! shows) followed by the `precertificate_chain`.
//!
//! All certificates of an entry are slices of one decoded buffer (`Bytes`), so nothing is
//! copied after the base64 decode.

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;

use crate::error::Error;

/// Which kind of entry a leaf is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// `x509_entry`: `update_type` `X509LogEntry`.
    X509,
    /// `precert_entry`: `update_type` `PrecertLogEntry`.
    Precert,
}

impl EntryKind {
    /// The `update_type` text of certstream messages.
    pub fn update_type(self) -> &'static str {
        match self {
            EntryKind::X509 => "X509LogEntry",
            EntryKind::Precert => "PrecertLogEntry",
        }
    }
}

/// One decoded log entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: EntryKind,
    /// `TimestampedEntry.timestamp`, milliseconds since the epoch.
    pub timestamp_ms: u64,
    /// The certificate certstream shows as `leaf_cert` (the pre-certificate for precerts).
    pub leaf: Bytes,
    /// The chain from `extra_data`, in log order.
    pub chain: Vec<Bytes>,
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    entries: Vec<RawEntry<'a>>,
}

/// One `get-entries` element, still base64.
#[derive(Deserialize, Debug)]
pub struct RawEntry<'a> {
    #[serde(borrow)]
    pub leaf_input: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub extra_data: std::borrow::Cow<'a, str>,
}

/// Parses a `get-entries` body in place (simd-json rewrites the buffer) into raw entries.
pub fn parse_get_entries(body: &mut [u8]) -> Result<Vec<RawEntry<'_>>, Error> {
    let parsed: Body<'_> = simd_json::serde::from_slice(body)
        .map_err(|_| Error::Protocol("get-entries body is not the expected JSON"))?;
    Ok(parsed.entries)
}

/// Decodes one `get-entries` element.
pub fn decode(raw: &RawEntry<'_>) -> Result<Entry, Error> {
    decode_b64(raw.leaf_input.as_bytes(), raw.extra_data.as_bytes())
}

/// Decodes the base64 `leaf_input` and `extra_data` of one entry.
pub fn decode_b64(leaf_input: &[u8], extra_data: &[u8]) -> Result<Entry, Error> {
    let b64 = &base64::engine::general_purpose::STANDARD;
    let leaf = b64
        .decode(leaf_input)
        .map_err(|_| Error::Base64("leaf_input"))?;
    let extra = b64
        .decode(extra_data)
        .map_err(|_| Error::Base64("extra_data"))?;
    decode_der(&leaf, Bytes::from(extra))
}

/// Decodes a binary `MerkleTreeLeaf` and its binary `extra_data`.
pub fn decode_der(leaf_input: &[u8], extra: Bytes) -> Result<Entry, Error> {
    let mut r = Reader::new(leaf_input);
    let version = r.u8()?;
    if version != 0 {
        return Err(Error::Leaf("unknown MerkleTreeLeaf version"));
    }
    let leaf_type = r.u8()?;
    if leaf_type != 0 {
        return Err(Error::Leaf("unknown MerkleTreeLeaf leaf_type"));
    }
    let timestamp_ms = r.u64()?;
    let entry_type = r.u16()?;
    let mut x = Reader::new(&extra);
    let (kind, leaf, chain_bytes) = match entry_type {
        0 => {
            let cert = r.vec24()?;
            let chain = x
                .vec24()
                .map_err(|_| Error::Leaf("truncated certificate_chain"))?;
            (EntryKind::X509, Cert::Leaf(cert), chain)
        }
        1 => {
            let _issuer_key_hash = r.take(32)?;
            let _tbs = r.vec24()?;
            let pre = x
                .vec24()
                .map_err(|_| Error::Leaf("truncated pre_certificate"))?;
            let chain = x
                .vec24()
                .map_err(|_| Error::Leaf("truncated precertificate_chain"))?;
            (EntryKind::Precert, Cert::Extra(pre), chain)
        }
        _ => return Err(Error::Leaf("unknown entry_type")),
    };
    let _extensions = r.vec16()?;
    let leaf = match leaf {
        // The x509 leaf lives in `leaf_input`: one small copy into its own `Bytes`.
        Cert::Leaf(der) => Bytes::copy_from_slice(der),
        Cert::Extra(der) => extra.slice_ref(der),
    };
    let mut chain = Vec::new();
    let mut c = Reader::new(chain_bytes);
    while !c.is_empty() {
        let der = c
            .vec24()
            .map_err(|_| Error::Leaf("truncated chain certificate"))?;
        chain.push(extra.slice_ref(der));
    }
    Ok(Entry {
        kind,
        timestamp_ms,
        leaf,
        chain,
    })
}

enum Cert<'a> {
    Leaf(&'a [u8]),
    Extra(&'a [u8]),
}

/// A bounds-checked big-endian reader of TLS presentation-language structures.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// What is left to read.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.buf.len() < n {
            return Err(Error::Leaf("truncated structure"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn uint(&mut self, n: usize) -> Result<u64, Error> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.uint(1)? as u8)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Error> {
        Ok(self.uint(2)? as u16)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Error> {
        self.uint(8)
    }

    pub(crate) fn vec16(&mut self) -> Result<&'a [u8], Error> {
        let n = self.uint(2)? as usize;
        self.take(n)
    }

    pub(crate) fn vec24(&mut self) -> Result<&'a [u8], Error> {
        let n = self.uint(3)? as usize;
        self.take(n)
    }
}

/// Builds the binary `MerkleTreeLeaf` of an x509 entry (the simulator and tests use it).
pub fn encode_x509_leaf(timestamp_ms: u64, cert: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cert.len() + 17);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    put_vec24(&mut out, cert);
    out.extend_from_slice(&0u16.to_be_bytes());
    out
}

/// Builds the `extra_data` of an x509 entry: the `certificate_chain`.
pub fn encode_x509_extra<'a>(chain: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut inner = Vec::new();
    for c in chain {
        put_vec24(&mut inner, c);
    }
    let mut out = Vec::with_capacity(inner.len() + 3);
    put_vec24(&mut out, &inner);
    out
}

pub(crate) fn put_vec24(out: &mut Vec<u8>, data: &[u8]) {
    let n = data.len() as u32;
    out.extend_from_slice(&n.to_be_bytes()[1..]);
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x509_roundtrip() {
        let leaf = encode_x509_leaf(1234, b"LEAF");
        let extra = encode_x509_extra([&b"CA1"[..], &b"CA2"[..]]);
        let e = decode_der(&leaf, Bytes::from(extra)).unwrap();
        assert_eq!(e.kind, EntryKind::X509);
        assert_eq!(e.timestamp_ms, 1234);
        assert_eq!(&e.leaf[..], b"LEAF");
        assert_eq!(e.chain.len(), 2);
        assert_eq!(&e.chain[1][..], b"CA2");
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let leaf = encode_x509_leaf(1234, b"LEAFCERT");
        let extra = encode_x509_extra([&b"CA1"[..]]);
        for n in 0..leaf.len() {
            assert!(decode_der(&leaf[..n], Bytes::from(extra.clone())).is_err());
        }
        for n in 0..extra.len() {
            assert!(decode_der(&leaf, Bytes::copy_from_slice(&extra[..n])).is_err());
        }
    }

    #[test]
    fn bad_base64_and_json_are_errors() {
        assert!(matches!(
            decode_b64(b"!!!", b""),
            Err(Error::Base64("leaf_input"))
        ));
        for body in [
            &b""[..],
            b"{",
            b"[]",
            b"{\"entries\":[{\"leaf_input\":1}]}",
            b"\xff\xfe",
        ] {
            let mut b = body.to_vec();
            assert!(parse_get_entries(&mut b).is_err(), "{body:?}");
        }
    }

    #[test]
    fn unknown_versions_are_rejected() {
        let mut leaf = encode_x509_leaf(1, b"X");
        leaf[0] = 1;
        assert!(decode_der(&leaf, Bytes::new()).is_err());
        let mut leaf = encode_x509_leaf(1, b"X");
        leaf[11] = 7;
        assert!(decode_der(&leaf, Bytes::new()).is_err());
    }
}
