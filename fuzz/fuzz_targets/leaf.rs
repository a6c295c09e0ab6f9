//! RFC 6962 `MerkleTreeLeaf` + `extra_data` decoding: `leaf::decode_der` and `decode_b64`.
//!
//! Input: a big-endian `u16` length `n`, then `n` bytes of `leaf_input`, then `extra_data`.
#![no_main]

use base64::Engine as _;
use bytes::Bytes;
use certstream_engine::leaf::{self, EntryKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let n = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    let (leaf_input, extra) = rest.split_at(n);
    let der = leaf::decode_der(leaf_input, Bytes::copy_from_slice(extra));

    // The base64 path decodes to the same entry, or fails the same way.
    let b64 = &base64::engine::general_purpose::STANDARD;
    let via_b64 = leaf::decode_b64(
        b64.encode(leaf_input).as_bytes(),
        b64.encode(extra).as_bytes(),
    );
    match (&der, &via_b64) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.kind, b.kind);
            assert_eq!(a.timestamp_ms, b.timestamp_ms);
            assert_eq!(a.leaf, b.leaf);
            assert_eq!(a.chain, b.chain);
        }
        (Err(_), Err(_)) => {}
        _ => panic!("decode_der and decode_b64 disagree: {der:?} / {via_b64:?}"),
    }

    if let Ok(e) = der {
        // Every certificate is its own part of the input: nothing is invented or repeated.
        let in_extra: usize = e.chain.iter().map(Bytes::len).sum::<usize>()
            + if e.kind == EntryKind::Precert {
                e.leaf.len()
            } else {
                0
            };
        assert!(in_extra <= extra.len());
        if e.kind == EntryKind::X509 {
            assert!(e.leaf.len() <= leaf_input.len());
        }
    }

    // Arbitrary bytes as base64 text: an error, never a panic.
    let (a, b) = rest.split_at(n);
    let _ = leaf::decode_b64(a, b);
});
