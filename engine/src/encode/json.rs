//! Decoded entries → the three certstream messages, each written once, straight into a
//! websocket frame buffer ([`crate::frame::Draft`]; the hub stamps the cursor on publish).
//!
//! No `serde_json::Value` tree and no second serialization: the JSON text is appended by
//! hand, in the field order of the original server. Chain certificates repeat in almost every
//! entry of a log (a handful of intermediates), so their encoded objects are cached by DER;
//! only the leaf is parsed per entry.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;

use crate::frame::Draft;
use crate::leaf::Entry;
use crate::x509::{self, CertFields, Name, X509Error};

/// Where a log's entries came from, as printed in `source` and `cert_link`.
#[derive(Debug)]
pub struct LogSource {
    /// Index of the log in the engine's table (carried in [`crate::Frames::log`]).
    pub id: u32,
    /// The log URL as in the log list (`https://host/path/`), or a static-ct monitoring URL.
    pub url: String,
    /// The log's description.
    pub name: String,
    source_json: Box<[u8]>,
    link_prefix: Box<[u8]>,
}

impl LogSource {
    /// Describes a log for the encoder; `operator` is added to `source` when given.
    pub fn new(id: u32, url: &str, name: &str, operator: Option<&str>) -> Self {
        let mut s = Vec::with_capacity(url.len() + name.len() + 40);
        s.extend_from_slice(b"{\"url\":");
        write_str(&mut s, url);
        s.extend_from_slice(b",\"name\":");
        write_str(&mut s, name);
        if let Some(op) = operator {
            s.extend_from_slice(b",\"operator\":");
            write_str(&mut s, op);
        }
        s.push(b'}');
        let mut link = Vec::new();
        write_str_body(&mut link, url);
        if !url.ends_with('/') {
            link.push(b'/');
        }
        link.extend_from_slice(b"ct/v1/get-entries?start=");
        LogSource {
            id,
            url: url.to_owned(),
            name: name.to_owned(),
            source_json: s.into_boxed_slice(),
            link_prefix: link.into_boxed_slice(),
        }
    }
}

/// How `cert_link` is made for an entry.
#[derive(Debug, Clone, Copy)]
pub enum Link<'a> {
    /// RFC 6962: `<url>ct/v1/get-entries?start=<i>&end=<i>`.
    GetEntries,
    /// static-ct-api: the data tile's URL.
    Url(&'a str),
}

/// What encoding one entry produced.
#[derive(Debug)]
pub struct Encoded {
    /// The three messages, waiting for their cursor ([`Draft::stamp`] on publish).
    pub draft: Draft,
    /// Set when the leaf could not be parsed: it was still delivered with what could be read
    /// (DER, fingerprints) and this says why the rest is missing.
    pub leaf_error: Option<X509Error>,
    /// Chain certificates that could not be parsed (delivered the same way).
    pub chain_errors: u32,
}

/// A chain certificate's encoded object, shared by all entries that carry it.
#[derive(Debug)]
struct CachedCert {
    lite: Box<[u8]>,
    full: Box<[u8]>,
    error: bool,
}

/// Hashes a DER certificate by its length and tail (the signature: distinct per certificate),
/// compares it whole.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DerKey(Bytes);

impl Hash for DerKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let d = &self.0[..];
        state.write_usize(d.len());
        state.write(&d[d.len().saturating_sub(32)..]);
    }
}

