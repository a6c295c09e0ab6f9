//! X.509 → the certificate fields of a certstream message.
//!
//! The texts follow what the original Python server produced through pyOpenSSL on
//! OpenSSL 1.1.1 (`X509V3_EXT_print`, `X509_NAME` one-line forms); `../shared/corpus/expected/`
//! is the ground truth.
//!
//! The certificate is parsed with `x509-parser` (extensions left undecoded); where it refuses
//! a certificate that OpenSSL accepted (odd strings, unusual encodings), a lenient walker over
//! the same DER takes over. Either way the values are then printed by emulations of the
//! OpenSSL 1.1.1 printers in the submodules:
//!
//! * `der`: BER/DER reader with OpenSSL's leniency; `oid` + `oid_table`: OpenSSL's names.
//! * `name`: `X509_NAME_oneline`, `X509_NAME_print_ex`, `ASN1_STRING_to_UTF8`.
//! * `gn`: GeneralName and its printers; `ext`: every extension text; `sct`: SCT lists.
//! * `time`: validity times as certlib computed them, `ASN1_TIME_print`.

mod der;
mod ext;
mod gn;
mod name;
mod oid;
mod oid_table;
mod sct;
mod time;

use std::fmt::Write;

use name::Attr;

use crate::error::Error;

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
    /// Subject CN, then every SAN dNSName, exact duplicates removed.
    pub all_domains: Vec<String>,
}

/// Why a certificate could not be turned into fields: always [`Error::X509`] (the crate's one
/// error type; this name is kept for the code that already uses it).
pub type X509Error = Error;

/// A validity time: (universal tag, content octets).
type RawTime<'a> = (u32, &'a [u8]);

/// The parts of a certificate certstream prints, as slices of the DER.
struct RawCert<'a> {
    serial: &'a [u8],
    subject: Vec<Attr<'a>>,
    issuer: Vec<Attr<'a>>,
    not_before: RawTime<'a>,
    not_after: RawTime<'a>,
    /// `(OID content octets, extnValue content octets)` in certificate order.
    extensions: Vec<(&'a [u8], &'a [u8])>,
}

/// Parses one DER certificate into its certstream fields.
pub fn parse_cert(der: &[u8]) -> Result<CertFields, Error> {
    parse_with(der, true)
}

/// The same without the `x509-parser` pass: only the lenient walker. The corpus tests run
/// both to keep the two paths in agreement.
#[doc(hidden)]
pub fn parse_cert_lenient(der: &[u8]) -> Result<CertFields, Error> {
    parse_with(der, false)
}

fn parse_with(der: &[u8], use_x509_parser: bool) -> Result<CertFields, Error> {
    let outer = der::first(der).map_err(|_| Error::X509("not a DER element"))?;
    if !outer.is_universal(der::SEQUENCE) || !outer.constructed {
        return Err(Error::X509("not a SEQUENCE"));
    }
    // The certificate's own encoding: what d2i_X509 read and i2d_X509 gives back.
    let cert_der = outer.raw;
    if use_x509_parser {
        use x509_parser::nom::Parser;
        let mut parser = x509_parser::certificate::X509CertificateParser::new()
            .with_deep_parse_extensions(false);
        if let Ok((_, cert)) = parser.parse(cert_der) {
            if let Ok(raw) = from_x509_parser(&cert, &outer) {
                return Ok(format(&raw, cert_der));
            }
        }
    }
    let raw = walk(&outer).map_err(|_| Error::X509("certificate structure"))?;
    Ok(format(&raw, cert_der))
}

/// The TBSCertificate's fields up to the validity: (serial element, issuer, validity).
fn tbs_head<'a>(outer: &der::Tlv<'a>) -> der::Res<(der::Reader<'a>, der::Tlv<'a>)> {
    let mut c = outer.children()?;
    let tbs = c.read()?;
    if !tbs.is_universal(der::SEQUENCE) {
        return Err(der::Bad);
    }
    let mut r = tbs.children()?;
    r.read_optional(der::CONTEXT, 0)?;
    let serial = r.read()?;
    Ok((r, serial))
}

