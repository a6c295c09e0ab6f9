//! The other ways clients take the stream: Server-Sent Events (curl, Chromium's
//! `EventSource`) and permessage-deflate (a raw client that inflates every frame on its own
//! with the window it asked for, Python's `websockets`, Chromium), always checked against
//! what a plain websocket client gets for the same cursors. The real service on
//! `127.0.0.1:0` fed by the simulator, real sockets and clients.
//!
//! The Python and Chromium tests need `CERTSTREAM_PYTHON` (a venv with `websockets`) and
//! `CERTSTREAM_CHROMIUM`, which `./test.sh` installs; without them they skip with a message.

mod common;
#[path = "common/inflate.rs"]
mod inflate;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use certstream_server::shared::CoreConfig;
use common::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::Value;

/// Kills a child process when dropped (a failing test leaves nothing running).
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cursor_of(text: &str) -> u64 {
    let v: Value = serde_json::from_str(text).unwrap();
    v["cursor"].as_u64().expect("a cursor")
}

fn is_heartbeat(text: &str) -> bool {
    text.starts_with("{\"message_type\":\"heartbeat\"")
}

/// The first `n` certificate messages a plain websocket client of `path` gets, by cursor.
fn plain(addr: SocketAddr, path: &str, n: usize) -> BTreeMap<u64, String> {
    let mut ws = ws(addr, path);
    let mut got = BTreeMap::new();
    while got.len() < n {
        if let tungstenite::Message::Text(t) = ws.read().unwrap() {
            if !is_heartbeat(t.as_str()) {
                got.insert(cursor_of(t.as_str()), t.as_str().to_owned());
            }
        }
    }
    got
}

/// Events from an SSE response body: `(id, data)`, comments skipped.
struct Events<R> {
    lines: R,
}

impl<R: BufRead> Events<R> {
    fn next(&mut self) -> (Option<u64>, String) {
        let (mut id, mut data) = (None, None);
        loop {
            let mut line = String::new();
            assert!(self.lines.read_line(&mut line).unwrap() > 0, "stream ended");
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                if let Some(d) = data.take() {
                    return (id, d);
                }
            } else if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.parse().unwrap());
            } else if let Some(v) = line.strip_prefix("data: ") {
                assert!(data.is_none(), "one data line per event");
                data = Some(v.to_owned());
            } else {
                assert!(line.starts_with(':'), "unexpected line {line:?}");
            }
        }
    }

    /// The next `n` certificate events, by cursor (checking each `id` is its cursor).
    fn certificates(&mut self, n: usize) -> BTreeMap<u64, String> {
        let mut got = BTreeMap::new();
        while got.len() < n {
            let (id, data) = self.next();
            if is_heartbeat(&data) {
                continue;
            }
            let id = id.expect("a certificate event has an id");
            assert_eq!(id, cursor_of(&data), "id is the cursor");
            got.insert(id, data);
        }
        got
    }
}

