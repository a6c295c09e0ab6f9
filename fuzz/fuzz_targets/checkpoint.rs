//! static-ct-api checkpoints (signed notes): `checkpoint::Verifier::verify`, for a log with a
//! P-256 key and one with an RSA key, both with origin `fuzz.example/log`.
//!
//! The keys were made for this target (their private halves thrown away after signing the
//! seeds in `fuzz/seeds/checkpoint/`, so seeds with valid signatures exist).
#![no_main]

use certstream_engine::checkpoint::Verifier;
use libfuzzer_sys::fuzz_target;

const ORIGIN: &str = "fuzz.example/log";
const P256_SPKI: &str = concat!(
    "3059301306072a8648ce3d020106082a8648ce3d03010703420004671a2a3b162d417fa6f660abd3",
    "3e904eda998c25e4a74aad2e67212125cf20d8538740c16c08f12878043a390357b725a4d55fdd1d",
    "c29b44519e50297e57eee0",
);
const RSA_SPKI: &str = concat!(
    "30820122300d06092a864886f70d01010105000382010f003082010a0282010100c067536ef3d7a8",
    "87ed3d3650debe89ad8655b9523a329023aae6ba2ae226f1dfa3403d393223823de3e6d22c64af9d",
    "1d13a84dd7c0acb1a6c73d4ba9c2132e7eefb6547bd55c490dfe55e52d16d6886ca2d81ea417cb87",
    "9e90f8b8368396b3a2404df29c228aa5bd69339c6da11decd085b99c31a3ceb3dce86b31dc495e8c",
    "5b80e88b2c13da4d6922781b0325de36ab0feab2ed2e4c2fe57c47d3013c8169d6c3671c3451b3ab",
    "6017c816e4074e9d7f23d6975d71a7dee0d5f3786faf9baf2ab1663dcf8403b2b47e7014f83af21e",
    "665a46626f8bedb16473df4512f0eb5665401af50f53689678001eb6cad99b8a5aec865dac3b37d8",
    "1225edf59d22abacc90203010001",
);

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

thread_local! {
    static VERIFIERS: [Verifier; 2] = [
        Verifier::new(ORIGIN, &hex(P256_SPKI)).unwrap(),
        Verifier::new(ORIGIN, &hex(RSA_SPKI)).unwrap(),
    ];
}

fuzz_target!(|data: &[u8]| {
    VERIFIERS.with(|vs| {
        for v in vs {
            if let Ok(cp) = v.verify(data) {
                // Accepted: the text really says this origin and tree size.
                let head = format!("{ORIGIN}\n{}\n", cp.tree_size);
                assert!(data.starts_with(head.as_bytes()));
            }
        }
    });
});
