//! Extension texts: what OpenSSL 1.1.1's `X509V3_EXT_print(bio, ext, 0, 0)` printed, decoded
//! by pyOpenSSL as UTF-8 (the subject alt name goes through pyOpenSSL's own printer).
//!
//! Every printer works on the raw extension value with the same acceptance rules as OpenSSL's
//! template decoder; a value it would not decode, an extension without a print method, and a
//! text that is not UTF-8 all come out as `"NULL"`, as in certlib's `dump_extensions`.

use super::der::{self, Bad, Reader, Res, Tlv};
use super::gn::{self, ConfValue, GenName};
use super::name;
use super::oid;
use super::sct;
use super::time;
use std::fmt::Write;

/// What certlib stores when printing fails.
pub(crate) const NULL: &str = "NULL";

// OID content octets of the extensions OpenSSL 1.1.1 can print.
const SUBJECT_KEY_ID: &[u8] = &[0x55, 0x1d, 0x0e];
const KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
const PRIVATE_KEY_USAGE_PERIOD: &[u8] = &[0x55, 0x1d, 0x10];
pub(crate) const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
const ISSUER_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x12];
const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
const CRL_NUMBER: &[u8] = &[0x55, 0x1d, 0x14];
const CRL_REASON: &[u8] = &[0x55, 0x1d, 0x15];
const INVALIDITY_DATE: &[u8] = &[0x55, 0x1d, 0x18];
const DELTA_CRL: &[u8] = &[0x55, 0x1d, 0x1b];
const CERTIFICATE_ISSUER: &[u8] = &[0x55, 0x1d, 0x1d];
const NAME_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x1e];
const CRL_DISTRIBUTION_POINTS: &[u8] = &[0x55, 0x1d, 0x1f];
const CERTIFICATE_POLICIES: &[u8] = &[0x55, 0x1d, 0x20];
const POLICY_MAPPINGS: &[u8] = &[0x55, 0x1d, 0x21];
const AUTHORITY_KEY_ID: &[u8] = &[0x55, 0x1d, 0x23];
const POLICY_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x24];
const EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
const FRESHEST_CRL: &[u8] = &[0x55, 0x1d, 0x2e];
const INHIBIT_ANY_POLICY: &[u8] = &[0x55, 0x1d, 0x36];
const AUTHORITY_INFO_ACCESS: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x01];
const SUBJECT_INFO_ACCESS: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x0b];
const TLS_FEATURE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x18];
const OCSP_NO_CHECK: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x05];
const CT_PRECERT_SCTS: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x02];
const CT_PRECERT_POISON: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x03];
const CT_CERT_SCTS: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x05];
const NS_CERT_TYPE: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x86, 0xf8, 0x42, 0x01, 0x01];
const NS_PREFIX: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x86, 0xf8, 0x42, 0x01];

/// The text certstream shows for one extension (`NULL` where OpenSSL/Python failed).
pub(crate) fn print(oid: &[u8], value: &[u8]) -> String {
    if oid == SUBJECT_ALT_NAME {
        return san(value).unwrap_or_else(|| NULL.to_owned());
    }
    let mut buf = Vec::with_capacity(64);
    if print_raw(oid, value, &mut buf).is_err() {
        return NULL.to_owned();
    }
    String::from_utf8(buf).unwrap_or_else(|_| NULL.to_owned())
}

/// The subject alt name as pyOpenSSL printed it: `Some("")` when OpenSSL cannot decode it.
fn san(value: &[u8]) -> Option<String> {
    match general_names(value) {
        Ok(names) => gn::pyopenssl_san(&names),
        Err(Bad) => Some(String::new()),
    }
}

/// Decodes a `GeneralNames` extension value.
pub(crate) fn general_names(value: &[u8]) -> Res<Vec<GenName<'_>>> {
    gn::parse_seq(value_seq(value)?)
}

