//! static-ct-api logs end to end: the real Navigli tiles against the same entries as RFC 6962
//! `get-entries` bodies and the original server's messages, checkpoint verification (forged,
//! wrong origin, wrong key), gzip and plain tiles, truncated tiles, broken entries, restarts,
//! and the service streaming an RFC 6962 log and a static-ct-api log at once, over real
//! sockets against the simulator.
//!
//! The corpus tests read `CERTSTREAM_CORPUS` (`../shared/corpus`) and skip with a message when
//! it is not set.

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use certstream_engine::frame;
use certstream_engine::http::{ClientConfig, HttpClient};
use certstream_engine::ingest::IngestConfig;
use certstream_engine::json::{Encoder, Link, LogSource};
use certstream_engine::leaf::{self, EntryKind};
use certstream_engine::positions::Positions;
use certstream_engine::stats::Stats;
use certstream_engine::tile::{self, TileLeaf};
use certstream_sim::{self as sim, Faults, LogConfig, LogKind, SimHandle, Source};
use serde_json::Value;

mod common;
use common::*;

/// Frames each run keeps: all (the message tests read them all).
const KEEP: usize = usize::MAX;

fn start_ingest(cfg: IngestConfig, positions: Arc<Positions>) -> Run {
    start_ingest_keeping(cfg, positions, KEEP)
}

fn start_fresh(sim: &SimHandle) -> Run {
    start_fresh_keeping(sim, KEEP)
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    d.as_ref().try_into().unwrap()
}

/// A static-ct-api log growing from `size / 2` to `size` entries of 40 made-up certificates.
fn tiled_log(name: &str, size: u64, faults: Faults) -> LogConfig {
    LogConfig {
        kind: LogKind::StaticCt,
        ..growing_log(name, size, faults)
    }
}

/// Runs the given logs to `size` through the service and checks each delivered 0..size once,
/// in order.
async fn exactly_once(logs: Vec<LogConfig>, size: u64) -> (SimHandle, Arc<Stats>) {
    let n = logs.len();
    let sim = start_sim(logs).await;
    let run = start_fresh(&sim);
    run.collector.wait_for(n * size as usize).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (collector, stats) = run.finish().await;
    let by_log = collector.by_log();
    assert_eq!(by_log.len(), n);
    for (log, indices) in &by_log {
        assert_exactly_once(indices, size, &format!("log {log}"));
    }
    eprintln!(
        "faults injected: {}; http errors {}, status errors {}, 429s {}, bad bodies {}, bad checkpoints {}",
        sim.logs.iter().map(|l| l.faults_injected.load(Relaxed)).sum::<u64>(),
        stats.http_errors.load(Relaxed),
        stats.http_status_errors.load(Relaxed),
        stats.rate_limited.load(Relaxed),
        stats.bad_responses.load(Relaxed),
        stats.bad_checkpoints.load(Relaxed),
    );
    (sim, stats)
}

// ---------------------------------------------------------------------------------------
// The real Navigli tiles.

/// The `get-entries` bodies of the corpus that hold the same entries as tiles 0 and 1.
const NAVIGLI_BODIES: [(&str, u64); 2] = [
    ("navigli2025h2_0000-0255.json", 0),
    ("navigli2025h2_0256-0511.json", 1),
];

fn navigli_tile(dir: &Path, n: u64, width: u64) -> Vec<TileLeaf> {
    let path = dir
        .join("static-ct/navigli2025h2")
        .join(tile::data_tile_path(n, width));
    let body = Bytes::from(std::fs::read(&path).unwrap());
    tile::decode_tile(&body, width as usize).unwrap()
}

