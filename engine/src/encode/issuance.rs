//! The issuance key of a certificate, for cross-log dedup: one key for a certificate however
//! many logs carry it, and the same key for a precertificate and its final certificate.
//!
//! A precertificate's TBSCertificate is its final certificate's with the CT poison extension
//! (1.3.6.1.4.1.11129.2.4.3) in place of the SCT list (1.3.6.1.4.1.11129.2.4.2, RFC 6962
//! §3.1). The key hashes (SHA-256, first 16 bytes) every element of the TBSCertificate in
//! order, and within its extensions every extension but those two: DER encodes each element
//! one way only, so hashing the remaining pieces in order equals hashing a re-encoding
//! without them.

/// A certificate's issuance key.
pub type IssuanceKey = [u8; 16];

/// `06 0A 2B 06 01 04 01 D6 79 02 04 03`: the CT poison extension's OID.
const POISON: &[u8] = &[
    0x06, 0x0A, 0x2B, 0x06, 0x01, 0x04, 0x01, 0xD6, 0x79, 0x02, 0x04, 0x03,
];
/// The embedded SCT list extension's OID.
const SCT_LIST: &[u8] = &[
    0x06, 0x0A, 0x2B, 0x06, 0x01, 0x04, 0x01, 0xD6, 0x79, 0x02, 0x04, 0x02,
];

/// One DER element split off: `(tag, content, whole element, rest)`.
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// Splits one DER TLV off the front of `der`.
fn tlv(der: &[u8]) -> Option<Tlv<'_>> {
    let tag = *der.first()?;
    let first = *der.get(1)?;
    let (len, hlen) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in der.get(2..2 + n)? {
            len = (len << 8) | *b as usize;
        }
        (len, 2 + n)
    };
    let end = hlen.checked_add(len)?;
    let whole = der.get(..end)?;
    Some((tag, &whole[hlen..], whole, &der[end..]))
}

/// The issuance key of a DER certificate (or precertificate); `None` when it is not DER.
pub fn issuance_key(cert: &[u8]) -> Option<IssuanceKey> {
    let (_, cert, _, _) = tlv(cert)?;
    let (tag, mut tbs, _, _) = tlv(cert)?;
    if tag != 0x30 {
        return None;
    }
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    while !tbs.is_empty() {
        let (tag, content, whole, rest) = tlv(tbs)?;
        tbs = rest;
        if tag != 0xA3 {
            ctx.update(whole);
            continue;
        }
        // [3] EXPLICIT Extensions: SEQUENCE OF Extension { extnID, critical, extnValue }.
        let (_, mut exts, _, _) = tlv(content)?;
        while !exts.is_empty() {
            let (_, ext, whole, rest) = tlv(exts)?;
            exts = rest;
            let (_, _, oid, _) = tlv(ext)?;
            if oid != POISON && oid != SCT_LIST {
                ctx.update(whole);
            }
        }
    }
    let digest = ctx.finish();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest.as_ref()[..16]);
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate signed by `issuer` for `names`, with a fixed serial, validity and key,
    /// plus `extra` extensions.
    fn cert(
        issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
        key: &rcgen::KeyPair,
        serial: u8,
        extra: Vec<rcgen::CustomExtension>,
    ) -> Vec<u8> {
        let mut p = rcgen::CertificateParams::new(vec!["a.example".to_string()]).unwrap();
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&[serial]));
        p.not_before = rcgen::date_time_ymd(2026, 1, 1);
        p.not_after = rcgen::date_time_ymd(2026, 4, 1);
        p.custom_extensions = extra;
        p.signed_by(key, issuer).unwrap().der().to_vec()
    }

    #[test]
    fn a_precertificate_and_its_certificate_share_a_key() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::new(rcgen::CertificateParams::default(), ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut poison = rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 11129, 2, 4, 3],
            vec![5, 0],
        );
        poison.set_criticality(true);
        let scts = rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 11129, 2, 4, 2],
            vec![4, 3, 0, 1, 0],
        );
        let pre = cert(&issuer, &key, 7, vec![poison]);
        let fin = cert(&issuer, &key, 7, vec![scts]);
        let plain = cert(&issuer, &key, 7, vec![]);
        let other = cert(&issuer, &key, 8, vec![]);
        assert_ne!(pre, fin);
        let k = issuance_key(&pre).unwrap();
        assert_eq!(issuance_key(&fin), Some(k));
        assert_eq!(issuance_key(&plain), Some(k));
        assert_ne!(issuance_key(&other), Some(k));
        assert_eq!(issuance_key(b"\x30\x03\x02\x01"), None);
        assert_eq!(issuance_key(b""), None);
    }
}