/// Encodes entries; one per watcher (it owns a cache of chain certificates).
#[derive(Debug)]
pub struct Encoder {
    cache: HashMap<DerKey, Arc<CachedCert>>,
    cache_cap: usize,
    scratch: Vec<u8>,
    b64: String,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl Encoder {
    /// An encoder that keeps at most `cache_cap` chain certificates (cleared when full).
    pub fn new(cache_cap: usize) -> Self {
        Encoder {
            cache: HashMap::new(),
            cache_cap,
            scratch: Vec::with_capacity(8192),
            b64: String::with_capacity(8192),
        }
    }

    /// Encodes one entry into its lite, full and domains-only frames.
    pub fn encode(
        &mut self,
        log: &LogSource,
        index: u64,
        link: Link<'_>,
        entry: &Entry,
        seen: f64,
    ) -> Encoded {
        let (fields, leaf_error) = match x509::parse_cert(&entry.leaf) {
            Ok(f) => (f, None),
            Err(e) => (fallback_fields(&entry.leaf), Some(e)),
        };
        let mut chain = Vec::with_capacity(entry.chain.len());
        let mut chain_errors = 0;
        for der in &entry.chain {
            let c = self.chain_cert(der);
            chain_errors += u32::from(c.error);
            chain.push(c);
        }

        // The leaf object up to (not including) as_der / all_domains: shared by lite and full.
        self.scratch.clear();
        write_cert_fields(&mut self.scratch, &fields);
        let mut domains_json = Vec::with_capacity(64 * fields.all_domains.len().max(1));
        write_str_array(&mut domains_json, &fields.all_domains);
        self.b64.clear();
        base64::engine::general_purpose::STANDARD.encode_string(&entry.leaf, &mut self.b64);

        let mut tail = Vec::with_capacity(160 + log.source_json.len());
        tail.extend_from_slice(b"\"cert_index\":");
        tail.extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
        tail.extend_from_slice(b",\"cert_link\":\"");
        match link {
            Link::GetEntries => {
                let mut n = itoa::Buffer::new();
                let n = n.format(index).as_bytes();
                tail.extend_from_slice(&log.link_prefix);
                tail.extend_from_slice(n);
                tail.extend_from_slice(b"&end=");
                tail.extend_from_slice(n);
            }
            Link::Url(u) => write_str_body(&mut tail, u),
        }
        tail.extend_from_slice(b"\",\"seen\":");
        write_f64(&mut tail, seen);
        tail.extend_from_slice(b",\"source\":");
        tail.extend_from_slice(&log.source_json);
        tail.extend_from_slice(b"}}");

        let head: &[u8] = match entry.kind {
            crate::leaf::EntryKind::X509 => {
                b"\"data\":{\"update_type\":\"X509LogEntry\",\"leaf_cert\":"
            }
            crate::leaf::EntryKind::Precert => {
                b"\"data\":{\"update_type\":\"PrecertLogEntry\",\"leaf_cert\":"
            }
        };
        let chain_lite: usize = chain.iter().map(|c| c.lite.len() + 1).sum();
        let chain_full: usize = chain.iter().map(|c| c.full.len() + 1).sum();
        let common = head.len() + self.scratch.len() + domains_json.len() + tail.len() + 40;

        let mut draft = Draft::new(
            log.id,
            index,
            [
                common + chain_lite,
                common + chain_full + self.b64.len() + 12,
                domains_json.len() + 10,
            ],
        );
        let [lite, full, domains] = draft.bodies();
        for (f, is_full) in [(lite, false), (full, true)] {
            f.extend(head);
            f.extend(&self.scratch);
            if is_full {
                f.extend(b",\"as_der\":\"");
                f.extend(self.b64.as_bytes());
                f.push(b'"');
            }
            f.extend(b",\"all_domains\":");
            f.extend(&domains_json);
            f.extend(b"},\"chain\":[");
            for (i, c) in chain.iter().enumerate() {
                if i > 0 {
                    f.push(b',');
                }
                f.extend(if is_full { &c.full } else { &c.lite });
            }
            f.extend(b"],");
            f.extend(&tail);
        }
        domains.extend(b"\"data\":");
        domains.extend(&domains_json);
        domains.push(b'}');
        draft.names = fields
            .all_domains
            .iter()
            .map(|d| Box::<str>::from(d.as_str()))
            .collect();
        draft.issuance = crate::encode::issuance::issuance_key(&entry.leaf);

        Encoded {
            draft,
            leaf_error,
            chain_errors,
        }
    }

    fn chain_cert(&mut self, der: &Bytes) -> Arc<CachedCert> {
        let key = DerKey(der.clone());
        if let Some(c) = self.cache.get(&key) {
            return c.clone();
        }
        if self.cache.len() >= self.cache_cap {
            self.cache.clear();
        }
        let (fields, error) = match x509::parse_cert(der) {
            Ok(f) => (f, false),
            Err(_) => (fallback_fields(der), true),
        };
        let mut lite = Vec::with_capacity(1024);
        write_cert_fields(&mut lite, &fields);
        let mut full = Vec::with_capacity(lite.len() + der.len() * 4 / 3 + 16);
        full.extend_from_slice(&lite);
        full.extend_from_slice(b",\"as_der\":\"");
        let mut b64 = String::new();
        base64::engine::general_purpose::STANDARD.encode_string(der, &mut b64);
        full.extend_from_slice(b64.as_bytes());
        full.push(b'"');
        lite.push(b'}');
        full.push(b'}');
        let c = Arc::new(CachedCert {
            lite: lite.into_boxed_slice(),
            full: full.into_boxed_slice(),
            error,
        });
        self.cache.insert(key, c.clone());
        c
    }
}

/// What is known of a certificate that does not parse: its hashes (and, in the full stream,
/// its DER). Everything else stays empty so clients still find every field.
fn fallback_fields(der: &[u8]) -> CertFields {
    CertFields {
        fingerprint: x509::fingerprint(der),
        ..CertFields::default()
    }
}

/// Writes `{"subject":...,"extensions":...,...,"fingerprint":"..."` (object left open).
pub fn write_cert_fields(out: &mut Vec<u8>, c: &CertFields) {
    out.extend_from_slice(b"{\"subject\":");
    write_name(out, &c.subject);
    out.extend_from_slice(b",\"extensions\":{");
    let mut first = true;
    for (i, (k, v)) in c.extensions.iter().enumerate() {
        // A repeated extension keeps its first position and its last value (Python dict).
        if c.extensions[..i].iter().any(|(k2, _)| k2 == k) {
            continue;
        }
        let v = c.extensions[i..]
            .iter()
            .rev()
            .find(|(k2, _)| k2 == k)
            .map_or(v, |(_, v)| v);
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(out, k);
        out.push(b':');
        write_str(out, v);
    }
    out.extend_from_slice(b"},\"not_before\":");
    write_epoch(out, c.not_before);
    out.extend_from_slice(b",\"not_after\":");
    write_epoch(out, c.not_after);
    out.extend_from_slice(b",\"serial_number\":");
    write_str(out, &c.serial_number);
    out.extend_from_slice(b",\"fingerprint\":");
    write_str(out, &c.fingerprint);
}

/// The `leaf_cert` object of one certificate as the `cert` subcommand prints it (full form:
/// with `as_der` and `all_domains`).
pub fn cert_object(der: &[u8]) -> (Vec<u8>, Option<X509Error>) {
    let (fields, err) = match x509::parse_cert(der) {
        Ok(f) => (f, None),
        Err(e) => (fallback_fields(der), Some(e)),
    };
    let mut out = Vec::with_capacity(4096);
    write_cert_fields(&mut out, &fields);
    out.extend_from_slice(b",\"as_der\":\"");
    out.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(der)
            .as_bytes(),
    );
    out.extend_from_slice(b"\",\"all_domains\":");
    write_str_array(&mut out, &fields.all_domains);
    out.push(b'}');
    (out, err)
}