/// A SEQUENCE (OF): universal 16, constructed.
#[inline]
fn seq_of<'a>(t: &Tlv<'a>) -> Res<Reader<'a>> {
    if t.is_universal(der::SEQUENCE) && t.constructed {
        Ok(Reader::new(t.content))
    } else {
        Err(Bad)
    }
}

/// An extension value that is one SEQUENCE (OF): a reader over its content.
fn value_seq(v: &[u8]) -> Res<Reader<'_>> {
    seq_of(&der::first(v)?)
}

/// An IMPLICIT-tagged SEQUENCE OF: constructed with the context tag.
#[inline]
fn implicit_seq_of<'a>(t: &Tlv<'a>) -> Res<Reader<'a>> {
    if t.constructed {
        Ok(Reader::new(t.content))
    } else {
        Err(Bad)
    }
}

fn push(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}

/// `X509V3_EXT_print`: `Err` where it returned 0.
fn print_raw(oid: &[u8], v: &[u8], out: &mut Vec<u8>) -> Res<()> {
    match oid {
        SUBJECT_KEY_ID => {
            let t = der::first(v)?;
            if !t.is_universal(der::OCTET_STRING) {
                return Err(Bad);
            }
            push_hex_colon(out, &t.string_bytes()?);
            Ok(())
        }
        KEY_USAGE => bit_names(v, KEY_USAGE_NAMES, out),
        NS_CERT_TYPE => bit_names(v, NS_CERT_TYPE_NAMES, out),
        PRIVATE_KEY_USAGE_PERIOD => private_key_usage_period(v, out),
        ISSUER_ALT_NAME | CERTIFICATE_ISSUER => {
            let names = general_names(v)?;
            let mut vals = Vec::new();
            for g in &names {
                gn::i2v(g, &mut vals)?;
            }
            gn::val_prn(&vals, false, out);
            Ok(())
        }
        BASIC_CONSTRAINTS => basic_constraints(v, out),
        CRL_NUMBER | DELTA_CRL | INHIBIT_ANY_POLICY => {
            let t = der::first(v)?;
            if !t.is_universal(der::INTEGER) {
                return Err(Bad);
            }
            let (neg, mag) = der::read_integer(&t)?;
            push_bignum(out, neg, &mag);
            Ok(())
        }
        CRL_REASON => crl_reason(v, out),
        INVALIDITY_DATE => {
            let t = der::first(v)?;
            if !t.is_universal(der::GENERALIZED_TIME) || t.constructed {
                return Err(Bad);
            }
            time::generalized_time_print(t.content, out);
            Ok(())
        }
        NAME_CONSTRAINTS => name_constraints(v, out),
        CRL_DISTRIBUTION_POINTS | FRESHEST_CRL => crl_distribution_points(v, out),
        CERTIFICATE_POLICIES => certificate_policies(v, out),
        POLICY_MAPPINGS => policy_mappings(v, out),
        AUTHORITY_KEY_ID => authority_key_id(v, out),
        POLICY_CONSTRAINTS => policy_constraints(v, out),
        EXT_KEY_USAGE => ext_key_usage(v, out),
        AUTHORITY_INFO_ACCESS | SUBJECT_INFO_ACCESS => info_access(v, out),
        TLS_FEATURE => tls_feature(v, out),
        OCSP_NO_CHECK => Ok(()),
        CT_PRECERT_SCTS | CT_CERT_SCTS => sct::print_list(v, out),
        CT_PRECERT_POISON => {
            // ASN1_NULL must decode; i2s_poison prints "NULL".
            let t = der::first(v)?;
            if !t.is_universal(der::NULL) || t.constructed || !t.content.is_empty() {
                return Err(Bad);
            }
            push(out, NULL);
            Ok(())
        }
        _ if oid.len() == NS_PREFIX.len() + 1
            && oid.starts_with(NS_PREFIX)
            && matches!(oid[NS_PREFIX.len()], 2 | 3 | 4 | 7 | 8 | 12 | 13) =>
        {
            // nsBaseUrl, nsRevocationUrl, ..., nsComment: i2s_ASN1_IA5STRING.
            let t = der::first(v)?;
            if !t.is_universal(der::IA5_STRING) {
                return Err(Bad);
            }
            let s = t.string_bytes()?;
            if s.is_empty() {
                return Err(Bad);
            }
            out.extend_from_slice(gn::c_str(&s));
            Ok(())
        }
        _ => Err(Bad),
    }
}

