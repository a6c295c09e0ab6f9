//! `/health` and `/health/deep` against simulated logs: 503 when every log stops growing
//! and 200 again when one resumes; a saved position beyond a log's tree size is reported
//! (state `behind` with the reason, a counter that grows at each poll). The real service on
//! `127.0.0.1:0`, the simulator on its own runtime, real HTTP requests.

mod common;

use std::time::Duration;

use certstream_server::Server;
use certstream_sim::{self as sim, LogConfig, LogKind, SimConfig, Source};
use common::*;
use serde_json::Value;

fn log(name: &str, kind: LogKind, initial_size: u64, rate: f64) -> LogConfig {
    LogConfig {
        name: name.into(),
        kind,
        source: Source::Generated(32),
        initial_size,
        rate,
        max_size: None,
        batch_cap: 64,
        ..LogConfig::default()
    }
}

fn serve(log_list: &str, positions: Option<std::path::PathBuf>) -> Server {
    let mut cfg = config(
        0.0,
        certstream_server::shared::CoreConfig {
            // Short, so that the test does not wait minutes for the flip.
            health_window: Duration::from_secs(1),
            ..serve_config()
        },
    );
    cfg.ingest.log_list = log_list.to_owned();
    cfg.positions_file = positions;
    cfg.demo = None;
    start_config(cfg)
}

fn health(addr: std::net::SocketAddr) -> (u16, String) {
    let (status, body) = get(addr, "/health");
    (status, String::from_utf8(body).unwrap())
}

fn deep(addr: std::net::SocketAddr) -> (u16, Value) {
    let (status, body) = get(addr, "/health/deep");
    (status, serde_json::from_slice(&body).unwrap())
}

#[test]
fn health_flips_to_503_when_every_log_stops_and_back() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sim = rt
        .block_on(sim::start(SimConfig {
            logs: vec![
                log("a", LogKind::Rfc6962, 0, 50.0),
                log("t", LogKind::StaticCt, 0, 50.0),
            ],
            ..SimConfig::default()
        }))
        .unwrap();
    let server = serve(&sim.log_list_url, None);
    let a = server.addr;
    wait_until("healthy", || health(a) == (200, "ok\n".into()));
    wait_until("both logs advancing", || {
        deep(a).1["logs"]
            .as_array()
            .is_some_and(|l| l.len() == 2 && l.iter().all(|l| l["last_advance"].is_f64()))
    });
    let (status, d) = deep(a);
    assert_eq!((status, d["status"].as_str()), (200, Some("ok")));
    let logs = d["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 2);
    for l in logs {
        assert!(
            ["following", "catching_up"].contains(&l["state"].as_str().unwrap()),
            "{l}"
        );
        assert!(l["last_success"].as_f64().unwrap() > 1.7e9, "{l}");
    }

    // One log stopping is not enough: the other still advances.
    sim.logs[0].set_growth(0.0, None);
    let at = server
        .shared
        .engine
        .entries
        .load(std::sync::atomic::Ordering::Relaxed);
    wait_until("more entries from the other log", || {
        server
            .shared
            .engine
            .entries
            .load(std::sync::atomic::Ordering::Relaxed)
            > at + 100
    });
    assert_eq!(health(a).0, 200);

    // Every log stopped: 503 with the reason, on both endpoints.
    sim.logs[1].set_growth(0.0, None);
    wait_until("unhealthy", || health(a).0 == 503);
    let (_, why) = health(a);
    assert!(
        why.starts_with("no CT log published an entry in the last 1 s (2 logs: 2 following)"),
        "{why}"
    );
    assert_eq!(why.lines().count(), 1);
    let (status, d) = deep(a);
    assert_eq!((status, d["status"].as_str()), (503, Some("unhealthy")));
    assert_eq!(d["reason"].as_str(), Some(why.trim_end()));
    for l in d["logs"].as_array().unwrap() {
        assert_eq!(l["lag"], 0, "{l}");
    }

    // One resumes: healthy again.
    sim.logs[1].set_growth(50.0, None);
    wait_until("healthy again", || health(a).0 == 200);
    server.shutdown().unwrap();
    sim.stop();
}

#[test]
fn a_saved_position_beyond_the_tree_is_reported() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sim = rt
        .block_on(sim::start(SimConfig {
            logs: vec![
                log("gone-back", LogKind::Rfc6962, 500, 0.0),
                log("fine", LogKind::Rfc6962, 0, 20.0),
            ],
            ..SimConfig::default()
        }))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let positions = dir.path().join("positions.json");
    let url = sim.log_url(0);
    std::fs::write(
        &positions,
        format!("{{\"logs\":{{\"{url}\":1020}},\"next_cursor\":1}}"),
    )
    .unwrap();
    let server = serve(&sim.log_list_url, Some(positions));
    let a = server.addr;
    let behind = |d: &Value| -> Option<Value> {
        d["logs"]
            .as_array()?
            .iter()
            .find(|l| l["url"] == url.as_str() && l["state"] == "behind")
            .cloned()
    };
    wait_until("the log behind its position in /health/deep", || {
        behind(&deep(a).1).is_some()
    });
    let l = behind(&deep(a).1).unwrap();
    assert_eq!(l["position"], 1020);
    assert_eq!(l["tree_size"], 500);
    let reason = l["reason"].as_str().unwrap();
    assert!(
        reason.contains("tree size 500 is smaller than the saved position 1020"),
        "{reason}"
    );
    // Counted at every poll.
    let counter = || -> u64 {
        String::from_utf8(get(a, "/metrics").1)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("certstream_ingest_behind_position_total "))
            .map_or(0, |v| v.parse().unwrap())
    };
    wait_until("the counter to grow", || counter() >= 3);
    // The other log is healthy, and so is the service.
    wait_until("healthy", || health(a).0 == 200);
    // Once the log reaches the position, it is followed again.
    sim.logs[0].set_growth(0.0, Some(1030));
    sim.logs[0].set_growth(2000.0, Some(1030));
    wait_until("the log followed again", || behind(&deep(a).1).is_none());
    server.shutdown().unwrap();
    sim.stop();
}
