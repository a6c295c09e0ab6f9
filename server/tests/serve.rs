//! The service over real sockets with real websocket clients (tungstenite): the three
//! streams, the JSON endpoints, slow-client shedding and hostile clients.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use certstream_server::shared::{CoreConfig, Driver};
use common::*;
use serde_json::Value;

#[test]
fn three_streams_deliver_valid_messages_in_order() {
    let server = start(200.0, serve_config());
    let addr = server.addr;
    let mut lite = ws(addr, "/");
    let mut full = ws(addr, "/full-stream");
    let mut domains = ws(addr, "/domains-only/");

    let mut last = None;
    for _ in 0..60 {
        let m = next_message(&mut lite);
        assert_eq!(m["message_type"], "certificate_update");
        let d = &m["data"];
        assert_eq!(d["update_type"], "X509LogEntry");
        assert!(d["leaf_cert"].get("as_der").is_none(), "lite has no as_der");
        assert!(
            !d["chain"].as_array().unwrap().is_empty(),
            "lite keeps the chain"
        );
        assert!(d["chain"][0].get("as_der").is_none());
        assert!(d["seen"].is_f64());
        assert_eq!(d["source"]["name"], "Simulated log 'test'");
        let i = d["cert_index"].as_u64().unwrap();
        if let Some(l) = last {
            assert_eq!(i, l + 1, "in order, none missing");
        }
        last = Some(i);
        let domains_field = d["leaf_cert"]["all_domains"].as_array().unwrap();
        assert!(domains_field.len() >= 2);
    }
    for _ in 0..30 {
        let m = next_message(&mut full);
        let leaf = &m["data"]["leaf_cert"];
        let der = base64::engine::general_purpose::STANDARD
            .decode(leaf["as_der"].as_str().unwrap())
            .unwrap();
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
        let hex: Vec<String> = sha1.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(
            leaf["fingerprint"],
            hex.join(":"),
            "as_der is the certificate"
        );
        assert!(m["data"]["chain"][0]["as_der"].is_string());
    }
    for _ in 0..30 {
        let m = next_message(&mut domains);
        assert_eq!(m["message_type"], "dns_entries");
        assert!(m["data"].as_array().unwrap()[0].is_string());
    }

    // JSON endpoints.
    let latest = get_json(addr, "/latest.json");
    let msgs = latest["messages"].as_array().unwrap();
    assert!(!msgs.is_empty() && msgs.len() <= 25);
    assert!(msgs
        .iter()
        .all(|m| m["data"]["leaf_cert"].get("as_der").is_none()));
    let idx: Vec<u64> = msgs
        .iter()
        .map(|m| m["data"]["cert_index"].as_u64().unwrap())
        .collect();
    assert!(idx.windows(2).all(|w| w[0] < w[1]), "newest last");
    let example = get_json(addr, "/example.json/");
    assert_eq!(example["message_type"], "certificate_update");
    let stats = get_json(addr, "/stats");
    assert!(stats["processed_certificates"].as_u64().unwrap() >= 60);
    assert_eq!(stats["clients"]["lite"], 1);
    assert_eq!(stats["clients"]["full"], 1);
    assert_eq!(stats["clients"]["domains"], 1);
    assert_eq!(stats["logs"][0]["active"], true);
    assert!(stats["logs"][0]["position"].as_u64().unwrap() > 0);

    // /metrics is Prometheus text: every sample line is `name{labels} value`.
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let mut samples = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line.rsplit_once(' ').unwrap();
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let metric = name.split('{').next().unwrap();
        assert!(
            metric
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        samples += 1;
    }
    assert!(samples > 20);
    assert!(text.contains("certstream_clients{stream=\"lite\"} 1"));

    // The index page and unknown paths.
    let (status, page) = get(addr, "/");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("certstream"));
    assert_eq!(get(addr, "/nope").0, 404);
    assert_eq!(get(addr, "/full-stream").0, 426);

    drop((lite, full, domains));
    server.shutdown().unwrap();
}