/// `curl -N` on `url` with extra headers: its events.
fn curl(url: &str, headers: &[&str]) -> (Reap, Events<BufReader<std::process::ChildStdout>>) {
    let mut cmd = Command::new("curl");
    cmd.args(["-N", "-s", "--fail", "--max-time", "120"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let mut child = cmd
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("curl");
    let lines = BufReader::new(child.stdout.take().unwrap());
    (Reap(child), Events { lines })
}

/// Whether curl is there (`./test.sh` installs it; in CI its absence is a failure).
fn have_curl() -> bool {
    let there = Command::new("curl").arg("--version").output().is_ok();
    assert!(
        there || std::env::var("CI").as_deref() != Ok("true"),
        "CI needs curl"
    );
    there
}

#[test]
fn curl_receives_each_stream_as_events_that_match_the_websocket_messages() {
    if !have_curl() {
        return eprintln!("skipping: no curl (./test.sh installs it)");
    }
    let server = start(200.0, serve_config());
    let a = server.addr;
    for (sse, ws_path) in [
        (format!("http://{a}/?since=0"), "/?since=0"),
        (format!("http://{a}/sse?stream=lite&since=0"), "/?since=0"),
        (
            format!("http://{a}/sse?stream=full&since=0"),
            "/full-stream?since=0",
        ),
        (
            format!("http://{a}/domains-only?since=0"),
            "/domains-only?since=0",
        ),
    ] {
        let want = plain(a, ws_path, 30);
        let accept = if sse.contains("/sse") {
            "Accept: */*"
        } else {
            "Accept: text/event-stream"
        };
        let (_curl, mut events) = curl(&sse, &[accept]);
        let got = events.certificates(30);
        assert_eq!(got.keys().next(), Some(&1), "{sse}: from the first cursor");
        assert_eq!(got, want, "{sse}: byte for byte the websocket messages");
    }
    let _c = curl(&format!("http://{a}/sse"), &[]);
    wait_until("an SSE client in /metrics", || {
        let metrics = String::from_utf8(get(a, "/metrics").1).unwrap();
        metrics.lines().any(|l| {
            l.strip_prefix("certstream_sse_clients ")
                .is_some_and(|v| v.parse::<u64>().unwrap() >= 1)
        })
    });
    server.shutdown().unwrap();
}

#[test]
fn a_reconnect_with_last_event_id_misses_nothing() {
    if !have_curl() {
        return eprintln!("skipping: no curl (./test.sh installs it)");
    }
    let server = start(200.0, serve_config());
    let url = format!("http://{}/sse?stream=domains", server.addr);
    let (curl1, mut events) = curl(&url, &[]);
    let first = events.certificates(20);
    drop(curl1);
    let last = *first.keys().last().unwrap();
    // Certificates keep coming while the client is away.
    wait_until("more certificates", || {
        server.shared.hub.next_cursor() > last + 50
    });
    let (_curl2, mut events) = curl(&url, &[&format!("Last-Event-ID: {last}")]);
    let next = events.certificates(100);
    let cursors: Vec<u64> = next.keys().copied().collect();
    assert_eq!(cursors, (last + 1..=last + 100).collect::<Vec<_>>());
    // A bad Last-Event-ID is refused before the stream, with one line.
    let (status, body) = raw_get(server.addr, "/sse", &["Last-Event-ID: soon"]);
    assert_eq!(status, 400);
    assert_eq!(
        body,
        "Last-Event-ID must be a cursor: a non-negative integer\n"
    );
    let (status, body) = raw_get(server.addr, "/sse?stream=nope", &[]);
    assert_eq!(
        (status, body.as_str()),
        (400, "stream must be lite, full or domains\n")
    );
    let (status, _) = raw_get(server.addr, "/sse?since=999999999", &[]);
    assert_eq!(status, 400);
    server.shutdown().unwrap();
}

/// `GET path` with extra headers, for answers with a length: `(status, body)`.
fn raw_get(addr: SocketAddr, path: &str, headers: &[&str]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8(resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    (head[9..12].parse().unwrap(), body.to_owned())
}

/// A websocket client written here: it offers `extensions`, and reads frames raw.
struct RawWs {
    s: BufReader<TcpStream>,
    /// The answer's `Sec-WebSocket-Extensions`, if any.
    agreed: Option<String>,
    /// The farthest back-reference seen in a compressed frame.
    farthest: usize,
}

impl RawWs {
    fn connect(addr: SocketAddr, path: &str, extensions: Option<&str>) -> RawWs {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let ext = extensions
            .map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
        )
        .unwrap();
        let mut s = BufReader::new(s);
        let mut status = String::new();
        s.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 101"), "{status}");
        let mut agreed = None;
        loop {
            let mut line = String::new();
            s.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("sec-websocket-extensions") {
                    agreed = Some(v.trim().to_owned());
                }
            }
        }
        RawWs {
            s,
            agreed,
            farthest: 0,
        }
    }

    /// The next server frame: `(first byte, payload)`.
    fn frame(&mut self) -> (u8, Vec<u8>) {
        let mut h = [0u8; 2];
        self.s.read_exact(&mut h).unwrap();
        assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.s.read_exact(&mut b).unwrap();
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                self.s.read_exact(&mut b).unwrap();
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0; len];
        self.s.read_exact(&mut payload).unwrap();
        (h[0], payload)
    }

    /// Sends a masked frame.
    fn send(&mut self, b0: u8, payload: &[u8]) {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut f = vec![b0];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        self.s.get_mut().write_all(&f).unwrap();
    }

    /// The next `n` certificate messages, each compressed frame inflated on its own (a
    /// fresh inflater per message: the server takes no context over) with a window of
    /// `2^bits` bytes. Returns them by cursor, and how many frames were compressed.
    fn certificates(&mut self, n: usize, bits: u8) -> (BTreeMap<u64, String>, usize) {
        let (mut got, mut compressed) = (BTreeMap::new(), 0);
        while got.len() < n {
            let (b0, payload) = self.frame();
            assert_eq!(b0 & 0x80, 0x80, "one frame per message");
            if b0 & 0x0f != 1 {
                continue;
            }
            let text = if b0 & 0x40 != 0 {
                compressed += 1;
                let mut input = payload;
                input.extend_from_slice(&[0, 0, 0xff, 0xff]);
                let mut z = Decompress::new(false);
                let mut out = Vec::with_capacity(input.len() * 8 + 1024);
                loop {
                    let at = z.total_in() as usize;
                    z.decompress_vec(&input[at..], &mut out, FlushDecompress::Sync)
                        .unwrap();
                    if z.total_in() as usize == input.len() && out.len() < out.capacity() {
                        break;
                    }
                    out.reserve(out.capacity());
                }
                // zlib cannot tell whether the references keep to the window: this can.
                let (again, farthest) = inflate::inflate_max_distance(&input).unwrap();
                assert_eq!(again, out);
                assert!(
                    farthest <= 1 << bits,
                    "a reference {farthest} back, window {bits}"
                );
                self.farthest = self.farthest.max(farthest);
                String::from_utf8(out).unwrap()
            } else {
                String::from_utf8(payload).unwrap()
            };
            if !is_heartbeat(&text) {
                got.insert(cursor_of(&text), text);
            }
        }
        (got, compressed)
    }
}