/// `OPENSSL_buf2hexstr`: `AA:BB:CC`.
pub(crate) fn push_hex_colon(out: &mut Vec<u8>, data: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for (i, &b) in data.iter().enumerate() {
        if i > 0 {
            out.push(b':');
        }
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

/// `bignum_to_string` (v3_utl.c): decimal under 128 bits, else `0x` + `BN_bn2hex`.
fn push_bignum(out: &mut Vec<u8>, neg: bool, mag: &[u8]) {
    let m = {
        let skip = mag.iter().take_while(|&&b| b == 0).count();
        &mag[skip..]
    };
    let bits = m
        .first()
        .map_or(0, |&b| (m.len() - 1) * 8 + (8 - b.leading_zeros() as usize));
    let is_zero = m.is_empty();
    if neg && !is_zero {
        out.push(b'-');
    }
    if bits < 128 {
        let mut v: u128 = 0;
        for &b in m {
            v = (v << 8) | u128::from(b);
        }
        let _ = write_bytes(out, format_args!("{v}"));
    } else {
        push(out, "0x");
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        for &b in m {
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 15)]);
        }
    }
}

fn write_bytes(out: &mut Vec<u8>, args: std::fmt::Arguments<'_>) -> std::fmt::Result {
    let mut s = String::new();
    s.write_fmt(args)?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

static KEY_USAGE_NAMES: &[&str] = &[
    "Digital Signature",
    "Non Repudiation",
    "Key Encipherment",
    "Data Encipherment",
    "Key Agreement",
    "Certificate Sign",
    "CRL Sign",
    "Encipher Only",
    "Decipher Only",
];

static NS_CERT_TYPE_NAMES: &[&str] = &[
    "SSL Client",
    "SSL Server",
    "S/MIME",
    "Object Signing",
    "Unused",
    "SSL CA",
    "S/MIME CA",
    "Object Signing CA",
];

/// `i2v_ASN1_BIT_STRING`: the names of the set bits; no bit set gives no list (failure).
fn bit_names(v: &[u8], names: &[&str], out: &mut Vec<u8>) -> Res<()> {
    let t = der::first(v)?;
    if !t.is_universal(der::BIT_STRING) {
        return Err(Bad);
    }
    let bits = der::bit_string(&t)?;
    let mut any = false;
    for (i, n) in names.iter().enumerate() {
        if der::bit(&bits, i) {
            if any {
                out.extend_from_slice(b", ");
            }
            push(out, n);
            any = true;
        }
    }
    if any {
        Ok(())
    } else {
        Err(Bad)
    }
}

fn basic_constraints(v: &[u8], out: &mut Vec<u8>) -> Res<()> {
    let mut r = value_seq(v)?;
    let mut ca = false;
    if let Some(b) = r.read_optional(der::UNIVERSAL, der::BOOLEAN)? {
        ca = der::boolean(&b)?;
    }
    let mut pathlen = None;
    if let Some(i) = r.read_optional(der::UNIVERSAL, der::INTEGER)? {
        pathlen = Some(der::read_integer(&i)?);
    }
    if !r.is_empty() {
        return Err(Bad);
    }
    push(out, if ca { "CA:TRUE" } else { "CA:FALSE" });
    if let Some((neg, mag)) = pathlen {
        push(out, ", pathlen:");
        push_bignum(out, neg, &mag);
    }
    Ok(())
}

fn crl_reason(v: &[u8], out: &mut Vec<u8>) -> Res<()> {
    static REASONS: &[&str] = &[
        "Unspecified",
        "Key Compromise",
        "CA Compromise",
        "Affiliation Changed",
        "Superseded",
        "Cessation Of Operation",
        "Certificate Hold",
        "",
        "Remove From CRL",
        "Privilege Withdrawn",
        "AA Compromise",
    ];
    let t = der::first(v)?;
    if !t.is_universal(der::ENUMERATED) {
        return Err(Bad);
    }
    let (neg, mag) = der::read_integer(&t)?;
    let val = if !neg && mag.len() <= 2 {
        mag.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b))
    } else {
        usize::MAX
    };
    match REASONS.get(val) {
        Some(s) if !s.is_empty() => push(out, s),
        _ => push_bignum(out, neg, &mag),
    }
    Ok(())
}

