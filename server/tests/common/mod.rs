//! Shared by the server's integration tests: start the real service in-process on
//! `127.0.0.1:0`, fed by the CT log simulator, and talk to it over real sockets.
#![allow(dead_code)] // each test binary uses a different part

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use certstream_engine::http::ClientConfig;
use certstream_engine::ingest::IngestConfig;
use certstream_engine::watcher::{StartAt, WatcherConfig};
use certstream_server::shared::CoreConfig;
use certstream_server::{listen, Config, Server};
use certstream_sim::{LogConfig, SimConfig, Source};
use serde_json::Value;

/// Starts the service on `127.0.0.1:0` with an in-process simulated log growing by `rate`
/// certificates per second.
pub fn start(rate: f64, serve: CoreConfig) -> Server {
    start_config(config(rate, serve))
}

/// The configuration [`start`] uses: the simulated log polled every 100 ms from index 0.
pub fn config(rate: f64, serve: CoreConfig) -> Config {
    Config {
        ingest: IngestConfig {
            client: ClientConfig {
                timeout: Duration::from_secs(5),
                ..ClientConfig::default()
            },
            watcher: WatcherConfig {
                poll_interval: Duration::from_millis(100),
                start: StartAt::Index(0),
                operator_rate: 0.0,
                ..WatcherConfig::default()
            },
            ..IngestConfig::default()
        },
        positions_file: None,
        demo: Some(SimConfig {
            logs: vec![LogConfig {
                name: "test".into(),
                source: Source::Generated(64),
                initial_size: 0,
                rate,
                max_size: None,
                batch_cap: 256,
                ..LogConfig::default()
            }],
            ..SimConfig::default()
        }),
        serve,
        nats: Default::default(),
    }
}

/// Starts the service on `127.0.0.1:0` with `cfg`.
pub fn start_config(cfg: Config) -> Server {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    let listener = listen::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    certstream_server::start(cfg, listener).unwrap()
}

/// Test-sized serving settings: two cores, short timers.
pub fn serve_config() -> CoreConfig {
    CoreConfig {
        cores: 2,
        coalesce: Duration::from_millis(2),
        handshake_timeout: Duration::from_secs(1),
        slow_client_timeout: Duration::from_secs(1),
        ..CoreConfig::default()
    }
}

pub type Ws = tungstenite::WebSocket<TcpStream>;

/// A real websocket client (tungstenite) on `path`.
pub fn ws(addr: SocketAddr, path: &str) -> Ws {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (ws, resp) = tungstenite::client(format!("ws://{addr}{path}"), stream).unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

/// The next non-heartbeat text message as JSON.
pub fn next_message(ws: &mut Ws) -> Value {
    loop {
        match ws.read().unwrap() {
            tungstenite::Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["message_type"] != "heartbeat" {
                    return v;
                }
            }
            tungstenite::Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

/// `GET path` with a raw HTTP/1.1 request: `(status, body)`.
pub fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // Read the head, then Content-Length bytes (or to EOF without one).
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before a response head");
        resp.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&resp[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().unwrap());
    match length {
        Some(len) => {
            while resp.len() < head_end + len {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "connection closed inside the body");
                resp.extend_from_slice(&buf[..n]);
            }
        }
        None => {
            s.read_to_end(&mut resp).unwrap();
        }
    }
    let status: u16 = std::str::from_utf8(&resp[9..12]).unwrap().parse().unwrap();
    (status, resp[head_end..].to_vec())
}

/// `GET path` as JSON.
pub fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = get(addr, path);
    assert_eq!(status, 200, "{path}");
    serde_json::from_slice(&body).unwrap()
}

/// Polls `cond` until it holds; panics with `what` after a generous guard (no test relies
/// on timing: this only stops a hang).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let guard = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < guard, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The resident set size of this process (server included), in KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Sends a websocket upgrade for `path` and returns the status and body of the answer.
pub fn upgrade_answer(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
        if resp.starts_with(b"HTTP/1.1 101") && resp.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (status, body.unwrap_or_default())
}

/// A raw websocket handshake on `path`; returns the socket after the 101 head.
pub fn raw_ws(addr: SocketAddr, path: &str) -> TcpStream {
    raw_ws_with(addr, path, None)
}

/// [`raw_ws`] with a receive buffer of `rcvbuf` bytes, when given (set before connecting,
/// so that the window is small from the start).
pub fn raw_ws_with(addr: SocketAddr, path: &str, rcvbuf: Option<usize>) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if let Some(n) = rcvbuf {
        sock.set_recv_buffer_size(n).unwrap();
    }
    sock.connect(&addr.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}