fn read_validity<'a>(r: &mut der::Reader<'a>) -> der::Res<(RawTime<'a>, RawTime<'a>)> {
    let v = r.read()?;
    if !v.is_universal(der::SEQUENCE) {
        return Err(der::Bad);
    }
    let mut vr = v.children()?;
    let nb = vr.read()?;
    let na = vr.read()?;
    Ok(((nb.tag, nb.content), (na.tag, na.content)))
}

fn from_x509_parser<'a>(
    cert: &'a x509_parser::certificate::X509Certificate<'a>,
    outer: &der::Tlv<'a>,
) -> der::Res<RawCert<'a>> {
    let tbs = &cert.tbs_certificate;
    let (mut r, _) = tbs_head(outer)?;
    r.read()?; // signature algorithm
    r.read()?; // issuer
    let (not_before, not_after) = read_validity(&mut r)?;
    let mut subject = Vec::new();
    name::parse_name(&der::first(tbs.subject.as_raw())?, &mut subject)?;
    let mut issuer = Vec::new();
    name::parse_name(&der::first(tbs.issuer.as_raw())?, &mut issuer)?;
    let extensions = tbs
        .extensions()
        .iter()
        .map(|e| (e.oid.as_bytes(), e.value))
        .collect();
    Ok(RawCert {
        serial: tbs.raw_serial(),
        subject,
        issuer,
        not_before,
        not_after,
        extensions,
    })
}

/// The lenient walker: TBSCertificate fields read with OpenSSL's tolerance.
fn walk<'a>(outer: &der::Tlv<'a>) -> der::Res<RawCert<'a>> {
    let (mut r, serial) = tbs_head(outer)?;
    if !serial.is_universal(der::INTEGER) || serial.constructed {
        return Err(der::Bad);
    }
    r.read()?; // signature algorithm
    let issuer_t = r.read()?;
    let (not_before, not_after) = read_validity(&mut r)?;
    let subject_t = r.read()?;
    let mut subject = Vec::new();
    name::parse_name(&subject_t, &mut subject)?;
    let mut issuer = Vec::new();
    name::parse_name(&issuer_t, &mut issuer)?;
    r.read()?; // subjectPublicKeyInfo
    r.read_optional(der::CONTEXT, 1)?;
    r.read_optional(der::CONTEXT, 2)?;
    let mut extensions = Vec::new();
    if let Some(e) = r.read_optional(der::CONTEXT, 3)? {
        let mut er = e.children()?;
        let list = er.read()?;
        if !list.is_universal(der::SEQUENCE) {
            return Err(der::Bad);
        }
        let mut lr = list.children()?;
        while !lr.is_empty() {
            let ext = lr.read()?;
            if !ext.is_universal(der::SEQUENCE) {
                return Err(der::Bad);
            }
            let mut f = ext.children()?;
            let oid = der::read_oid(&mut f)?;
            if let Some(b) = f.read_optional(der::UNIVERSAL, der::BOOLEAN)? {
                der::boolean(&b)?;
            }
            let v = f.read()?;
            if !v.is_universal(der::OCTET_STRING) || v.constructed {
                return Err(der::Bad);
            }
            extensions.push((oid, v.content));
        }
    }
    Ok(RawCert {
        serial: serial.content,
        subject,
        issuer,
        not_before,
        not_after,
        extensions,
    })
}

fn format(raw: &RawCert<'_>, der: &[u8]) -> CertFields {
    let subject = make_name(&raw.subject);
    let issuer = make_name(&raw.issuer);

    // A Python dict: a repeated extension keeps its first position and its last value.
    let mut extensions: Vec<(String, String)> = Vec::with_capacity(raw.extensions.len());
    for &(oid, value) in &raw.extensions {
        let Some(sn) = oid::short_name(oid) else {
            continue; // "UNDEF": skipped by certlib
        };
        let text = ext::print(oid, value);
        match extensions.iter_mut().find(|(k, _)| k == sn) {
            Some(slot) => slot.1 = text,
            None => extensions.push((sn.to_owned(), text)),
        }
    }

    let all_domains = all_domains(subject.cn.as_deref(), &extensions);

    CertFields {
        not_before: epoch(raw.not_before),
        not_after: epoch(raw.not_after),
        serial_number: serial_hex(raw.serial),
        fingerprint: fingerprint(der),
        subject,
        issuer,
        extensions,
        all_domains,
    }
}

