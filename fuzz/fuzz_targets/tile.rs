//! static-ct-api data tiles: `tile::decode_tile`, plus the tile path parser.
//!
//! Input: one byte `w`, the tile's expected width minus one (1..=256 entries), then the tile.
#![no_main]

use bytes::Bytes;
use certstream_engine::tile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&w, body)) = data.split_first() else {
        return;
    };
    let width = usize::from(w) + 1;
    let body = Bytes::copy_from_slice(body);
    if let Ok(leaves) = tile::decode_tile(&body, width) {
        assert_eq!(leaves.len(), width);
        let mut re = Vec::with_capacity(body.len());
        for l in &leaves {
            assert!(l.chain.len() * 32 + l.leaf.len() <= body.len());
            let e = l.to_entry(Vec::new());
            assert_eq!(e.leaf, l.leaf);
            if let Some(i) = l.leaf_index {
                assert!(i < 1 << 40);
                // Re-encoding at the index it carries gives a leaf that decodes the same.
                re.clear();
                l.encode_at(i, &mut re);
                let again = tile::decode_tile(&Bytes::from(re.clone()), 1).expect("re-encoded");
                assert_eq!(again[0].leaf, l.leaf);
                assert_eq!(again[0].chain, l.chain);
                assert_eq!(again[0].leaf_index, Some(i));
            }
        }
    }

    // Tile paths: only the canonical spelling parses, so it prints back the same.
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some((n, w)) = tile::parse_data_tile_path(s) {
            assert!((1..=256).contains(&w));
            assert_eq!(tile::data_tile_path(n, w), format!("tile/data/{s}"));
        }
    }
});
