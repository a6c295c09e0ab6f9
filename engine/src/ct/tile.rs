//! static-ct-api data tiles → decoded log entries.
//!
//! A static-ct-api log serves its entries 256 at a time in data tiles at
//! `<monitoring prefix>/tile/data/<N>[.p/<W>]` (c2sp.org/static-ct-api, c2sp.org/tlog-tiles):
//! `<N>` in 3-digit path elements, all but the last prefixed with `x` (1234067 →
//! `x001/x234/067`); `.p/<W>` marks a partial tile of `W` (1..=255) entries, which exists
//! only at the right edge of the tree. A tile is a sequence of
//!
//! ```text
//! struct {
//!     TimestampedEntry timestamped_entry;          // RFC 6962 §3.4
//!     select (entry_type) {
//!         case x509_entry: Empty;
//!         case precert_entry: ASN.1Cert pre_certificate;
//!     };
//!     Fingerprint certificate_chain<0..2^16-1>;     // SHA-256 of each issuer
//! } TileLeaf;
//! ```
//!
//! The issuers themselves are served once each at `<monitoring prefix>/issuer/<hex>`;
//! [`TileLeaf::to_entry`] joins a leaf with them into the same [`Entry`] an RFC 6962
//! `get-entries` answer decodes to, so everything after decoding is shared. The
//! `TimestampedEntry` extensions carry the entry's `leaf_index` (a 40-bit index).
//!
//! Every certificate is a slice of the tile's one `Bytes` buffer: nothing is copied.

use bytes::Bytes;

use crate::error::Error;
use crate::leaf::{self, put_vec24, Entry, EntryKind, Reader};

/// Entries in a full tile.
pub const TILE_WIDTH: u64 = 256;

/// The `leaf_index` extension type of static-ct-api `CtExtensions`.
const EXT_LEAF_INDEX: u8 = 0;

/// The path (relative to the monitoring prefix) of data tile `n` holding `width` entries:
/// `tile/data/<N>` when `width` is 256, `tile/data/<N>.p/<width>` otherwise.
pub fn data_tile_path(n: u64, width: u64) -> String {
    let mut s = String::with_capacity(40);
    s.push_str("tile/data/");
    push_index(&mut s, n);
    if width < TILE_WIDTH {
        s.push_str(".p/");
        s.push_str(itoa::Buffer::new().format(width));
    }
    s
}

/// Writes a tile index as 3-digit path elements, all but the last prefixed with `x`.
fn push_index(s: &mut String, mut n: u64) {
    let mut groups = [0u16; 7];
    let mut len = 0;
    loop {
        groups[len] = (n % 1000) as u16;
        len += 1;
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    for (i, g) in groups[..len].iter().rev().enumerate() {
        if i > 0 {
            s.push('/');
        }
        if i + 1 < len {
            s.push('x');
        }
        let digits = [
            b'0' + (g / 100) as u8,
            b'0' + (g / 10 % 10) as u8,
            b'0' + (g % 10) as u8,
        ];
        s.extend(digits.iter().map(|&b| b as char));
    }
}

/// Parses what follows `tile/data/`: `(n, width)`, width 256 for a full tile. Only the one
/// canonical spelling of each tile is accepted.
pub fn parse_data_tile_path(p: &str) -> Option<(u64, u64)> {
    let (index, width) = match p.split_once(".p/") {
        Some((i, w)) => (i, Some(w)),
        None => (p, None),
    };
    let parts: Vec<&str> = index.split('/').collect();
    let mut n: u64 = 0;
    for (i, part) in parts.iter().enumerate() {
        let digits = if i + 1 < parts.len() {
            part.strip_prefix('x')?
        } else {
            part
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n = n.checked_mul(1000)?.checked_add(digits.parse().ok()?)?;
    }
    // "x000/…" is not how any index is written.
    if parts.len() > 1 && parts[0] == "x000" {
        return None;
    }
    let width = match width {
        None => TILE_WIDTH,
        Some(w) => {
            if w.is_empty() || w.starts_with('0') || !w.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let w: u64 = w.parse().ok()?;
            if !(1..TILE_WIDTH).contains(&w) {
                return None;
            }
            w
        }
    };
    Some((n, width))
}

/// The path (relative to the monitoring prefix) of the issuer with this SHA-256.
pub fn issuer_path(fingerprint: &[u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(7 + 64);
    s.push_str("issuer/");
    for b in fingerprint {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 0xf) as usize] as char);
    }
    s
}