#[test]
fn navigli_tiles_decode_to_the_same_entries_as_get_entries() {
    let Some(dir) = corpus() else { return };
    for (name, n) in NAVIGLI_BODIES {
        let leaves = navigli_tile(&dir, n, 256);
        let mut body = std::fs::read(dir.join("get-entries").join(name)).unwrap();
        let raw = leaf::parse_get_entries(&mut body).unwrap();
        assert_eq!(raw.len(), 256, "{name}");
        let b64 = &base64::engine::general_purpose::STANDARD;
        for (i, (t, r)) in leaves.iter().zip(&raw).enumerate() {
            let index = n * 256 + i as u64;
            let e = leaf::decode(r).unwrap();
            assert_eq!(t.kind, e.kind, "{index}");
            assert_eq!(t.kind, EntryKind::Precert, "Navigli holds precertificates");
            assert_eq!(t.timestamp_ms, e.timestamp_ms, "{index}");
            assert_eq!(t.leaf, e.leaf, "{index}: leaf certificate");
            let fps: Vec<[u8; 32]> = e.chain.iter().map(|c| sha256(c)).collect();
            assert_eq!(t.chain, fps, "{index}: chain fingerprints");
            assert!(!fps.is_empty());
            assert_eq!(t.leaf_index, Some(index), "{index}: leaf_index extension");
            // The tile's TimestampedEntry is the MerkleTreeLeaf's, byte for byte.
            let leaf_input = b64.decode(r.leaf_input.as_bytes()).unwrap();
            assert_eq!(&leaf_input[2..], &t.timestamped_entry[..], "{index}");
            // And the chain joined back in is the same entry.
            let joined = t.to_entry(e.chain.clone());
            assert_eq!(
                (joined.leaf, joined.chain),
                (e.leaf.clone(), e.chain.clone())
            );
            // Both ways of building a TileLeaf agree; re-encoding reproduces the tile.
            let extra = Bytes::from(b64.decode(r.extra_data.as_bytes()).unwrap());
            let (from_rfc, _) = TileLeaf::from_rfc6962(&leaf_input, extra).unwrap();
            assert_eq!(&from_rfc, t, "{index}");
        }
        let file = std::fs::read(
            dir.join("static-ct/navigli2025h2")
                .join(tile::data_tile_path(n, 256)),
        )
        .unwrap();
        let mut again = Vec::new();
        for (i, t) in leaves.iter().enumerate() {
            t.encode_at(n * 256 + i as u64, &mut again);
        }
        assert!(again == file, "tile {n} re-encodes byte for byte");
    }
    // The other tiles decode too, and the partial tile is the start of the full one.
    for n in 2..4 {
        assert_eq!(navigli_tile(&dir, n, 256).len(), 256);
    }
    let full = navigli_tile(&dir, 3, 256);
    let partial = navigli_tile(&dir, 3, 10);
    assert_eq!(&full[..10], &partial[..]);
}

/// The original server's message check (`server/tests/format_corpus.rs` applies the same
/// rules): `PreCertEntry` is spelled `PrecertLogEntry` now; `source`, `seen` and `cert_link`
/// are where they came from.
fn same_message(expected: &Value, got: &Value, with_der: bool) -> Result<(), String> {
    if expected["message_type"] != got["message_type"] {
        return Err("message_type".into());
    }
    let (e, g) = (&expected["data"], &got["data"]);
    let want_type = match e["update_type"].as_str() {
        Some("PreCertEntry") => "PrecertLogEntry",
        Some(t) => t,
        None => "",
    };
    if g["update_type"] != want_type {
        return Err(format!("update_type {}", g["update_type"]));
    }
    if e["cert_index"] != g["cert_index"] {
        return Err("cert_index".into());
    }
    let strip = |v: &Value| {
        let mut v = v.clone();
        if !with_der {
            v.as_object_mut().unwrap().remove("as_der");
        }
        v
    };
    if strip(&e["leaf_cert"]) != g["leaf_cert"] {
        return Err(format!(
            "leaf_cert: expected {}, got {}",
            e["leaf_cert"], g["leaf_cert"]
        ));
    }
    let (ec, gc) = (
        e["chain"].as_array().unwrap(),
        g["chain"].as_array().unwrap(),
    );
    if ec.len() != gc.len() || ec.iter().zip(gc).any(|(a, b)| strip(a) != *b) {
        return Err("chain".into());
    }
    Ok(())
}

/// The `seen` of a message, read exactly (serde_json's float parsing may be off by an ulp).
fn seen_of(payload: &[u8]) -> f64 {
    let text = std::str::from_utf8(payload).unwrap();
    let at = text.find("\"seen\":").unwrap() + 7;
    let end = text[at..].find(',').unwrap();
    text[at..at + end].parse().unwrap()
}

