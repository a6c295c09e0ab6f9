//! Real third-party clients against the real server: the PyPI `certstream` Python client,
//! and headless Chromium opening the index page.
//!
//! `./test.sh` installs both (a virtualenv with `certstream`, Debian's `chromium`) and points
//! `CERTSTREAM_PYTHON` / `CERTSTREAM_CHROMIUM` at them; without them these tests skip with a
//! message.

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use serde_json::{json, Value};

/// Kills a child process when dropped (a failing test leaves nothing running).
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn target_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn python_certstream_client_receives_intact_messages() {
    let Some(python) = std::env::var_os("CERTSTREAM_PYTHON") else {
        eprintln!("skipping: CERTSTREAM_PYTHON is not set (./test.sh installs the PyPI certstream client)");
        return;
    };
    let server = start(100.0, serve_config());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("got.json");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/certstream_client.py");
    let mut child = Reap(
        Command::new(python)
            .arg(script)
            .arg(format!("ws://{}/", server.addr))
            .arg("100")
            .arg(&out)
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let guard = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < guard, "the Python client did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "python client failed: {status}");
    let got: Vec<Value> = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(got.len(), 100);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m["update_type"], "X509LogEntry");
        assert_eq!(m["has_der"], false, "lite stream");
        assert!(m["all_domains"].as_array().unwrap().len() >= 2);
        assert_eq!(m["subject"]["CN"], m["all_domains"][0]);
        assert_eq!(m["fingerprint"].as_str().unwrap().len(), 59);
        assert!(m["not_after"].as_f64().unwrap() > m["not_before"].as_f64().unwrap());
        assert!(m["seen"].as_f64().unwrap() > 1.7e9);
        assert_eq!(m["chain"], 1);
        assert!(m["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("subjectAltName")));
        assert!(m["cert_link"]
            .as_str()
            .unwrap()
            .contains("/ct/v1/get-entries?start="));
        if i > 0 {
            assert_eq!(
                m["cert_index"].as_u64().unwrap(),
                got[i - 1]["cert_index"].as_u64().unwrap() + 1
            );
        }
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
        let msg = json!({"id": id, "method": method, "params": params});
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

    fn eval(&mut self, expr: &str) -> Value {
        self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        )["result"]["value"]
            .clone()
    }
}

#[test]
fn chromium_shows_live_certificates_on_the_index_page() {
    let Some(chromium) = std::env::var_os("CERTSTREAM_CHROMIUM") else {
        eprintln!(
            "skipping: CERTSTREAM_CHROMIUM is not set (./test.sh installs Debian's chromium)"
        );
        return;
    };
    let server = start(20.0, serve_config());
    let profile = tempfile::tempdir().unwrap();
    let _browser = Reap(
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
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("http://{}/", server.addr))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Chromium writes the DevTools port it picked into the profile.
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
    let devtools = format!("127.0.0.1:{port}").parse().unwrap();
    let mut page_ws = None;
    wait_until("the page target", || {
        let targets: Value = get_json(devtools, "/json/list");
        page_ws = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| {
                t["type"] == "page"
                    && t["url"]
                        .as_str()
                        .unwrap_or("")
                        .contains(&server.addr.to_string())
            })
            .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_owned));
        page_ws.is_some()
    });
    let url = page_ws.unwrap();
    let stream = TcpStream::connect(devtools).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (ws, _) = tungstenite::client(url, stream).unwrap();
    let mut cdp = Cdp { ws, next_id: 0 };

    // Live certificates appear in the feed, pushed by the page's own websocket.
    wait_until("certificates in the page's feed", || {
        cdp.eval("document.querySelectorAll('#feed tr.cert').length")
            .as_u64()
            .unwrap_or(0)
            >= 5
    });
    wait_until("the live counters", || {
        cdp.eval("document.getElementById('s-processed').textContent")
            .as_str()
            .is_some_and(|s| s != "–" && s != "0")
    });
    let status = cdp.eval("document.getElementById('status').textContent");
    assert!(status.as_str().unwrap().starts_with("live"), "{status}");
    let first = cdp.eval("document.querySelector('#feed tr.cert td.domain').textContent");
    assert!(
        first.as_str().unwrap().contains('.'),
        "a domain name: {first}"
    );
    let stats = get_json(server.addr, "/stats");
    assert!(
        stats["clients"]["lite"].as_u64().unwrap() >= 1,
        "the page is a websocket client"
    );

    let shot = cdp.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let path = target_dir().join("index-page.png");
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot of the index page: {}", path.display());
    server.shutdown().unwrap();
}

/// Starts headless Chromium on `url` and opens a DevTools session on that page.
fn chromium_on(chromium: &std::ffi::OsStr, url: &str) -> (Reap, tempfile::TempDir, Cdp) {
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
                "--window-size=1280,900",
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
    let devtools = format!("127.0.0.1:{port}").parse().unwrap();
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
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (ws, _) = tungstenite::client(page_ws.unwrap(), stream).unwrap();
    (browser, profile, Cdp { ws, next_id: 0 })
}

/// A person types a filter on the index page and watches only matching certificates arrive:
/// the page reconnects its websocket with `match=`, and the server sends only those.
#[test]
fn chromium_filters_the_live_feed_on_the_index_page() {
    let Some(chromium) = std::env::var_os("CERTSTREAM_CHROMIUM") else {
        eprintln!(
            "skipping: CERTSTREAM_CHROMIUM is not set (./test.sh installs Debian's chromium)"
        );
        return;
    };
    let server = start(40.0, serve_config());
    let (_browser, _profile, mut cdp) = chromium_on(&chromium, &format!("http://{}/", server.addr));
    wait_until("unfiltered certificates in the feed", || {
        cdp.eval("document.querySelectorAll('#feed tr.cert').length")
            .as_u64()
            .unwrap_or(0)
            >= 3
    });
    // The simulator names its hosts `<word>-<n>.<tld>`: ask for one word, as a person would.
    cdp.eval(
        "document.getElementById('f-match').value = '^kestrel-';\
         document.getElementById('f-domain').value = '';\
         document.querySelector('#filter button').click(); true",
    );
    wait_until("matching certificates in the filtered feed", || {
        cdp.eval("document.querySelectorAll('#feed tr.cert').length")
            .as_u64()
            .unwrap_or(0)
            >= 3
    });
    let rows = cdp.eval(
        "Array.from(document.querySelectorAll('#feed tr.cert td.domain')).map(td => td.textContent)",
    );
    for r in rows.as_array().unwrap() {
        assert!(
            r.as_str().unwrap().contains("kestrel-"),
            "only matches: {rows}"
        );
    }
    let status = cdp.eval("document.getElementById('status').textContent");
    assert!(
        status.as_str().unwrap().contains("match=%5Ekestrel-"),
        "{status}"
    );
    assert_eq!(
        cdp.eval("location.search").as_str(),
        Some("?match=%5Ekestrel-")
    );
    let stats = get_json(server.addr, "/stats");
    assert_eq!(
        stats["filters"]["clients"], 1,
        "the page's filtered websocket"
    );
    let shot = cdp.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    let path = target_dir().join("index-page-filtered.png");
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot of the filtered index page: {}", path.display());
    // A filter the server refuses is said so on the page.
    cdp.eval(
        "document.getElementById('f-match').value = 'a(';\
         document.querySelector('#filter button').click(); true",
    );
    wait_until("the refusal on the page", || {
        cdp.eval("document.getElementById('status').textContent")
            .as_str()
            .is_some_and(|s| s.contains("refused"))
    });
    server.shutdown().unwrap();
}