#[test]
fn deflated_frames_inflate_to_exactly_the_plain_messages_for_the_window_asked_for() {
    let server = start(200.0, serve_config());
    let a = server.addr;
    for (offer, bits, answer) in [
        (
            "permessage-deflate; client_max_window_bits",
            15,
            "permessage-deflate; server_no_context_takeover",
        ),
        (
            "permessage-deflate; server_max_window_bits=9",
            9,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
        ),
        (
            "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=11",
            11,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
        ),
    ] {
        for path in ["/?since=0", "/full-stream?since=0", "/domains-only?since=0"] {
            let want = plain(a, path, 40);
            let mut c = RawWs::connect(a, path, Some(offer));
            assert_eq!(c.agreed.as_deref(), Some(answer), "{offer}");
            let (got, compressed) = c.certificates(40, bits);
            assert_eq!(compressed, 40, "every certificate compressed");
            if bits == 15 && path.starts_with("/full") {
                // Full messages are large: a wider window is used when allowed (without
                // this, the window check above could not fail).
                assert!(c.farthest > 1 << 11, "{}", c.farthest);
            }
            assert_eq!(got, want, "{offer} {path}");
        }
    }
    // Only an offer of 8 (zlib cannot keep to 256 bytes): declined, plain frames.
    let mut c = RawWs::connect(
        a,
        "/?since=0",
        Some("permessage-deflate; server_max_window_bits=8"),
    );
    assert_eq!(c.agreed, None);
    assert_eq!(c.certificates(5, 15).1, 0);
    // The gauge counts deflate clients while they are connected.
    let _d = RawWs::connect(a, "/", Some("permessage-deflate"));
    wait_until("a deflate client in /metrics", || {
        let metrics = String::from_utf8(get(a, "/metrics").1).unwrap();
        metrics.lines().any(|l| {
            l.strip_prefix("certstream_deflate_clients ")
                .is_some_and(|v| v.parse::<u64>().unwrap() >= 1)
        })
    });
    server.shutdown().unwrap();
}

#[test]
fn no_deflate_answers_plain_frames() {
    let server = start(
        100.0,
        CoreConfig {
            deflate: false,
            ..serve_config()
        },
    );
    let mut c = RawWs::connect(server.addr, "/?since=0", Some("permessage-deflate"));
    assert_eq!(c.agreed, None);
    assert_eq!(c.certificates(10, 15).1, 0);
    server.shutdown().unwrap();
}

