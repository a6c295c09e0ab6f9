//! Distinguished names: decoding and OpenSSL 1.1.1's three ways of printing them.
//!
//! * [`oneline`]: `X509_NAME_oneline` (`/C=US/O=Example`), used by pyOpenSSL's `repr` (the
//!   subject's `aggregated`) and by `i2v_GENERAL_NAME` for `DirName:` values.
//! * [`print_oneline_ex`]: `X509_NAME_print_ex(.., XN_FLAG_ONELINE)` (`C = US, O = Example`),
//!   used by `GENERAL_NAME_print`.
//! * [`component_utf8`]: `ASN1_STRING_to_UTF8`, used by pyOpenSSL's `X509Name.CN` and friends.

use super::der::{self, Res, Tlv};
use super::oid;
use std::fmt::Write;

/// One attribute of a name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attr<'a> {
    /// OID content octets of the attribute type.
    pub oid: &'a [u8],
    /// Universal tag of the value (OpenSSL's `ASN1_STRING` type).
    pub tag: u32,
    /// Content octets of the value.
    pub value: &'a [u8],
    /// Index of the RDN (SET) the attribute belongs to.
    pub set: u32,
}

/// `NAME_ONELINE_MAX`-free limit used by pyOpenSSL's 512-byte buffer.
pub(crate) const PYOPENSSL_REPR_BUF: usize = 512;
/// `i2v_GENERAL_NAME`'s `char oline[256]`.
pub(crate) const I2V_BUF: usize = 256;

/// Decodes an RDNSequence (the content of the outer SEQUENCE) as `X509_NAME` does.
pub(crate) fn parse_rdns<'a>(content: &'a [u8], out: &mut Vec<Attr<'a>>) -> Res<()> {
    let mut rdns = der::Reader::new(content);
    let mut set = 0u32;
    while !rdns.is_empty() {
        let rdn = rdns.read()?;
        if !rdn.is_universal(der::SET) || !rdn.constructed {
            return Err(der::Bad);
        }
        push_attrs(rdn.content, set, out)?;
        set += 1;
    }
    Ok(())
}

/// Decodes a full Name element (SEQUENCE OF RDN).
pub(crate) fn parse_name<'a>(t: &Tlv<'a>, out: &mut Vec<Attr<'a>>) -> Res<()> {
    if !t.is_universal(der::SEQUENCE) || !t.constructed {
        return Err(der::Bad);
    }
    parse_rdns(t.content, out)
}

/// Decodes the entries of a `RelativeDistinguishedName` (SET OF AttributeTypeAndValue content).
pub(crate) fn parse_rdn_entries<'a>(content: &'a [u8], out: &mut Vec<Attr<'a>>) -> Res<()> {
    // Entries decoded outside X509_NAME keep `set` 0: they print as one RDN.
    push_attrs(content, 0, out)
}

/// Decodes the AttributeTypeAndValues of one RDN's content, all in RDN `set`.
fn push_attrs<'a>(content: &'a [u8], set: u32, out: &mut Vec<Attr<'a>>) -> Res<()> {
    let mut attrs = der::Reader::new(content);
    while !attrs.is_empty() {
        let atv = attrs.read()?;
        if !atv.is_universal(der::SEQUENCE) || !atv.constructed {
            return Err(der::Bad);
        }
        let mut f = atv.children()?;
        let oid = der::read_oid(&mut f)?;
        let v = f.read()?;
        if !f.is_empty() {
            return Err(der::Bad);
        }
        out.push(attr_from_value(oid, &v, set)?);
    }
    Ok(())
}

fn attr_from_value<'a>(oid: &'a [u8], v: &Tlv<'a>, set: u32) -> Res<Attr<'a>> {
    // ASN1_PRINTABLE: universal string types, SEQUENCE, and "unknown" tags.
    if v.class != der::UNIVERSAL || !printable_mask_allows(v.tag) {
        return Err(der::Bad);
    }
    // OpenSSL keeps a SEQUENCE value whole; (rare) constructed strings keep their content.
    let value = if v.tag == der::SEQUENCE {
        v.raw
    } else {
        v.content
    };
    Ok(Attr {
        oid,
        tag: v.tag,
        value,
        set,
    })
}

/// `B_ASN1_PRINTABLE` against `ASN1_tag2bit`.
pub(crate) fn printable_mask_allows(tag: u32) -> bool {
    matches!(
        tag,
        7 | 8
            | 9
            | 11
            | 12
            | 13
            | 14
            | 15
            | 16
            | 18
            | 19
            | 20
            | 21
            | 22
            | 25
            | 26
            | 27
            | 28
            | 29
            | 30
            | 31
    )
}

