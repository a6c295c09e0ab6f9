//! A small BER/DER reader with OpenSSL 1.1.1's leniency.
//!
//! OpenSSL's template decoder accepts non-minimal long-form lengths and indefinite lengths on
//! constructed values, and ignores whatever follows the top-level item of an extension value;
//! these helpers do the same so that the texts match what `X509V3_EXT_print` produced.

use std::borrow::Cow;

/// Malformed encoding; the caller decides what that means (usually "NULL").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bad;

pub(crate) type Res<T> = Result<T, Bad>;

pub(crate) const UNIVERSAL: u8 = 0;
pub(crate) const CONTEXT: u8 = 2;

pub(crate) const BOOLEAN: u32 = 1;
pub(crate) const INTEGER: u32 = 2;
pub(crate) const BIT_STRING: u32 = 3;
pub(crate) const OCTET_STRING: u32 = 4;
pub(crate) const NULL: u32 = 5;
pub(crate) const OID: u32 = 6;
pub(crate) const ENUMERATED: u32 = 10;
pub(crate) const UTF8_STRING: u32 = 12;
pub(crate) const SEQUENCE: u32 = 16;
pub(crate) const SET: u32 = 17;
pub(crate) const NUMERIC_STRING: u32 = 18;
pub(crate) const PRINTABLE_STRING: u32 = 19;
pub(crate) const T61_STRING: u32 = 20;
pub(crate) const IA5_STRING: u32 = 22;
pub(crate) const UTC_TIME: u32 = 23;
pub(crate) const GENERALIZED_TIME: u32 = 24;
pub(crate) const VISIBLE_STRING: u32 = 26;
pub(crate) const GENERAL_STRING: u32 = 27;
pub(crate) const UNIVERSAL_STRING: u32 = 28;
pub(crate) const BMP_STRING: u32 = 30;

/// Nesting limit for indefinite lengths and constructed strings.
const MAX_DEPTH: u32 = 30;

/// One tag-length-value element.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    pub class: u8,
    pub constructed: bool,
    pub tag: u32,
    /// The content octets (for an indefinite length: without the end-of-contents octets).
    pub content: &'a [u8],
    /// The whole element, header included.
    pub raw: &'a [u8],
}

impl<'a> Tlv<'a> {
    #[inline]
    pub fn is(&self, class: u8, tag: u32) -> bool {
        self.class == class && self.tag == tag
    }

    #[inline]
    pub fn is_universal(&self, tag: u32) -> bool {
        self.class == UNIVERSAL && self.tag == tag
    }

    /// A reader over the children of a constructed element.
    #[inline]
    pub fn children(&self) -> Res<Reader<'a>> {
        if self.constructed {
            Ok(Reader::new(self.content))
        } else {
            Err(Bad)
        }
    }

    /// The octets of a string type, primitive or (BER) constructed.
    pub fn string_bytes(&self) -> Res<Cow<'a, [u8]>> {
        if !self.constructed {
            return Ok(Cow::Borrowed(self.content));
        }
        let mut out = Vec::new();
        collect(self.content, &mut out, 0)?;
        Ok(Cow::Owned(out))
    }
}

fn collect(content: &[u8], out: &mut Vec<u8>, depth: u32) -> Res<()> {
    if depth > 5 {
        return Err(Bad);
    }
    let mut r = Reader::new(content);
    while !r.is_empty() {
        let t = r.read()?;
        if t.constructed {
            collect(t.content, out, depth + 1)?;
        } else {
            out.extend_from_slice(t.content);
        }
    }
    Ok(())
}

/// Sequential reader over concatenated elements.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    #[inline]
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Reads the next element.
    #[inline]
    pub fn read(&mut self) -> Res<Tlv<'a>> {
        let (tlv, rest) = parse(self.data, 0)?;
        self.data = rest;
        Ok(tlv)
    }

    /// The next element without consuming it.
    #[inline]
    pub fn peek(&self) -> Option<Tlv<'a>> {
        parse(self.data, 0).ok().map(|(t, _)| t)
    }

    /// Reads the next element if it has this class and tag.
    #[inline]
    pub fn read_optional(&mut self, class: u8, tag: u32) -> Res<Option<Tlv<'a>>> {
        match self.peek() {
            Some(t) if t.is(class, tag) => self.read().map(Some),
            _ => Ok(None),
        }
    }
}