/// Raw deflate of `data` with a sync flush, the trailing `00 00 ff ff` removed.
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut z = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 1024);
    z.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    assert_eq!(z.total_in() as usize, data.len());
    out.truncate(out.len() - 4);
    out
}

/// Reads frames until a close; returns its code.
fn close_code(c: &mut RawWs) -> u16 {
    loop {
        let (b0, payload) = c.frame();
        if b0 & 0x0f == 8 {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

#[test]
fn compressed_client_frames_are_inflated_and_a_bomb_closes_with_1009() {
    let server = start(20.0, serve_config());
    // A compressed text message within the limit, then a ping: the pong still comes.
    let mut c = RawWs::connect(server.addr, "/", Some("permessage-deflate"));
    c.send(0xC1, &deflate(b"hello, compressed"));
    c.send(0x89, b"still here");
    loop {
        let (b0, payload) = c.frame();
        if b0 & 0x0f == 0xA {
            assert_eq!(payload, b"still here");
            break;
        }
    }
    // 1 MiB of one byte is ~1 KiB compressed: far past the 64 KiB message limit inflated.
    let bomb = deflate(&vec![b'a'; 1 << 20]);
    assert!(bomb.len() < 4096);
    c.send(0xC1, &bomb);
    assert_eq!(close_code(&mut c), 1009);
    // RSV1 on a control frame is a protocol error.
    let mut c = RawWs::connect(server.addr, "/", Some("permessage-deflate"));
    c.send(0xC9, b"");
    assert_eq!(close_code(&mut c), 1002);
    // Without deflate negotiated, RSV1 is refused too.
    let mut c = RawWs::connect(server.addr, "/", None);
    c.send(0xC1, &deflate(b"x"));
    assert_eq!(close_code(&mut c), 1002);
    server.shutdown().unwrap();
}

#[test]
fn python_websockets_inflates_the_shared_frames() {
    let Some(python) = std::env::var_os("CERTSTREAM_PYTHON") else {
        return eprintln!("skipping: CERTSTREAM_PYTHON is not set (./test.sh installs websockets)");
    };
    let server = start(200.0, serve_config());
    let dir = tempfile::tempdir().unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/websockets_client.py");
    for (window, bits) in [("", "15"), ("9", "9")] {
        let want = plain(server.addr, "/full-stream?since=0", 50);
        let out = dir.path().join(format!("got{bits}.json"));
        let status = Command::new(&python)
            .arg(&script)
            .arg(format!("ws://{}/full-stream?since=0", server.addr))
            .arg("50")
            .arg(window)
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
        let got: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        let agreed = got["extensions"].as_str().unwrap();
        assert!(
            agreed.starts_with("permessage-deflate; server_no_context_takeover"),
            "{agreed}"
        );
        if !window.is_empty() {
            assert!(agreed.contains("server_max_window_bits=9"), "{agreed}");
        }
        let got: BTreeMap<u64, String> = got["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let m = m.as_str().unwrap().to_owned();
                (cursor_of(&m), m)
            })
            .collect();
        assert_eq!(got, want, "window {bits}");
    }
    server.shutdown().unwrap();
}

/// A Chrome DevTools Protocol session over a real websocket.
struct Cdp {
    ws: Ws,
    next_id: u64,
}

impl Cdp {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = serde_json::json!({"id": id, "method": method, "params": params});
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .unwrap();
        loop {
            if let tungstenite::Message::Text(t) = self.ws.read().unwrap() {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    /// Evaluates `expr` in the page, awaiting the promise it gives.
    fn eval_async(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{r}");
        r["result"]["value"].clone()
    }
}

/// Headless Chromium on `url`, and a DevTools session with that page.
fn chromium(chromium: &std::ffi::OsStr, url: &str) -> (Reap, tempfile::TempDir, Cdp) {
    let profile = tempfile::tempdir().unwrap();
    let browser = Reap(
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let port_file = profile.path().join("DevToolsActivePort");
    wait_until("Chromium's DevTools port", || {
        std::fs::read_to_string(&port_file).is_ok_and(|s| s.lines().count() >= 2)
    });
    let port: u16 = std::fs::read_to_string(&port_file)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let devtools: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut page_ws = None;
    wait_until("the page target", || {
        let targets: Value = get_json(devtools, "/json/list");
        page_ws = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page" && t["url"].as_str().unwrap_or("").starts_with(url))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_owned));
        page_ws.is_some()
    });
    let stream = TcpStream::connect(devtools).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let (ws, _) = tungstenite::client(page_ws.unwrap(), stream).unwrap();
    (browser, profile, Cdp { ws, next_id: 0 })
}

#[test]
fn chromium_gets_events_from_event_source_and_inflates_deflated_frames() {
    let Some(path) = std::env::var_os("CERTSTREAM_CHROMIUM") else {
        return eprintln!(
            "skipping: CERTSTREAM_CHROMIUM is not set (./test.sh installs Debian's chromium)"
        );
    };
    let server = start(100.0, serve_config());
    let a = server.addr;
    let (_browser, _profile, mut cdp) = chromium(&path, &format!("http://{a}/health"));
    wait_until("the page to load", || {
        cdp.eval_async("location.protocol + document.readyState") == "http:complete"
    });
    for (sse, ws_path) in [
        ("/sse?stream=lite&since=0", "/?since=0"),
        ("/full-stream?since=0", "/full-stream?since=0"),
    ] {
        let want = plain(a, ws_path, 30);
        let got = cdp.eval_async(&format!(
            r#"new Promise(resolve => {{
                const es = new EventSource("http://{a}{sse}"), got = [];
                es.onmessage = e => {{
                    if (JSON.parse(e.data).message_type === "heartbeat") return;
                    got.push([e.lastEventId, e.data]);
                    if (got.length === 30) {{ es.close(); resolve(got); }}
                }};
            }})"#
        ));
        let got: BTreeMap<u64, String> = got
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let (id, data) = (e[0].as_str().unwrap(), e[1].as_str().unwrap().to_owned());
                assert_eq!(id.parse::<u64>().unwrap(), cursor_of(&data));
                (cursor_of(&data), data)
            })
            .collect();
        assert_eq!(got, want, "EventSource {sse}");
    }
    // Chromium offers permessage-deflate on every websocket.
    let want = plain(a, "/full-stream?since=0", 30);
    let got = cdp.eval_async(&format!(
        r#"new Promise(resolve => {{
            const ws = new WebSocket("ws://{a}/full-stream?since=0"), got = [];
            ws.onmessage = e => {{
                if (JSON.parse(e.data).message_type === "heartbeat") return;
                got.push(e.data);
                if (got.length === 30) {{ resolve({{ext: ws.extensions, got}}); ws.close(); }}
            }};
        }})"#
    ));
    assert_eq!(
        got["ext"].as_str(),
        Some("permessage-deflate; server_no_context_takeover")
    );
    let got: BTreeMap<u64, String> = got["got"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let m = m.as_str().unwrap().to_owned();
            (cursor_of(&m), m)
        })
        .collect();
    assert_eq!(got, want, "Chromium's deflate websocket");
    server.shutdown().unwrap();
}

