//! Access control against the real service: bearer tokens (header or `?token=`) and 401
//! before any upgrade; `X-Forwarded-For` / `Forwarded` believed only from trusted proxies;
//! the per-IP limit and the allow list apply to the real address. Real sockets, real
//! websocket upgrades and SSE requests from 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use certstream_server::shared::CoreConfig;
use common::*;

/// Sends a request for `path` with `headers` (an upgrade when `upgrade`) and returns the
/// answer's status line, the first body line, and the open stream.
fn request(
    addr: SocketAddr,
    path: &str,
    headers: &[&str],
    upgrade: bool,
) -> (u16, String, TcpStream) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    if upgrade {
        extra.push_str("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n");
    }
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").unwrap();
    let mut resp = Vec::new();
    let mut buf = [0u8; 1024];
    while !resp.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
        }
    }
    if resp.is_empty() {
        return (0, String::new(), s);
    }
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut body = body.to_owned();
    if status != 101 && status != 200 && !body.contains('\n') {
        let mut rest = String::new();
        let _ = s.read_to_string(&mut rest);
        body.push_str(&rest);
    }
    let line = body.lines().next().unwrap_or("").to_owned();
    assert!(head.starts_with("HTTP/1.1"));
    if status == 401 {
        assert!(head.contains("WWW-Authenticate: Bearer"), "{head}");
    }
    (status, line, s)
}

#[test]
fn a_wrong_or_missing_token_gets_401_before_the_upgrade() {
    let server = start(
        20.0,
        CoreConfig {
            auth_tokens: vec!["s3cret".into()],
            ..serve_config()
        },
    );
    let a = server.addr;
    for (path, headers, upgrade) in [
        ("/", vec![], true),
        ("/full-stream", vec!["Authorization: Bearer wrong"], true),
        ("/?token=s3cre", vec![], true),
        ("/domains-only", vec!["Authorization: Basic czNjcmV0"], true),
        ("/sse", vec![], false),
        (
            "/",
            vec!["Accept: text/event-stream", "Authorization: Bearer nope"],
            false,
        ),
    ] {
        let (status, line, _) = request(a, path, &headers, upgrade);
        assert_eq!(status, 401, "{path} {headers:?}");
        assert_eq!(
            line,
            "a valid token is needed: Authorization: Bearer <token>, or ?token=<token>"
        );
    }
    for (path, headers, upgrade, want) in [
        ("/", vec!["Authorization: Bearer s3cret"], true, 101),
        ("/full-stream?since=0&token=s3cret", vec![], true, 101),
        ("/sse?stream=full&token=s3cret", vec![], false, 200),
        (
            "/",
            vec!["Accept: text/event-stream", "Authorization: bearer s3cret"],
            false,
            200,
        ),
        // The other endpoints stay open.
        ("/stats", vec![], false, 200),
        ("/", vec![], false, 200),
    ] {
        let (status, _, _) = request(a, path, &headers, upgrade);
        assert_eq!(status, want, "{path} {headers:?}");
    }
    assert_ne!(request(a, "/health", &[], false).0, 401);
    let metrics = String::from_utf8(get(a, "/metrics").1).unwrap();
    assert!(
        metrics.contains("certstream_unauthorized_total 6"),
        "{metrics}"
    );
    server.shutdown().unwrap();
}

#[test]
fn forwarded_addresses_count_only_from_trusted_proxies() {
    // 127.0.0.1 is a trusted proxy: the limit of 2 per address counts the forwarded ones.
    let server = start(
        20.0,
        CoreConfig {
            trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
            allow: vec!["203.0.113.0/24".parse().unwrap()],
            max_per_ip: 2,
            ..serve_config()
        },
    );
    let a = server.addr;
    let x = |ip: &str| format!("X-Forwarded-For: 198.51.100.9, {ip}");
    let (s1, _, _c1) = request(a, "/", &[&x("203.0.113.7")], true);
    let (s2, _, _c2) = request(a, "/", &["Forwarded: for=\"203.0.113.7:5555\""], true);
    assert_eq!((s1, s2), (101, 101));
    let (s3, line, _) = request(a, "/", &[&x("203.0.113.7")], true);
    assert_eq!(
        (s3, line.as_str()),
        (429, "too many connections from this address")
    );
    // Another real address behind the same proxy is not limited by the first.
    let (s4, _, _c4) = request(a, "/", &[&x("203.0.113.8")], true);
    assert_eq!(s4, 101);
    // The allow list applies to the real address.
    let (s5, line, _) = request(a, "/", &[&x("192.0.2.1")], true);
    assert_eq!((s5, line.as_str()), (403, "this address may not connect"));
    let (s6, _, _) = request(a, "/", &[], true);
    assert_eq!(s6, 403, "the proxy itself is not in the allow list");
    server.shutdown().unwrap();

    // Without trusting 127.0.0.1, its forwarded headers are ignored: the allow list sees
    // 127.0.0.1 whatever the header claims, and the limit counts 127.0.0.1.
    let server = start(
        20.0,
        CoreConfig {
            allow: vec!["203.0.113.0/24".parse().unwrap()],
            ..serve_config()
        },
    );
    let (status, line, _) = request(server.addr, "/", &[&x("203.0.113.7")], true);
    assert_eq!(
        (status, line.as_str()),
        (403, "this address may not connect")
    );
    server.shutdown().unwrap();
    let server = start(
        20.0,
        CoreConfig {
            max_per_ip: 2,
            ..serve_config()
        },
    );
    let a = server.addr;
    let (s1, _, _c1) = request(a, "/", &[&x("203.0.113.1")], true);
    let (s2, _, _c2) = request(a, "/", &[&x("203.0.113.2")], true);
    assert_eq!((s1, s2), (101, 101));
    // Refused at accept (counted against 127.0.0.1): closed without an answer.
    let (s3, _, _) = request(a, "/", &[&x("203.0.113.3")], true);
    assert_eq!(s3, 0);
    server.shutdown().unwrap();
}