/// Parses one element from the start of `data`; returns it and what follows.
fn parse(data: &[u8], depth: u32) -> Res<(Tlv<'_>, &[u8])> {
    if depth > MAX_DEPTH {
        return Err(Bad);
    }
    let mut i = 0usize;
    let first = *data.first().ok_or(Bad)?;
    i += 1;
    let class = first >> 6;
    let constructed = first & 0x20 != 0;
    let mut tag = u32::from(first & 0x1f);
    if tag == 0x1f {
        tag = 0;
        loop {
            let b = *data.get(i).ok_or(Bad)?;
            i += 1;
            if tag > (u32::MAX >> 7) {
                return Err(Bad);
            }
            tag = (tag << 7) | u32::from(b & 0x7f);
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    let lb = *data.get(i).ok_or(Bad)?;
    i += 1;
    if lb == 0x80 {
        // Indefinite length: constructed only, ends with 00 00.
        if !constructed {
            return Err(Bad);
        }
        let start = i;
        let mut rest = &data[i..];
        loop {
            if rest.len() >= 2 && rest[0] == 0 && rest[1] == 0 {
                let end = data.len() - rest.len();
                let tlv = Tlv {
                    class,
                    constructed,
                    tag,
                    content: &data[start..end],
                    raw: &data[..end + 2],
                };
                return Ok((tlv, &rest[2..]));
            }
            if rest.is_empty() {
                return Err(Bad);
            }
            let (_, r) = parse(rest, depth + 1)?;
            rest = r;
        }
    }
    let len = if lb & 0x80 != 0 {
        let mut n = usize::from(lb & 0x7f);
        // Leading zero octets are skipped, as OpenSSL does.
        while n > 0 && data.get(i) == Some(&0) {
            i += 1;
            n -= 1;
        }
        if n > 4 {
            return Err(Bad);
        }
        let mut len = 0usize;
        for _ in 0..n {
            let b = *data.get(i).ok_or(Bad)?;
            i += 1;
            len = (len << 8) | usize::from(b);
        }
        len
    } else {
        usize::from(lb)
    };
    let end = i.checked_add(len).ok_or(Bad)?;
    if end > data.len() {
        return Err(Bad);
    }
    let tlv = Tlv {
        class,
        constructed,
        tag,
        content: &data[i..end],
        raw: &data[..end],
    };
    Ok((tlv, &data[end..]))
}

/// Reads exactly one element from `data` and ignores anything after it (as `d2i` does).
#[inline]
pub(crate) fn first(data: &[u8]) -> Res<Tlv<'_>> {
    parse(data, 0).map(|(t, _)| t)
}

/// OpenSSL's `c2i_ASN1_OBJECT` checks: non-empty, no 0x80 padding, complete last arc.
pub(crate) fn valid_oid(content: &[u8]) -> bool {
    if content.is_empty() || content[content.len() - 1] & 0x80 != 0 {
        return false;
    }
    let mut prev_continues = false;
    for &b in content {
        if b == 0x80 && !prev_continues {
            return false;
        }
        prev_continues = b & 0x80 != 0;
    }
    true
}

/// Reads an OBJECT IDENTIFIER element, validated as OpenSSL does.
pub(crate) fn read_oid<'a>(r: &mut Reader<'a>) -> Res<&'a [u8]> {
    let t = r.read()?;
    if !t.is_universal(OID) || t.constructed || !valid_oid(t.content) {
        return Err(Bad);
    }
    Ok(t.content)
}

/// An INTEGER's content, checked as `c2i_ASN1_INTEGER` does; returns (negative, magnitude).
pub(crate) fn integer_magnitude(content: &[u8]) -> Res<(bool, Vec<u8>)> {
    if content.is_empty() {
        return Err(Bad);
    }
    let neg = content[0] & 0x80 != 0;
    if content.len() == 1 {
        let b = if neg {
            (content[0] ^ 0xff).wrapping_add(1)
        } else {
            content[0]
        };
        return Ok((neg, vec![b]));
    }
    let pad = if content[0] == 0 {
        true
    } else if content[0] == 0xff {
        content[1..].iter().any(|&b| b != 0)
    } else {
        false
    };
    if pad && (neg == (content[1] & 0x80 != 0)) {
        return Err(Bad);
    }
    let body = if pad { &content[1..] } else { content };
    if !neg {
        return Ok((false, body.to_vec()));
    }
    // Two's complement over the same length (`twos_complement` in a_int.c): !value + 1.
    let mut out: Vec<u8> = body.iter().map(|b| !b).collect();
    for b in out.iter_mut().rev() {
        let (v, carry) = b.overflowing_add(1);
        *b = v;
        if !carry {
            break;
        }
    }
    Ok((true, out))
}