fn private_key_usage_period(v: &[u8], out: &mut Vec<u8>) -> Res<()> {
    let mut r = value_seq(v)?;
    let nb = r.read_optional(der::CONTEXT, 0)?;
    let na = r.read_optional(der::CONTEXT, 1)?;
    if !r.is_empty() {
        return Err(Bad);
    }
    if let Some(nb) = nb {
        let s = nb.string_bytes()?;
        push(out, "Not Before: ");
        time::generalized_time_print(&s, out);
        if na.is_some() {
            push(out, ", ");
        }
    }
    if let Some(na) = na {
        let s = na.string_bytes()?;
        push(out, "Not After: ");
        time::generalized_time_print(&s, out);
    }
    Ok(())
}

fn name_constraints(v: &[u8], out: &mut Vec<u8>) -> Res<()> {
    let mut r = value_seq(v)?;
    let permitted = r.read_optional(der::CONTEXT, 0)?;
    let excluded = r.read_optional(der::CONTEXT, 1)?;
    if !r.is_empty() {
        return Err(Bad);
    }
    let p = match permitted {
        Some(p) => subtrees(&p)?,
        None => Vec::new(),
    };
    let e = match excluded {
        Some(e) => subtrees(&e)?,
        None => Vec::new(),
    };
    for (label, list) in [("Permitted", &p), ("Excluded", &e)] {
        if list.is_empty() {
            continue;
        }
        push(out, label);
        push(out, ":\n");
        for g in list.iter() {
            push(out, "  ");
            match g {
                GenName::Ip(ip) => nc_ip(ip, out),
                other => gn::print(other, out),
            }
            out.push(b'\n');
        }
    }
    Ok(())
}

fn subtrees<'a>(t: &Tlv<'a>) -> Res<Vec<GenName<'a>>> {
    let mut r = implicit_seq_of(t)?;
    let mut out = Vec::new();
    while !r.is_empty() {
        let st = r.read()?;
        let mut f = seq_of(&st)?;
        let base = gn::parse(&f.read()?)?;
        if let Some(min) = f.read_optional(der::CONTEXT, 0)? {
            der::read_integer(&min)?;
        }
        if let Some(max) = f.read_optional(der::CONTEXT, 1)? {
            der::read_integer(&max)?;
        }
        if !f.is_empty() {
            return Err(Bad);
        }
        out.push(base);
    }
    Ok(out)
}

/// `print_nc_ipadd`.
fn nc_ip(ip: &[u8], out: &mut Vec<u8>) {
    let mut s = String::from("IP:");
    if ip.len() == 8 {
        let _ = write!(
            s,
            "{}.{}.{}.{}/{}.{}.{}.{}",
            ip[0], ip[1], ip[2], ip[3], ip[4], ip[5], ip[6], ip[7]
        );
    } else if ip.len() == 32 {
        for (i, c) in ip.chunks_exact(2).enumerate() {
            let _ = write!(s, "{:X}", u16::from_be_bytes([c[0], c[1]]));
            if i == 7 {
                s.push('/');
            } else if i != 15 {
                s.push(':');
            }
        }
    } else {
        s.push_str("IP Address:<invalid>");
    }
    push(out, &s);
}