/// `X509_NAME_oneline(name, buf, cap)`: `/SN=value` per attribute, non-printable octets as
/// `\xHH`; an attribute that does not fit in `cap - 1` bytes ends the output.
pub(crate) fn oneline(attrs: &[Attr<'_>], cap: usize, out: &mut String) {
    let max = cap - 1;
    let base = out.len();
    let mut l = 0usize;
    let mut dotted = String::new();
    for a in attrs {
        let field: &str = match oid::short_name(a.oid) {
            Some(sn) => sn,
            None => {
                dotted.clear();
                oid::push_short_or_dotted(&mut dotted, a.oid, 80);
                &dotted
            }
        };
        let l1 = field.len();

        let q = a.value;
        let mut gs = [true; 4];
        if a.tag == der::GENERAL_STRING && q.len() % 4 == 0 {
            gs = [false; 4];
            for (j, &b) in q.iter().enumerate() {
                if b != 0 {
                    gs[j & 3] = true;
                }
            }
            if gs[0] || gs[1] || gs[2] {
                gs = [true; 4];
            } else {
                gs = [false, false, false, true];
            }
        }
        let mut l2 = 0usize;
        for (j, &b) in q.iter().enumerate() {
            if !gs[j & 3] {
                continue;
            }
            l2 += if !(b' '..=b'~').contains(&b) { 4 } else { 1 };
        }
        l += 1 + l1 + 1 + l2;
        if l > max {
            break;
        }
        out.push('/');
        out.push_str(field);
        out.push('=');
        for (j, &b) in q.iter().enumerate() {
            if !gs[j & 3] {
                continue;
            }
            if !(b' '..=b'~').contains(&b) {
                out.push_str("\\x");
                push_hex_upper(out, b);
            } else {
                out.push(b as char);
            }
        }
    }
    debug_assert!(out.len() - base <= max);
}

#[inline]
pub(crate) fn push_hex_upper(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 15)] as char);
}

/// `tag2nbyte` in a_strex.c: character width of a string type, `None` for "dump as DER".
fn char_width(tag: u32) -> Option<u8> {
    match tag {
        der::UTF8_STRING => Some(0),
        der::NUMERIC_STRING
        | der::PRINTABLE_STRING
        | der::T61_STRING
        | der::IA5_STRING
        | der::UTC_TIME
        | der::GENERALIZED_TIME
        | der::VISIBLE_STRING => Some(1),
        der::UNIVERSAL_STRING => Some(4),
        der::BMP_STRING => Some(2),
        _ => None,
    }
}

// char_type[] from OpenSSL 1.1.1 crypto/asn1/charmap.h.
#[rustfmt::skip]
static CHAR_TYPE: [u16; 128] = [
    1026, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    120, 0, 1, 40, 0, 0, 0, 16, 16, 16, 0, 25, 25, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 9, 9, 16, 9, 16,
    0, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 0, 1, 0, 0, 0,
    0, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 2,
];

const ESC_2253: u16 = 1;
const ESC_CTRL: u16 = 2;
const ESC_MSB: u16 = 4;
const ESC_QUOTE: u16 = 8;
const FIRST_ESC_2253: u16 = 0x20;
const LAST_ESC_2253: u16 = 0x40;
const ESC_2254: u16 = 0x400;
const BS_ESC: u16 = ESC_2253 | FIRST_ESC_2253 | LAST_ESC_2253;
/// The escape flags of `XN_FLAG_ONELINE` (`ASN1_STRFLGS_RFC2253 | ASN1_STRFLGS_ESC_QUOTE`).
const ONELINE_FLAGS: u16 = ESC_2253 | ESC_CTRL | ESC_MSB | ESC_QUOTE;

/// `do_esc_char` for one octet-or-character; `quotes` collects "needs quoting".
fn esc_char(c: u32, flags: u16, quotes: &mut bool, out: &mut Vec<u8>) {
    if c > 0xffff {
        let _ = write_vec(out, format_args!("\\W{c:08X}"));
        return;
    }
    if c > 0xff {
        let _ = write_vec(out, format_args!("\\U{c:04X}"));
        return;
    }
    let ch = c as u8;
    let chflgs = if ch > 0x7f {
        flags & ESC_MSB
    } else {
        CHAR_TYPE[usize::from(ch)] & flags
    };
    if chflgs & BS_ESC != 0 {
        if chflgs & ESC_QUOTE != 0 {
            *quotes = true;
            out.push(ch);
        } else {
            out.push(b'\\');
            out.push(ch);
        }
        return;
    }
    if chflgs & (ESC_CTRL | ESC_MSB | ESC_2254) != 0 {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        out.push(b'\\');
        out.push(HEX[usize::from(ch >> 4)]);
        out.push(HEX[usize::from(ch & 15)]);
        return;
    }
    if ch == b'\\' {
        out.extend_from_slice(b"\\\\");
        return;
    }
    out.push(ch);
}

