//! Cursors and resuming: every streamed message carries its cursor; `?since=` replays what a
//! core's stream log still holds, exactly once, then goes live; a `since` older than the log
//! gets a `gap` message first; a bad one gets 400 before the upgrade; a burst at the default
//! poll interval is absorbed by the log; cursors continue across a restart and jump ahead
//! after a crash. The real service on `127.0.0.1:0`, real websocket clients.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use certstream_engine::ingest::IngestConfig;
use certstream_engine::watcher::{StartAt, WatcherConfig};
use certstream_server::shared::CoreConfig;
use certstream_server::{listen, Config, Server};
use certstream_sim::{LogConfig, SimConfig, Source};
use common::*;
use serde_json::Value;

/// The next non-heartbeat text message, raw.
fn next_text(ws: &mut Ws) -> String {
    loop {
        match ws.read().unwrap() {
            tungstenite::Message::Text(t)
                if !t.as_str().starts_with("{\"message_type\":\"heartbeat\"") =>
            {
                return t.as_str().to_owned();
            }
            tungstenite::Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

fn cursor_of(text: &str) -> u64 {
    let v: Value = serde_json::from_str(text).unwrap();
    v["cursor"].as_u64().expect("a cursor")
}

#[test]
fn every_message_carries_its_cursor_as_the_second_key() {
    let server = start(200.0, serve_config());
    let addr = server.addr;
    let mut lite = ws(addr, "/");
    let mut full = ws(addr, "/full-stream");
    let mut domains = ws(addr, "/domains-only");
    let mut offset = None;
    for (ws, opening) in [
        (
            &mut lite,
            "{\"message_type\":\"certificate_update\",\"cursor\":",
        ),
        (
            &mut full,
            "{\"message_type\":\"certificate_update\",\"cursor\":",
        ),
        (
            &mut domains,
            "{\"message_type\":\"dns_entries\",\"cursor\":",
        ),
    ] {
        let mut last = None;
        for _ in 0..40 {
            let t = next_text(ws);
            assert!(t.starts_with(opening), "{}", &t[..80.min(t.len())]);
            let c = cursor_of(&t);
            if let Some(l) = last {
                assert_eq!(c, l + 1, "consecutive");
            }
            last = Some(c);
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["message_type"] == "certificate_update" {
                // One simulated log: a certificate's cursor and index move together, and
                // every stream gives a certificate the same cursor.
                let index = v["data"]["cert_index"].as_u64().unwrap();
                let o = *offset.get_or_insert(c - index);
                assert_eq!(c - index, o, "the same certificate, the same cursor");
            }
        }
    }
    let stats = get_json(addr, "/stats");
    assert_eq!(stats["cursor"]["first"], 1);
    assert!(stats["cursor"]["next"].as_u64().unwrap() > 40);
    server.shutdown().unwrap();
}

#[test]
fn since_replays_what_is_held_exactly_once_then_goes_live() {
    let server = start(200.0, serve_config());
    let addr = server.addr;
    let mut live = ws(addr, "/full-stream");
    let seen: Vec<String> = (0..100).map(|_| next_text(&mut live)).collect();
    let since = cursor_of(&seen[9]);
    let mut resumed = ws(addr, &format!("/full-stream?since={since}"));
    // The replay is byte for byte what the live client got, from since + 1 on...
    for want in &seen[10..] {
        assert_eq!(&next_text(&mut resumed), want);
    }
    // ... and then it is live, with nothing missing and nothing twice.
    let mut last = cursor_of(&seen[99]);
    for _ in 0..100 {
        let c = cursor_of(&next_text(&mut resumed));
        assert_eq!(c, last + 1);
        last = c;
    }
    // Resuming at the newest cursor is just live.
    let newest = get_json(addr, "/stats")["cursor"]["next"].as_u64().unwrap() - 1;
    let mut at_head = ws(addr, &format!("/domains-only?since={newest}"));
    assert_eq!(cursor_of(&next_text(&mut at_head)), newest + 1);
    let stats = get_json(addr, "/stats");
    assert_eq!(stats["resumed"], 2);
    assert_eq!(stats["resume_gaps"], 0);
    server.shutdown().unwrap();
}

#[test]
fn since_older_than_the_stream_log_gets_a_gap_message_first() {
    let mut cfg = serve_config();
    // A log of 2,000 (two seconds of this stream: slack for a busy machine).
    cfg.stream_log_frames = 2000;
    let server = start(1000.0, cfg);
    let addr = server.addr;
    wait_until("3,000 certificates", || {
        get_json(addr, "/stats")["cursor"]["next"].as_u64().unwrap() > 3000
    });
    let mut c = ws(addr, "/?since=1");
    let gap: Value = serde_json::from_str(&next_text(&mut c)).unwrap();
    assert_eq!(gap["message_type"], "gap");
    assert_eq!(gap["from"], 2);
    let to = gap["to"].as_u64().unwrap();
    assert!(to > 1000, "{gap}");
    // Then everything held, from the first cursor after the gap, consecutively.
    let mut last = to;
    for _ in 0..120 {
        let c = cursor_of(&next_text(&mut c));
        assert_eq!(c, last + 1);
        last = c;
    }
    let stats = get_json(addr, "/stats");
    assert_eq!(stats["resume_gaps"], 1);
    for core in stats["cores"].as_array().unwrap() {
        assert!(core["stream_log"]["certificates"].as_u64().unwrap() <= 2000);
        assert!(core["stream_log"]["evicted"].as_u64().unwrap() > 0);
    }
    let (_, metrics) = get(addr, "/metrics");
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("certstream_resume_gaps_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("certstream_stream_log_certificates{core=\"0\"}"));
    server.shutdown().unwrap();
}

#[test]
fn a_bad_since_gets_400_with_its_reason_before_the_upgrade() {
    let server = start(100.0, serve_config());
    let addr = server.addr;
    let mut healthy = ws(addr, "/");
    next_text(&mut healthy);
    let next = get_json(addr, "/stats")["cursor"]["next"].as_u64().unwrap();
    let ahead = next + 1_000_000;
    for (path, reason) in [
        (
            "/?since=abc",
            "since must be a cursor: a non-negative integer\n".to_owned(),
        ),
        (
            "/full-stream?since=-5",
            "since must be a cursor: a non-negative integer\n".to_owned(),
        ),
        (
            "/domains-only?since=",
            "since must be a cursor: a non-negative integer\n".to_owned(),
        ),
        (
            "/?since=99999999999999999999",
            "since must be a cursor: a non-negative integer\n".to_owned(),
        ),
        (
            "/?since=1&since=2",
            "since given more than once\n".to_owned(),
        ),
        (
            &*format!("/full-stream?since={ahead}"),
            format!("since={ahead} is ahead of the stream: the last cursor is "),
        ),
    ] {
        let (status, body) = upgrade_answer(addr, path);
        assert_eq!(status, 400, "{path}");
        assert!(body.starts_with(&reason), "{path}: {body:?}");
        assert_eq!(body.lines().count(), 1, "one line: {body:?}");
    }
    // Others are served all along.
    let mut last = cursor_of(&next_text(&mut healthy));
    for _ in 0..20 {
        let c = cursor_of(&next_text(&mut healthy));
        assert_eq!(c, last + 1);
        last = c;
    }
    assert!(get_json(addr, "/stats")["cursor"]["next"].as_u64().unwrap() > next);
    server.shutdown().unwrap();
}

/// The service with the default poll interval (5 s) over a simulated log growing by `rate`
/// certificates per second: the watcher fetches `5 * rate` at once.
fn start_default_poll(rate: f64, serve: CoreConfig) -> Server {
    let mut cfg = config(rate, serve);
    cfg.ingest.watcher.poll_interval = WatcherConfig::default().poll_interval;
    assert_eq!(cfg.ingest.watcher.poll_interval, Duration::from_secs(5));
    if let Some(sim) = &mut cfg.demo {
        sim.logs[0].batch_cap = 1024;
    }
    start_config(cfg)
}

/// A full-stream client with a small receive buffer that reads at most `rate` messages per
/// second, for `bursts` bursts; returns the messages, the cursors it skipped and the bytes.
fn paced_client(addr: SocketAddr, rate: f64, bursts: usize) -> (u64, u64, usize) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(16 << 10).unwrap();
    sock.connect(&addr.into()).unwrap();
    let stream: TcpStream = sock.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (mut c, _) =
        tungstenite::client(format!("ws://{addr}/full-stream"), stream).expect("upgrade");
    let (mut last, mut skipped, mut got, mut bytes) = (None::<u64>, 0, 0u64, 0);
    let mut burst_starts = 0;
    let mut due = Instant::now();
    let mut prev_seen = f64::NEG_INFINITY;
    while burst_starts <= bursts {
        let t = next_text(&mut c);
        bytes += t.len();
        let cursor = cursor_of(&t);
        let now = Instant::now();
        if let Some(l) = last {
            skipped += cursor - l - 1;
        }
        last = Some(cursor);
        got += 1;
        // A new burst: the certificate's `seen` moved by about a poll interval.
        let v: Value = serde_json::from_str(&t).unwrap();
        let seen = v["data"]["seen"].as_f64().unwrap();
        if seen - prev_seen > 2.0 {
            burst_starts += 1;
        }
        prev_seen = seen;
        // Pace: at most `rate` messages per second, with no credit saved while idle.
        due = due.max(now) + Duration::from_secs_f64(1.0 / rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
    (got, skipped, bytes)
}

#[test]
fn a_burst_at_the_default_poll_interval_is_absorbed_by_the_stream_log() {
    // 800 certificates/s polled every 5 s: bursts of about 4,000 (6 MB of full-stream
    // messages, more than the sockets buffer). The client reads at 1.25x the average rate,
    // far below the burst's.
    let rate = 800.0;
    let server = start_default_poll(rate, serve_config());
    let (got, skipped, bytes) = paced_client(server.addr, rate * 1.25, 3);
    let stats = get_json(server.addr, "/stats");
    eprintln!(
        "default stream log: {got} messages ({bytes} bytes), {skipped} skipped; {}",
        stats["dropped"]
    );
    assert_eq!(skipped, 0, "a client at the average rate loses nothing");
    assert_eq!(stats["dropped"]["client_lag"], 0);
    server.shutdown().unwrap();

    // The same client against a log that holds a tenth of a burst (as per-client queues of
    // 400 frames would): it loses part of each burst.
    let mut cfg = serve_config();
    cfg.stream_log_frames = 400;
    // It skips; it must not be closed for it before the bursts are over.
    cfg.slow_client_timeout = Duration::from_secs(120);
    let server = start_default_poll(rate, cfg);
    let (got, skipped, bytes) = paced_client(server.addr, rate * 1.25, 2);
    let stats = get_json(server.addr, "/stats");
    eprintln!(
        "400-certificate stream log: {got} messages ({bytes} bytes), {skipped} skipped; {}",
        stats["dropped"]
    );
    assert!(skipped > 0, "a log smaller than a burst sheds it");
    assert!(stats["dropped"]["client_lag"].as_u64().unwrap() > 0);
    server.shutdown().unwrap();
}

fn start_with_positions(path: &std::path::Path) -> Server {
    let mut serve = serve_config();
    serve.cores = 1;
    let mut cfg = config(200.0, serve);
    cfg.positions_file = Some(path.to_owned());
    cfg.ingest.save_interval = Duration::from_millis(200);
    start_config(cfg)
}

#[test]
fn cursors_continue_after_a_clean_stop_and_jump_ahead_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("positions.json");

    // Run 1, stopped cleanly: run 2 continues with the next cursor.
    let server = start_with_positions(&path);
    let mut c = ws(server.addr, "/");
    let mut last = 0;
    while last < 100 {
        last = cursor_of(&next_text(&mut c));
    }
    // What a SIGKILL would leave behind: the file as it is while running.
    wait_until("a saved lease", || {
        std::fs::read_to_string(&path).is_ok_and(|s| s.contains("next_cursor"))
    });
    let crashed = std::fs::read(&path).unwrap();
    server.shutdown().unwrap();
    drop(c);
    let saved: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let next = saved["next_cursor"].as_u64().unwrap();
    assert!(next > last);

    let server = start_with_positions(&path);
    let stats = get_json(server.addr, "/stats");
    assert_eq!(stats["cursor"]["first"], next, "continues with no gap");
    let mut c = ws(server.addr, "/");
    assert_eq!(cursor_of(&next_text(&mut c)), next);
    let mut run2_last = next;
    while run2_last < next + 100 {
        run2_last = cursor_of(&next_text(&mut c));
    }
    server.shutdown().unwrap();
    drop(c);

    // Run 3 from the file a crash of run 1 would have left: it starts past every cursor
    // run 1 can have given (and so past run 2's too, which began where run 1 stopped).
    std::fs::write(&path, &crashed).unwrap();
    let server = start_with_positions(&path);
    let first = get_json(server.addr, "/stats")["cursor"]["first"]
        .as_u64()
        .unwrap();
    assert!(
        first > run2_last,
        "{first} after a crash, {run2_last} given"
    );
    let mut c = ws(server.addr, "/");
    assert!(cursor_of(&next_text(&mut c)) >= first);
    server.shutdown().unwrap();
}

/// Reads messages until the cursor `until`; asserts each is the last + 1.
fn read_consecutive(c: &mut Ws, mut last: u64, until: u64) -> u64 {
    while last < until {
        let cur = cursor_of(&next_text(c));
        assert_eq!(cur, last + 1, "every cursor once, in order");
        last = cur;
    }
    last
}

#[test]
fn a_client_back_after_ten_seconds_with_since_misses_nothing_on_every_stream_and_driver() {
    use certstream_server::shared::Driver;
    let runs: Vec<_> = [Driver::IoUring, Driver::Legacy]
        .into_iter()
        .map(|driver| {
            std::thread::spawn(move || {
                let mut cfg = serve_config();
                cfg.driver = driver;
                let server = start(100.0, cfg);
                let addr = server.addr;
                let drivers = || {
                    get_json(addr, "/stats")["cores"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| c["driver"].as_str().unwrap().to_owned())
                        .collect::<Vec<_>>()
                };
                wait_until("every core started", || {
                    drivers().iter().all(|d| d != "starting")
                });
                let drivers = drivers();
                let paths = ["/", "/full-stream", "/domains-only"];
                let lasts: Vec<u64> = paths
                    .iter()
                    .map(|p| {
                        let mut c = ws(addr, p);
                        let first = cursor_of(&next_text(&mut c));
                        read_consecutive(&mut c, first, first + 20)
                        // dropped here: the client goes away
                    })
                    .collect();
                std::thread::sleep(Duration::from_secs(10));
                let head = get_json(addr, "/stats")["cursor"]["next"].as_u64().unwrap();
                for (p, last) in paths.iter().zip(&lasts) {
                    assert!(head > last + 500, "ten seconds of stream went by");
                    let mut c = ws(addr, &format!("{p}?since={last}"));
                    read_consecutive(&mut c, *last, head + 20);
                }
                let stats = get_json(addr, "/stats");
                assert_eq!(stats["resumed"], 3);
                assert_eq!(stats["resume_gaps"], 0);
                server.shutdown().unwrap();
                drivers
            })
        })
        .collect();
    let drivers: Vec<Vec<String>> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    // The io_uring run ran on io_uring where the kernel has it; the legacy one on epoll.
    assert!(drivers[1].iter().all(|d| d == "legacy"), "{drivers:?}");
    if certstream_server::shared::io_uring_available() {
        assert!(drivers[0].iter().all(|d| d == "io_uring"), "{drivers:?}");
    }
}

#[test]
fn a_burst_of_five_thousand_reaches_two_hundred_readers_whole() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sim = rt
        .block_on(certstream_sim::start(SimConfig {
            logs: vec![LogConfig {
                name: "burst".into(),
                source: Source::Generated(64),
                initial_size: 0,
                rate: 0.0,
                batch_cap: 1024,
                ..LogConfig::default()
            }],
            ..SimConfig::default()
        }))
        .unwrap();
    let cfg = Config {
        ingest: IngestConfig {
            log_list: sim.log_list_url.clone(),
            watcher: WatcherConfig {
                start: StartAt::Index(0),
                operator_rate: 0.0,
                ..WatcherConfig::default() // the default 5 s poll interval
            },
            ..IngestConfig::default()
        },
        positions_file: None,
        demo: None,
        serve: serve_config(),
        nats: Default::default(),
    };
    let listener = listen::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let server = certstream_server::start(cfg, listener).unwrap();
    let addr = server.addr;
    let readers: Vec<_> = (0..200)
        .map(|_| {
            let mut c = ws(addr, "/");
            std::thread::spawn(move || {
                let first = cursor_of(&next_text(&mut c));
                assert_eq!(first, 1, "the burst's first certificate");
                read_consecutive(&mut c, first, 5000)
            })
        })
        .collect();
    wait_until("200 clients", || {
        get_json(addr, "/stats")["clients"]["total"] == 200
    });
    // 5,000 entries appear at once; the next poll fetches them in one go.
    sim.logs[0].set_growth(1e12, Some(5000));
    for r in readers {
        assert_eq!(r.join().unwrap(), 5000);
    }
    let stats = get_json(addr, "/stats");
    assert_eq!(stats["dropped"]["client_lag"], 0);
    assert_eq!(stats["dropped"]["core_rings"], 0);
    assert_eq!(stats["processed_certificates"], 5000);
    server.shutdown().unwrap();
    sim.stop();
}