/// One decoded `TileLeaf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileLeaf {
    pub kind: EntryKind,
    /// `TimestampedEntry.timestamp`, milliseconds since the epoch.
    pub timestamp_ms: u64,
    /// The whole `TimestampedEntry` (a `MerkleTreeLeaf` without its two header bytes).
    pub timestamped_entry: Bytes,
    /// Its `extensions` (the body, without the length prefix).
    pub extensions: Bytes,
    /// The certificate certstream shows: the certificate of an x509 entry, the
    /// `pre_certificate` of a precert entry.
    pub leaf: Bytes,
    /// The `leaf_index` extension, when present and well-formed.
    pub leaf_index: Option<u64>,
    /// SHA-256 fingerprints of the chain's issuers, in chain order.
    pub chain: Vec<[u8; 32]>,
}

/// The fields of a `TimestampedEntry`, as slices of the buffer being read.
struct Timestamped<'a> {
    timestamp_ms: u64,
    kind: EntryKind,
    /// The x509 certificate (None for a precert: its TBS is not what certstream shows).
    cert: Option<&'a [u8]>,
    extensions: &'a [u8],
}

fn read_timestamped<'a>(r: &mut Reader<'a>) -> Result<Timestamped<'a>, Error> {
    let timestamp_ms = r.u64()?;
    let (kind, cert) = match r.u16()? {
        0 => (EntryKind::X509, Some(r.vec24()?)),
        1 => {
            let _issuer_key_hash = r.take(32)?;
            let _tbs = r.vec24()?;
            (EntryKind::Precert, None)
        }
        _ => return Err(Error::Leaf("unknown entry_type")),
    };
    let extensions = r.vec16()?;
    Ok(Timestamped {
        timestamp_ms,
        kind,
        cert,
        extensions,
    })
}

/// The `leaf_index` in a `CtExtensions` body.
pub fn leaf_index(extensions: &[u8]) -> Option<u64> {
    let mut r = Reader::new(extensions);
    while !r.is_empty() {
        let t = r.u8().ok()?;
        let data = r.vec16().ok()?;
        if t == EXT_LEAF_INDEX {
            return (data.len() == 5).then(|| Reader::new(data).uint(5).ok())?;
        }
    }
    None
}

/// Decodes a data tile that must hold exactly `width` entries (fewer, more or a cut-off
/// entry is an error: the tile is fetched again, never partly used).
pub fn decode_tile(body: &Bytes, width: usize) -> Result<Vec<TileLeaf>, Error> {
    let mut r = Reader::new(body);
    let mut out = Vec::with_capacity(width.min(TILE_WIDTH as usize));
    for _ in 0..width {
        if r.is_empty() {
            return Err(Error::Leaf("data tile holds fewer entries than its width"));
        }
        out.push(decode_leaf(&mut r, body)?);
    }
    if !r.is_empty() {
        return Err(Error::Leaf("data tile holds more than its width"));
    }
    Ok(out)
}

/// Decodes one `TileLeaf` from `r`, a reader over `body`.
fn decode_leaf(r: &mut Reader<'_>, body: &Bytes) -> Result<TileLeaf, Error> {
    let start = r.rest();
    let t = read_timestamped(r)?;
    let te = &start[..start.len() - r.rest().len()];
    let leaf = match t.cert {
        Some(c) => c,
        None => r.vec24()?,
    };
    let chain_bytes = r.vec16()?;
    if chain_bytes.len() % 32 != 0 {
        return Err(Error::Leaf("certificate_chain is not whole fingerprints"));
    }
    let chain = chain_bytes
        .chunks_exact(32)
        .map(|c| {
            let mut fp = [0u8; 32];
            fp.copy_from_slice(c);
            fp
        })
        .collect();
    Ok(TileLeaf {
        kind: t.kind,
        timestamp_ms: t.timestamp_ms,
        timestamped_entry: body.slice_ref(te),
        extensions: body.slice_ref(t.extensions),
        leaf: body.slice_ref(leaf),
        leaf_index: leaf_index(t.extensions),
        chain,
    })
}

impl TileLeaf {
    /// The entry with its chain: `chain[i]` is the issuer whose SHA-256 is `self.chain[i]`.
    pub fn to_entry(&self, chain: Vec<Bytes>) -> Entry {
        Entry {
            kind: self.kind,
            timestamp_ms: self.timestamp_ms,
            leaf: self.leaf.clone(),
            chain,
        }
    }

    /// An x509 entry for `cert` (the simulator builds its broken entries with it).
    pub fn x509(timestamp_ms: u64, cert: &[u8], chain: Vec<[u8; 32]>) -> TileLeaf {
        let mut te = Vec::with_capacity(cert.len() + 15);
        te.extend_from_slice(&timestamp_ms.to_be_bytes());
        te.extend_from_slice(&0u16.to_be_bytes());
        put_vec24(&mut te, cert);
        te.extend_from_slice(&0u16.to_be_bytes());
        let te = Bytes::from(te);
        TileLeaf {
            kind: EntryKind::X509,
            timestamp_ms,
            leaf: te.slice(13..13 + cert.len()),
            extensions: Bytes::new(),
            timestamped_entry: te,
            leaf_index: None,
            chain,
        }
    }

