//! OBJECT IDENTIFIER names as OpenSSL 1.1.1 prints them (`OBJ_nid2sn`, `OBJ_obj2txt`).

use super::oid_table::OBJECTS;
use std::collections::HashMap;
use std::fmt::Write;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

/// FNV-1a: OIDs are a few octets long, so a simple hash beats SipHash and binary search.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

type Index = HashMap<&'static [u8], (&'static str, &'static str), BuildHasherDefault<Fnv>>;

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| OBJECTS.iter().map(|&(k, sn, ln)| (k, (sn, ln))).collect())
}

/// Short and long name of a known OID (by its DER content octets).
#[inline]
pub(crate) fn lookup(oid: &[u8]) -> Option<(&'static str, &'static str)> {
    index().get(oid).copied()
}

/// The short name, if OpenSSL knows the OID.
#[inline]
pub(crate) fn short_name(oid: &[u8]) -> Option<&'static str> {
    lookup(oid).map(|(sn, _)| sn)
}

/// Appends the dotted form of an OID (`OBJ_obj2txt(.., 1)`).
pub(crate) fn push_dotted(out: &mut String, oid: &[u8]) {
    let mut first = true;
    let mut acc: u128 = 0;
    let mut big: Option<Vec<u8>> = None;
    let mut start = 0usize;
    for (i, &b) in oid.iter().enumerate() {
        if big.is_none() {
            if acc > (u128::MAX >> 7) {
                big = Some(Vec::new());
            } else {
                acc = (acc << 7) | u128::from(b & 0x7f);
            }
        }
        if b & 0x80 != 0 {
            continue;
        }
        // End of one arc.
        if big.take().is_some() {
            let dec = big_decimal(&oid[start..=i]);
            if first {
                // Only the joint first two arcs can be this large: X = 2.
                out.push_str("2.");
                out.push_str(&big_minus_80(&dec));
            } else {
                out.push('.');
                out.push_str(&dec);
            }
        } else if first {
            let (a, b) = if acc < 40 {
                (0, acc)
            } else if acc < 80 {
                (1, acc - 40)
            } else {
                (2, acc - 80)
            };
            let _ = write!(out, "{a}.{b}");
        } else {
            let _ = write!(out, ".{acc}");
        }
        first = false;
        acc = 0;
        start = i + 1;
    }
}

/// Decimal text of a base-128 arc too large for u128.
fn big_decimal(arc: &[u8]) -> String {
    // Base-2^32 little-endian limbs.
    let mut limbs: Vec<u32> = vec![0];
    for &b in arc {
        let mut carry = u64::from(b & 0x7f);
        for l in limbs.iter_mut() {
            let v = (u64::from(*l) << 7) | carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            limbs.push(carry as u32);
        }
    }
    let mut digits = Vec::new();
    while limbs.iter().any(|&l| l != 0) {
        let mut rem = 0u64;
        for l in limbs.iter_mut().rev() {
            let v = (rem << 32) | u64::from(*l);
            *l = (v / 10) as u32;
            rem = v % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// Subtracts 80 from a decimal string (the value is known to be far larger).
fn big_minus_80(dec: &str) -> String {
    let mut d: Vec<u8> = dec.bytes().map(|c| c - b'0').collect();
    let mut borrow = 80u32;
    for x in d.iter_mut().rev() {
        if borrow == 0 {
            break;
        }
        let sub = borrow % 10;
        borrow /= 10;
        if u32::from(*x) >= sub {
            *x -= sub as u8;
        } else {
            *x = (*x as u32 + 10 - sub) as u8;
            borrow += 1;
        }
    }
    let s: String = d.iter().map(|&x| (b'0' + x) as char).collect();
    let t = s.trim_start_matches('0');
    if t.is_empty() {
        "0".to_string()
    } else {
        t.to_string()
    }
}

/// `OBJ_obj2txt(buf, cap, oid, 0)`: the long name when known, else dotted; at most `cap - 1`
/// bytes, as OpenSSL's fixed buffers truncate.
pub(crate) fn push_text(out: &mut String, oid: &[u8], cap: usize) {
    let start = out.len();
    match lookup(oid) {
        Some((_, ln)) => out.push_str(ln),
        None => push_dotted(out, oid),
    }
    truncate_at(out, start, cap);
}

/// Short name when known, else dotted, truncated like a `cap`-byte buffer.
pub(crate) fn push_short_or_dotted(out: &mut String, oid: &[u8], cap: usize) {
    let start = out.len();
    match short_name(oid) {
        Some(sn) => out.push_str(sn),
        None => push_dotted(out, oid),
    }
    truncate_at(out, start, cap);
}

fn truncate_at(out: &mut String, start: usize, cap: usize) {
    let max = start + cap.saturating_sub(1);
    if out.len() > max {
        let mut m = max;
        while !out.is_char_boundary(m) {
            m -= 1;
        }
        out.truncate(m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dotted(o: &[u8]) -> String {
        let mut s = String::new();
        push_dotted(&mut s, o);
        s
    }

    #[test]
    fn table_is_sorted_and_known() {
        assert!(OBJECTS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(lookup(&[0x55, 0x04, 0x03]), Some(("CN", "commonName")));
        assert_eq!(short_name(&[0x55, 0x1d, 0x11]), Some("subjectAltName"));
        assert_eq!(short_name(&[0x2a, 0x03]), None);
        for &(k, sn, ln) in OBJECTS {
            assert_eq!(lookup(k), Some((sn, ln)));
        }
    }

    #[test]
    fn dotted_forms() {
        assert_eq!(dotted(&[0x55, 0x1d, 0x0f]), "2.5.29.15");
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
            "1.2.840.113549"
        );
        assert_eq!(dotted(&[0x06]), "0.6");
        assert_eq!(dotted(&[0x88, 0x37, 0x03]), "2.999.3");
        // 2.25.<128-bit UUID>
        let mut uuid = vec![0x69];
        uuid.extend_from_slice(&[0x83, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        uuid.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert_eq!(
            dotted(&uuid),
            "2.25.340282366920938463463374607431768211455"
        );
        let mut huge = vec![0x69];
        huge.extend_from_slice(&[0x87; 20]);
        huge.push(0x7f);
        assert!(dotted(&huge).starts_with("2.25."));
    }

    #[test]
    fn texts() {
        let mut s = String::new();
        push_text(
            &mut s,
            &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01],
            80,
        );
        assert_eq!(s, "TLS Web Server Authentication");
        s.clear();
        push_text(&mut s, &[0x55, 0x1d, 0x0f], 5);
        assert_eq!(s, "X509");
    }
}
