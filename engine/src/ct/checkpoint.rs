//! static-ct-api checkpoints → a verified tree size.
//!
//! A static-ct-api log publishes its signed tree head at `<monitoring prefix>/checkpoint` as a
//! signed note (c2sp.org/signed-note) whose text is a checkpoint (c2sp.org/tlog-checkpoint):
//!
//! ```text
//! <origin>\n<tree size>\n<base64 root hash>\n
//! \n
//! — <key name> <base64(key ID[4] || signature)>\n
//! ```
//!
//! The rules this module enforces (c2sp.org/static-ct-api, "Checkpoints"):
//! - the origin line is the log's submission prefix without scheme and trailing slashes;
//! - the log's signature line has key name = origin and key ID = the first four bytes of
//!   SHA-256(origin || 0x0A || 0x05 || LogID), LogID = SHA-256(DER SubjectPublicKeyInfo);
//! - its signature is an `RFC6962NoteSignature`: `uint64 timestamp` then the RFC 6962
//!   `TreeHeadSignature` as `DigitallySigned` (SHA-256 with ECDSA or RSA) over
//!   `version(0) signature_type(1, tree_hash) timestamp tree_size sha256_root_hash`;
//! - no extension lines.
//!
//! Signatures by other keys (witnesses) are ignored; a note whose line from the log's key
//! does not verify, or that has none, is rejected whole.

use base64::Engine as _;
use ring::signature::{self, UnparsedPublicKey};

use crate::error::Error;

/// Largest checkpoint accepted (a checkpoint with a few dozen cosignatures is a few KB).
pub const MAX_NOTE: usize = 64 << 10;

/// The signed-note signature type of RFC 6962 `TreeHeadSignature`s.
const SIG_TYPE_RFC6962: u8 = 0x05;

/// DER header of a P-256 `SubjectPublicKeyInfo` (id-ecPublicKey, prime256v1), before the
/// 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A verified checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub tree_size: u64,
    pub root_hash: [u8; 32],
    /// `TreeHeadSignature.timestamp`, milliseconds since the epoch.
    pub timestamp_ms: u64,
}

/// The checkpoint origin of a log: its submission prefix without the scheme and without
/// trailing slashes (`https://log.example/2025h2/` → `log.example/2025h2`).
pub fn origin_of(submission_url: &str) -> String {
    let rest = submission_url
        .split_once("://")
        .map_or(submission_url, |(_, r)| r);
    rest.trim_end_matches('/').to_owned()
}

/// SHA-256.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The key ID of a log's RFC 6962 note signatures.
fn key_id(origin: &str, log_id: &[u8; 32]) -> [u8; 4] {
    let mut buf = Vec::with_capacity(origin.len() + 34);
    buf.extend_from_slice(origin.as_bytes());
    buf.push(b'\n');
    buf.push(SIG_TYPE_RFC6962);
    buf.extend_from_slice(log_id);
    let h = sha256(&buf);
    [h[0], h[1], h[2], h[3]]
}

/// The bytes an RFC 6962 `TreeHeadSignature` signs.
fn tree_head_message(timestamp_ms: u64, tree_size: u64, root: &[u8; 32]) -> [u8; 50] {
    let mut m = [0u8; 50];
    m[0] = 0; // Version v1
    m[1] = 1; // SignatureType tree_hash
    m[2..10].copy_from_slice(&timestamp_ms.to_be_bytes());
    m[10..18].copy_from_slice(&tree_size.to_be_bytes());
    m[18..50].copy_from_slice(root);
    m
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    /// `DigitallySigned` signature algorithm 3.
    EcdsaP256,
    /// `DigitallySigned` signature algorithm 1.
    Rsa,
}

/// Verifies one log's checkpoints: its origin and its key from the log list.
#[derive(Debug, Clone)]
pub struct Verifier {
    origin: String,
    log_id: [u8; 32],
    key_id: [u8; 4],
    alg: Alg,
    /// What ring verifies with: the EC point, or the DER `RSAPublicKey`.
    public_key: Vec<u8>,
}

