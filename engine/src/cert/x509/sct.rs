//! Signed certificate timestamp lists (`i2r_SCT_LIST` / `SCT_print` of OpenSSL 1.1.1).

use super::der::{self, Bad, Res};
use super::time;

const MAX_SCT_SIZE: usize = 65_535;

struct Sct<'a> {
    version: u8,
    /// Whole SCT for versions other than v1.
    raw: &'a [u8],
    log_id: &'a [u8],
    timestamp: u64,
    ext: &'a [u8],
    hash_alg: u8,
    sig_alg: u8,
    sig: &'a [u8],
}

fn be16(b: &[u8]) -> usize {
    usize::from(b[0]) << 8 | usize::from(b[1])
}

/// `o2i_SCT`.
fn parse_sct(p: &[u8]) -> Res<Sct<'_>> {
    if p.is_empty() || p.len() > MAX_SCT_SIZE {
        return Err(Bad);
    }
    let version = p[0];
    if version != 0 {
        return Ok(Sct {
            version,
            raw: p,
            log_id: &[],
            timestamp: 0,
            ext: &[],
            hash_alg: 0,
            sig_alg: 0,
            sig: &[],
        });
    }
    if p.len() < 43 {
        return Err(Bad);
    }
    let mut len = p.len() - 43;
    let log_id = &p[1..33];
    let timestamp = u64::from_be_bytes(p[33..41].try_into().map_err(|_| Bad)?);
    let ext_len = be16(&p[41..43]);
    if len < ext_len {
        return Err(Bad);
    }
    let ext = &p[43..43 + ext_len];
    len -= ext_len;
    let s = &p[43 + ext_len..];
    // o2i_SCT_signature: hash, sig alg, 2-byte length, signature; empty is invalid.
    if len <= 4 {
        return Err(Bad);
    }
    let hash_alg = s[0];
    let sig_alg = s[1];
    if signature_name(hash_alg, sig_alg).is_none() {
        return Err(Bad);
    }
    let sig_len = be16(&s[2..4]);
    if sig_len > len - 4 {
        return Err(Bad);
    }
    Ok(Sct {
        version,
        raw: p,
        log_id,
        timestamp,
        ext,
        hash_alg,
        sig_alg,
        sig: &s[4..4 + sig_len],
    })
}

/// `SCT_get_signature_nid` → `OBJ_nid2ln`.
fn signature_name(hash: u8, sig: u8) -> Option<&'static str> {
    match (hash, sig) {
        (4, 3) => Some("ecdsa-with-SHA256"),
        (4, 1) => Some("sha256WithRSAEncryption"),
        _ => None,
    }
}

/// `BIO_hex_string(out, indent, width, data, len)`.
fn hex_string(out: &mut Vec<u8>, indent: usize, width: usize, data: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let Some((&last, init)) = data.split_last() else {
        return;
    };
    let mut j = 0;
    let mut i = 0;
    for &b in init {
        if i > 0 && j == 0 {
            out.resize(out.len() + indent, b' ');
        }
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
        out.push(b':');
        j = (j + 1) % width;
        if j == 0 {
            out.push(b'\n');
        }
        i += 1;
    }
    if i > 0 && j == 0 {
        out.resize(out.len() + indent, b' ');
    }
    out.push(HEX[usize::from(last >> 4)]);
    out.push(HEX[usize::from(last & 15)]);
}

/// `d2i_SCT_LIST` + `i2r_SCT_LIST`.
pub(crate) fn print_list(v: &[u8], out: &mut Vec<u8>) -> Res<()> {
    let t = der::first(v)?;
    if !t.is_universal(der::OCTET_STRING) {
        return Err(Bad);
    }
    let data = t.string_bytes()?;
    let data: &[u8] = &data;
    if data.len() < 2 || data.len() > MAX_SCT_SIZE {
        return Err(Bad);
    }
    let list_len = be16(data);
    if list_len != data.len() - 2 {
        return Err(Bad);
    }
    let mut rest = &data[2..];
    let mut scts = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 2 {
            return Err(Bad);
        }
        let n = be16(rest);
        rest = &rest[2..];
        if n == 0 || n > rest.len() {
            return Err(Bad);
        }
        scts.push(parse_sct(&rest[..n])?);
        rest = &rest[n..];
    }
    for (i, s) in scts.iter().enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        out.extend_from_slice(b"Signed Certificate Timestamp:\n    Version   : ");
        if s.version != 0 {
            out.extend_from_slice(b"unknown\n                ");
            hex_string(out, 16, 16, s.raw);
            continue;
        }
        out.extend_from_slice(b"v1 (0x0)\n    Log ID    : ");
        hex_string(out, 16, 16, s.log_id);
        out.extend_from_slice(b"\n    Timestamp : ");
        time::print_epoch_millis(s.timestamp, out);
        out.extend_from_slice(b"\n    Extensions: ");
        if s.ext.is_empty() {
            out.extend_from_slice(b"none");
        } else {
            hex_string(out, 16, 16, s.ext);
        }
        out.extend_from_slice(b"\n    Signature : ");
        out.extend_from_slice(
            signature_name(s.hash_alg, s.sig_alg)
                .unwrap_or_default()
                .as_bytes(),
        );
        out.extend_from_slice(b"\n                ");
        hex_string(out, 16, 16, s.sig);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_rows() {
        let mut v = Vec::new();
        hex_string(&mut v, 4, 2, &[1, 2, 3, 4, 5]);
        assert_eq!(v, b"01:02:\n    03:04:\n    05");
        let mut v = Vec::new();
        hex_string(&mut v, 4, 2, &[1, 2]);
        assert_eq!(v, b"01:02");
        let mut v = Vec::new();
        hex_string(&mut v, 4, 2, &[]);
        assert!(v.is_empty());
    }

    #[test]
    fn rejects_bad_lists() {
        let mut v = Vec::new();
        assert!(print_list(&[0x04, 0x01, 0x00], &mut v).is_err());
        assert!(print_list(&[0x04, 0x02, 0x00, 0x01], &mut v).is_err());
        assert!(print_list(&[0x04, 0x02, 0x00, 0x00], &mut v).is_ok());
        assert!(v.is_empty());
    }
}
