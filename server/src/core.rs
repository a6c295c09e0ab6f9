//! A serving core: one thread, one monoio runtime (io_uring, or the legacy epoll driver
//! where io_uring is unavailable), its own listener and its own connections.
//!
//! Every `coalesce` interval the core drains its SPSC ring from the hub and appends each
//! certificate's frame for the right stream to every client's queue (a reference-count bump
//! per client), then wakes the clients' writers once. Nothing here takes a lock or waits for
//! another core.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use certstream_engine::frame::{self, Frames, OP_PING};
use certstream_engine::hub::Hub;
use certstream_engine::stats::Stats;
use monoio::buf::IoBufMut as _;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Splitable as _};
use tokio::io::AsyncReadExt as _;

use crate::conn::{self, Conn, ReadEnd};
use crate::handshake;
use crate::http::{self, HttpError, Route, StreamKind};
use crate::report;

/// Bytes a client's reader reads at once (client frames are pings and closes: small).
const READ_BUFFER: usize = 1024;

/// Which io driver the cores use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Driver {
    /// io_uring when the kernel offers it, the legacy (epoll) driver otherwise.
    Auto,
    IoUring,
    Legacy,
}

/// Serving settings.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Serving cores (threads).
    pub cores: usize,
    pub driver: Driver,
    /// Certificates each core's ring holds.
    pub ring_capacity: usize,
    /// Frames each client's queue holds.
    pub client_queue: usize,
    /// A client dropping frames this long without catching up is closed with 1008.
    pub slow_client_timeout: Duration,
    /// How often cores hand new frames to clients (the write coalescing window).
    pub coalesce: Duration,
    pub heartbeat: Duration,
    pub max_connections: usize,
    pub max_per_ip: usize,
    /// Largest HTTP request head.
    pub max_head: usize,
    /// Time a client has to send its request head.
    pub handshake_timeout: Duration,
    /// Largest client websocket frame.
    pub max_client_frame: usize,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            driver: Driver::Auto,
            ring_capacity: 8192,
            client_queue: 1024,
            slow_client_timeout: Duration::from_secs(30),
            coalesce: Duration::from_millis(5),
            heartbeat: Duration::from_secs(30),
            max_connections: 200_000,
            max_per_ip: 20_000,
            max_head: 8192,
            handshake_timeout: Duration::from_secs(10),
            max_client_frame: 64 << 10,
        }
    }
}

/// One core's counters (written by that core only; read by `/stats` and `/metrics`).
#[derive(Debug, Default)]
pub struct CoreCounters {
    pub clients: [AtomicU64; 3],
    pub accepted: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Frames dropped from full client queues.
    pub client_drops: AtomicU64,
    /// Clients closed with 1008 for staying behind.
    pub slow_closed: AtomicU64,
    /// Clients closed for breaking the websocket protocol.
    pub protocol_closed: AtomicU64,
    pub http_requests: AtomicU64,
    pub bad_requests: AtomicU64,
    pub handshake_timeouts: AtomicU64,
    /// Connections refused by the connection limits.
    pub rejected: AtomicU64,
    /// 1 when this core runs on io_uring.
    pub io_uring: AtomicU64,
}

/// What every core shares (read-mostly; nothing on the per-message path).
#[derive(Debug)]
pub struct Shared {
    pub config: CoreConfig,
    pub hub: Arc<Hub>,
    pub engine: Arc<Stats>,
    pub cores: Vec<Arc<CoreCounters>>,
    pub connections: AtomicUsize,
    per_ip: Mutex<std::collections::HashMap<IpAddr, usize>>,
    pub shutdown: AtomicBool,
    pub started: Instant,
}

impl Shared {
    pub fn new(config: CoreConfig, hub: Arc<Hub>, engine: Arc<Stats>) -> Arc<Self> {
        let cores = (0..config.cores.max(1))
            .map(|_| Arc::new(CoreCounters::default()))
            .collect();
        Arc::new(Shared {
            config,
            hub,
            engine,
            cores,
            connections: AtomicUsize::new(0),
            per_ip: Mutex::new(Default::default()),
            shutdown: AtomicBool::new(false),
            started: Instant::now(),
        })
    }

