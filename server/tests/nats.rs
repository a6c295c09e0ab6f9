//! Beyond one machine: one ingest node (`--publish`), edge nodes (`--upstream`) and a real
//! `nats-server` with JetStream on loopback, every node the real `certstream-server` binary
//! (so that it can be SIGKILLed), fed by simulated CT logs.
//!
//! `./test.sh` installs Debian's `nats-server` and points `CERTSTREAM_NATS_SERVER` at it;
//! without it (and outside CI) these tests skip with a message.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certstream_sim::{self as sim, LogConfig, LogKind, SimConfig, Source};
use common::*;
use serde_json::Value;

/// Certificates per second per simulated log.
const RATE: f64 = 60.0;

fn nats_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CERTSTREAM_NATS_SERVER") {
        return Some(p.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file());
    if found.is_none() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "nats-server is missing in CI (test.sh installs it)"
        );
        eprintln!("skipping: no nats-server (./test.sh installs Debian's nats-server)");
    }
    found
}

/// The test's temporary folder (its nodes' logs and stores), removed at the end unless
/// `CERTSTREAM_KEEP_LOGS` is set.
struct DirRef(tempfile::TempDir);

impl DirRef {
    fn new() -> DirRef {
        let mut tmp = tempfile::tempdir().unwrap();
        eprintln!("logs in {}", tmp.path().display());
        if std::env::var_os("CERTSTREAM_KEEP_LOGS").is_some() {
            tmp.disable_cleanup(true);
        }
        DirRef(tmp)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (SIGKILL) when dropped.
struct Proc(Child);

impl Proc {
    fn signal(&mut self, sig: libc::c_int) {
        // SAFETY: kill(2) only sends a signal to our own child process.
        unsafe { libc::kill(self.0.id() as libc::pid_t, sig) };
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn log_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// One nats-server with JetStream on a loopback port and its own store.
struct Nats {
    bin: PathBuf,
    port: u16,
    args: Vec<String>,
    dir: PathBuf,
    proc: Option<Proc>,
}

impl Nats {
    fn new(bin: &Path, dir: &Path, args: Vec<String>) -> Nats {
        let port = free_port();
        let dir = dir.join(format!("nats-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut n = Nats {
            bin: bin.into(),
            port,
            args,
            dir,
            proc: None,
        };
        n.start();
        n
    }

    fn start(&mut self) {
        let child = Command::new(&self.bin)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.join("store"))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log_file(&self.dir.join("nats.log")))
            .spawn()
            .unwrap();
        self.proc = Some(Proc(child));
        let addr = format!("127.0.0.1:{}", self.port);
        wait_until("nats-server to listen", || {
            std::net::TcpStream::connect(&addr).is_ok()
        });
    }

    fn stop(&mut self, sig: libc::c_int) {
        if let Some(mut p) = self.proc.take() {
            p.signal(sig);
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// A `certstream-server` process on `port` with `args`.
fn node(port: u16, args: &[String], log: &Path) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_certstream-server"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--cores",
            "2",
            "--operator-rate",
            "0",
            "--poll-interval",
            "0.1",
        ])
        .args([
            "--resume-delay",
            "0.5",
            "--save-interval",
            "0.5",
            "--start",
            "0",
        ])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log_file(log))
        .spawn()
        .unwrap();
    wait_until("the node to answer /stats", || answers(port));
    Proc(child)
}

/// Whether `GET /stats` on `port` gets a 200 now.
fn answers(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = [0u8; 12];
    s.write_all(b"GET /stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .is_ok()
        && s.read_exact(&mut head).is_ok()
        && &head[9..12] == b"200"
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A websocket client that records every certificate message's text, in order.
struct Client {
    msgs: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Client {
    fn connect(port: u16, path: &str) -> Client {
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut ws = ws(addr, path);
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (msgs, stop) = (msgs.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Relaxed) {
                    match ws.read() {
                        Ok(tungstenite::Message::Text(t)) => {
                            if !t.as_str().starts_with("{\"message_type\":\"heartbeat\"") {
                                msgs.lock().unwrap().push(t.as_str().to_owned());
                            }
                        }
                        Ok(_) => {}
                        Err(tungstenite::Error::Io(e))
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => return,
                    }
                }
            })
        };
        Client {
            msgs,
            stop,
            thread: Some(thread),
        }
    }

    fn len(&self) -> usize {
        self.msgs.lock().unwrap().len()
    }

    fn messages(&self) -> Vec<String> {
        self.msgs.lock().unwrap().clone()
    }

    /// Waits until the connection ends (its server went away).
    fn ended(mut self) -> Vec<String> {
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.messages()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

fn json(m: &str) -> Value {
    serde_json::from_str(m).unwrap()
}

fn cursor(m: &str) -> u64 {
    json(m)["cursor"].as_u64().unwrap_or(0)
}

/// `(log url, index)` of a certificate message.
fn entry(m: &str) -> (String, u64) {
    let v = json(m);
    (
        v["data"]["source"]["url"].as_str().unwrap().to_owned(),
        v["data"]["cert_index"].as_u64().unwrap(),
    )
}

/// A filter (`^(alpha|cobalt)-`, percent-encoded) that keeps about a sixth of the simulated
/// certificates, and the messages of `msgs` it keeps, decided here from `all_domains`.
const FILTER: &str = "match=%5E(alpha%7Ccobalt)-";

fn filtered(msgs: &[String]) -> Vec<String> {
    let wanted = |d: &Value| {
        let d = d.as_str().unwrap();
        d.starts_with("alpha-") || d.starts_with("cobalt-")
    };
    msgs.iter()
        .filter(|m| {
            json(m)["data"]["leaf_cert"]["all_domains"]
                .as_array()
                .unwrap()
                .iter()
                .any(wanted)
        })
        .cloned()
        .collect()
}

fn stats(port: u16) -> Value {
    get_json(format!("127.0.0.1:{port}").parse().unwrap(), "/stats")
}

struct Logs {
    _rt: tokio::runtime::Runtime,
    sim: sim::SimHandle,
}

impl Logs {
    fn start() -> Logs {
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
        Logs { _rt: rt, sim }
    }

    fn grow(&self, on: bool) {
        for l in &self.sim.logs {
            l.set_growth(if on { RATE } else { 0.0 }, None);
        }
    }

    fn total(&self) -> usize {
        self.sim.logs.iter().map(|l| l.tree_size() as usize).sum()
    }

    /// Every entry the logs hold.
    fn entries(&self) -> std::collections::BTreeSet<(String, u64)> {
        (0..self.sim.logs.len())
            .flat_map(|i| (0..self.sim.logs[i].tree_size()).map(move |n| (i, n)))
            .map(|(i, n)| (self.sim.log_url(i), n))
            .collect()
    }
}

fn ingest_args(logs: &Logs, positions: &Path, nats: &[String]) -> Vec<String> {
    let mut a = strings(&["--log-list", &logs.sim.log_list_url, "--positions"]);
    a.push(positions.display().to_string());
    for n in nats {
        a.extend(strings(&["--publish", n]));
    }
    a
}

fn edge_args(nats: &[String], backfill: u64) -> Vec<String> {
    let mut a = strings(&["--nats-backfill", &backfill.to_string()]);
    for n in nats {
        a.extend(strings(&["--upstream", n]));
    }
    a
}

/// Waits until every client has `n` certificates.
fn all_have(clients: &[&Client], n: usize) {
    let guard = std::time::Instant::now() + Duration::from_secs(60);
    while !clients.iter().all(|c| c.len() >= n) {
        if std::time::Instant::now() > guard {
            for c in clients {
                let m = c.messages();
                eprintln!(
                    "client: {} of {n}; first {:?}; last {:?}",
                    m.len(),
                    m.first().map(|m| &m[..m.len().min(120)]),
                    m.last().map(|m| &m[..m.len().min(120)])
                );
            }
            panic!("timed out waiting for every client to have {n} certificates");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until an edge is connected and has fed the whole stream to its cores.
fn caught_up(port: u16) {
    wait_until("the edge to catch up with the stream", || {
        let u = stats(port)["upstream"].clone();
        u["connected"] == true && u["lag"] == 0 && u["last_sequence"].as_u64() > Some(0)
    });
}

#[test]
fn edges_serve_the_ingests_stream_through_edge_nats_and_ingest_restarts() {
    let Some(bin) = nats_server() else { return };
    let dir = DirRef::new();
    let logs = Logs::start();
    let mut nats = Nats::new(&bin, dir.path(), Vec::new());
    let urls = vec![nats.url()];
    let positions = dir.path().join("positions.json");
    let (pi, pa, pb) = (free_port(), free_port(), free_port());
    let ingest_log = dir.path().join("ingest.log");
    let mut ingest = node(pi, &ingest_args(&logs, &positions, &urls), &ingest_log);
    let edge_a_log = dir.path().join("edge-a.log");
    let mut edge_a = node(pa, &edge_args(&urls, 10_000), &edge_a_log);
    let _edge_b = node(
        pb,
        &edge_args(&urls, 10_000),
        &dir.path().join("edge-b.log"),
    );
    assert_eq!(stats(pi)["upstream"]["role"], "ingest");
    assert_eq!(stats(pa)["upstream"]["role"], "edge");
    assert_eq!(stats(pa)["upstream"]["servers"], urls[0].as_str());

    // 1. Byte-identical, same order, same cursors, on every stream.
    let ci = Client::connect(pi, "/full-stream");
    let ca = Client::connect(pa, "/full-stream");
    let cb = Client::connect(pb, "/full-stream");
    let (li, lb) = (Client::connect(pi, "/"), Client::connect(pb, "/"));
    let (di, da) = (
        Client::connect(pi, "/domains-only"),
        Client::connect(pa, "/domains-only"),
    );
    // Filtered clients: an edge filters as the ingest does (the names travel with the frames).
    let (fi, fa) = (
        Client::connect(pi, &format!("/full-stream?{FILTER}")),
        Client::connect(pa, &format!("/full-stream?{FILTER}")),
    );
    logs.grow(true);
    std::thread::sleep(Duration::from_secs(2));
    logs.grow(false);
    let n = logs.total();
    assert!(n > 0);
    all_have(&[&ci, &ca, &cb, &li, &lb, &di, &da], n);
    let reference = ci.messages();
    assert_eq!(reference.len(), n);
    assert_eq!(ca.messages(), reference, "edge A's full stream");
    assert_eq!(cb.messages(), reference, "edge B's full stream");
    assert_eq!(lb.messages(), li.messages(), "edge B's lite stream");
    assert_eq!(da.messages(), di.messages(), "edge A's domains-only stream");
    let cursors: Vec<u64> = reference.iter().map(|m| cursor(m)).collect();
    assert!(cursors.windows(2).all(|w| w[1] == w[0] + 1), "consecutive");
    drop((li, lb, di, da));
    let want = filtered(&reference);
    assert!(!want.is_empty() && want.len() < reference.len());
    all_have(&[&fi, &fa], want.len());
    assert_eq!(fi.messages(), want, "the ingest's filtered client");
    assert_eq!(fa.messages(), want, "edge A's filtered client");

    // 2. SIGKILL edge A while streaming; its client resumes on the new edge A with `since`:
    // the certificates it missed are older than the new edge's stream log (it reads back
    // only 5), so they come from JetStream.
    logs.grow(true);
    std::thread::sleep(Duration::from_millis(700));
    edge_a.signal(libc::SIGKILL);
    let before = ca.ended();
    let before_f = fa.ended();
    std::thread::sleep(Duration::from_secs(1));
    edge_a = node(pa, &edge_args(&urls, 5), &edge_a_log);
    caught_up(pa);
    let since = cursor(before.last().unwrap());
    let ca2 = Client::connect(pa, &format!("/full-stream?since={since}"));
    // The filtered client resumes too: JetStream's certificates are filtered as well.
    let since_f = cursor(before_f.last().unwrap());
    let fa2 = Client::connect(pa, &format!("/full-stream?since={since_f}&{FILTER}"));
    std::thread::sleep(Duration::from_millis(500));
    logs.grow(false);
    let n = logs.total();
    all_have(&[&ci, &cb], n);
    caught_up(pa);
    eprintln!("edge A after its restart: {}", stats(pa)["upstream"]);
    all_have(&[&ca2], n - before.len());
    let reference = ci.messages();
    let mut resumed = before.clone();
    resumed.extend(ca2.messages());
    assert_eq!(resumed, reference, "edge A's client across its SIGKILL");
    assert_eq!(cb.messages(), reference, "edge B, unaffected");
    let want = filtered(&reference);
    all_have(&[&fi], want.len());
    all_have(&[&fa2], want.len() - before_f.len());
    let mut resumed_f = before_f;
    resumed_f.extend(fa2.messages());
    assert_eq!(fi.messages(), want, "the ingest's filtered client");
    assert_eq!(
        resumed_f, want,
        "edge A's filtered client across its SIGKILL"
    );
    drop((fi, fa2));
    let a = stats(pa)["upstream"].clone();
    assert_eq!(a["replays"], 2, "{a}");
    assert!(a["replayed"].as_u64().unwrap() > 5, "{a}");

    // 3. NATS down for 10 s: the ingest's clients get everything meanwhile; then the edges
    // catch up with no gap.
    logs.grow(true);
    std::thread::sleep(Duration::from_millis(500));
    nats.stop(libc::SIGTERM);
    std::thread::sleep(Duration::from_secs(10));
    let during = logs.total();
    all_have(&[&ci], during);
    let edges_during = cb.len();
    assert!(
        edges_during < during,
        "the edges got nothing while NATS was down"
    );
    nats.start();
    std::thread::sleep(Duration::from_secs(1));
    logs.grow(false);
    let n = logs.total();
    all_have(&[&ci, &cb], n);
    all_have(&[&ca2], n - before.len());
    let reference = ci.messages();
    assert_eq!(cb.messages(), reference, "edge B after the NATS outage");
    let mut resumed = before.clone();
    resumed.extend(ca2.messages());
    assert_eq!(resumed, reference, "edge A after the NATS outage");
    let up = stats(pi)["upstream"].clone();
    assert_eq!(up["dropped"], 0, "{up}");
    assert!(up["publish_errors"].as_u64().unwrap() > 0, "{up}");
    assert_eq!(up["backlog"], 0, "{up}");

    // 4. Restart the ingest: SIGTERM (cursors continue), then SIGKILL (entries fetched
    // again are not published twice, no cursor is reused, nothing is missing).
    for sig in [libc::SIGTERM, libc::SIGKILL] {
        logs.grow(true);
        std::thread::sleep(Duration::from_secs(1));
        ingest.signal(sig);
        ingest = node(pi, &ingest_args(&logs, &positions, &urls), &ingest_log);
    }
    std::thread::sleep(Duration::from_secs(1));
    logs.grow(false);
    let lease = stats(pi)["cursor"]["first"].as_u64().unwrap();
    let want = logs.entries();
    wait_until("the edges to have every entry", || {
        let got: std::collections::BTreeSet<_> = cb.messages().iter().map(|m| entry(m)).collect();
        got == want
    });
    for (name, msgs) in [
        ("edge B", cb.messages()),
        ("edge A", {
            let mut m = before.clone();
            m.extend(ca2.messages());
            m
        }),
    ] {
        let entries: Vec<_> = msgs.iter().map(|m| entry(m)).collect();
        let set: std::collections::BTreeSet<_> = entries.iter().cloned().collect();
        assert_eq!(set.len(), entries.len(), "{name}: an entry came twice");
        let cursors: Vec<u64> = msgs.iter().map(|m| cursor(m)).collect();
        assert!(
            cursors.windows(2).all(|w| w[1] > w[0]),
            "{name}: a cursor was reused or went back"
        );
        // Before the SIGKILL's lease the cursors continue one by one (across the SIGTERM).
        let early: Vec<u64> = cursors.iter().copied().filter(|&c| c < lease).collect();
        assert!(
            early.windows(2).all(|w| w[1] == w[0] + 1),
            "{name}: cursors jump before the SIGKILL"
        );
        assert!(
            cursors.last().unwrap() >= &lease,
            "{name}: after the SIGKILL"
        );
    }
    drop(ingest);
    drop(edge_a);
}

#[test]
fn a_three_node_nats_cluster_loses_a_node_and_the_edge_loses_nothing() {
    let Some(bin) = nats_server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let logs = Logs::start();
    let cluster: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut nodes: Vec<Nats> = (0..3)
        .map(|i| {
            let routes: Vec<String> = cluster
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| format!("nats://127.0.0.1:{p}"))
                .collect();
            Nats::new(
                &bin,
                dir.path(),
                vec![
                    "--server_name".into(),
                    format!("n{i}"),
                    "--cluster_name".into(),
                    "certstream".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{}", cluster[i]),
                    "--routes".into(),
                    routes.join(","),
                ],
            )
        })
        .collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    let positions = dir.path().join("positions.json");
    let (pi, pe) = (free_port(), free_port());
    let mut args = ingest_args(&logs, &positions, &urls);
    args.extend(strings(&["--nats-replicas", "3"]));
    let _ingest = node(pi, &args, &dir.path().join("ingest.log"));
    let _edge = node(pe, &edge_args(&urls, 10_000), &dir.path().join("edge.log"));
    let ci = Client::connect(pi, "/full-stream");
    let ce = Client::connect(pe, "/full-stream");
    logs.grow(true);
    wait_until("the stream to reach the edge", || ce.len() > 20);
    nodes[1].stop(libc::SIGKILL);
    std::thread::sleep(Duration::from_secs(3));
    logs.grow(false);
    let n = logs.total();
    all_have(&[&ci, &ce], n);
    assert_eq!(
        ce.messages(),
        ci.messages(),
        "the edge across a NATS node's loss"
    );
    let up = stats(pi)["upstream"].clone();
    assert_eq!(up["dropped"], 0, "{up}");
}

#[test]
fn beyond_the_backlog_bound_the_ingest_drops_counts_and_keeps_serving() {
    let Some(bin) = nats_server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let logs = Logs::start();
    let mut nats = Nats::new(&bin, dir.path(), Vec::new());
    let urls = vec![nats.url()];
    let (pi, pe) = (free_port(), free_port());
    let mut args = ingest_args(&logs, &dir.path().join("positions.json"), &urls);
    args.extend(strings(&["--nats-backlog", "20"]));
    let _ingest = node(pi, &args, &dir.path().join("ingest.log"));
    let _edge = node(pe, &edge_args(&urls, 10_000), &dir.path().join("edge.log"));
    let ci = Client::connect(pi, "/full-stream");
    let ce = Client::connect(pe, "/full-stream");
    nats.stop(libc::SIGTERM);
    logs.grow(true);
    std::thread::sleep(Duration::from_secs(3));
    logs.grow(false);
    let n = logs.total();
    all_have(&[&ci], n);
    wait_until("the ingest to count what it dropped", || {
        stats(pi)["upstream"]["dropped"].as_u64() > Some(0)
    });
    nats.start();
    let up = stats(pi)["upstream"].clone();
    let dropped = up["dropped"].as_u64().unwrap() as usize;
    assert!(n > 20 && dropped > 0, "{up}");
    // What was held (at most the bound) reaches the edge; the rest is counted, not sent.
    wait_until("the edge to get what the ingest held", || {
        ce.len() + dropped == n
    });
    let reference = ci.messages();
    let got = ce.messages();
    assert!(got.len() <= 20 + 1, "{} held for a bound of 20", got.len());
    // Byte-identical to the ingest's, with the ingest's cursors, in order.
    let mut at = 0;
    for m in &got {
        at += reference[at..]
            .iter()
            .position(|r| r == m)
            .expect("an ingest message")
            + 1;
    }
    let up = stats(pi)["upstream"].clone();
    assert_eq!(up["backlog"], 0, "{up}");
    assert_eq!(
        up["published"].as_u64().unwrap() as usize,
        got.len(),
        "{up}"
    );
}

#[test]
fn an_ingest_without_positions_continues_the_streams_cursors() {
    let Some(bin) = nats_server() else { return };
    let dir = DirRef::new();
    let logs = Logs::start();
    let nats = Nats::new(&bin, dir.path(), Vec::new());
    let urls = vec![nats.url()];
    let (pi, pe) = (free_port(), free_port());
    let args = strings(&[
        "--log-list",
        &logs.sim.log_list_url,
        "--no-positions",
        "--publish",
        &urls[0],
    ]);
    let ingest_log = dir.path().join("ingest.log");
    let mut ingest = node(pi, &args, &ingest_log);
    let _edge = node(pe, &edge_args(&urls, 10_000), &dir.path().join("edge.log"));
    let ce = Client::connect(pe, "/full-stream");
    logs.grow(true);
    std::thread::sleep(Duration::from_secs(1));
    logs.grow(false);
    let n = logs.total();
    all_have(&[&ce], n);
    let last = cursor(ce.messages().last().unwrap());
    ingest.signal(libc::SIGTERM);
    // In memory only: the new run fetches every entry again from index 0.
    let _ingest = node(pi, &args, &ingest_log);
    assert_eq!(
        stats(pi)["cursor"]["first"],
        last + 1,
        "continues the stream"
    );
    logs.grow(true);
    std::thread::sleep(Duration::from_secs(1));
    logs.grow(false);
    let want = logs.entries();
    wait_until("the edge to have every entry", || ce.len() == want.len());
    let msgs = ce.messages();
    let got: std::collections::BTreeSet<_> = msgs.iter().map(|m| entry(m)).collect();
    assert_eq!(got, want, "every entry once");
    let cursors: Vec<u64> = msgs.iter().map(|m| cursor(m)).collect();
    assert!(cursors.windows(2).all(|w| w[1] > w[0]), "no cursor reused");
    let up = stats(pi)["upstream"].clone();
    assert!(
        up["duplicates"].as_u64().unwrap() >= n as u64,
        "refetched: {up}"
    );
}

#[test]
fn bursts_published_while_nats_and_the_ingest_restart_reach_the_edge_in_order() {
    let Some(bin) = nats_server() else { return };
    let dir = DirRef::new();
    let logs = Logs::start();
    let mut nats = Nats::new(&bin, dir.path(), Vec::new());
    let urls = vec![nats.url()];
    let positions = dir.path().join("positions.json");
    let (pi, pe) = (free_port(), free_port());
    let ingest_log = dir.path().join("ingest.log");
    let mut args = ingest_args(&logs, &positions, &urls);
    args.extend(strings(&["--nats-inflight", "256"]));
    let mut ingest = node(pi, &args, &ingest_log);
    let _edge = node(pe, &edge_args(&urls, 100_000), &dir.path().join("edge.log"));
    let ci = Client::connect(pi, "/full-stream");
    let ce = Client::connect(pe, "/full-stream");
    let burst = |secs: f64| {
        for l in &logs.sim.logs {
            l.set_growth(1_000.0, None);
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
    };
    // Hundreds in flight when NATS is SIGKILLed (publishes and acks lost), down longer
    // than an ack's timeout (5 s); then the backlog while the logs keep growing.
    burst(1.5);
    nats.stop(libc::SIGKILL);
    burst(6.0);
    nats.start();
    burst(1.5);
    logs.grow(false);
    let n = logs.total();
    all_have(&[&ci, &ce], n);
    let reference = ci.messages();
    assert_eq!(ce.messages(), reference, "the edge across NATS' SIGKILL");
    let cursors: Vec<u64> = reference.iter().map(|m| cursor(m)).collect();
    assert!(cursors.windows(2).all(|w| w[1] == w[0] + 1), "consecutive");
    let up = stats(pi)["upstream"].clone();
    eprintln!("ingest after NATS' SIGKILL: {up}");
    assert_eq!(up["dropped"], 0, "{up}");
    // Each once: stored, or found stored already when sent again (its ack lost).
    let once = up["published"].as_u64().unwrap() + up["duplicates"].as_u64().unwrap();
    assert_eq!(once, n as u64, "{up}");
    assert!(up["publish_errors"].as_u64() > Some(0), "{up}");

    // SIGKILL the ingest mid-burst: it fetches again what it had not saved, duplicates
    // (found by message id) mixed with new entries, thousands in flight.
    burst(1.0);
    ingest.signal(libc::SIGKILL);
    let _ingest = node(pi, &args, &ingest_log);
    burst(1.5);
    logs.grow(false);
    let lease = stats(pi)["cursor"]["first"].as_u64().unwrap();
    let want = logs.entries();
    wait_until("the edge to have every entry", || ce.len() >= want.len());
    let msgs = ce.messages();
    let entries: Vec<_> = msgs.iter().map(|m| entry(m)).collect();
    let got: std::collections::BTreeSet<_> = entries.iter().cloned().collect();
    assert_eq!(got.len(), entries.len(), "an entry came twice");
    assert_eq!(got, want, "every entry");
    let cursors: Vec<u64> = msgs.iter().map(|m| cursor(m)).collect();
    assert!(cursors.windows(2).all(|w| w[1] > w[0]), "in cursor order");
    // Before the SIGKILL's lease the cursors continue one by one; after it, those of the
    // duplicates are not in the stream.
    let early: Vec<u64> = cursors.iter().copied().filter(|&c| c < lease).collect();
    assert!(
        early.windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive before the SIGKILL"
    );
    let up = stats(pi)["upstream"].clone();
    eprintln!("ingest after its SIGKILL: {up}");
    assert!(up["duplicates"].as_u64() > Some(0), "{up}");
    assert_eq!(up["dropped"], 0, "{up}");
}

#[test]
fn an_ingest_killed_while_nats_is_down_fetches_again_what_jetstream_never_had() {
    let Some(bin) = nats_server() else { return };
    let dir = DirRef::new();
    let logs = Logs::start();
    let mut nats = Nats::new(&bin, dir.path(), Vec::new());
    let urls = vec![nats.url()];
    let positions = dir.path().join("positions.json");
    let (pi, pe) = (free_port(), free_port());
    let ingest_log = dir.path().join("ingest.log");
    let args = ingest_args(&logs, &positions, &urls);
    let mut ingest = node(pi, &args, &ingest_log);
    let _edge = node(pe, &edge_args(&urls, 100_000), &dir.path().join("edge.log"));
    let ce = Client::connect(pe, "/full-stream");
    logs.grow(true);
    std::thread::sleep(Duration::from_secs(1));
    // NATS goes away; the ingest keeps fetching (its own clients get it all) and queues
    // for JetStream. Its positions file is saved meanwhile (every quarter second with the
    // nodes' 0.5 s save interval), but never past what JetStream acknowledged.
    nats.stop(libc::SIGKILL);
    std::thread::sleep(Duration::from_secs(4));
    logs.grow(false);
    let queued = stats(pi)["upstream"]["backlog"].as_u64().unwrap()
        + stats(pi)["upstream"]["inflight"].as_u64().unwrap();
    assert!(queued > 0, "certificates wait for NATS");
    std::thread::sleep(Duration::from_secs(2)); // saves (every 0.5 s) after the last fetch
    let saved: Value = serde_json::from_slice(&std::fs::read(&positions).unwrap()).unwrap();
    let saved: u64 = saved["logs"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert!(
        saved < logs.total() as u64,
        "the positions file claims {saved} of {} entries while {queued} wait for NATS",
        logs.total()
    );
    // The queue is lost with the process; the next run fetches it again.
    ingest.signal(libc::SIGKILL);
    nats.start();
    let _ingest = node(pi, &args, &ingest_log);
    let want = logs.entries();
    wait_until("the edge to have every entry", || {
        let got: std::collections::BTreeSet<_> = ce.messages().iter().map(|m| entry(m)).collect();
        got == want
    });
    let entries: Vec<_> = ce.messages().iter().map(|m| entry(m)).collect();
    let set: std::collections::BTreeSet<_> = entries.iter().cloned().collect();
    assert_eq!(set.len(), entries.len(), "an entry came twice");
}