static REASON_FLAGS: &[&str] = &[
    "Unused",
    "Key Compromise",
    "CA Compromise",
    "Affiliation Changed",
    "Superseded",
    "Cessation Of Operation",
    "Certificate Hold",
    "Privilege Withdrawn",
    "AA Compromise",
];

fn crl_distribution_points(v: &[u8], out: &mut Vec<u8>) -> Res<()> {
    let mut r = value_seq(v)?;
    // Decode everything first: a decoding failure prints nothing.
    struct Dp<'a> {
        full: Option<Vec<GenName<'a>>>,
        relative: Option<Vec<name::Attr<'a>>>,
        reasons: Option<Vec<u8>>,
        issuer: Option<Vec<GenName<'a>>>,
    }
    let mut dps = Vec::new();
    while !r.is_empty() {
        let dp = r.read()?;
        let mut f = seq_of(&dp)?;
        let mut d = Dp {
            full: None,
            relative: None,
            reasons: None,
            issuer: None,
        };
        if let Some(dpn) = f.read_optional(der::CONTEXT, 0)? {
            // [0] EXPLICIT DistributionPointName (a CHOICE).
            let mut inner = dpn.children()?;
            let c = inner.read()?;
            if !inner.is_empty() {
                return Err(Bad);
            }
            if c.is(der::CONTEXT, 0) {
                d.full = Some(gn::parse_seq(implicit_seq_of(&c)?)?);
            } else if c.is(der::CONTEXT, 1) && c.constructed {
                let mut attrs = Vec::new();
                name::parse_rdn_entries(c.content, &mut attrs)?;
                d.relative = Some(attrs);
            } else {
                return Err(Bad);
            }
        }
        if let Some(rs) = f.read_optional(der::CONTEXT, 1)? {
            d.reasons = Some(der::bit_string(&rs)?);
        }
        if let Some(iss) = f.read_optional(der::CONTEXT, 2)? {
            d.issuer = Some(gn::parse_seq(implicit_seq_of(&iss)?)?);
        }
        if !f.is_empty() {
            return Err(Bad);
        }
        dps.push(d);
    }
    for d in &dps {
        out.push(b'\n');
        if let Some(full) = &d.full {
            push(out, "Full Name:\n");
            print_gens(full, out);
        }
        if let Some(rel) = &d.relative {
            push(out, "Relative Name:\n  ");
            name::print_oneline_ex(rel, out);
            out.push(b'\n');
        }
        if let Some(bits) = &d.reasons {
            push(out, "Reasons:\n  ");
            let mut first = true;
            for (i, n) in REASON_FLAGS.iter().enumerate() {
                if der::bit(bits, i) {
                    if !first {
                        push(out, ", ");
                    }
                    first = false;
                    push(out, n);
                }
            }
            if first {
                push(out, "<EMPTY>\n");
            } else {
                out.push(b'\n');
            }
        }
        if let Some(iss) = &d.issuer {
            push(out, "CRL Issuer:\n");
            print_gens(iss, out);
        }
    }
    Ok(())
}

fn print_gens(gens: &[GenName<'_>], out: &mut Vec<u8>) {
    for g in gens {
        push(out, "  ");
        gn::print(g, out);
        out.push(b'\n');
    }
}

/// `%.*s` of an ASN1 string: the octets up to the first NUL.
fn push_c(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(gn::c_str(b));
}

/// DISPLAYTEXT: IA5String, VisibleString, BMPString, UTF8String.
fn display_text<'a>(t: &Tlv<'a>) -> Res<std::borrow::Cow<'a, [u8]>> {
    if t.class == der::UNIVERSAL
        && matches!(
            t.tag,
            der::IA5_STRING | der::VISIBLE_STRING | der::BMP_STRING | der::UTF8_STRING
        )
    {
        t.string_bytes()
    } else {
        Err(Bad)
    }
}

