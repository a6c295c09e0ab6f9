//! Restarts, short (`perf/restarts.sh` is the long one): the real `certstream-server` binary
//! on a positions file, stopped with SIGTERM, SIGKILL and SIGTERM again while it streams two
//! simulated logs (RFC 6962 and static-ct-api) to the stream checker on `/full-stream`.
//! After a SIGTERM nothing is lost or repeated; after a SIGKILL nothing is lost and what is
//! repeated is at most about one save interval of the stream. The checker reconnects with
//! `?since=<last cursor>`: cursors continue exactly across a SIGTERM, jump ahead (with a `gap`
//! message) across the SIGKILL, and are never given twice.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certstream_benches::checker::{self, Checker, Options};
use certstream_sim::{self as sim, LogConfig, LogKind, SimConfig, Source};
use common::*;

/// Certificates per second per log, and the service's save interval.
const RATE: f64 = 80.0;
const SAVE_INTERVAL: f64 = 0.5;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_server(
    log_list: &str,
    port: u16,
    positions: &std::path::Path,
    log: &std::path::Path,
) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_certstream-server"))
        .args([
            "--log-list",
            log_list,
            "--host",
            "127.0.0.1",
            "--start",
            "0",
        ])
        .args(["--port", &port.to_string()])
        .arg("--positions")
        .arg(positions)
        .args(["--save-interval", &SAVE_INTERVAL.to_string()])
        .args([
            "--resume-delay",
            "1",
            "--poll-interval",
            "0.1",
            "--operator-rate",
            "0",
        ])
        .args(["--cores", "2"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    wait_until("the service to listen", || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    child
}

fn sigterm(child: &Child) {
    // SAFETY: kill(2) only sends a signal to our own child process.
    let r = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(r, 0);
}

#[test]
fn sigterm_loses_and_repeats_nothing_sigkill_loses_nothing() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let log = |name: &str, kind: LogKind| LogConfig {
        name: name.into(),
        kind,
        source: Source::Generated(32),
        initial_size: 0,
        rate: 0.0,
        batch_cap: 64,
        ..LogConfig::default()
    };
    let sim = rt
        .block_on(sim::start(SimConfig {
            logs: vec![log("r", LogKind::Rfc6962), log("t", LogKind::StaticCt)],
            ..SimConfig::default()
        }))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let positions = dir.path().join("positions.json");
    let server_log = dir.path().join("server.log");
    let port = free_port();
    let mut server = start_server(&sim.log_list_url, port, &positions, &server_log);

    let state = Arc::new(Mutex::new(Checker::new(Some(0))));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let opts = Options {
        addr: format!("127.0.0.1:{port}"),
        path: "/full-stream".into(),
        resume: true,
        ..Options::default()
    };
    let reader = {
        let (state, stop) = (state.clone(), stop.clone());
        rt.spawn(async move { checker::stream(&opts, &state, stop).await })
    };
    wait_until("the checker to connect", || {
        !state.lock().unwrap().conns.is_empty()
    });
    for l in &sim.logs {
        l.set_growth(RATE, None);
    }

    // (signal, when it was sent): the connections after it are its cost.
    let mut restarts = Vec::new();
    for sig in ["TERM", "KILL", "TERM"] {
        std::thread::sleep(Duration::from_secs(3));
        restarts.push((sig, checker::now_secs()));
        match sig {
            "TERM" => sigterm(&server),
            _ => server.kill().unwrap(),
        }
        let status = server.wait().unwrap();
        if sig == "TERM" {
            assert!(status.success(), "exit after SIGTERM: {status}");
        }
        server = start_server(&sim.log_list_url, port, &positions, &server_log);
    }
    std::thread::sleep(Duration::from_secs(3));

    for l in &sim.logs {
        l.set_growth(0.0, None);
    }
    let sizes: Vec<(String, u64)> = (0..sim.logs.len())
        .map(|i| (sim.log_url(i), sim.logs[i].tree_size()))
        .collect();
    let caught_up = rt.block_on(checker::drain(&state, &sizes, Duration::from_secs(60)));
    stop_tx.send(true).unwrap();
    rt.block_on(reader).unwrap();
    sigterm(&server);
    server.wait().unwrap();

    let c = state.lock().unwrap();
    println!("{}", serde_json::to_string_pretty(&c.summary()).unwrap());
    if !caught_up || c.gaps() > 0 {
        println!(
            "{}",
            std::fs::read_to_string(&server_log).unwrap_or_default()
        );
    }
    assert!(caught_up, "the stream never reached the logs' sizes");
    assert_eq!(c.gaps(), 0, "entries lost");
    assert_eq!(c.reordered(), 0);
    for (i, (sig, at)) in restarts.iter().enumerate() {
        let until = restarts.get(i + 1).map_or(f64::INFINITY, |r| r.1);
        let dups: u64 = c
            .conns
            .iter()
            .filter(|k| k.started >= *at && k.started < until)
            .map(|k| k.duplicates)
            .sum();
        match *sig {
            "TERM" => assert_eq!(dups, 0, "duplicates after SIGTERM #{}", i + 1),
            // At most the entries of one save interval (plus one batch being published).
            _ => assert!(
                dups as f64 <= 2.0 * RATE * (SAVE_INTERVAL + 0.5),
                "{dups} duplicates after SIGKILL #{}",
                i + 1
            ),
        }
    }
    // Cursors: the re-sent entries after the SIGKILL got new ones, the only jump is the
    // crash's (announced by a gap message), and the SIGTERMs continued the sequence.
    assert_eq!(c.cursor_repeats, 0, "a cursor was given twice");
    assert_eq!(c.cursor_jumps, 1, "cursors jump once: after the SIGKILL");
    assert_eq!(
        c.gap_messages, 1,
        "the resume after the SIGKILL is told of the gap"
    );
    let streaming = c.conns.iter().filter(|k| k.messages > 0).count();
    assert_eq!(streaming, 4, "one connection per server process");
    for (url, size) in &sizes {
        assert_eq!(
            c.logs[url].received - c.logs[url].duplicates,
            *size,
            "{url}"
        );
    }
}