#[test]
fn shutdown_closes_clients_with_1001() {
    let server = start(50.0, serve_config());
    let mut c = ws(server.addr, "/domains-only");
    next_message(&mut c);
    let t = std::thread::spawn(move || server.shutdown());
    let code = loop {
        match c.read() {
            Ok(tungstenite::Message::Close(Some(f))) => break u16::from(f.code),
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    assert_eq!(code, 1001);
    t.join().unwrap().unwrap();
}

/// Reads one server frame (unmasked): `(opcode, payload)`.
fn read_frame(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    read_frame_from(s)
}

fn read_frame_from(s: &mut impl Read) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b)?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b)?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut p = vec![0; len];
    s.read_exact(&mut p)?;
    Ok((h[0] & 0x0f, p))
}

/// Reads frames until a close frame; returns its code (None if the socket just closed).
fn close_code(s: &mut TcpStream) -> Option<u16> {
    loop {
        match read_frame(s) {
            Ok((8, p)) => return Some(u16::from_be_bytes([p[0], p[1]])),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// A healthy client keeps getting consecutive messages.
fn healthy(addr: SocketAddr) {
    let mut c = ws(addr, "/domains-only");
    let mut c2 = ws(addr, "/");
    next_message(&mut c);
    let a = next_message(&mut c2)["data"]["cert_index"]
        .as_u64()
        .unwrap();
    let b = next_message(&mut c2)["data"]["cert_index"]
        .as_u64()
        .unwrap();
    assert_eq!(b, a + 1);
}

#[test]
fn hostile_clients_are_closed_and_others_unaffected() {
    let server = start(100.0, serve_config());
    let addr = server.addr;

    // An unmasked client frame: 1002.
    let mut s = raw_ws(addr, "/");
    s.write_all(b"\x81\x02hi").unwrap();
    assert_eq!(close_code(&mut s), Some(1002));

    // A masked ping gets a pong with the same payload.
    let mut s = raw_ws(addr, "/domains-only");
    let mask = [1u8, 2, 3, 4];
    let payload: Vec<u8> = b"ping!"
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    let mut f = vec![0x89, 0x80 | 5];
    f.extend_from_slice(&mask);
    f.extend_from_slice(&payload);
    s.write_all(&f).unwrap();
    let pong = next_pong(&mut s);
    assert_eq!(pong, b"ping!");

    // A 16 MiB frame (only its header is sent): 1009, before any payload is read.
    let mut s = raw_ws(addr, "/");
    let mut h = vec![0x82, 0x80 | 127];
    h.extend_from_slice(&(16u64 << 20).to_be_bytes());
    h.extend_from_slice(&mask);
    s.write_all(&h).unwrap();
    assert_eq!(close_code(&mut s), Some(1009));

    // Garbage instead of a handshake: 400 and closed.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")
        .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    assert!(
        resp.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&resp)
    );

    // A bad upgrade (wrong version): 400.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n").unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    assert!(resp.starts_with(b"HTTP/1.1 400"));

    // A head larger than the limit: 431.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(20_000)).as_bytes());
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    assert!(resp.starts_with(b"HTTP/1.1 431"));

    // A handshake that never finishes: closed after the handshake timeout.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        s.read(&mut buf).unwrap_or(0),
        0,
        "server closes the stalled connection"
    );

    healthy(addr);
    let stats = get_json(addr, "/stats");
    eprintln!("{stats}");
    let metrics = String::from_utf8(get(addr, "/metrics").1).unwrap();
    for counter in [
        "protocol_closed_total",
        "bad_requests_total",
        "handshake_timeouts_total",
    ] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("certstream_{counter}")))
            .unwrap();
        assert_ne!(line.rsplit_once(' ').unwrap().1, "0", "{counter} counted");
    }
    server.shutdown().unwrap();
}

/// The payload of the next pong (other frames are skipped).
fn next_pong(s: &mut TcpStream) -> Vec<u8> {
    loop {
        let (op, p) = read_frame(s).unwrap();
        if op == 0xA {
            return p;
        }
    }
}