impl Verifier {
    /// A verifier for the log with checkpoint origin `origin` and public key `spki` (DER
    /// `SubjectPublicKeyInfo`, as the log list's `key`). ECDSA P-256 and RSA keys are
    /// supported, as RFC 6962 allows.
    pub fn new(origin: &str, spki: &[u8]) -> Result<Self, Error> {
        use x509_parser::oid_registry::{
            OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION,
        };
        use x509_parser::prelude::FromDer as _;
        if origin.is_empty() || origin.contains(char::is_whitespace) || origin.contains('+') {
            return Err(Error::Key("origin is not a valid note key name"));
        }
        let (rest, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki)
            .map_err(|_| Error::Key("not a DER SubjectPublicKeyInfo"))?;
        if !rest.is_empty() {
            return Err(Error::Key("bytes after the SubjectPublicKeyInfo"));
        }
        let oid = &info.algorithm.algorithm;
        let alg = if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = info
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            if curve.as_ref() != Some(&OID_EC_P256) {
                return Err(Error::Key("EC key on a curve other than P-256"));
            }
            Alg::EcdsaP256
        } else if *oid == OID_PKCS1_RSAENCRYPTION {
            Alg::Rsa
        } else {
            return Err(Error::Key("neither an ECDSA P-256 nor an RSA key"));
        };
        let log_id = sha256(spki);
        Ok(Verifier {
            origin: origin.to_owned(),
            key_id: key_id(origin, &log_id),
            log_id,
            alg,
            public_key: info.subject_public_key.data.to_vec(),
        })
    }

    /// The origin checkpoints must carry.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The log's RFC 6962 LogID (SHA-256 of its key).
    pub fn log_id(&self) -> &[u8; 32] {
        &self.log_id
    }

    /// Parses and verifies a checkpoint body.
    pub fn verify(&self, note: &[u8]) -> Result<Checkpoint, Error> {
        let bad = Error::Checkpoint;
        if note.len() > MAX_NOTE {
            return Err(bad("larger than 64 KiB"));
        }
        let note = std::str::from_utf8(note).map_err(|_| bad("not UTF-8"))?;
        if note.bytes().any(|b| b < 0x20 && b != b'\n') {
            return Err(bad("control character"));
        }
        // The text ends at the last blank line; it keeps its final newline.
        let sep = note.rfind("\n\n").ok_or(bad("no signature block"))?;
        let (text, sigs) = (&note[..=sep], &note[sep + 2..]);

        let mut lines = text.split_terminator('\n');
        let origin = lines.next().ok_or(bad("empty note"))?;
        let size = lines.next().ok_or(bad("no tree size line"))?;
        let root = lines.next().ok_or(bad("no root hash line"))?;
        if lines.next().is_some() {
            return Err(bad(
                "extension lines are not allowed with RFC 6962 signatures",
            ));
        }
        if origin != self.origin {
            return Err(bad("origin is not the log's"));
        }
        let size_ok = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size == "0" || !size.starts_with('0'));
        let tree_size: u64 = size
            .parse()
            .ok()
            .filter(|_| size_ok)
            .ok_or(bad("bad tree size"))?;
        let root = base64::engine::general_purpose::STANDARD
            .decode(root)
            .map_err(|_| bad("root hash is not base64"))?;
        let root_hash: [u8; 32] = root
            .try_into()
            .map_err(|_| bad("root hash is not 32 bytes"))?;

        let sigs = sigs
            .strip_suffix('\n')
            .ok_or(bad("signature block does not end with a newline"))?;
        let mut timestamp = None;
        for line in sigs.split('\n') {
            let line = line
                .strip_prefix("\u{2014} ")
                .ok_or(bad("malformed signature line"))?;
            let (name, b64) = line
                .split_once(' ')
                .ok_or(bad("malformed signature line"))?;
            if name.is_empty() || b64.contains(' ') {
                return Err(bad("malformed signature line"));
            }
            let sig = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| bad("signature is not base64"))?;
            if sig.len() < 4 {
                return Err(bad("signature shorter than its key ID"));
            }
            if name != self.origin || sig[..4] != self.key_id {
                continue; // another key: a witness, or a key type this client does not use
            }
            timestamp = Some(self.verify_rfc6962(&sig[4..], tree_size, &root_hash)?);
        }
        let timestamp_ms = timestamp.ok_or(bad("no signature by the log's key"))?;
        Ok(Checkpoint {
            origin: self.origin.clone(),
            tree_size,
            root_hash,
            timestamp_ms,
        })
    }

    /// Verifies an `RFC6962NoteSignature`; returns its timestamp.
    fn verify_rfc6962(&self, body: &[u8], tree_size: u64, root: &[u8; 32]) -> Result<u64, Error> {
        let bad = Error::Checkpoint;
        let mut r = crate::leaf::Reader::new(body);
        let parsed = (|| {
            let ts = r.u64()?;
            let hash = r.u8()?;
            let alg = r.u8()?;
            let sig = r.vec16()?;
            Ok::<_, Error>((ts, hash, alg, sig))
        })();
        let (timestamp, hash, alg, sig) =
            parsed.map_err(|_| bad("truncated RFC 6962 signature"))?;
        if !r.is_empty() {
            return Err(bad("bytes after the RFC 6962 signature"));
        }
        if hash != 4 {
            return Err(bad("signature hash is not SHA-256"));
        }
        let (want, algorithm): (u8, &dyn signature::VerificationAlgorithm) = match self.alg {
            Alg::EcdsaP256 => (3, &signature::ECDSA_P256_SHA256_ASN1),
            Alg::Rsa => (1, &signature::RSA_PKCS1_2048_8192_SHA256),
        };
        if alg != want {
            return Err(bad("signature algorithm does not match the log's key"));
        }
        let msg = tree_head_message(timestamp, tree_size, root);
        UnparsedPublicKey::new(algorithm, &self.public_key)
            .verify(&msg, sig)
            .map_err(|_| bad("signature does not verify"))?;
        Ok(timestamp)
    }
}