fn epoch((tag, content): RawTime<'_>) -> i64 {
    time::validity_epoch(tag, content).unwrap_or_else(|| time::lenient_epoch(tag, content))
}

const OID_C: &[u8] = &[0x55, 0x04, 0x06];
const OID_ST: &[u8] = &[0x55, 0x04, 0x08];
const OID_L: &[u8] = &[0x55, 0x04, 0x07];
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];
const OID_OU: &[u8] = &[0x55, 0x04, 0x0b];
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];

fn make_name(attrs: &[Attr<'_>]) -> Name {
    let mut aggregated = String::new();
    name::oneline(attrs, name::PYOPENSSL_REPR_BUF, &mut aggregated);
    // pyOpenSSL's `X509Name.<attr>`: the first entry with that NID, converted to UTF-8.
    let get = |oid: &[u8]| {
        attrs.iter().find(|a| a.oid == oid).map(|a| {
            name::component_utf8(a).unwrap_or_else(|| String::from_utf8_lossy(a.value).into_owned())
        })
    };
    Name {
        aggregated,
        c: get(OID_C),
        st: get(OID_ST),
        l: get(OID_L),
        o: get(OID_O),
        ou: get(OID_OU),
        cn: get(OID_CN),
    }
}

/// certstream-server-python's `add_all_domains`: the CN if non-empty, then every `DNS:`
/// entry of the subjectAltName text split on `", "` (with every `DNS:` removed), deduplicated.
fn all_domains(cn: Option<&str>, extensions: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |d: String| {
        if !out.contains(&d) {
            out.push(d);
        }
    };
    if let Some(cn) = cn.filter(|c| !c.is_empty()) {
        add(cn.to_owned());
    }
    if let Some((_, san)) = extensions.iter().find(|(k, _)| k == "subjectAltName") {
        if !san.is_empty() {
            for entry in san.split(", ") {
                if entry.starts_with("DNS:") {
                    add(entry.replace("DNS:", ""));
                }
            }
        }
    }
    out
}

/// `'{0:x}'.format(int(serial))`.
fn serial_hex(content: &[u8]) -> String {
    let (neg, mag) = der::integer_magnitude(content).unwrap_or_else(|_| (false, content.to_vec()));
    let mut s = String::with_capacity(mag.len() * 2 + 1);
    let skip = mag.iter().take_while(|&&b| b == 0).count();
    let mag = &mag[skip..];
    if mag.is_empty() {
        s.push('0');
        return s;
    }
    if neg {
        s.push('-');
    }
    let _ = write!(s, "{:x}", mag[0]);
    for b in &mag[1..] {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// SHA-1 of the DER as uppercase colon-separated hex. The `sha1` crate uses the CPU's SHA
/// extensions where present (ring's SHA-1 is portable code: ~3x slower here).
pub(crate) fn fingerprint(der: &[u8]) -> String {
    use sha1::Digest as _;
    let d = sha1::Sha1::digest(der);
    let mut s = String::with_capacity(59);
    for (i, &b) in d.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        name::push_hex_upper(&mut s, b);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials() {
        assert_eq!(serial_hex(&[0x00]), "0");
        assert_eq!(serial_hex(&[0x07]), "7");
        assert_eq!(serial_hex(&[0x00, 0xa6, 0x01]), "a601");
        assert_eq!(serial_hex(&[0xfb]), "-5");
        assert_eq!(serial_hex(&[0x01, 0x02]), "102");
    }

    #[test]
    fn domains() {
        let exts = vec![(
            "subjectAltName".to_string(),
            "DNS:a.example, IP Address:1.2.3.4, DNS:a.example, DNS:b.DNS:x, email:e".to_string(),
        )];
        assert_eq!(
            all_domains(Some("a.example"), &exts),
            vec!["a.example", "b.x"]
        );
        assert_eq!(all_domains(Some(""), &[]), Vec::<String>::new());
    }

    fn rcgen_cert() -> Vec<u8> {
        let names = vec![
            "a.example".to_string(),
            "b.example".to_string(),
            "192.0.2.1".to_string(),
            "a.example".to_string(),
        ];
        rcgen::generate_simple_self_signed(names)
            .expect("rcgen")
            .cert
            .der()
            .to_vec()
    }

    #[test]
    fn generated_certificate_fields() {
        let der = rcgen_cert();
        let f = parse_cert(&der).unwrap();
        assert_eq!(f.subject.aggregated, "/CN=rcgen self signed cert");
        assert_eq!(f.subject.cn.as_deref(), Some("rcgen self signed cert"));
        assert_eq!(f.subject.o, None);
        let san = f
            .extensions
            .iter()
            .find(|(k, _)| k == "subjectAltName")
            .map(|(_, v)| v.as_str());
        assert_eq!(
            san,
            Some("DNS:a.example, DNS:b.example, IP Address:192.0.2.1, DNS:a.example")
        );
        assert_eq!(
            f.all_domains,
            ["rcgen self signed cert", "a.example", "b.example"]
        );
        assert!(f.not_after > f.not_before);
        assert_eq!(f.fingerprint.len(), 59);
        assert_eq!(Some(&f), parse_cert_lenient(&der).ok().as_ref());
    }

    /// Every single-octet corruption of a real certificate parses or fails, never panics.
    #[test]
    fn corrupted_certificates_never_panic() {
        let der = rcgen_cert();
        for i in 0..der.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut d = der.clone();
                d[i] ^= x;
                let _ = parse_cert(&d);
                let _ = parse_cert_lenient(&d);
            }
            let _ = parse_cert(&der[..i]);
            let mut d = der.clone();
            d.insert(i, 0x80);
            let _ = parse_cert_lenient(&d);
        }
    }

    /// Every certificate of the system CA bundle parses, the same way on both paths.
    #[test]
    fn system_cas_parse() {
        use base64::Engine as _;
        let Ok(dir) = std::fs::read_dir("/etc/ssl/certs") else {
            return;
        };
        let mut n = 0;
        for e in dir.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("pem") {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for block in text.split("-----BEGIN CERTIFICATE-----").skip(1) {
                let Some((b64, _)) = block.split_once("-----END CERTIFICATE-----") else {
                    continue;
                };
                let b64: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
                let der = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .expect("PEM base64");
                let f = parse_cert(&der).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(f.fingerprint.len(), 59, "{}", path.display());
                assert!(f.subject.aggregated.starts_with('/') || f.subject.aggregated.is_empty());
                assert_eq!(Some(&f), parse_cert_lenient(&der).ok().as_ref());
                for cut in [1, der.len() / 2, der.len() - 1] {
                    assert!(parse_cert(&der[..cut]).is_err());
                }
                n += 1;
            }
        }
        println!("{n} system CA certificates parsed");
    }

    #[test]
    fn garbage_never_panics() {
        assert!(parse_cert(&[]).is_err());
        assert!(parse_cert(&[0x30]).is_err());
        assert!(parse_cert(&[0x30, 0x00]).is_err());
        assert!(parse_cert(&[0x04, 0x00]).is_err());
        assert!(parse_cert(b"not a certificate at all").is_err());
        // Deterministic pseudo-random inputs, some starting like a certificate.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for n in 0..2000usize {
            let mut v = Vec::with_capacity(n % 300);
            for _ in 0..(n % 300) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.push(x as u8);
            }
            if n % 2 == 0 && v.len() > 4 {
                v[0] = 0x30;
                v[1] = 0x82;
            }
            let _ = parse_cert(&v);
            let _ = parse_cert_lenient(&v);
        }
    }
}