/// The simulator replays the real tiles (issuers from the chains of the corpus's get-entries
/// bodies); the static-ct-api watcher turns them into the original server's messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn navigli_tiles_make_the_expected_messages() {
    let Some(dir) = corpus() else { return };
    let size = 512u64;
    let sim = start_sim(vec![LogConfig {
        name: "navigli".into(),
        source: Source::Tiles {
            dir: dir.join("static-ct/navigli2025h2"),
            issuers: Some(dir.join("get-entries")),
        },
        initial_size: size,
        rate: 0.0,
        max_size: Some(size),
        kind: LogKind::StaticCt,
        ..LogConfig::default()
    }])
    .await;
    let log = &sim.logs[0];
    let mon = sim.log_url(0);

    // The simulator serves the real tiles byte for byte, and issuers that hash to their name.
    let client = HttpClient::new(&ClientConfig::default()).unwrap();
    let served = client
        .get(&format!("{mon}{}", tile::data_tile_path(1, 256)))
        .await
        .unwrap();
    assert_eq!(served.status, 200);
    let real = std::fs::read(dir.join("static-ct/navigli2025h2/tile/data/001")).unwrap();
    assert!(served.body[..] == real[..], "tile 001 replayed as is");
    let first = navigli_tile(&dir, 0, 256);
    let issuer = client
        .get(&format!("{mon}{}", tile::issuer_path(&first[0].chain[0])))
        .await
        .unwrap();
    assert_eq!(sha256(&issuer.body), first[0].chain[0]);
    // Its log list names it as a tiled log with its key.
    let list = client.get(&sim.log_list_url).await.unwrap();
    let logs = certstream_engine::loglist::parse(&mut list.body.to_vec()).unwrap();
    assert_eq!(logs[0].kind, LogKind::StaticCt);
    assert_eq!(logs[0].url, mon);
    assert_eq!(Some(&logs[0].key[..]), log.public_key());

    let run = start_fresh(&sim);
    run.collector.wait_for(size as usize).await;
    let (collector, stats) = run.finish().await;
    let frames = collector.frames.lock().unwrap().clone();
    assert_eq!(frames.len() as u64, size);
    assert_eq!(stats.leaf_parse_errors.load(Relaxed), 0);
    let log_stats = &stats.logs()[0];
    assert_eq!(log_stats.kind, "static-ct");
    let source = LogSource::new(
        log_stats.id,
        &mon,
        &log_stats.name,
        Some(&log_stats.operator),
    );

    let mut encoder = Encoder::default();
    let mut mismatches = Vec::new();
    for (name, n) in NAVIGLI_BODIES {
        let expected: Vec<Value> = serde_json::from_slice(
            &std::fs::read(dir.join("expected-messages").join(name)).unwrap(),
        )
        .unwrap();
        let mut body = std::fs::read(dir.join("get-entries").join(name)).unwrap();
        let raw = leaf::parse_get_entries(&mut body).unwrap();
        let tile_url = format!("{mon}{}", tile::data_tile_path(n, 256));
        for (i, exp) in expected.iter().enumerate() {
            let index = n * 256 + i as u64;
            let f = &frames[index as usize];
            assert_eq!(f.index, index);
            let full: Value = serde_json::from_slice(frame::payload(&f.full)).unwrap();
            let lite: Value = serde_json::from_slice(frame::payload(&f.lite)).unwrap();
            let domains: Value = serde_json::from_slice(frame::payload(&f.domains)).unwrap();
            assert_eq!(full["data"]["cert_index"], index);
            assert_eq!(full["data"]["cert_link"], tile_url.as_str());
            assert_eq!(full["data"]["source"]["url"], mon.as_str());
            // Exactly the message the same entry makes as an RFC 6962 get-entries element
            // (with the tile as its link).
            let seen = seen_of(frame::payload(&f.full));
            let entry = leaf::decode(&raw[i]).unwrap();
            let rfc = encoder
                .encode(&source, index, Link::Url(&tile_url), &entry, seen)
                .draft
                .unstamped();
            assert!(
                rfc.full == f.full && rfc.lite == f.lite && rfc.domains == f.domains,
                "{index}: differs from the get-entries message"
            );
            // And the original server's message.
            for (got, with_der) in [(&full, true), (&lite, false)] {
                if let Err(e) = same_message(exp, got, with_der) {
                    mismatches.push(format!(
                        "{name}#{i} ({}): {e}",
                        if with_der { "full" } else { "lite" }
                    ));
                }
            }
            assert_eq!(
                domains["data"], exp["data"]["leaf_cert"]["all_domains"],
                "{index}: domains-only"
            );
        }
    }
    for m in mismatches.iter().take(5) {
        eprintln!("{}", m.chars().take(600).collect::<String>());
    }
    assert!(
        mismatches.is_empty(),
        "{} messages differ from corpus/expected-messages",
        mismatches.len()
    );
}

