//! The RFC 6962 watcher against the simulator over real sockets: every index exactly once
//! and in order, with each fault switch on in turn, over TLS, across restarts, and across
//! log list changes.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certstream_engine::frame;
use certstream_engine::ingest::{self, IngestConfig};
use certstream_engine::positions::Positions;
use certstream_engine::stats::Stats;
use certstream_engine::Frames;
use certstream_sim::{self as sim, Faults, LogConfig, SimConfig, SimHandle};
use tokio::sync::watch;

mod common;
use common::*;

/// Frames each run keeps: the first 50 (enough for the tests that look at them).
const KEEP: usize = 50;

fn start_ingest(cfg: IngestConfig, positions: Arc<Positions>) -> Run {
    start_ingest_keeping(cfg, positions, KEEP)
}

fn start_fresh(sim: &SimHandle) -> Run {
    start_fresh_keeping(sim, KEEP)
}

/// An RFC 6962 log growing from `size / 2` to `size`, answering at most `cap` entries.
fn log(name: &str, size: u64, cap: u64, faults: Faults) -> LogConfig {
    LogConfig {
        batch_cap: cap,
        ..growing_log(name, size, faults)
    }
}

/// Runs one simulated log to `size` entries and checks 0..size arrived once, in order.
async fn exactly_once(faults: Faults, size: u64) -> Arc<Stats> {
    let sim = start_sim(vec![
        log("a", size, 64, faults.clone()),
        log("b", size, 100, faults),
    ])
    .await;
    let run = start_fresh(&sim);
    run.collector.wait_for(2 * size as usize).await;
    // Let a few more polls happen: nothing more may arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (collector, stats) = run.finish().await;
    let by_log = collector.by_log();
    assert_eq!(by_log.len(), 2);
    for (log, indices) in by_log {
        assert_exactly_once(&indices, size, &format!("log {log}"));
    }
    let injected: u64 = sim
        .logs
        .iter()
        .map(|l| l.faults_injected.load(Relaxed))
        .sum();
    eprintln!(
        "faults injected: {injected}; http errors {}, status errors {}, 429s {}, bad bodies {}",
        stats.http_errors.load(Relaxed),
        stats.http_status_errors.load(Relaxed),
        stats.rate_limited.load(Relaxed),
        stats.bad_responses.load(Relaxed)
    );
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_faults_learns_the_batch_cap() {
    let stats = exactly_once(Faults::default(), 1500).await;
    let caps: Vec<u64> = stats
        .logs()
        .iter()
        .map(|l| l.batch_cap.load(Relaxed))
        .collect();
    assert_eq!(caps, [64, 100]);
    assert_eq!(stats.entries.load(Relaxed), 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_with_retry_after() {
    let stats = exactly_once(faults("429=0.3,retry-after=0"), 600).await;
    assert!(stats.rate_limited.load(Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_without_retry_after() {
    let stats = exactly_once(faults("429=0.3"), 600).await;
    assert!(stats.rate_limited.load(Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors() {
    let stats = exactly_once(faults("500=0.3"), 600).await;
    assert!(stats.http_status_errors.load(Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_answers() {
    exactly_once(faults("slow=0.5"), 600).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_bodies() {
    let stats = exactly_once(faults("truncated=0.3"), 600).await;
    assert!(stats.bad_responses.load(Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bodies() {
    let stats = exactly_once(faults("garbage=0.3"), 600).await;
    assert!(stats.bad_responses.load(Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections() {
    let stats = exactly_once(faults("reset=0.3"), 600).await;
    assert!(stats.http_errors.load(Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_at_once() {
    exactly_once(faults("all=0.12,retry-after=0"), 600).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_a_ca_file() {
    let sim = sim::start(SimConfig {
        tls: true,
        logs: vec![log("tls", 300, 128, Faults::default())],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    assert!(sim.log_list_url.starts_with("https://localhost:"));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, sim.ca_pem.as_ref().unwrap()).unwrap();

    // Without the CA the log is not trusted: nothing arrives, errors are counted.
    let run = start_fresh(&sim);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (c, stats) = run.finish().await;
    assert_eq!(c.count(), 0);
    assert!(stats.loglist_errors.load(Relaxed) > 0);

    let mut cfg = ingest_cfg(sim.log_list_url.clone());
    cfg.client.ca_file = Some(ca);
    let run = start_ingest(cfg, Arc::new(Positions::in_memory()));
    run.collector.wait_for(300).await;
    let (c, _) = run.finish().await;
    assert_eq!(c.by_log()[&0], (0..300).collect::<Vec<_>>());
    // The frames are real certstream messages.
    let f = c.frames.lock().unwrap()[7].clone();
    let msg: serde_json::Value = serde_json::from_slice(frame::payload(&f.full)).unwrap();
    assert_eq!(msg["data"]["cert_index"], 7);
    assert_eq!(
        msg["data"]["cert_link"],
        format!("{}ct/v1/get-entries?start=7&end=7", sim.log_url(0))
    );
    assert_eq!(msg["data"]["source"]["url"], sim.log_url(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_resume_without_gaps_or_duplicates() {
    let sim = start_sim(vec![LogConfig {
        rate: 400.0,
        max_size: Some(2000),
        ..log("r", 2000, 50, Faults::default())
    }])
    .await;
    sim.logs[0].set_growth(400.0, Some(2000));
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("positions.json");
    let mut all = Vec::new();
    for round in 0..4 {
        let positions = Arc::new(Positions::load(&path).unwrap());
        let run = start_ingest(ingest_cfg(sim.log_list_url.clone()), positions);
        let target = if round == 3 { 2000 - all.len() } else { 200 };
        run.collector.wait_for(target).await;
        let (c, _) = run.finish().await;
        let got = c.by_log().remove(&0).unwrap_or_default();
        assert!(!got.is_empty(), "round {round} delivered nothing");
        all.extend(got);
        if all.len() >= 2000 {
            break;
        }
    }
    assert_eq!(all, (0..2000).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_list_changes_start_and_stop_watchers() {
    let sim = start_sim(vec![
        LogConfig {
            rate: 50.0,
            max_size: None,
            ..log("one", 100, 64, Faults::default())
        },
        LogConfig {
            rate: 50.0,
            max_size: None,
            ..log("two", 100, 64, Faults::default())
        },
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.json");
    let write_list = |urls: &[String]| {
        let logs: Vec<String> = urls
            .iter()
            .map(|u| format!(r#"{{"description":"{u}","log_id":"","key":"","url":"{u}","mmd":1,"state":{{"usable":{{}}}}}}"#))
            .collect();
        let body = format!(
            r#"{{"operators":[{{"name":"sim","logs":[{}]}}]}}"#,
            logs.join(",")
        );
        std::fs::write(&list, body).unwrap();
    };
    write_list(&[sim.log_url(0)]);
    let mut cfg = ingest_cfg(sim.log_list_url.clone());
    cfg.log_list = list.display().to_string();
    cfg.refresh = Duration::from_millis(200);
    let run = start_ingest(cfg, Arc::new(Positions::in_memory()));
    run.collector.wait_for(50).await;
    write_list(&[sim.log_url(1)]);
    // Wait until log two delivers; by then log one's watcher has been stopped.
    let guard = tokio::time::Instant::now() + Duration::from_secs(60);
    while !run
        .stats
        .logs()
        .iter()
        .any(|l| l.url == sim.log_url(1) && l.entries.load(Relaxed) > 20)
    {
        assert!(tokio::time::Instant::now() < guard, "log two never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let one = run
        .stats
        .logs()
        .into_iter()
        .find(|l| l.url == sim.log_url(0))
        .unwrap();
    let guard = tokio::time::Instant::now() + Duration::from_secs(60);
    while one.active.load(Relaxed) != 0 {
        assert!(tokio::time::Instant::now() < guard, "log one never stopped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = one.entries.load(Relaxed);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        one.entries.load(Relaxed),
        before,
        "a stopped watcher kept publishing"
    );
    let (c, _) = run.finish().await;
    for (_, idx) in c.by_log() {
        assert!(idx.windows(2).all(|w| w[1] == w[0] + 1), "gap or reorder");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_entries_are_skipped_or_sent_partially_and_counted() {
    let size = 600u64;
    let sim = start_sim(vec![log("c", size, 50, faults("corrupt=0.8"))]).await;
    let run = start_fresh(&sim);
    // Every index is either published or counted as an undecodable entry.
    let guard = tokio::time::Instant::now() + Duration::from_secs(120);
    while run.collector.count() as u64 + run.stats.bad_entries.load(Relaxed) < size {
        assert!(tokio::time::Instant::now() < guard, "stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (c, stats) = run.finish().await;
    let got = c.by_log().remove(&0).unwrap();
    let bad = stats.bad_entries.load(Relaxed);
    let unparsable = stats.leaf_parse_errors.load(Relaxed);
    eprintln!(
        "published {}, skipped {bad}, sent without a parsed leaf {unparsable}",
        got.len()
    );
    assert!(
        bad > 0 && unparsable > 0,
        "every kind of breakage was exercised"
    );
    assert_eq!(got.len() as u64 + bad, size);
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates"
    );
}

/// The positions file only ever covers entries published at least half a save interval
/// before it was written, so that a crash right after a save cannot skip frames still on
/// their way to clients (regression: the file used to hold the positions of the moment of
/// the save, and a SIGKILL a few milliseconds later lost the entries in flight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_positions_lag_publication_by_half_an_interval() {
    let sim = start_sim(vec![LogConfig {
        rate: 300.0,
        max_size: None,
        ..log("lag", 0, 64, Faults::default())
    }])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("positions.json");
    let published: Arc<Mutex<Vec<std::time::Instant>>> = Arc::default();
    let sink = {
        let published = published.clone();
        move |f: Frames| {
            let mut p = published.lock().unwrap();
            assert_eq!(f.index, p.len() as u64, "published in order");
            p.push(std::time::Instant::now());
        }
    };
    let half = Duration::from_millis(200);
    let cfg = IngestConfig {
        save_interval: half * 2,
        ..ingest_cfg(sim.log_list_url.clone())
    };
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(ingest::run(
        cfg,
        Arc::new(sink),
        Arc::new(Positions::load(&path).unwrap()),
        Stats::new(),
        rx,
    ));
    let url = sim.log_url(0);
    let (mut last, mut writes) = (0, 0);
    let end = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < end {
        let saved = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["logs"][&url].as_u64());
        // After the read: no earlier than the write.
        let read_at = std::time::Instant::now();
        if let Some(next) = saved.filter(|&n| n > last) {
            // Entry next - 1 was published at least half an interval before this read.
            let at = published.lock().unwrap()[next as usize - 1];
            assert!(
                read_at.duration_since(at) >= half,
                "position {next} saved {:?} after its last entry was published",
                read_at.duration_since(at)
            );
            last = next;
            writes += 1;
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    assert!(writes >= 3, "the file was written {writes} times");
    // On shutdown the current position is written.
    let all = published.lock().unwrap().len() as u64;
    assert_eq!(Positions::load(&path).unwrap().get(&url), Some(all));
}

/// After a restart (saved positions), nothing is fetched for `resume_delay`, so that
/// clients the restart dropped can reconnect first; a first start does not wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_waits_for_clients_to_reconnect() {
    let sim = start_sim(vec![LogConfig {
        rate: 0.0,
        ..log("resume", 200, 64, Faults::default())
    }])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("positions.json");
    let delay = Duration::from_millis(1500);
    for (round, resume) in [(0, false), (1, true)] {
        let cfg = IngestConfig {
            resume_delay: delay,
            ..ingest_cfg(sim.log_list_url.clone())
        };
        if resume {
            let p = Positions::load(&path).unwrap();
            p.set(&sim.log_url(0), 50);
            p.save(1).unwrap();
        }
        let t0 = std::time::Instant::now();
        let run = start_ingest(cfg, Arc::new(Positions::load(&path).unwrap()));
        run.collector.wait_for(10).await;
        let took = t0.elapsed();
        let (c, _) = run.finish().await;
        let first = c.by_log()[&0][0];
        if resume {
            assert!(took >= delay, "round {round}: published after {took:?}");
            assert_eq!(first, 50);
        } else {
            assert!(took < delay, "round {round}: a first start waited {took:?}");
            assert_eq!(first, 0);
        }
        std::fs::remove_file(&path).ok();
    }
}