/// A masked client frame.
fn masked(op: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [9u8, 8, 7, 6];
    let mut f = vec![0x80 | op];
    match payload.len() {
        n @ 0..=125 => f.push(0x80 | n as u8),
        n => {
            f.push(0x80 | 126);
            f.extend_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// The reader runs on the socket's read half (one descriptor per client) on both drivers:
/// pings are answered, also when they arrive with the handshake; closes are answered with
/// the client's code only when it is one that may be sent.
#[test]
fn both_drivers_read_client_frames() {
    for driver in [Driver::Auto, Driver::Legacy] {
        let server = start(
            50.0,
            CoreConfig {
                driver,
                ..serve_config()
            },
        );
        let addr = server.addr;

        // A ping in the same write as the handshake (read with the request head).
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut req = b"GET /domains-only HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec();
        req.extend(masked(0x9, b"early"));
        s.write_all(&req).unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        let pong = next_pong(&mut s);
        assert_eq!(pong, b"early", "{driver:?}");
        // A later ping.
        s.write_all(&masked(0x9, b"later")).unwrap();
        let pong = next_pong(&mut s);
        assert_eq!(pong, b"later", "{driver:?}");
        // A 40 KB binary frame arriving in pieces (many reads of the reader's 1 KiB
        // buffer), then a ping: still in sync.
        let big = masked(0x2, &vec![b'x'; 40_000]);
        for piece in big.chunks(7_000) {
            s.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        s.write_all(&masked(0x9, b"after")).unwrap();
        let pong = next_pong(&mut s);
        assert_eq!(pong, b"after", "{driver:?}");
        // A close with a code that must not be sent: 1002.
        s.write_all(&masked(0x8, &1005u16.to_be_bytes())).unwrap();
        assert_eq!(close_code(&mut s), Some(1002), "{driver:?}");

        // A normal close is answered with its code.
        let mut s = raw_ws(addr, "/");
        let mut p = 1000u16.to_be_bytes().to_vec();
        p.extend_from_slice(b"bye");
        s.write_all(&masked(0x8, &p)).unwrap();
        assert_eq!(close_code(&mut s), Some(1000), "{driver:?}");

        healthy(addr);
        server.shutdown().unwrap();
    }
}

/// Descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

#[test]
fn five_thousand_idle_connections() {
    let server = start(20.0, serve_config());
    let addr = server.addr;
    let rss_before = rss_kib();
    let fds_before = open_fds();
    let idle: Vec<TcpStream> = (0..5000).map(|_| raw_ws(addr, "/domains-only")).collect();
    wait_until("5,000 clients registered", || {
        get_json(addr, "/stats")["clients"]["domains"]
            .as_u64()
            .unwrap()
            >= 5000
    });
    let rss_after = rss_kib();
    let fds_after = open_fds();
    eprintln!(
        "5,000 idle websocket clients: RSS {rss_before} KiB -> {rss_after} KiB ({} KiB per connection, client sockets included); open files {fds_before} -> {fds_after}",
        (rss_after.saturating_sub(rss_before)) / 5000
    );
    // Client and server run in this process: each connection is one descriptor on each
    // side (it was two on the server's: a dup'd read side). Other tests running beside this
    // one hold a few hundred at most.
    assert!(
        fds_after.saturating_sub(fds_before) < 2 * 5000 + 1000,
        "{} descriptors for 5,000 connections",
        fds_after.saturating_sub(fds_before)
    );
    healthy(addr);
    drop(idle);
    wait_until("idle clients gone", || {
        get_json(addr, "/stats")["clients"]["domains"]
            .as_u64()
            .unwrap()
            == 0
    });
    server.shutdown().unwrap();
}

#[test]
fn a_client_that_never_reads_is_shed_and_closed_while_fifty_get_everything() {
    // Readers get 2.5 s of slack (256 frames at 100/s) so a busy CI machine does not turn
    // them into slow clients; the never-reading one still fills its socket and falls off
    // the stream log.
    let mut cfg = serve_config();
    cfg.stream_log_frames = 256;
    let server = start(100.0, cfg);
    let addr = server.addr;

    // The slow client: a tiny receive buffer, and it never reads.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let mut slow: TcpStream = sock.into();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        slow,
        "GET /full-stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..50)
        .map(|_| {
            let stop = stop.clone();
            let mut c = ws(addr, "/");
            std::thread::spawn(move || {
                let mut last: Option<u64> = None;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let m = next_message(&mut c);
                    let i = m["data"]["cert_index"].as_u64().unwrap();
                    if let Some(l) = last {
                        assert_eq!(i, l + 1, "a reading client missed a message");
                    }
                    last = Some(i);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let rss_start = rss_kib();
    wait_until("the slow client to be closed", || {
        get_json(addr, "/stats")["slow_clients_closed"]
            .as_u64()
            .unwrap()
            >= 1
    });
    // Keep the readers going a little past the shedding.
    let seen_at_close = get_json(addr, "/stats")["processed_certificates"]
        .as_u64()
        .unwrap();
    wait_until("more certificates", || {
        get_json(addr, "/stats")["processed_certificates"]
            .as_u64()
            .unwrap()
            > seen_at_close + 200
    });
    stop.store(true, Ordering::Relaxed);
    let counts: Vec<u64> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    assert!(counts.iter().all(|&n| n >= 200), "{counts:?}");
    let stats = get_json(addr, "/stats");
    assert!(stats["dropped"]["client_lag"].as_u64().unwrap() > 0);
    assert_eq!(stats["dropped"]["core_rings"], 0, "no core fell behind");
    let rss_end = rss_kib();
    eprintln!("readers got {counts:?} messages; RSS {rss_start} KiB -> {rss_end} KiB");
    assert!(
        rss_end < rss_start + 256 * 1024,
        "memory grew by {} KiB while a client did not read",
        rss_end - rss_start
    );

    // The slow client's socket is closed by the server (after what was buffered).
    let mut buf = vec![0u8; 1 << 16];
    let mut received = Vec::new();
    loop {
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("slow client still open: {e} after {} bytes", received.len()),
        }
    }
    // What it did get is a clean sequence of frames (a cut-off last one aside): partial
    // writes resumed exactly where they stopped.
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut rest = &received[head_end..];
    let mut frames = 0;
    let mut cursor = std::io::Cursor::new(rest);
    while let Ok((op, payload)) = read_frame_from(&mut cursor) {
        match op {
            1 => {
                let v: Value = serde_json::from_slice(&payload).expect("a whole JSON message");
                assert!(v["message_type"].is_string());
            }
            8 | 9 => {}
            other => panic!("unexpected opcode {other} after {frames} frames"),
        }
        frames += 1;
    }
    rest = &rest[cursor.position() as usize..];
    assert!(frames > 10);
    eprintln!(
        "slow client received {} bytes ({frames} whole frames, {} trailing bytes) before the server closed it",
        received.len(),
        rest.len()
    );
    server.shutdown().unwrap();
}

#[test]
fn json_endpoints_answer_before_any_certificate() {
    let server = start(0.0, serve_config());
    let latest = get_json(server.addr, "/latest.json");
    assert_eq!(latest["messages"], Value::Array(vec![]));
    assert_eq!(get(server.addr, "/example.json").0, 503);
    server.shutdown().unwrap();
}

#[test]
fn heartbeats_carry_a_ping_and_a_heartbeat_message() {
    let mut cfg = serve_config();
    cfg.heartbeat = Duration::from_millis(200);
    let server = start(0.0, cfg);
    let mut c = ws(server.addr, "/");
    let (mut ping, mut beat) = (false, false);
    while !(ping && beat) {
        match c.read().unwrap() {
            tungstenite::Message::Ping(_) => ping = true,
            tungstenite::Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                assert_eq!(v["message_type"], "heartbeat");
                assert!(v["timestamp"].as_f64().unwrap() > 1.7e9);
                beat = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    server.shutdown().unwrap();
}

#[test]
fn connection_limits_refuse_the_excess() {
    let mut cfg = serve_config();
    cfg.max_per_ip = 3;
    let server = start(0.0, cfg);
    let addr = server.addr;
    let held: Vec<_> = (0..3).map(|_| raw_ws(addr, "/domains-only")).collect();
    wait_until("three clients", || server.shared.clients()[2] == 3);
    // The fourth connection from the same address is closed without an answer.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(b"GET /stats HTTP/1.1\r\n\r\n");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        buf.is_empty(),
        "refused: {:?}",
        String::from_utf8_lossy(&buf)
    );
    assert!(server.shared.sum(|c| &c.rejected) >= 1);
    drop(held);
    wait_until("a free slot", || {
        server.shared.connections.load(Ordering::Relaxed) == 0
    });
    assert_eq!(get(addr, "/stats").0, 200);
    server.shutdown().unwrap();
}
