//! RFC 6962 `get-entries` bodies: `leaf::parse_get_entries` (simd-json, in place), then
//! `leaf::decode` of every entry.
#![no_main]

use certstream_engine::leaf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut body = data.to_vec();
    let Ok(entries) = leaf::parse_get_entries(&mut body) else {
        return;
    };
    for raw in &entries {
        if let Ok(e) = leaf::decode(raw) {
            // Base64 only shrinks: an entry holds no more bytes than its text.
            let total = e.leaf.len() + e.chain.iter().map(|c| c.len()).sum::<usize>();
            assert!(total <= raw.leaf_input.len() + raw.extra_data.len());
        }
    }
});