    /// Connected clients per stream, all cores together.
    pub fn clients(&self) -> [u64; 3] {
        let mut n = [0; 3];
        for c in &self.cores {
            for (i, v) in c.clients.iter().enumerate() {
                n[i] += v.load(Relaxed);
            }
        }
        n
    }

    /// Sum of one counter over all cores.
    pub fn sum(&self, f: impl Fn(&CoreCounters) -> &AtomicU64) -> u64 {
        self.cores.iter().map(|c| f(c).load(Relaxed)).sum()
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admission> {
        if self.connections.fetch_add(1, Relaxed) >= self.config.max_connections {
            self.connections.fetch_sub(1, Relaxed);
            return None;
        }
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.config.max_per_ip {
            drop(per_ip);
            self.connections.fetch_sub(1, Relaxed);
            return None;
        }
        *n += 1;
        Some(Admission {
            shared: self.clone(),
            ip,
        })
    }
}

/// A counted connection slot, given back on drop.
struct Admission {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.shared.connections.fetch_sub(1, Relaxed);
        let mut per_ip = self.shared.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

struct Core {
    id: usize,
    shared: Arc<Shared>,
    counters: Arc<CoreCounters>,
    conns: RefCell<[Vec<Rc<Conn>>; 3]>,
}

/// Runs core `id` on the current thread until shutdown.
pub fn run_core(
    id: usize,
    listener: std::net::TcpListener,
    ring: rtrb::Consumer<Frames>,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let uring = match shared.config.driver {
        Driver::Auto => monoio::utils::detect_uring(),
        Driver::IoUring => true,
        Driver::Legacy => false,
    };
    let counters = shared.cores[id].clone();
    if uring {
        let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(4096)
            .enable_timer()
            .build()?;
        counters.io_uring.store(1, Relaxed);
        tracing::info!(core = id, driver = "io_uring", "serving core started");
        rt.block_on(core_main(id, listener, ring, shared))
    } else {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()?;
        tracing::info!(core = id, driver = "legacy (epoll)", "serving core started");
        rt.block_on(core_main(id, listener, ring, shared))
    }
}

fn select(f: &Frames, kind: usize) -> &Bytes {
    match kind {
        0 => &f.lite,
        1 => &f.full,
        _ => &f.domains,
    }
}

async fn core_main(
    id: usize,
    listener: std::net::TcpListener,
    mut ring: rtrb::Consumer<Frames>,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let listener = monoio::net::TcpListener::from_std(listener)?;
    let core = Rc::new(Core {
        id,
        counters: shared.cores[id].clone(),
        shared: shared.clone(),
        conns: RefCell::new(Default::default()),
    });
    let acceptor = monoio::spawn(accept_loop(core.clone(), listener));
    let cfg = &shared.config;
    let mut next_heartbeat = Instant::now() + cfg.heartbeat;
    let mut next_sweep = Instant::now();
    let mut woke = [false; 3];
    loop {
        monoio::time::sleep(cfg.coalesce).await;
        if shared.shutdown.load(Relaxed) {
            break;
        }
        {
            let conns = core.conns.borrow();
            while let Ok(f) = ring.pop() {
                for (kind, list) in conns.iter().enumerate() {
                    if list.is_empty() {
                        continue;
                    }
                    let b = select(&f, kind);
                    let mut drops = 0;
                    for c in list {
                        drops += u64::from(c.push(b.clone()));
                    }
                    if drops > 0 {
                        core.counters.client_drops.fetch_add(drops, Relaxed);
                    }
                    woke[kind] = true;
                }
            }
            for (kind, list) in conns.iter().enumerate() {
                if std::mem::take(&mut woke[kind]) {
                    list.iter().for_each(|c| c.wake());
                }
            }
        }
        let now = Instant::now();
        if now >= next_heartbeat {
            next_heartbeat = now + cfg.heartbeat;
            heartbeat(&core);
        }
        if now >= next_sweep {
            next_sweep = now + Duration::from_millis(100);
            sweep(&core, now);
        }
    }
    // Shutdown: what the ring still holds goes out, then every client gets 1001 and a
    // moment to receive it.
    tracing::info!(core = id, "closing clients");
    {
        let conns = core.conns.borrow();
        while let Ok(f) = ring.pop() {
            for (kind, list) in conns.iter().enumerate() {
                for c in list {
                    c.push(select(&f, kind).clone());
                }
            }
        }
        for list in conns.iter() {
            for c in list {
                c.close_after_queue(1001, "server shutting down");
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline
        && core
            .conns
            .borrow()
            .iter()
            .any(|l| l.iter().any(|c| !c.is_dead()))
    {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    for list in core.conns.borrow().iter() {
        list.iter().for_each(|c| c.kill());
    }
    drop(acceptor);
    Ok(())
}

/// Closes clients that stayed behind too long; forgets finished connections.
fn sweep(core: &Core, now: Instant) {
    let cfg = &core.shared.config;
    let mut conns = core.conns.borrow_mut();
    for (kind, list) in conns.iter_mut().enumerate() {
        list.retain(|c| {
            if c.is_dead() {
                core.counters.clients[kind].fetch_sub(1, Relaxed);
                return false;
            }
            if let Some(d) = c.closing_for(now) {
                if d > Duration::from_secs(2) {
                    c.kill();
                }
            } else if c.behind_for(now).is_some_and(|d| d > cfg.slow_client_timeout) {
                tracing::info!(core = core.id, peer = %c.peer, dropped = c.dropped.get(), "closing a client that stays behind");
                core.counters.slow_closed.fetch_add(1, Relaxed);
                c.close(1008, "client too slow: messages were dropped for too long");
            }
            true
        });
    }
}

fn heartbeat(core: &Core) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut msg = b"{\"message_type\":\"heartbeat\",\"timestamp\":".to_vec();
    certstream_engine::json::write_f64(&mut msg, now);
    msg.push(b'}');
    let text = frame::frame(frame::OP_TEXT, &msg);
    let ping = frame::frame(OP_PING, b"");
    for list in core.conns.borrow().iter() {
        for c in list {
            c.push_control(ping.clone());
            c.push(text.clone());
            c.wake();
        }
    }
}

async fn accept_loop(core: Rc<Core>, listener: monoio::net::TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(core = core.id, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if core.shared.shutdown.load(Relaxed) {
            return;
        }
        core.counters.accepted.fetch_add(1, Relaxed);
        let Some(admission) = core.shared.admit(peer.ip()) else {
            core.counters.rejected.fetch_add(1, Relaxed);
            tracing::debug!(%peer, "connection refused: limit reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        monoio::spawn(handle(core.clone(), stream, peer, admission));
    }
}

/// Reads the request head: `(request, bytes after the head)`.
async fn read_head(
    stream: &mut monoio::net::TcpStream,
    max_head: usize,
) -> Result<(http::Request, Vec<u8>), Option<HttpError>> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(2048);
        }
        let (len, cap) = (buf.len(), buf.capacity());
        let (res, b) = stream.read(buf.slice_mut(len..cap)).await;
        buf = b.into_inner();
        match res {
            Ok(0) | Err(_) => return Err(None),
            Ok(_) => {}
        }
        match http::parse(&buf, max_head) {
            Ok(Some((req, n))) => return Ok((req, buf.split_off(n))),
            Ok(None) => continue,
            Err(e) => return Err(Some(e)),
        }
    }
}

async fn write_all(stream: &mut monoio::net::TcpStream, data: Vec<u8>) {
    let _ = stream.write_all(data).await;
}

async fn handle(
    core: Rc<Core>,
    mut stream: monoio::net::TcpStream,
    peer: SocketAddr,
    _admission: Admission,
) {
    let cfg = &core.shared.config;
    let head =
        monoio::time::timeout(cfg.handshake_timeout, read_head(&mut stream, cfg.max_head)).await;
    let (req, leftover) = match head {
        Err(_) => {
            core.counters.handshake_timeouts.fetch_add(1, Relaxed);
            tracing::debug!(%peer, "no request head in time; closed");
            return;
        }
        Ok(Err(None)) => return,
        Ok(Err(Some(e))) => {
            core.counters.bad_requests.fetch_add(1, Relaxed);
            tracing::debug!(%peer, error = %e, "bad request");
            let (status, body) = match e {
                HttpError::TooLarge => (
                    "431 Request Header Fields Too Large",
                    "request head too large\n",
                ),
                HttpError::Malformed => ("400 Bad Request", "malformed HTTP request\n"),
            };
            write_all(
                &mut stream,
                http::response(status, "text/plain", body.as_bytes()),
            )
            .await;
            return;
        }
        Ok(Ok(r)) => r,
    };
    core.counters.http_requests.fetch_add(1, Relaxed);
    let route = http::route(&req.path);
    if let Route::Stream(kind) = route {
        if handshake::wants_upgrade(&req) {
            match handshake::accept(&req) {
                Ok(resp) => {
                    let (res, _) = stream.write_all(resp).await;
                    if res.is_ok() {
                        websocket(core, stream, peer, kind, leftover).await;
                    }
                }
                Err(e) => {
                    core.counters.bad_requests.fetch_add(1, Relaxed);
                    let body = format!("bad websocket upgrade: {e}\n");
                    write_all(
                        &mut stream,
                        http::response("400 Bad Request", "text/plain", body.as_bytes()),
                    )
                    .await;
                }
            }
            return;
        }
    }
    if req.method != "GET" && req.method != "HEAD" {
        let resp = http::response("405 Method Not Allowed", "text/plain", b"only GET\n");
        return write_all(&mut stream, resp).await;
    }
    let resp = match route {
        Route::Stream(StreamKind::Lite) => http::response(
            "200 OK",
            "text/html; charset=utf-8",
            crate::page::INDEX.as_bytes(),
        ),
        Route::Stream(kind) => http::response(
            "426 Upgrade Required",
            "text/plain",
            format!(
                "{} is a websocket stream: connect with a websocket client\n",
                kind.path()
            )
            .as_bytes(),
        ),
        Route::Latest => {
            http::response("200 OK", "application/json", &report::latest(&core.shared))
        }
        Route::Example => match report::example(&core.shared) {
            Some(body) => http::response("200 OK", "application/json", &body),
            None => http::response(
                "503 Service Unavailable",
                "application/json",
                b"{\"error\":\"no certificate seen yet\"}",
            ),
        },
        Route::Stats => http::response("200 OK", "application/json", &report::stats(&core.shared)),
        Route::Metrics => http::response(
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            report::metrics(&core.shared).as_bytes(),
        ),
        Route::NotFound => http::response("404 Not Found", "text/plain", b"not found\n"),
    };
    write_all(&mut stream, resp).await;
}

async fn websocket(
    core: Rc<Core>,
    stream: monoio::net::TcpStream,
    peer: SocketAddr,
    kind: StreamKind,
    leftover: Vec<u8>,
) {
    let cfg = &core.shared.config;
    let conn = Rc::new(Conn::new(kind, peer, stream.as_raw_fd(), cfg.client_queue));
    // One socket, two halves: the hot write side stays on the native completion driver;
    // the cold read side is adapted to tokio's `AsyncRead` for fastwebsockets by
    // monoio-compat (reads into its own small buffer), so a client costs one descriptor.
    let (read, write) = stream.into_split();
    let read = monoio_compat::StreamWrapper::new_with_buffer_size(read, READ_BUFFER, 0);
    core.conns.borrow_mut()[kind.index()].push(conn.clone());
    core.counters.clients[kind.index()].fetch_add(1, Relaxed);
    let reader = {
        let conn = conn.clone();
        let core = core.clone();
        let max = cfg.max_client_frame;
        monoio::spawn(async move {
            let io = std::io::Cursor::new(leftover).chain(read);
            if conn::reader(conn, io, max).await == ReadEnd::Protocol {
                core.counters.protocol_closed.fetch_add(1, Relaxed);
            }
        })
    };
    conn::writer(conn, write, &core.counters).await;
    reader.await;
}