fn is_display_text(t: &Tlv<'_>) -> bool {
    t.class == der::UNIVERSAL
        && matches!(
            t.tag,
            der::IA5_STRING | der::VISIBLE_STRING | der::BMP_STRING | der::UTF8_STRING
        )
}

const ID_QT_CPS: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x02, 0x01];
const ID_QT_UNOTICE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x02, 0x02];

fn certificate_policies(v: &[u8], out: &mut Vec<u8>) -> Res<()> {
    let mut r = value_seq(v)?;
    // Decode fully before printing: OpenSSL prints nothing for a value it cannot decode.
    let mut text = Vec::new();
    while !r.is_empty() {
        let pi = r.read()?;
        let mut f = seq_of(&pi)?;
        let policy = der::read_oid(&mut f)?;
        push(&mut text, "Policy: ");
        let mut s = String::new();
        oid::push_text(&mut s, policy, usize::MAX);
        push(&mut text, &s);
        text.push(b'\n');
        if let Some(q) = f.read_optional(der::UNIVERSAL, der::SEQUENCE)? {
            let mut qr = seq_of(&q)?;
            while !qr.is_empty() {
                let pq = qr.read()?;
                let mut qf = seq_of(&pq)?;
                let qid = der::read_oid(&mut qf)?;
                if qid == ID_QT_CPS {
                    let u = qf.read()?;
                    if !u.is_universal(der::IA5_STRING) {
                        return Err(Bad);
                    }
                    push(&mut text, "  CPS: ");
                    push_c(&mut text, &u.string_bytes()?);
                    text.push(b'\n');
                } else if qid == ID_QT_UNOTICE {
                    let un = qf.read()?;
                    let mut uf = seq_of(&un)?;
                    push(&mut text, "  User Notice:\n");
                    if let Some(nr) = uf.read_optional(der::UNIVERSAL, der::SEQUENCE)? {
                        let mut nf = seq_of(&nr)?;
                        let org = display_text(&nf.read()?)?;
                        let nums_t = nf.read()?;
                        let mut nums = seq_of(&nums_t)?;
                        if !nf.is_empty() {
                            return Err(Bad);
                        }
                        let mut list = Vec::new();
                        while !nums.is_empty() {
                            let n = nums.read()?;
                            if !n.is_universal(der::INTEGER) {
                                return Err(Bad);
                            }
                            list.push(der::read_integer(&n)?);
                        }
                        push(&mut text, "    Organization: ");
                        push_c(&mut text, &org);
                        text.push(b'\n');
                        push(
                            &mut text,
                            if list.len() > 1 {
                                "    Numbers: "
                            } else {
                                "    Number: "
                            },
                        );
                        for (i, (neg, mag)) in list.iter().enumerate() {
                            if i > 0 {
                                push(&mut text, ", ");
                            }
                            push_bignum(&mut text, *neg, mag);
                        }
                        text.push(b'\n');
                    }
                    if let Some(et) = uf.peek().filter(is_display_text) {
                        uf.read()?;
                        push(&mut text, "    Explicit Text: ");
                        push_c(&mut text, &display_text(&et)?);
                        text.push(b'\n');
                    }
                    if !uf.is_empty() {
                        return Err(Bad);
                    }
                } else {
                    // ASN1_ANY.
                    qf.read()?;
                    push(&mut text, "    Unknown Qualifier: ");
                    let mut s = String::new();
                    oid::push_text(&mut s, qid, usize::MAX);
                    push(&mut text, &s);
                    text.push(b'\n');
                }
                if !qf.is_empty() {
                    return Err(Bad);
                }
            }
        }
        if !f.is_empty() {
            return Err(Bad);
        }
    }
    out.extend_from_slice(&text);
    Ok(())
}