// ---------------------------------------------------------------------------------------
// Checkpoints.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_checkpoints_are_rejected_and_never_followed() {
    let size = 300u64;
    let sim = start_sim(vec![LogConfig {
        initial_size: size,
        rate: 0.0,
        ..tiled_log("f", size, faults("forged=1"))
    }])
    .await;
    let run = start_fresh(&sim);
    let guard = tokio::time::Instant::now() + Duration::from_secs(60);
    while run.stats.bad_checkpoints.load(Relaxed) < 3 {
        assert!(
            tokio::time::Instant::now() < guard,
            "no checkpoint rejected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(run.collector.count(), 0, "a forged checkpoint was followed");
    assert_eq!(run.stats.logs()[0].tree_size.load(Relaxed), 0);
    // Half the checkpoints forged (each claiming 1,000 more entries): only the real ones count.
    sim.logs[0].set_faults(faults("forged=0.5"));
    run.collector.wait_for(size as usize).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (c, stats) = run.finish().await;
    assert_exactly_once(&c.by_log()[&0], size, "after forgeries");
    assert_eq!(stats.logs()[0].tree_size.load(Relaxed), size);
    assert!(stats.bad_checkpoints.load(Relaxed) >= 3);
}

/// A log list naming the simulator's static-ct-api log with the given submission URL and key.
fn write_list(path: &Path, sim: &SimHandle, submission_url: &str, key: &[u8]) {
    let b64 = &base64::engine::general_purpose::STANDARD;
    let body = serde_json::json!({"operators": [{"name": "op", "logs": [], "tiled_logs": [{
        "description": "tiled",
        "log_id": b64.encode(sha256(key)),
        "key": b64.encode(key),
        "monitoring_url": sim.log_url(0),
        "submission_url": submission_url,
        "mmd": 60,
        "state": {"usable": {}},
    }]}]});
    std::fs::write(path, body.to_string()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_origin_or_wrong_key_is_rejected() {
    let size = 100u64;
    let sim = start_sim(vec![LogConfig {
        initial_size: size,
        rate: 0.0,
        ..tiled_log("o", size, Faults::default())
    }])
    .await;
    let key = sim.logs[0].public_key().unwrap().to_vec();
    let other_key = certstream_engine::checkpoint::Signer::generate("x")
        .unwrap()
        .spki()
        .to_vec();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.json");
    for (submission, key, why) in [
        ("https://elsewhere.example/log/", &key, "wrong origin"),
        (sim.log_url(0).as_str(), &other_key, "wrong key"),
    ] {
        write_list(&list, &sim, submission, key);
        let run = start_ingest(
            ingest_cfg(list.display().to_string()),
            Arc::new(Positions::in_memory()),
        );
        let guard = tokio::time::Instant::now() + Duration::from_secs(60);
        while run.stats.bad_checkpoints.load(Relaxed) < 3 {
            assert!(tokio::time::Instant::now() < guard, "{why}: not rejected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (c, stats) = run.finish().await;
        assert_eq!(c.count(), 0, "{why}: entries published");
        assert!(
            stats.logs()[0].errors.load(Relaxed) > 0,
            "{why}: no error counted"
        );
    }
    // The right origin and key: everything arrives.
    write_list(&list, &sim, &sim.log_url(0), &key);
    let run = start_ingest(
        ingest_cfg(list.display().to_string()),
        Arc::new(Positions::in_memory()),
    );
    run.collector.wait_for(size as usize).await;
    let (c, stats) = run.finish().await;
    assert_exactly_once(&c.by_log()[&0], size, "right origin and key");
    assert_eq!(stats.bad_checkpoints.load(Relaxed), 0);
}

// ---------------------------------------------------------------------------------------
// Tiles.

/// What the simulator sends for a tile, read off a raw socket: (content-encoding, body).
async fn raw_get(sim: &SimHandle, path: &str) -> (Option<String>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(sim.addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        sim.addr
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let encoding = head
        .lines()
        .find_map(|l| l.strip_prefix("content-encoding:"))
        .map(|v| v.trim().to_owned());
    (encoding, resp[split + 4..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_plain_tiles_both_work() {
    let size = 700u64; // two full tiles and a partial one
    for (spec, want) in [("gzip=1", Some("gzip")), ("gzip=0", None)] {
        let (sim, _) = exactly_once(vec![tiled_log("z", size, faults(spec))], size).await;
        // What went over the wire really was (or was not) gzip, and decodes to the tile.
        let (encoding, body) = raw_get(&sim, "/logs/z/tile/data/001").await;
        assert_eq!(encoding.as_deref(), want, "{spec}");
        let plain = match want {
            Some(_) => certstream_engine::http::gunzip(&body).unwrap().to_vec(),
            None => body,
        };
        assert_eq!(Some(plain), sim.logs[0].data_tile(1, 256), "{spec}");
    }
    // Both in one run.
    exactly_once(vec![tiled_log("mixed", size, faults("gzip=0.5"))], size).await;
}

/// Serves fixed answers by path (404 for anything else), one request per connection.
async fn serve_fixed(
    listener: tokio::net::TcpListener,
    routes: std::collections::HashMap<String, Vec<u8>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let routes = Arc::new(routes);
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let routes = routes.clone();
        tokio::spawn(async move {
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req);
            let path = line.split(' ').nth(1).unwrap_or("").to_owned();
            let (status, body) = match routes.get(&path) {
                Some(b) => ("200 OK", b.clone()),
                None => ("404 Not Found", b"not found".to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&body).await;
        });
    }
}

/// A checkpoint older than the tiles (a cache): its partial tile is gone, so the entries
/// come from the full tile, up to the checkpoint's size only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_tile_that_is_gone_is_read_from_the_full_tile() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mon = format!("http://{addr}/log/");
    let signer = certstream_engine::checkpoint::Signer::generate(&format!("{addr}/log")).unwrap();
    let (leaves, issuers) = sim::load_tiled_source(&Source::Generated(10)).unwrap();
    let tile_body = |n: u64| {
        let mut out = Vec::new();
        for i in n * 256..(n + 1) * 256 {
            leaves[i as usize % leaves.len()].encode_at(i, &mut out);
        }
        out
    };
    let mut routes = std::collections::HashMap::new();
    routes.insert("/log/checkpoint".to_owned(), signer.sign(300, &[0; 32], 1));
    routes.insert("/log/tile/data/000".to_owned(), tile_body(0));
    routes.insert("/log/tile/data/001".to_owned(), tile_body(1)); // no 001.p/44
    for (fp, der) in &issuers {
        routes.insert(format!("/log/{}", tile::issuer_path(fp)), der.to_vec());
    }
    let server = tokio::spawn(serve_fixed(listener, routes));

    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.json");
    let b64 = &base64::engine::general_purpose::STANDARD;
    let body = serde_json::json!({"operators": [{"name": "op", "tiled_logs": [{
        "description": "fixed", "key": b64.encode(signer.spki()),
        "monitoring_url": mon, "submission_url": mon, "state": {"usable": {}},
    }]}]});
    std::fs::write(&list, body.to_string()).unwrap();
    let run = start_ingest(
        ingest_cfg(list.display().to_string()),
        Arc::new(Positions::in_memory()),
    );
    run.collector.wait_for(300).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (c, stats) = run.finish().await;
    server.abort();
    assert_exactly_once(&c.by_log()[&0], 300, "from the full tile");
    assert_eq!(stats.logs()[0].position.load(Relaxed), 300);
    let frames = c.frames.lock().unwrap();
    let link = |i: usize| {
        let v: Value = serde_json::from_slice(frame::payload(&frames[i].lite)).unwrap();
        v["data"]["cert_link"].as_str().unwrap().to_owned()
    };
    assert_eq!(link(255), format!("{mon}tile/data/000"));
    assert_eq!(link(299), format!("{mon}tile/data/001"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_tiles_are_retried_not_skipped() {
    let size = 900u64;
    for spec in ["truncated=0.4", "truncated=0.4,gzip=0.5", "garbage=0.3"] {
        let (_, stats) = exactly_once(vec![tiled_log("t", size, faults(spec))], size).await;
        assert!(
            stats.bad_responses.load(Relaxed) > 0,
            "{spec}: no tile or issuer was refused"
        );
        assert_eq!(stats.bad_entries.load(Relaxed), 0, "{spec}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_at_once() {
    let size = 800u64;
    exactly_once(
        vec![
            tiled_log("a", size, faults("all=0.12,retry-after=0,gzip=0.5")),
            tiled_log("b", size, faults("all=0.12,retry-after=0")),
        ],
        size,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_entries_are_sent_with_what_could_be_read() {
    let size = 1200u64;
    let (sim, stats) = exactly_once(vec![tiled_log("c", size, faults("corrupt=0.8"))], size).await;
    let broken = sim.logs[0].faults_injected.load(Relaxed);
    assert!(broken > 0, "no entry was broken");
    // A broken entry is published (without parsed fields) unless a later fetch of the same
    // tile replaced it.
    assert!(stats.leaf_parse_errors.load(Relaxed) > 0);
    assert!(stats.leaf_parse_errors.load(Relaxed) <= broken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_resume_without_gaps_or_duplicates() {
    let size = 1500u64;
    let sim = start_sim(vec![LogConfig {
        initial_size: 100,
        ..tiled_log("r", size, Faults::default())
    }])
    .await;
    sim.logs[0].set_growth(300.0, Some(size));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("positions.json");
    let mut all = Vec::new();
    for round in 0..20 {
        let positions = Arc::new(Positions::load(&path).unwrap());
        let run = start_ingest(ingest_cfg(sim.log_list_url.clone()), positions);
        let target = (size as usize - all.len()).min(150);
        run.collector.wait_for(target).await;
        let (c, _) = run.finish().await;
        let got = c.by_log().remove(&0).unwrap_or_default();
        assert!(!got.is_empty(), "round {round} delivered nothing");
        all.extend(got);
        if all.len() as u64 >= size {
            break;
        }
    }
    assert_exactly_once(&all, size, "across restarts");
}

// ---------------------------------------------------------------------------------------
// The service with both kinds of log.

/// One RFC 6962 log and one static-ct-api log from one log list, at once: every index of
/// each exactly once, in order, under faults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_streams_both_kinds_at_once() {
    let size = 1500u64;
    for spec in ["", "all=0.1,retry-after=0,gzip=0.5"] {
        let rfc = LogConfig {
            name: "rfc".into(),
            source: Source::Generated(40),
            initial_size: size / 2,
            rate: 2000.0,
            max_size: Some(size),
            batch_cap: 100,
            faults: faults(spec),
            ..LogConfig::default()
        };
        let (sim, stats) =
            exactly_once(vec![rfc, tiled_log("tiled", size, faults(spec))], size).await;
        assert_eq!(sim.logs[0].kind(), LogKind::Rfc6962);
        assert_eq!(sim.logs[1].kind(), LogKind::StaticCt);
        let kinds: Vec<&str> = stats.logs().iter().map(|l| l.kind).collect();
        assert_eq!(kinds, ["rfc6962", "static-ct"], "{spec}");
        assert_eq!(stats.entries.load(Relaxed), 2 * size, "{spec}");
        for l in stats.logs() {
            assert_eq!(l.position.load(Relaxed), size, "{}", l.url);
        }
    }
}