fn write_vec(out: &mut Vec<u8>, args: std::fmt::Arguments<'_>) -> std::fmt::Result {
    let mut s = String::new();
    s.write_fmt(args)?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// `UTF8_putc` of OpenSSL 1.1.1: `None` for surrogates and values past U+10FFFF.
fn utf8_encode(c: u32, buf: &mut [u8; 4]) -> Option<usize> {
    if c < 0x80 {
        buf[0] = c as u8;
        Some(1)
    } else if c < 0x800 {
        buf[0] = 0xc0 | (c >> 6) as u8;
        buf[1] = 0x80 | (c & 0x3f) as u8;
        Some(2)
    } else if c < 0x10000 {
        if (0xd800..0xe000).contains(&c) {
            return None;
        }
        buf[0] = 0xe0 | (c >> 12) as u8;
        buf[1] = 0x80 | ((c >> 6) & 0x3f) as u8;
        buf[2] = 0x80 | (c & 0x3f) as u8;
        Some(3)
    } else if c < 0x110000 {
        buf[0] = 0xf0 | (c >> 18) as u8;
        buf[1] = 0x80 | ((c >> 12) & 0x3f) as u8;
        buf[2] = 0x80 | ((c >> 6) & 0x3f) as u8;
        buf[3] = 0x80 | (c & 0x3f) as u8;
        Some(4)
    } else {
        None
    }
}

/// `do_buf` with `BUF_TYPE_CONVUTF8` (except for UTF8String, printed octet by octet).
fn do_buf(a: &Attr<'_>, width: u8, quotes: &mut bool, out: &mut Vec<u8>) -> Res<()> {
    let data = a.value;
    let (width, conv) = if width == 0 {
        (1, false)
    } else {
        (width, true)
    };
    let w = usize::from(width);
    if data.len() % w != 0 {
        return Err(der::Bad);
    }
    let n = data.len() / w;
    for i in 0..n {
        let chunk = &data[i * w..i * w + w];
        let c = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        let mut orflags = 0;
        if i == 0 {
            orflags = FIRST_ESC_2253;
        }
        if i == n - 1 {
            orflags = LAST_ESC_2253;
        }
        if conv {
            let mut buf = [0u8; 4];
            if let Some(len) = utf8_encode(c, &mut buf) {
                for &b in &buf[..len] {
                    esc_char(u32::from(b), ONELINE_FLAGS | orflags, quotes, out);
                }
            }
        } else {
            esc_char(c, ONELINE_FLAGS | orflags, quotes, out);
        }
    }
    Ok(())
}

/// `do_print_ex` with the ONELINE flags.
fn print_value(a: &Attr<'_>, out: &mut Vec<u8>) -> Res<()> {
    let Some(width) = char_width(a.tag) else {
        // ASN1_STRFLGS_DUMP_UNKNOWN | DUMP_DER: '#' and the hex of the DER encoding.
        out.push(b'#');
        let mut s = String::new();
        if a.tag == der::SEQUENCE {
            for &b in a.value {
                push_hex_upper(&mut s, b);
            }
        } else {
            let mut hdr = Vec::with_capacity(6);
            push_der_header(&mut hdr, a.tag, a.value.len());
            for &b in hdr.iter().chain(a.value) {
                push_hex_upper(&mut s, b);
            }
        }
        out.extend_from_slice(s.as_bytes());
        return Ok(());
    };
    let mut quotes = false;
    let mut body = Vec::with_capacity(a.value.len() + 8);
    do_buf(a, width, &mut quotes, &mut body)?;
    if quotes {
        out.push(b'"');
        out.extend_from_slice(&body);
        out.push(b'"');
    } else {
        out.extend_from_slice(&body);
    }
    Ok(())
}

fn push_der_header(out: &mut Vec<u8>, tag: u32, len: usize) {
    if tag < 31 {
        out.push(tag as u8);
    } else {
        out.push(0x1f);
        let mut t = Vec::new();
        let mut v = tag;
        t.push((v & 0x7f) as u8);
        v >>= 7;
        while v > 0 {
            t.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        t.reverse();
        out.extend_from_slice(&t);
    }
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// `X509_NAME_print_ex(out, name, 0, XN_FLAG_ONELINE)`: `C = US, O = "A, B" + CN = x`.
/// Stops (keeping what was written) where OpenSSL's printer fails.
pub(crate) fn print_oneline_ex(attrs: &[Attr<'_>], out: &mut Vec<u8>) {
    let mut prev: Option<u32> = None;
    for a in attrs {
        if let Some(p) = prev {
            if p == a.set {
                out.extend_from_slice(b" + ");
            } else {
                out.extend_from_slice(b", ");
            }
        }
        prev = Some(a.set);
        let mut s = String::new();
        match oid::short_name(a.oid) {
            Some(sn) => s.push_str(sn),
            None => {
                oid::push_dotted(&mut s, a.oid);
                if s.len() > 79 {
                    s.truncate(79);
                }
            }
        }
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b" = ");
        if print_value(a, out).is_err() {
            return;
        }
    }
}

/// `ASN1_STRING_to_UTF8` then Python's `.decode("utf-8")`; `None` where pyOpenSSL would raise.
pub(crate) fn component_utf8(a: &Attr<'_>) -> Option<String> {
    let v = a.value;
    match char_width(a.tag)? {
        0 => std::str::from_utf8(v).ok().map(str::to_owned),
        1 => Some(v.iter().map(|&b| b as char).collect()),
        2 => {
            if v.len() % 2 != 0 {
                return None;
            }
            v.chunks_exact(2)
                .map(|c| char::from_u32(u32::from(u16::from_be_bytes([c[0], c[1]]))))
                .collect()
        }
        _ => {
            if v.len() % 4 != 0 {
                return None;
            }
            v.chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr<'a>(oid: &'a [u8], tag: u32, value: &'a [u8], set: u32) -> Attr<'a> {
        Attr {
            oid,
            tag,
            value,
            set,
        }
    }

    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const O: &[u8] = &[0x55, 0x04, 0x0a];
    const C: &[u8] = &[0x55, 0x04, 0x06];

    fn ex(attrs: &[Attr<'_>]) -> String {
        let mut v = Vec::new();
        print_oneline_ex(attrs, &mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn oneline_forms() {
        let a = [
            attr(C, 19, b"US", 0),
            attr(O, 12, "Caf\u{e9}".as_bytes(), 1),
            attr(CN, 30, b"\x00A", 2),
        ];
        let mut s = String::new();
        oneline(&a, 512, &mut s);
        assert_eq!(s, "/C=US/O=Caf\\xC3\\xA9/CN=\\x00A");
        // Truncation drops whole attributes.
        let mut s = String::new();
        oneline(&a, 12, &mut s);
        assert_eq!(s, "/C=US");
        let mut s = String::new();
        oneline(&[], 512, &mut s);
        assert_eq!(s, "");
    }

    #[test]
    fn print_ex_forms() {
        let a = [
            attr(C, 19, b"US", 0),
            attr(O, 19, b"A, B", 1),
            attr(CN, 19, b"x", 1),
        ];
        assert_eq!(ex(&a), "C = US, O = \"A, B\" + CN = x");
        assert_eq!(ex(&[attr(O, 12, "\u{e9}".as_bytes(), 0)]), "O = \\C3\\A9");
        assert_eq!(ex(&[attr(O, 20, b"\xe9", 0)]), "O = \\C3\\A9");
        assert_eq!(ex(&[attr(O, 30, b"\x00A\x00B", 0)]), "O = AB");
        assert_eq!(ex(&[attr(O, 19, b" a ", 0)]), "O = \" a \"");
        assert_eq!(ex(&[attr(O, 19, b"a\\\"", 0)]), "O = a\\\\\\\"");
        assert_eq!(ex(&[attr(&[0x2a, 0x03], 19, b"v", 0)]), "1.2.3 = v");
        assert_eq!(ex(&[attr(O, 4, b"\x01", 0)]), "O = #040101");
        assert_eq!(
            ex(&[attr(O, 30, b"\x00", 0), attr(CN, 19, b"x", 1)]),
            "O = "
        );
    }

    #[test]
    fn components() {
        assert_eq!(
            component_utf8(&attr(CN, 20, b"\xc3\xb6", 0)).unwrap(),
            "\u{c3}\u{b6}"
        );
        assert_eq!(component_utf8(&attr(CN, 30, b"\x00A", 0)).unwrap(), "A");
        assert!(component_utf8(&attr(CN, 12, b"\xff", 0)).is_none());
    }
}