#[test]
fn an_sse_client_that_never_reads_is_shed_like_a_websocket_one() {
    if !have_curl() {
        return eprintln!("skipping: no curl (./test.sh installs it)");
    }
    // The reader gets 2.5 s of slack (256 frames at 100/s), as in `serve.rs`, so that a busy
    // machine does not make it a slow client too; the never-reading one falls off the log.
    let mut cfg = serve_config();
    cfg.stream_log_frames = 256;
    let server = start(100.0, cfg);
    let a = server.addr;
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&a.into()).unwrap();
    let mut slow: TcpStream = sock.into();
    write!(slow, "GET /sse?stream=full HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // A reading SSE client beside it gets everything in order meanwhile.
    let (_curl, mut events) = curl(&format!("http://{a}/sse?stream=domains"), &[]);
    let mut last = None;
    wait_until("the slow SSE client to be shed", || {
        for (c, _) in events.certificates(10) {
            if let Some(l) = last {
                assert_eq!(c, l + 1, "the reading client missed nothing");
            }
            last = Some(c);
        }
        get_json(a, "/stats")["slow_clients_closed"]
            .as_u64()
            .unwrap()
            >= 1
    });
    assert!(
        get_json(a, "/stats")["dropped"]["client_lag"]
            .as_u64()
            .unwrap()
            > 0
    );
    server.shutdown().unwrap();
}