fn policy_mappings(v: &[u8], out: &mut Vec<u8>) -> Res<()> {
    let mut r = value_seq(v)?;
    let mut vals = Vec::new();
    while !r.is_empty() {
        let m = r.read()?;
        let mut f = seq_of(&m)?;
        let a = der::read_oid(&mut f)?;
        let b = der::read_oid(&mut f)?;
        if !f.is_empty() {
            return Err(Bad);
        }
        let mut sa = String::new();
        oid::push_text(&mut sa, a, 80);
        let mut sb = String::new();
        oid::push_text(&mut sb, b, 80);
        vals.push(ConfValue {
            name: Some(sa.into_bytes()),
            value: Some(sb.into_bytes()),
        });
    }
    if vals.is_empty() {
        return Err(Bad);
    }
    gn::val_prn(&vals, false, out);
    Ok(())
}

fn authority_key_id(v: &[u8], out: &mut Vec<u8>) -> Res<()> {
    let mut r = value_seq(v)?;
    let keyid = r.read_optional(der::CONTEXT, 0)?;
    let issuer = r.read_optional(der::CONTEXT, 1)?;
    let serial = r.read_optional(der::CONTEXT, 2)?;
    if !r.is_empty() {
        return Err(Bad);
    }
    // i2v_AUTHORITY_KEYID: a NULL list (failure) unless something was added or the issuer
    // field (even empty) was present.
    let mut vals = Vec::new();
    let mut exists = false;
    if let Some(k) = keyid {
        let mut h = Vec::new();
        push_hex_colon(&mut h, &k.string_bytes()?);
        vals.push(ConfValue {
            name: Some(b"keyid".to_vec()),
            value: Some(h),
        });
        exists = true;
    }
    if let Some(i) = issuer {
        let names = gn::parse_seq(implicit_seq_of(&i)?)?;
        for g in &names {
            gn::i2v(g, &mut vals)?;
        }
        exists = true;
    }
    if let Some(s) = serial {
        let (_, mag) = der::read_integer(&s)?;
        let mut h = Vec::new();
        push_hex_colon(&mut h, &mag);
        vals.push(ConfValue {
            name: Some(b"serial".to_vec()),
            value: Some(h),
        });
        exists = true;
    }
    if !exists {
        return Err(Bad);
    }
    gn::val_prn(&vals, true, out);
    Ok(())
}

fn policy_constraints(v: &[u8], out: &mut Vec<u8>) -> Res<()> {
    let mut r = value_seq(v)?;
    let req = r.read_optional(der::CONTEXT, 0)?;
    let inh = r.read_optional(der::CONTEXT, 1)?;
    if !r.is_empty() {
        return Err(Bad);
    }
    let mut vals = Vec::new();
    for (label, t) in [
        ("Require Explicit Policy", req),
        ("Inhibit Policy Mapping", inh),
    ] {
        if let Some(t) = t {
            let (neg, mag) = der::read_integer(&t)?;
            let mut s = Vec::new();
            push_bignum(&mut s, neg, &mag);
            vals.push(ConfValue {
                name: Some(label.as_bytes().to_vec()),
                value: Some(s),
            });
        }
    }
    if vals.is_empty() {
        return Err(Bad);
    }
    gn::val_prn(&vals, false, out);
    Ok(())
}

fn ext_key_usage(v: &[u8], out: &mut Vec<u8>) -> Res<()> {
    let mut r = value_seq(v)?;
    let mut first = true;
    let mut s = String::new();
    while !r.is_empty() {
        let o = der::read_oid(&mut r)?;
        if !first {
            s.push_str(", ");
        }
        first = false;
        oid::push_text(&mut s, o, 80);
    }
    if first {
        return Err(Bad);
    }
    push(out, &s);
    Ok(())
}