/// Writes a JSON array of strings.
fn write_str_array(out: &mut Vec<u8>, items: &[String]) {
    out.push(b'[');
    for (i, d) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, d);
    }
    out.push(b']');
}

fn write_name(out: &mut Vec<u8>, n: &Name) {
    out.extend_from_slice(b"{\"aggregated\":");
    write_str(out, &n.aggregated);
    for (k, v) in [
        (&b",\"C\":"[..], &n.c),
        (b",\"ST\":", &n.st),
        (b",\"L\":", &n.l),
        (b",\"O\":", &n.o),
        (b",\"OU\":", &n.ou),
        (b",\"CN\":", &n.cn),
    ] {
        out.extend_from_slice(k);
        match v {
            Some(s) => write_str(out, s),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}

/// Epoch seconds as a JSON float with one decimal, as Python prints `float(int)`.
fn write_epoch(out: &mut Vec<u8>, secs: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(secs).as_bytes());
    out.extend_from_slice(b".0");
}

/// A float in its shortest round-trip form; integers keep a `.0` (like Python's `repr`).
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"0.0");
    }
}

/// Writes a JSON string (quotes included).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_str_body(out, s);
    out.push(b'"');
}

/// Writes the escaped body of a JSON string (no quotes).
pub fn write_str_body(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f | 0x7f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_as_json() {
        let mut out = Vec::new();
        write_str(&mut out, "a\"b\\c\n\u{1}\u{7f}é");
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s, "\"a\\\"b\\\\c\\n\\u0001\\u007fé\"");
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, "a\"b\\c\n\u{1}\u{7f}é");
    }

    #[test]
    fn floats_look_like_python() {
        let mut out = Vec::new();
        write_epoch(&mut out, 1508123861);
        out.push(b' ');
        write_f64(&mut out, 1732512345.25);
        out.push(b' ');
        write_f64(&mut out, 0.0);
        assert_eq!(out, b"1508123861.0 1732512345.25 0.0");
    }

    #[test]
    fn source_and_link_are_escaped() {
        let s = LogSource::new(3, "https://l.example/a\"b/", "Log \"X\"", Some("Op"));
        let v: serde_json::Value = serde_json::from_slice(&s.source_json).unwrap();
        assert_eq!(v["url"], "https://l.example/a\"b/");
        assert_eq!(v["name"], "Log \"X\"");
        assert_eq!(v["operator"], "Op");
    }
}