    /// The same entry from an RFC 6962 `MerkleTreeLeaf` and its `extra_data`, with the
    /// chain certificates it names (their SHA-256 are the leaf's fingerprints).
    pub fn from_rfc6962(leaf_input: &[u8], extra: Bytes) -> Result<(TileLeaf, Vec<Bytes>), Error> {
        let entry = leaf::decode_der(leaf_input, extra)?;
        let te = Bytes::copy_from_slice(&leaf_input[2..]);
        let mut r = Reader::new(&te);
        let t = read_timestamped(&mut r)?;
        if !r.is_empty() {
            return Err(Error::Leaf("bytes after the TimestampedEntry"));
        }
        let extensions = te.slice_ref(t.extensions);
        let chain = entry
            .chain
            .iter()
            .map(|c| crate::checkpoint::sha256(c))
            .collect();
        Ok((
            TileLeaf {
                kind: entry.kind,
                timestamp_ms: entry.timestamp_ms,
                leaf_index: leaf_index(&extensions),
                extensions,
                timestamped_entry: te,
                leaf: entry.leaf,
                chain,
            },
            entry.chain,
        ))
    }

    /// Appends this entry as a `TileLeaf` whose `leaf_index` extension says `index` (other
    /// extensions are kept), as the simulator serves a pool of entries at any index.
    pub fn encode_at(&self, index: u64, out: &mut Vec<u8>) {
        let te = &self.timestamped_entry;
        let head = te.len().saturating_sub(2 + self.extensions.len());
        out.extend_from_slice(&te[..head]);
        let mut ext = Vec::with_capacity(8 + self.extensions.len());
        ext.extend_from_slice(&[EXT_LEAF_INDEX, 0, 5]);
        ext.extend_from_slice(&index.to_be_bytes()[3..]);
        let mut r = Reader::new(&self.extensions);
        while !r.is_empty() {
            let (Ok(t), Ok(data)) = (r.u8(), r.vec16()) else {
                break;
            };
            if t != EXT_LEAF_INDEX {
                ext.push(t);
                ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
                ext.extend_from_slice(data);
            }
        }
        out.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        out.extend_from_slice(&ext);
        if self.kind == EntryKind::Precert {
            put_vec24(out, &self.leaf);
        }
        out.extend_from_slice(&((self.chain.len() * 32) as u16).to_be_bytes());
        for fp in &self.chain {
            out.extend_from_slice(fp);
        }
    }

