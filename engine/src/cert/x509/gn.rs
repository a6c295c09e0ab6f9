//! GeneralName: decoding (`GENERAL_NAME` template) and its three printers.

use super::der::{self, Bad, Res, Tlv};
use super::name::{self, Attr};
use super::oid;
use std::borrow::Cow;
use std::fmt::Write;

/// A decoded GeneralName.
#[derive(Debug, Clone)]
pub(crate) enum GenName<'a> {
    Other,
    X400,
    EdiParty,
    Email(Cow<'a, [u8]>),
    Dns(Cow<'a, [u8]>),
    Uri(Cow<'a, [u8]>),
    DirName(Vec<Attr<'a>>),
    Ip(Cow<'a, [u8]>),
    Rid(&'a [u8]),
}

/// Decodes one GeneralName element.
pub(crate) fn parse<'a>(t: &Tlv<'a>) -> Res<GenName<'a>> {
    parse_inner(t)
}

fn parse_inner<'a>(t: &Tlv<'a>) -> Res<GenName<'a>> {
    if t.class != der::CONTEXT {
        return Err(Bad);
    }
    Ok(match t.tag {
        0 => {
            // OTHERNAME ::= SEQUENCE { type-id OID, value [0] EXPLICIT ANY }
            let mut r = t.children()?;
            der::read_oid(&mut r)?;
            let v = r.read()?;
            if !v.is(der::CONTEXT, 0) || !v.constructed || !r.is_empty() {
                return Err(Bad);
            }
            let mut inner = v.children()?;
            inner.read()?;
            if !inner.is_empty() {
                return Err(Bad);
            }
            GenName::Other
        }
        1 => GenName::Email(t.string_bytes()?),
        2 => GenName::Dns(t.string_bytes()?),
        3 => {
            if !t.constructed {
                return Err(Bad);
            }
            GenName::X400
        }
        4 => {
            let mut r = t.children()?;
            let n = r.read()?;
            if !r.is_empty() {
                return Err(Bad);
            }
            let mut attrs = Vec::new();
            name::parse_name(&n, &mut attrs)?;
            GenName::DirName(attrs)
        }
        5 => {
            if !t.constructed {
                return Err(Bad);
            }
            GenName::EdiParty
        }
        6 => GenName::Uri(t.string_bytes()?),
        7 => GenName::Ip(t.string_bytes()?),
        8 => {
            if t.constructed || !der::valid_oid(t.content) {
                return Err(Bad);
            }
            GenName::Rid(t.content)
        }
        _ => return Err(Bad),
    })
}

/// Decodes `GeneralNames ::= SEQUENCE OF GeneralName` from a reader over its content.
pub(crate) fn parse_seq<'a>(mut r: der::Reader<'a>) -> Res<Vec<GenName<'a>>> {
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(parse_inner(&r.read()?)?);
    }
    Ok(out)
}

