//! Shared inputs for the benches: real get-entries bodies from the corpus when
//! `CERTSTREAM_CORPUS` is set (real Let's Encrypt precertificates with their chains),
//! otherwise entries the simulator makes with rcgen; and what the bundled load clients share
//! (the server's soak and restart tests reuse it).
//!
//! # Layout
//! - [`ws`]: a lean RFC 6455 client: connect, handshake, read server frames, answer pings and
//!   closes (masked, as clients must); a one-shot HTTP request.
//! - [`checker`]: the stream checker: every `cert_index` of every log exactly once and in
//!   order, across reconnections, with latency and the server's own drop counters beside it.

pub mod checker;
pub mod ws;

use std::path::PathBuf;

/// A get-entries body of `n` entries (real when the corpus is available) and where it came from.
pub fn get_entries_body(n: usize) -> (Vec<u8>, &'static str) {
    let pool = real_entries()
        .unwrap_or_else(|| certstream_sim::generate(64).expect("rcgen generates certificates"));
    let from = if std::env::var_os("CERTSTREAM_CORPUS").is_some() {
        "corpus navigli2025h2 (real Let's Encrypt precertificates)"
    } else {
        "rcgen-generated certificates (set CERTSTREAM_CORPUS for real ones)"
    };
    let mut out = b"{\"entries\":[".to_vec();
    for i in 0..n {
        if i > 0 {
            out.push(b',');
        }
        let (l, x) = &pool[i % pool.len()];
        out.extend_from_slice(
            format!("{{\"leaf_input\":\"{l}\",\"extra_data\":\"{x}\"}}").as_bytes(),
        );
    }
    out.extend_from_slice(b"]}");
    (out, from)
}

fn real_entries() -> Option<Vec<(String, String)>> {
    let dir = PathBuf::from(std::env::var_os("CERTSTREAM_CORPUS")?).join("get-entries");
    let mut pool = Vec::new();
    for name in [
        "navigli2025h2_0000-0255.json",
        "navigli2025h2_0256-0511.json",
    ] {
        let mut body = std::fs::read(dir.join(name)).ok()?;
        let entries = certstream_engine::leaf::parse_get_entries(&mut body).ok()?;
        pool.extend(
            entries
                .into_iter()
                .map(|e| (e.leaf_input.into_owned(), e.extra_data.into_owned())),
        );
    }
    Some(pool)
}

/// Every DER certificate of the corpus, or the generated leaves.
pub fn certificates() -> Vec<Vec<u8>> {
    if let Some(dir) = std::env::var_os("CERTSTREAM_CORPUS") {
        let dir = PathBuf::from(dir).join("certs");
        if let Ok(rd) = std::fs::read_dir(&dir) {
            let mut v: Vec<Vec<u8>> = rd
                .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
                .collect();
            v.sort();
            if !v.is_empty() {
                return v;
            }
        }
    }
    let (mut body, _) = get_entries_body(64);
    certstream_engine::leaf::parse_get_entries(&mut body)
        .expect("own body parses")
        .iter()
        .filter_map(|e| certstream_engine::leaf::decode(e).ok())
        .map(|e| e.leaf.to_vec())
        .collect()
}