/// Reads an INTEGER element (primitive, universal).
pub(crate) fn read_integer(t: &Tlv<'_>) -> Res<(bool, Vec<u8>)> {
    if t.constructed {
        return Err(Bad);
    }
    integer_magnitude(t.content)
}

/// A BIT STRING's content as (bits), with OpenSSL's checks and unused-bit masking.
pub(crate) fn bit_string(t: &Tlv<'_>) -> Res<Vec<u8>> {
    let c = t.string_bytes()?;
    if c.is_empty() {
        return Err(Bad);
    }
    let unused = c[0];
    if unused > 7 {
        return Err(Bad);
    }
    let mut bits = c[1..].to_vec();
    if let Some(last) = bits.last_mut() {
        *last &= 0xffu8 << unused;
    }
    Ok(bits)
}

/// `ASN1_BIT_STRING_get_bit`.
#[inline]
pub(crate) fn bit(bits: &[u8], n: usize) -> bool {
    bits.get(n / 8).is_some_and(|b| b & (0x80 >> (n % 8)) != 0)
}

/// BOOLEAN content: exactly one octet, any non-zero is true.
pub(crate) fn boolean(t: &Tlv<'_>) -> Res<bool> {
    if t.constructed || t.content.len() != 1 {
        return Err(Bad);
    }
    Ok(t.content[0] != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_definite_and_long_form() {
        let d = [0x30, 0x81, 0x03, 0x02, 0x01, 0x05, 0xff];
        let mut r = Reader::new(&d);
        let t = r.read().unwrap();
        assert!(t.is_universal(SEQUENCE) && t.constructed);
        assert_eq!(t.content, &[0x02, 0x01, 0x05]);
        assert_eq!(r.read().ok().map(|t| t.tag), None);
        // Non-minimal long form with a leading zero octet.
        let d = [0x04, 0x82, 0x00, 0x01, 0xaa];
        assert_eq!(first(&d).unwrap().content, &[0xaa]);
    }

    #[test]
    fn reads_indefinite() {
        let d = [0x30, 0x80, 0x02, 0x01, 0x05, 0x00, 0x00, 0x01];
        let (t, rest) = parse(&d, 0).unwrap();
        assert_eq!(t.content, &[0x02, 0x01, 0x05]);
        assert_eq!(rest, &[0x01]);
        assert!(first(&[0x04, 0x80, 0x00, 0x00]).is_err());
    }

    #[test]
    fn rejects_truncated() {
        assert!(first(&[]).is_err());
        assert!(first(&[0x30]).is_err());
        assert!(first(&[0x30, 0x05, 0x00]).is_err());
        assert!(first(&[0x1f, 0x81]).is_err());
        assert!(first(&[0x30, 0x89, 1, 2, 3, 4, 5, 6, 7, 8, 9]).is_err());
        assert!(first(&[0x30, 0x80, 0x02, 0x01]).is_err());
    }

    #[test]
    fn integers() {
        assert_eq!(integer_magnitude(&[0x00]).unwrap(), (false, vec![0]));
        assert_eq!(
            integer_magnitude(&[0x00, 0x80]).unwrap(),
            (false, vec![0x80])
        );
        assert!(integer_magnitude(&[0x00, 0x01]).is_err());
        assert!(integer_magnitude(&[]).is_err());
        assert_eq!(integer_magnitude(&[0xfb]).unwrap(), (true, vec![5]));
        assert_eq!(integer_magnitude(&[0x80]).unwrap(), (true, vec![0x80]));
        assert_eq!(
            integer_magnitude(&[0xff, 0x7f]).unwrap(),
            (true, vec![0x81])
        );
        assert_eq!(
            integer_magnitude(&[0x80, 0x00]).unwrap(),
            (true, vec![0x80, 0x00])
        );
        assert!(integer_magnitude(&[0xff, 0x80]).is_err());
        assert_eq!(
            integer_magnitude(&[0xff, 0x00]).unwrap(),
            (true, vec![0x01, 0x00])
        );
    }

    #[test]
    fn bits() {
        let t = first(&[0x03, 0x02, 0x07, 0x80]).unwrap();
        let b = bit_string(&t).unwrap();
        assert!(bit(&b, 0));
        assert!(!bit(&b, 1));
        assert!(!bit(&b, 100));
        assert!(bit_string(&first(&[0x03, 0x01, 0x08]).unwrap()).is_err());
    }

    #[test]
    fn oids() {
        assert!(valid_oid(&[0x55, 0x1d, 0x0f]));
        assert!(!valid_oid(&[]));
        assert!(!valid_oid(&[0x55, 0x80, 0x01]));
        assert!(!valid_oid(&[0x55, 0x81]));
    }
}
