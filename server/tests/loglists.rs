//! Several log lists: merged by log ID (a log in two lists, even under another URL, is
//! watched once), each list's states honoured. Two lists written from the simulator's own,
//! the real ingest and service, watchers counted in the engine's log table.

mod common;

use std::time::Duration;

use certstream_sim::{self as sim, LogConfig, SimConfig, Source};
use common::*;
use serde_json::{json, Value};

#[test]
fn a_log_in_both_lists_is_watched_once_and_each_lists_states_are_honoured() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let log = |name: &str| LogConfig {
        name: name.into(),
        source: Source::Generated(16),
        initial_size: 40,
        rate: 0.0,
        max_size: None,
        batch_cap: 64,
        ..LogConfig::default()
    };
    let sim = rt
        .block_on(sim::start(SimConfig {
            logs: vec![log("a"), log("b"), log("c"), log("d")],
            ..SimConfig::default()
        }))
        .unwrap();
    let (status, body) = get(sim.addr, "/log_list.json");
    assert_eq!(status, 200);
    let list: Value = serde_json::from_slice(&body).unwrap();
    let logs: Vec<Value> = list["operators"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|op| op["logs"].as_array().unwrap().clone())
        .collect();
    let by_name = |n: &str| -> Value {
        logs.iter()
            .find(|l| l["url"].as_str().unwrap().ends_with(&format!("/logs/{n}/")))
            .unwrap_or_else(|| panic!("log {n} in {list}"))
            .clone()
    };
    let with_state = |mut l: Value, state: &str| {
        l["state"] = json!({ state: {"timestamp": "2025-01-01T00:00:00Z"} });
        l
    };
    let file = |logs: Vec<Value>| -> Value {
        json!({"version": "1", "operators": [{"name": "Sim", "email": ["x@example.com"], "logs": logs}]})
    };
    // Google-like: a and b usable, c retired. Apple-like (with its extra fields): a again
    // under another host name (same log ID), c rejected, d usable.
    let mut a_elsewhere = with_state(by_name("a"), "usable");
    let url = a_elsewhere["url"]
        .as_str()
        .unwrap()
        .replace("127.0.0.1", "localhost");
    a_elsewhere["url"] = json!(url);
    let first = file(vec![
        with_state(by_name("a"), "usable"),
        with_state(by_name("b"), "usable"),
        with_state(by_name("c"), "retired"),
    ]);
    let mut second = file(vec![
        a_elsewhere,
        with_state(by_name("c"), "rejected"),
        with_state(by_name("d"), "usable"),
    ]);
    second["assetVersion"] = json!(42);
    second["assetVersionV2"] = json!(7);
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (
        dir.path().join("google.json"),
        dir.path().join("apple.json"),
    );
    std::fs::write(&p1, first.to_string()).unwrap();
    std::fs::write(&p2, second.to_string()).unwrap();

    let mut cfg = config(0.0, serve_config());
    cfg.ingest.log_list = p1.display().to_string();
    cfg.ingest.more_log_lists = vec![p2.display().to_string()];
    cfg.demo = None;
    let server = start_config(cfg);
    let engine = server.shared.engine.clone();
    // Every entry of the three watched logs, each once.
    wait_until("a, b and d read to their end", || {
        engine.entries.load(std::sync::atomic::Ordering::Relaxed) >= 120
    });
    let mut watched: Vec<String> = engine
        .logs()
        .iter()
        .filter(|l| l.active.load(std::sync::atomic::Ordering::Relaxed) == 1)
        .map(|l| l.url.clone())
        .collect();
    watched.sort();
    assert_eq!(watched, [sim.log_url(0), sim.log_url(1), sim.log_url(3)]);
    assert_eq!(engine.logs().len(), 3, "no other watcher ever started");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        engine.entries.load(std::sync::atomic::Ordering::Relaxed),
        120,
        "no log read twice"
    );
    server.shutdown().unwrap();
    sim.stop();
}
