//! What the serving cores share: their settings, their counters (each written by one core,
//! read by `/stats` and `/metrics`), and the connection limits. Nothing here is on the
//! per-message path.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certstream_engine::hub::Hub;
use certstream_engine::stats::Stats;

use crate::access::Cidr;
use crate::upstream::Status;

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
    /// Certificates each core's hand-off ring (from the hub) holds.
    pub ring_capacity: usize,
    /// Bytes of frames each core's stream log holds (the frames are shared by all cores,
    /// so this is the memory of the stream kept, whatever the number of cores).
    pub stream_log_bytes: usize,
    /// Certificates each core's stream log holds at most.
    pub stream_log_frames: usize,
    /// A client skipping frames this long without catching up is closed with 1008.
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
    /// Largest client websocket frame (and inflated client message).
    pub max_client_frame: usize,
    /// Whether permessage-deflate is negotiated with clients that offer it.
    pub deflate: bool,
    /// `/health` is 200 while some log published an entry this recently.
    pub health_window: Duration,
    /// Peers whose `X-Forwarded-For` / `Forwarded` are believed (see [`crate::access`]).
    pub trusted_proxies: Vec<Cidr>,
    /// Real addresses allowed to connect (empty: all).
    pub allow: Vec<Cidr>,
    /// Tokens a stream request must carry one of (empty: none needed).
    pub auth_tokens: Vec<String>,
    /// `dedup=1`: an issuance seen again within this window is a duplicate.
    pub dedup_window: Duration,
    /// Most issuance keys the dedup set holds.
    pub dedup_capacity: usize,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            driver: Driver::Auto,
            ring_capacity: 8192,
            stream_log_bytes: 256 << 20,
            stream_log_frames: 1 << 18,
            slow_client_timeout: Duration::from_secs(30),
            coalesce: Duration::from_millis(5),
            heartbeat: Duration::from_secs(30),
            max_connections: 200_000,
            max_per_ip: 20_000,
            max_head: 8192,
            handshake_timeout: Duration::from_secs(10),
            max_client_frame: 64 << 10,
            deflate: true,
            health_window: Duration::from_secs(300),
            trusted_proxies: Vec::new(),
            allow: Vec::new(),
            auth_tokens: Vec::new(),
            dedup_window: certstream_engine::hub::DEDUP_WINDOW,
            dedup_capacity: certstream_engine::hub::DEDUP_CAPACITY,
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
    /// Frames clients skipped because their cursor fell off the stream log's tail.
    pub client_drops: AtomicU64,
    /// Certificates this core's stream log holds, and their bytes.
    pub log_frames: AtomicU64,
    pub log_bytes: AtomicU64,
    /// The oldest cursor this core's stream log holds, and the next one it expects.
    pub log_tail_cursor: AtomicU64,
    pub log_next_cursor: AtomicU64,
    /// Certificates evicted from this core's stream log (budget reached).
    pub log_evicted: AtomicU64,
    /// Connections that asked for `since` (resumed), and those that got a gap message.
    pub resumed: AtomicU64,
    pub resume_gaps: AtomicU64,
    /// Clients closed with 1008 for staying behind.
    pub slow_closed: AtomicU64,
    /// Clients closed for breaking the websocket protocol.
    pub protocol_closed: AtomicU64,
    pub http_requests: AtomicU64,
    pub bad_requests: AtomicU64,
    pub handshake_timeouts: AtomicU64,
    /// Connections refused by the connection limits.
    pub rejected: AtomicU64,
    /// Requests refused by the allow list, and stream requests without a valid token.
    pub access_denied: AtomicU64,
    pub unauthorized: AtomicU64,
    /// Connected SSE clients, and websocket clients that negotiated permessage-deflate
    /// (both also counted in `clients`).
    pub sse_clients: AtomicU64,
    pub deflate_clients: AtomicU64,
    /// The driver this core runs on: 0 while it starts, then 1 io_uring, 2 legacy (epoll).
    pub driver: AtomicU64,
    /// Connections with a `domain`/`match` filter, and their patterns (this core's matcher).
    pub filtered_clients: AtomicU64,
    pub filter_patterns: AtomicU64,
    /// Certificates this core evaluated against its filters, those that matched at least one,
    /// and the nanoseconds spent matching.
    pub filter_evaluated: AtomicU64,
    pub filter_matched: AtomicU64,
    pub filter_nanos: AtomicU64,
    /// Connections that asked for `dedup=1`.
    pub dedup_clients: AtomicU64,
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
    /// The NATS side: role, upstream, lag ([`crate::upstream`]).
    pub upstream: Arc<Status>,
}

impl Shared {
    pub fn new(config: CoreConfig, hub: Arc<Hub>, engine: Arc<Stats>) -> Arc<Self> {
        Self::with_upstream(config, hub, engine, Arc::new(Status::default()))
    }

    /// Like [`Shared::new`], on a node of the NATS role `upstream` describes.
    pub fn with_upstream(
        config: CoreConfig,
        hub: Arc<Hub>,
        engine: Arc<Stats>,
        upstream: Arc<Status>,
    ) -> Arc<Self> {
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
            upstream,
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

    /// Counts a connection from `ip` against the limits; `None` when a limit is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admission> {
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
            ip: Some(ip),
        })
    }

    /// Counts a connection from a trusted proxy against the total only: its real address is
    /// counted once its request head is read ([`Admission::bind`]).
    pub fn admit_proxied(self: &Arc<Self>) -> Option<Admission> {
        if self.connections.fetch_add(1, Relaxed) >= self.config.max_connections {
            self.connections.fetch_sub(1, Relaxed);
            return None;
        }
        Some(Admission {
            shared: self.clone(),
            ip: None,
        })
    }
}

/// A counted connection slot, given back on drop.
#[derive(Debug)]
pub struct Admission {
    shared: Arc<Shared>,
    /// The address counted against the per-IP limit (none yet for a proxied connection).
    ip: Option<IpAddr>,
}

impl Admission {
    /// Counts a proxied connection against its real address's limit; false when reached.
    /// A connection already counted (not proxied) is left as it is.
    pub fn bind(&mut self, ip: IpAddr) -> bool {
        if self.ip.is_some() {
            return true;
        }
        let mut per_ip = self.shared.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.shared.config.max_per_ip {
            if *n == 0 {
                per_ip.remove(&ip);
            }
            return false;
        }
        *n += 1;
        self.ip = Some(ip);
        true
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.shared.connections.fetch_sub(1, Relaxed);
        let Some(ip) = self.ip else { return };
        let mut per_ip = self.shared.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&ip);
            }
        }
    }
}

/// Whether this kernel offers io_uring (what [`Driver::Auto`] picks by).
pub fn io_uring_available() -> bool {
    monoio::utils::detect_uring()
}