fn info_access(v: &[u8], out: &mut Vec<u8>) -> Res<()> {
    let mut r = value_seq(v)?;
    let mut vals = Vec::new();
    while !r.is_empty() {
        let ad = r.read()?;
        let mut f = seq_of(&ad)?;
        let method = der::read_oid(&mut f)?;
        let loc = gn::parse(&f.read()?)?;
        if !f.is_empty() {
            return Err(Bad);
        }
        let at = vals.len();
        gn::i2v(&loc, &mut vals)?;
        let mut s = String::new();
        oid::push_text(&mut s, method, 80);
        s.push_str(" - ");
        let cv = &mut vals[at];
        let mut name = s.into_bytes();
        name.extend_from_slice(cv.name.as_deref().unwrap_or_default());
        cv.name = Some(name);
    }
    gn::val_prn(&vals, true, out);
    Ok(())
}

fn tls_feature(v: &[u8], out: &mut Vec<u8>) -> Res<()> {
    let mut r = value_seq(v)?;
    let mut vals = Vec::new();
    while !r.is_empty() {
        let i = r.read()?;
        if !i.is_universal(der::INTEGER) {
            return Err(Bad);
        }
        let (neg, mag) = der::read_integer(&i)?;
        let small = if !neg && mag.len() <= 4 {
            Some(mag.iter().fold(0u32, |a, &b| (a << 8) | u32::from(b)))
        } else {
            None
        };
        let text = match small {
            Some(5) => b"status_request".to_vec(),
            Some(17) => b"status_request_v2".to_vec(),
            _ => {
                let mut s = Vec::new();
                push_bignum(&mut s, neg, &mag);
                s
            }
        };
        vals.push(ConfValue {
            name: None,
            value: Some(text),
        });
    }
    if vals.is_empty() {
        return Err(Bad);
    }
    gn::val_prn(&vals, false, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(oid: &[u8], v: &[u8]) -> String {
        print(oid, v)
    }

    #[test]
    fn key_usage_and_basic_constraints() {
        assert_eq!(
            p(KEY_USAGE, &[0x03, 0x02, 0x05, 0xa0]),
            "Digital Signature, Key Encipherment"
        );
        assert_eq!(p(KEY_USAGE, &[0x03, 0x01, 0x00]), "NULL");
        assert_eq!(p(BASIC_CONSTRAINTS, &[0x30, 0x00]), "CA:FALSE");
        assert_eq!(
            p(
                BASIC_CONSTRAINTS,
                &[0x30, 0x06, 0x01, 0x01, 0xff, 0x02, 0x01, 0x00]
            ),
            "CA:TRUE, pathlen:0"
        );
        assert_eq!(p(INHIBIT_ANY_POLICY, &[0x02, 0x01, 0x02]), "2");
        assert_eq!(p(INHIBIT_ANY_POLICY, &[0x02, 0x00]), "NULL");
    }

    #[test]
    fn ski_aki_eku() {
        assert_eq!(p(SUBJECT_KEY_ID, &[0x04, 0x02, 0x01, 0xab]), "01:AB");
        assert_eq!(
            p(AUTHORITY_KEY_ID, &[0x30, 0x04, 0x80, 0x02, 0x01, 0xab]),
            "keyid:01:AB\n"
        );
        assert_eq!(
            p(
                EXT_KEY_USAGE,
                &[0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01]
            ),
            "TLS Web Server Authentication"
        );
        assert_eq!(p(EXT_KEY_USAGE, &[0x30, 0x00]), "NULL");
    }

    #[test]
    fn unknown_and_poison() {
        assert_eq!(p(&[0x2a, 0x03], &[0x05, 0x00]), "NULL");
        assert_eq!(p(CT_PRECERT_POISON, &[0x05, 0x00]), "NULL");
        assert_eq!(p(OCSP_NO_CHECK, &[0x05, 0x00]), "");
    }

    #[test]
    fn bignums() {
        let mut v = Vec::new();
        push_bignum(&mut v, true, &[8]);
        assert_eq!(v, b"-8");
        let mut v = Vec::new();
        push_bignum(&mut v, false, &[0]);
        assert_eq!(v, b"0");
        let mut v = Vec::new();
        push_bignum(&mut v, false, &[0x80; 16]);
        assert_eq!(v, b"0x80808080808080808080808080808080");
    }
}
