//! The fault soak, short (`perf/soak.sh` is the long one): the simulator serves three RFC 6962
//! logs with different batch caps and one static-ct-api log, every one with random faults
//! (429 with and without Retry-After, 500, 503, slow answers and client timeouts, dropped
//! connections, truncated and garbage bodies, forged checkpoints, gzip tiles); one log stops
//! growing and resumes, another leaves the log list and comes back. The service streams them
//! to the stream checker (`certstream_benches::checker`) on `/full-stream`, which must see
//! every index of every log exactly once and in order.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use certstream_benches::checker::{self, Checker, Options};
use certstream_engine::http::ClientConfig;
use certstream_engine::ingest::IngestConfig;
use certstream_engine::watcher::{StartAt, WatcherConfig};
use certstream_server::{listen, Config};
use certstream_sim::{self as sim, Faults, LogConfig, LogKind, SimConfig, Source};
use common::*;

fn faults(spec: &str) -> Faults {
    Faults::parse(spec).unwrap()
}

#[test]
fn every_index_once_and_in_order_under_faults_and_log_changes() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let log = |name: &str, kind: LogKind, cap: u64, f: &str| LogConfig {
        name: name.into(),
        kind,
        source: Source::Generated(32),
        initial_size: 0,
        rate: 0.0,
        max_size: None,
        batch_cap: cap,
        faults: faults(f),
    };
    let sim = rt
        .block_on(sim::start(SimConfig {
            logs: vec![
                log(
                    "a",
                    LogKind::Rfc6962,
                    64,
                    "429=0.05,retry-after=1,retry-after-omit=0.5,500=0.04,503=0.04,reset=0.04,slow=0.05,slow-ms=300",
                ),
                log(
                    "b",
                    LogKind::Rfc6962,
                    32,
                    "truncated=0.05,garbage=0.05,429=0.04,slow=0.01,slow-ms=2500",
                ),
                log("c", LogKind::Rfc6962, 100, "all=0.03,retry-after=0"),
                log(
                    "t",
                    LogKind::StaticCt,
                    256,
                    "all=0.03,retry-after=0,gzip=0.3",
                ),
            ],
            ..SimConfig::default()
        }))
        .unwrap();
    let cfg = Config {
        ingest: IngestConfig {
            log_list: sim.log_list_url.clone(),
            client: ClientConfig {
                // The `slow-ms=2500` answers of log b time out.
                timeout: Duration::from_secs(2),
                ..ClientConfig::default()
            },
            watcher: WatcherConfig {
                poll_interval: Duration::from_millis(100),
                start: StartAt::Index(0),
                operator_rate: 0.0,
                backoff_min: Duration::from_millis(50),
                backoff_max: Duration::from_secs(1),
                ..WatcherConfig::default()
            },
            refresh: Duration::from_millis(500),
            ..IngestConfig::default()
        },
        positions_file: None,
        demo: None,
        serve: serve_config(),
        nats: Default::default(),
    };
    let listener = listen::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let server = certstream_server::start(cfg, listener).unwrap();

    let state = Arc::new(Mutex::new(Checker::new(Some(0))));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let opts = Options {
        addr: server.addr.to_string(),
        path: "/full-stream".into(),
        ..Options::default()
    };
    let reader = {
        let (state, stop) = (state.clone(), stop.clone());
        rt.spawn(async move { checker::stream(&opts, &state, stop).await })
    };
    let scraper = {
        let (state, stop) = (state.clone(), stop.clone());
        let url = format!("http://{}/metrics", server.addr);
        rt.spawn(async move {
            checker::scrape_metrics(&url, Duration::from_millis(500), &state, stop).await
        })
    };
    wait_until("the checker to connect", || {
        get_json(server.addr, "/stats")["clients"]["full"] == 1
    });
    // 4 × 60 certificates/s from now on.
    for l in &sim.logs {
        l.set_growth(60.0, None);
    }
    let pause = |s: u64| std::thread::sleep(Duration::from_secs(s));
    pause(4);
    sim.logs[2].set_growth(0.0, None); // c stops growing...
    pause(2);
    sim.logs[1].set_listed(false); // ...b leaves the list...
    pause(3);
    let b = sim.log_url(1);
    let b_stats = || {
        let v = get_json(server.addr, "/stats");
        let logs = v["logs"].as_array().unwrap().clone();
        logs.into_iter().find(|l| l["url"] == b.as_str()).unwrap()
    };
    wait_until("b's watcher to stop", || b_stats()["active"] == false);
    sim.logs[2].set_growth(60.0, None); // ...c grows again...
    pause(3);
    sim.logs[1].set_listed(true); // ...and b is back.
    wait_until("b's watcher to start again", || b_stats()["active"] == true);
    pause(4);

    for l in &sim.logs {
        l.set_growth(0.0, None);
    }
    let sizes: Vec<(String, u64)> = (0..sim.logs.len())
        .map(|i| (sim.log_url(i), sim.logs[i].tree_size()))
        .collect();
    let caught_up = rt.block_on(checker::drain(&state, &sizes, Duration::from_secs(90)));
    stop_tx.send(true).unwrap();
    rt.block_on(async {
        reader.await.unwrap();
        scraper.await.unwrap();
    });
    let c = state.lock().unwrap();
    let report = c.summary();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert!(caught_up, "the stream never reached the logs' sizes");
    assert_eq!(
        (c.gaps(), c.duplicates(), c.reordered()),
        (0, 0, 0),
        "gaps, duplicates, reordered"
    );
    assert_eq!(c.conns.len(), 1, "the checker's connection dropped");
    for (url, size) in &sizes {
        assert!(*size > 100, "{url} grew to {size} only");
        assert_eq!(c.logs[url].received, *size, "{url}");
    }
    let totals = c.server.totals();
    assert_eq!((totals.client_dropped, totals.ring_dropped), (0, 0));
    drop(c);
    for l in &sim.logs {
        assert!(
            l.faults_injected.load(std::sync::atomic::Ordering::Relaxed) > 0,
            "no fault was injected into {}",
            l.name
        );
    }
    let v = get_json(server.addr, "/stats");
    assert!(v["ingest"]["http_errors"].as_u64().unwrap() > 0, "{v}");
    assert!(v["ingest"]["bad_responses"].as_u64().unwrap() > 0, "{v}");
    assert!(v["ingest"]["rate_limited"].as_u64().unwrap() > 0, "{v}");
    server.shutdown().unwrap();
}