/// Signs checkpoints with an ECDSA P-256 key, as a static-ct-api log does (the simulator and
/// tests use it).
pub struct Signer {
    origin: String,
    key_id: [u8; 4],
    pair: signature::EcdsaKeyPair,
    spki: Vec<u8>,
    rng: ring::rand::SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("origin", &self.origin)
            .finish()
    }
}

impl Signer {
    /// A fresh key for the log with checkpoint origin `origin`.
    pub fn generate(origin: &str) -> Result<Self, Error> {
        let alg = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng)
            .map_err(|_| Error::Key("could not generate a P-256 key"))?;
        let pair = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng)
            .map_err(|_| Error::Key("could not load the generated P-256 key"))?;
        use signature::KeyPair as _;
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(pair.public_key().as_ref());
        Ok(Signer {
            origin: origin.to_owned(),
            key_id: key_id(origin, &sha256(&spki)),
            pair,
            spki,
            rng,
        })
    }

    /// The public key as DER `SubjectPublicKeyInfo` (the log list's `key`).
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// The origin this signer's checkpoints carry.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The key ID of this signer's note signatures.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// A signed checkpoint for this tree head.
    pub fn sign(&self, tree_size: u64, root: &[u8; 32], timestamp_ms: u64) -> Vec<u8> {
        self.sign_as(&self.origin, self.key_id, tree_size, root, timestamp_ms)
    }

    /// A checkpoint with any origin and key ID, signed by this key (forgeries for tests and
    /// the simulator's `forged` fault).
    pub fn sign_as(
        &self,
        origin: &str,
        key_id: [u8; 4],
        tree_size: u64,
        root: &[u8; 32],
        timestamp_ms: u64,
    ) -> Vec<u8> {
        let msg = tree_head_message(timestamp_ms, tree_size, root);
        // Signing with a valid key and the system RNG does not fail in practice; an empty
        // signature (which no verifier accepts) is the fallback.
        let sig = self
            .pair
            .sign(&self.rng, &msg)
            .map(|s| s.as_ref().to_vec())
            .unwrap_or_default();
        let mut body = Vec::with_capacity(4 + 8 + 4 + sig.len());
        body.extend_from_slice(&key_id);
        body.extend_from_slice(&timestamp_ms.to_be_bytes());
        body.extend_from_slice(&[4, 3]);
        body.extend_from_slice(&(sig.len() as u16).to_be_bytes());
        body.extend_from_slice(&sig);
        let b64 = &base64::engine::general_purpose::STANDARD;
        format!(
            "{origin}\n{tree_size}\n{}\n\n\u{2014} {origin} {}\n",
            b64.encode(root),
            b64.encode(&body)
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(
            origin_of("https://log.sycamore.ct.letsencrypt.org/2026h1/"),
            "log.sycamore.ct.letsencrypt.org/2026h1"
        );
        assert_eq!(
            origin_of("http://127.0.0.1:9/logs/a//"),
            "127.0.0.1:9/logs/a"
        );
        assert_eq!(origin_of("rome.example"), "rome.example");
    }

    #[test]
    fn sign_and_verify() {
        let s = Signer::generate("sim.example/log").unwrap();
        let v = Verifier::new("sim.example/log", s.spki()).unwrap();
        let root = [7u8; 32];
        let cp = v.verify(&s.sign(1234, &root, 99)).unwrap();
        assert_eq!(
            (cp.tree_size, cp.root_hash, cp.timestamp_ms),
            (1234, root, 99)
        );
        assert_eq!(v.log_id(), &sha256(s.spki()));

        // Another key under the same name: an unknown key, so no signature by the log.
        let other = Signer::generate("sim.example/log").unwrap();
        assert!(matches!(
            v.verify(&other.sign(1234, &root, 99)),
            Err(Error::Checkpoint("no signature by the log's key"))
        ));
        // Another key claiming the log's key ID: a known key that fails to verify.
        let forged = other.sign_as("sim.example/log", s.key_id(), 5000, &root, 99);
        assert!(matches!(
            v.verify(&forged),
            Err(Error::Checkpoint("signature does not verify"))
        ));
        // The right key, the wrong origin.
        let wrong = s.sign_as("evil.example/log", s.key_id(), 1234, &root, 99);
        assert!(matches!(
            v.verify(&wrong),
            Err(Error::Checkpoint("origin is not the log's"))
        ));
        // A changed tree size breaks the signature.
        let mut tampered = String::from_utf8(s.sign(1234, &root, 99)).unwrap();
        tampered = tampered.replacen("\n1234\n", "\n1235\n", 1);
        assert!(v.verify(tampered.as_bytes()).is_err());
    }

    #[test]
    fn witness_signatures_are_ignored_but_a_bad_log_signature_is_not() {
        let s = Signer::generate("a.example/x").unwrap();
        let v = Verifier::new("a.example/x", s.spki()).unwrap();
        let mut note = s.sign(10, &[1; 32], 5);
        note.extend_from_slice("\u{2014} witness.example AAAAAAAAAA==\n".as_bytes());
        assert_eq!(v.verify(&note).unwrap().tree_size, 10);

        let good = String::from_utf8(s.sign(10, &[1; 32], 5)).unwrap();
        let (head, sig) = good.rsplit_once(' ').unwrap();
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(sig.trim_end())
            .unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let broken = format!(
            "{head} {}\n",
            base64::engine::general_purpose::STANDARD.encode(&raw)
        );
        assert!(v.verify(broken.as_bytes()).is_err());
    }

    #[test]
    fn garbage_and_every_truncation_are_errors_not_panics() {
        let s = Signer::generate("t.example").unwrap();
        let v = Verifier::new("t.example", s.spki()).unwrap();
        let note = s.sign(77, &[9; 32], 1);
        for n in 0..note.len() {
            assert!(
                v.verify(&note[..n]).is_err(),
                "prefix of {n} bytes accepted"
            );
        }
        for body in [
            &b""[..],
            b"\n\n",
            b"t.example\n1\nAAAA\n\n",
            b"t.example\n01\nAAAA\n\n\xe2\x80\x94 t.example AAAA\n",
            b"t.example\n-1\n\n\n",
            b"\xff\xfe\n\n",
            b"t.example\n1\nroot\next\n\n\xe2\x80\x94 t.example AAAAAAAA\n",
        ] {
            assert!(v.verify(body).is_err(), "{body:?}");
        }
        // Flip every byte in turn: never a panic, never a different accepted tree head.
        for i in 0..note.len() {
            let mut b = note.clone();
            b[i] ^= 0x55;
            if let Ok(cp) = v.verify(&b) {
                assert_eq!((cp.tree_size, cp.root_hash), (77, [9; 32]));
            }
        }
    }

    #[test]
    fn keys_other_than_p256_and_rsa_are_refused() {
        assert!(Verifier::new("x", b"not der").is_err());
        assert!(Verifier::new("x y", &P256_SPKI_PREFIX).is_err());
        // A P-384 SubjectPublicKeyInfo header (secp384r1) with a dummy point.
        let mut p384 = vec![
            0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00,
        ];
        p384.extend_from_slice(&[4u8; 97]);
        assert!(matches!(
            Verifier::new("x", &p384),
            Err(Error::Key("EC key on a curve other than P-256"))
        ));
    }

    /// The real checkpoint of the skylight test tree, against the key from its log list entry.
    #[test]
    fn real_skylight_checkpoint() {
        let Some(dir) = std::env::var_os("CERTSTREAM_CORPUS") else {
            eprintln!("skipping: CERTSTREAM_CORPUS not set");
            return;
        };
        let tree = std::path::Path::new(&dir).join("static-ct/skylight-testdata/tree");
        let note = std::fs::read(tree.join("checkpoint")).unwrap();
        let list: serde_json::Value =
            serde_json::from_slice(&std::fs::read(tree.join("log.v3.json")).unwrap()).unwrap();
        let b64 = &base64::engine::general_purpose::STANDARD;
        let key = b64.decode(list["key"].as_str().unwrap()).unwrap();
        let origin = origin_of(list["submission_url"].as_str().unwrap());
        assert_eq!(origin, "rome2026h1.example.org");
        let v = Verifier::new(&origin, &key).unwrap();
        assert_eq!(
            b64.encode(v.log_id()),
            list["log_id"].as_str().unwrap(),
            "LogID = SHA-256 of the key"
        );
        let cp = v.verify(&note).unwrap();
        let head = &list["final_tree_head"];
        assert_eq!(cp.tree_size, head["tree_size"].as_u64().unwrap());
        assert_eq!(
            b64.encode(cp.root_hash),
            head["sha256_root_hash"].as_str().unwrap()
        );
        // Its origin is the log's; any other origin is refused.
        let other = Verifier::new("milan2026h1.example.org", &key).unwrap();
        assert!(other.verify(&note).is_err());
        // One changed digit in the tree size: rejected.
        let forged = String::from_utf8(note.clone())
            .unwrap()
            .replacen("\n300\n", "\n301\n", 1);
        assert!(matches!(
            v.verify(forged.as_bytes()),
            Err(Error::Checkpoint("signature does not verify"))
        ));
    }
}