    /// The RFC 6962 `MerkleTreeLeaf` (`leaf_input`) of this entry.
    pub fn merkle_tree_leaf(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.timestamped_entry.len());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.timestamped_entry);
        out
    }

    /// The RFC 6962 `extra_data` of this entry, given its chain certificates.
    pub fn extra_data(&self, chain: &[Bytes]) -> Vec<u8> {
        let certs = leaf::encode_x509_extra(chain.iter().map(|c| &c[..]));
        match self.kind {
            EntryKind::X509 => certs,
            EntryKind::Precert => {
                let mut out = Vec::with_capacity(self.leaf.len() + 3 + certs.len());
                put_vec24(&mut out, &self.leaf);
                out.extend_from_slice(&certs);
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_paths() {
        assert_eq!(data_tile_path(0, 256), "tile/data/000");
        assert_eq!(data_tile_path(3, 10), "tile/data/003.p/10");
        assert_eq!(data_tile_path(1000, 256), "tile/data/x001/000");
        assert_eq!(data_tile_path(1234067, 256), "tile/data/x001/x234/067");
        assert_eq!(data_tile_path(1234067, 1), "tile/data/x001/x234/067.p/1");
        assert_eq!(
            data_tile_path(u64::MAX, 256),
            "tile/data/x018/x446/x744/x073/x709/x551/615"
        );
        for (n, w) in [
            (0, 256),
            (5, 1),
            (999, 255),
            (1000, 7),
            (1234067, 256),
            (u64::MAX, 3),
        ] {
            let p = data_tile_path(n, w);
            assert_eq!(
                parse_data_tile_path(p.strip_prefix("tile/data/").unwrap()),
                Some((n, w)),
                "{p}"
            );
        }
        for bad in [
            "",
            "0",
            "0000",
            "x001",
            "001/000",
            "x000/001",
            "x01/000",
            "000.p/0",
            "000.p/256",
            "000.p/05",
            "000.p/",
            "000.p/1/2",
            "abc",
            "x018/x446/x744/x073/x709/x551/616",
        ] {
            assert_eq!(parse_data_tile_path(bad), None, "{bad:?}");
        }
        assert_eq!(
            issuer_path(&[0xab; 32]),
            format!("issuer/{}", "ab".repeat(32))
        );
    }

    fn sample() -> (Vec<TileLeaf>, Vec<u8>) {
        let x = TileLeaf::x509(1000, b"CERT-ONE", vec![[1; 32], [2; 32]]);
        // A precert entry, built from its RFC 6962 form.
        let mut li = vec![0u8, 0];
        li.extend_from_slice(&2000u64.to_be_bytes());
        li.extend_from_slice(&1u16.to_be_bytes());
        li.extend_from_slice(&[9; 32]);
        put_vec24(&mut li, b"TBS");
        li.extend_from_slice(&[0, 8, 0, 0, 5, 0, 0, 0, 0, 42]);
        let mut extra = Vec::new();
        put_vec24(&mut extra, b"PRECERT");
        extra.extend_from_slice(&leaf::encode_x509_extra([&b"ISSUER"[..]]));
        let (p, chain) = TileLeaf::from_rfc6962(&li, Bytes::from(extra.clone())).unwrap();
        assert_eq!(p.leaf_index, Some(42));
        assert_eq!(&chain[0][..], b"ISSUER");
        assert_eq!(p.merkle_tree_leaf(), li);
        assert_eq!(p.extra_data(&chain), extra);
        let leaves = vec![x, p];
        let mut tile = Vec::new();
        for (i, l) in leaves.iter().enumerate() {
            l.encode_at(7 + i as u64, &mut tile);
        }
        (leaves, tile)
    }

    #[test]
    fn encode_decode_roundtrip() {
        let (leaves, tile) = sample();
        let got = decode_tile(&Bytes::from(tile), 2).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].kind, EntryKind::X509);
        assert_eq!(&got[0].leaf[..], b"CERT-ONE");
        assert_eq!(got[0].chain, vec![[1; 32], [2; 32]]);
        assert_eq!(got[0].leaf_index, Some(7));
        assert_eq!(got[1].kind, EntryKind::Precert);
        assert_eq!(&got[1].leaf[..], b"PRECERT");
        assert_eq!(got[1].timestamp_ms, 2000);
        assert_eq!(got[1].leaf_index, Some(8));
        assert_eq!(got[1].chain, leaves[1].chain);
        let e = got[1].to_entry(vec![Bytes::from_static(b"ISSUER")]);
        assert_eq!(
            (e.kind, e.timestamp_ms, &e.leaf[..]),
            (EntryKind::Precert, 2000, &b"PRECERT"[..])
        );
        // Re-encoding at the same index gives the same bytes.
        let mut again = Vec::new();
        for (i, l) in got.iter().enumerate() {
            l.encode_at(7 + i as u64, &mut again);
        }
        assert_eq!(again, sample().1);
    }

    #[test]
    fn widths_must_match() {
        let (_, tile) = sample();
        let tile = Bytes::from(tile);
        assert!(decode_tile(&tile, 1).is_err());
        assert!(decode_tile(&tile, 3).is_err());
        assert!(decode_tile(&Bytes::new(), 1).is_err());
        assert!(decode_tile(&Bytes::new(), 0).unwrap().is_empty());
    }

    #[test]
    fn every_truncation_and_garbage_is_an_error_not_a_panic() {
        let (_, tile) = sample();
        for n in 0..tile.len() {
            assert!(decode_tile(&Bytes::copy_from_slice(&tile[..n]), 2).is_err());
        }
        // Every single-byte change decodes or fails, never panics.
        for i in 0..tile.len() {
            for x in [0x01, 0x80, 0xff] {
                let mut b = tile.clone();
                b[i] ^= x;
                let _ = decode_tile(&Bytes::from(b), 2);
            }
        }
        let mut seed = 0x1234_5678_9abc_def0u64;
        for len in 0..400 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = decode_tile(&Bytes::from(junk), 3);
        }
        assert!(decode_tile(&Bytes::from_static(b"<html>not a tile</html>"), 1).is_err());
    }

    #[test]
    fn leaf_index_extension() {
        assert_eq!(leaf_index(&[0, 0, 5, 0, 0, 0, 1, 2]), Some(258));
        assert_eq!(
            leaf_index(&[7, 0, 1, 9, 0, 0, 5, 1, 0, 0, 0, 0]),
            Some(1 << 32)
        );
        assert_eq!(leaf_index(&[0, 0, 4, 0, 0, 1, 2]), None);
        assert_eq!(leaf_index(&[0, 0, 5, 0]), None);
        assert_eq!(leaf_index(&[]), None);
    }
}