/// Text up to the first NUL, as C string functions see an `ASN1_STRING`.
#[inline]
pub(crate) fn c_str(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// `ASN1_STRING_print`: octets outside printable ASCII (but `\n`, `\r`) become '.'.
pub(crate) fn asn1_string_print(b: &[u8], out: &mut Vec<u8>) {
    out.extend(b.iter().map(|&c| {
        if c > b'~' || (c < b' ' && c != b'\n' && c != b'\r') {
            b'.'
        } else {
            c
        }
    }));
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}

/// `GENERAL_NAME_print`.
pub(crate) fn print(g: &GenName<'_>, out: &mut Vec<u8>) {
    match g {
        GenName::Other => push_str(out, "othername:<unsupported>"),
        GenName::X400 => push_str(out, "X400Name:<unsupported>"),
        GenName::EdiParty => push_str(out, "EdiPartyName:<unsupported>"),
        GenName::Email(v) => {
            push_str(out, "email:");
            asn1_string_print(v, out);
        }
        GenName::Dns(v) => {
            push_str(out, "DNS:");
            asn1_string_print(v, out);
        }
        GenName::Uri(v) => {
            push_str(out, "URI:");
            asn1_string_print(v, out);
        }
        GenName::DirName(attrs) => {
            push_str(out, "DirName:");
            name::print_oneline_ex(attrs, out);
        }
        GenName::Ip(ip) => {
            let mut s = String::new();
            if ip.len() == 4 {
                let _ = write!(s, "IP Address:{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3]);
            } else if ip.len() == 16 {
                s.push_str("IP Address");
                for c in ip.chunks_exact(2) {
                    let _ = write!(s, ":{:X}", u16::from_be_bytes([c[0], c[1]]));
                }
                s.push('\n');
            } else {
                s.push_str("IP Address:<invalid>");
            }
            push_str(out, &s);
        }
        GenName::Rid(o) => {
            push_str(out, "Registered ID:");
            let mut s = String::new();
            // i2a_ASN1_OBJECT grows its buffer for long texts: no truncation.
            oid::push_text(&mut s, o, usize::MAX);
            push_str(out, &s);
        }
    }
}

/// One `CONF_VALUE` (name, value) as `X509V3_add_value` stores it (C strings).
pub(crate) struct ConfValue {
    pub name: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

impl ConfValue {
    pub fn new(name: &str, value: &[u8]) -> Self {
        ConfValue {
            name: Some(name.as_bytes().to_vec()),
            value: Some(c_str(value).to_vec()),
        }
    }

    /// `x509v3_add_len_value_uchar` (OpenSSL 1.1.1l and later): an empty string gives the
    /// bare name, an embedded NUL (other than a single trailing one) is an error.
    pub fn uchar(name: &str, value: &[u8]) -> Res<Self> {
        if let Some((_, init)) = value.split_last() {
            if init.contains(&0) {
                return Err(Bad);
            }
        }
        Ok(ConfValue {
            name: Some(name.as_bytes().to_vec()),
            value: (!value.is_empty()).then(|| c_str(value).to_vec()),
        })
    }
}

/// `i2v_GENERAL_NAME`; `Err` where it returns NULL.
pub(crate) fn i2v(g: &GenName<'_>, out: &mut Vec<ConfValue>) -> Res<()> {
    match g {
        GenName::Other => out.push(ConfValue::new("othername", b"<unsupported>")),
        GenName::X400 => out.push(ConfValue::new("X400Name", b"<unsupported>")),
        GenName::EdiParty => out.push(ConfValue::new("EdiPartyName", b"<unsupported>")),
        GenName::Email(v) => out.push(ConfValue::uchar("email", v)?),
        GenName::Dns(v) => out.push(ConfValue::uchar("DNS", v)?),
        GenName::Uri(v) => out.push(ConfValue::uchar("URI", v)?),
        GenName::DirName(attrs) => {
            let mut s = String::new();
            name::oneline(attrs, name::I2V_BUF, &mut s);
            out.push(ConfValue::new("DirName", s.as_bytes()));
        }
        GenName::Ip(ip) => {
            let mut s = String::new();
            if ip.len() == 4 {
                let _ = write!(s, "{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3]);
            } else if ip.len() == 16 {
                for (i, c) in ip.chunks_exact(2).enumerate() {
                    if i > 0 {
                        s.push(':');
                    }
                    let _ = write!(s, "{:X}", u16::from_be_bytes([c[0], c[1]]));
                }
            } else {
                out.push(ConfValue::new("IP Address", b"<invalid>"));
                return Ok(());
            }
            out.push(ConfValue::new("IP Address", s.as_bytes()));
        }
        GenName::Rid(o) => {
            let mut s = String::new();
            oid::push_text(&mut s, o, 256);
            out.push(ConfValue::new("Registered ID", s.as_bytes()));
        }
    }
    Ok(())
}

/// `X509V3_EXT_val_prn(out, values, 0, multiline)`.
pub(crate) fn val_prn(values: &[ConfValue], multiline: bool, out: &mut Vec<u8>) {
    if values.is_empty() {
        out.extend_from_slice(b"<EMPTY>\n");
        return;
    }
    for (i, v) in values.iter().enumerate() {
        if !multiline && i > 0 {
            out.extend_from_slice(b", ");
        }
        match (&v.name, &v.value) {
            (None, Some(val)) => out.extend_from_slice(val),
            (Some(n), None) => out.extend_from_slice(n),
            (Some(n), Some(val)) => {
                out.extend_from_slice(n);
                out.push(b':');
                out.extend_from_slice(val);
            }
            (None, None) => {}
        }
        if multiline {
            out.push(b'\n');
        }
    }
}

/// pyOpenSSL's `_subjectAltNameString`: `DNS:`/`email:`/`URI:` with the raw octets (which must
/// be UTF-8), the other types through `GENERAL_NAME_print`; `None` where Python would raise.
pub(crate) fn pyopenssl_san(names: &[GenName<'_>]) -> Option<String> {
    let mut out = String::new();
    for (i, g) in names.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let (label, raw) = match g {
            GenName::Dns(v) => ("DNS:", v),
            GenName::Email(v) => ("email:", v),
            GenName::Uri(v) => ("URI:", v),
            other => {
                let mut b = Vec::new();
                print(other, &mut b);
                out.push_str(std::str::from_utf8(&b).ok()?);
                continue;
            }
        };
        out.push_str(label);
        out.push_str(std::str::from_utf8(raw).ok()?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_forms() {
        let mut v = Vec::new();
        print(&GenName::Ip(Cow::Borrowed(&[192, 0, 2, 1])), &mut v);
        assert_eq!(v, b"IP Address:192.0.2.1");
        let mut ip6 = [0u8; 16];
        ip6[0] = 0x20;
        ip6[1] = 0x01;
        ip6[15] = 1;
        let mut v = Vec::new();
        print(&GenName::Ip(Cow::Borrowed(&ip6)), &mut v);
        assert_eq!(v, b"IP Address:2001:0:0:0:0:0:0:1\n");
        let mut c = Vec::new();
        i2v(&GenName::Ip(Cow::Borrowed(&ip6)), &mut c).unwrap();
        assert_eq!(c[0].value.as_deref(), Some(&b"2001:0:0:0:0:0:0:1"[..]));
        let mut v = Vec::new();
        print(&GenName::Ip(Cow::Borrowed(&[1, 2, 3])), &mut v);
        assert_eq!(v, b"IP Address:<invalid>");
    }

    #[test]
    fn i2v_strings() {
        let mut c = Vec::new();
        i2v(&GenName::Dns(Cow::Borrowed(b"")), &mut c).unwrap();
        i2v(&GenName::Dns(Cow::Borrowed(b"a\0")), &mut c).unwrap();
        assert!(i2v(&GenName::Dns(Cow::Borrowed(b"a\0b")), &mut c).is_err());
        let mut v = Vec::new();
        val_prn(&c, false, &mut v);
        assert_eq!(v, b"DNS, DNS:a");
    }

    #[test]
    fn val_prn_forms() {
        let vals = vec![ConfValue::new("DNS", b"a\0b"), ConfValue::new("URI", b"u")];
        let mut v = Vec::new();
        val_prn(&vals, false, &mut v);
        assert_eq!(v, b"DNS:a, URI:u");
        let mut v = Vec::new();
        val_prn(&vals, true, &mut v);
        assert_eq!(v, b"DNS:a\nURI:u\n");
        let mut v = Vec::new();
        val_prn(&[], false, &mut v);
        assert_eq!(v, b"<EMPTY>\n");
    }

    #[test]
    fn san_strings() {
        let names = vec![
            GenName::Dns(Cow::Borrowed(b"a.example")),
            GenName::Other,
            GenName::Email(Cow::Borrowed(b"x@y")),
        ];
        assert_eq!(
            pyopenssl_san(&names).unwrap(),
            "DNS:a.example, othername:<unsupported>, email:x@y"
        );
        assert!(pyopenssl_san(&[GenName::Dns(Cow::Borrowed(b"\xff"))]).is_none());
    }

    #[test]
    fn parses_tags() {
        let t = der::first(&[0x82, 0x03, b'a', b'.', b'b']).unwrap();
        assert!(matches!(parse(&t).unwrap(), GenName::Dns(v) if &*v == b"a.b"));
        let t = der::first(&[0x89, 0x01, 0x00]).unwrap();
        assert!(parse(&t).is_err());
        let t = der::first(&[0x04, 0x01, 0x00]).unwrap();
        assert!(parse(&t).is_err());
    }
}
