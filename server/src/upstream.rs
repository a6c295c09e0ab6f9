//! Beyond one machine: an ingest node publishes its stream to NATS JetStream, edge nodes
//! consume it and serve it as if their own ingest had made it.
//!
//! # The message
//! One JetStream message per certificate, subject `<stream>.frames`: a 38-byte header
//! (version 2, flags, cursor, log, index, the three frame lengths and the names' length;
//! little-endian), the three frames exactly as the ingest's clients get them (websocket
//! header included), and the certificate's `all_domains` (each a 16-bit length and its
//! bytes) for the edges' filters. Flag 1 is the ingest's dedup verdict
//! ([`Frames::duplicate`]), so `dedup=1` means the same on every node. An edge slices the
//! frames out of the received payload ([`decode`]: no copy, no JSON work) and hands them to
//! its hub with their cursor ([`Hub::publish_stamped`]), so every edge serves the same bytes
//! with the same cursors as the ingest.
//!
//! # Ingest: publishing
//! The hub's tap ([`Hub::set_tap`]) hands each stamped certificate, in cursor order, to a
//! bounded queue (`--nats-backlog`); a full queue drops and counts ([`Status::dropped`]),
//! so NATS never slows ingest or the ingest's own clients. One task publishes the queue in
//! order with up to `--nats-inflight` publishes awaiting their acks (a poll's burst goes
//! out at the connection's speed, not one round trip per certificate), with `Nats-Msg-Id`
//! = `<log url>#<index>`: an entry fetched again after a crash is a duplicate JetStream
//! drops within its duplicate window ([`DUPLICATE_WINDOW`]). The stream keeps cursor order
//! (an edge skips a cursor not above the last it fed) because each publish expects the
//! stream's last sequence to be the one the publish before it gets
//! (`Nats-Expected-Last-Sequence`): when one is not stored, none after it is, and the
//! window is sent again from the first certificate not acknowledged, once the ones in
//! flight have settled ([`Window`]). The stream is created when absent, with retention by
//! age and size.
//!
//! # Edge: consuming
//! An ordered pull consumer from a start sequence: at start the last `--nats-backfill`
//! messages (refilling the stream log), after a lost consumer the sequence after the last
//! one fed. A cursor not above the last fed is skipped (counted). A `since` older than a
//! core's stream log is served from JetStream ([`fill_gap`]): a binary search of the
//! stream for the first sequence whose cursor follows `since`, then the messages up to
//! the log's tail.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use bytes::{BufMut, Bytes, BytesMut};
use certstream_engine::frame;
use certstream_engine::hub::Hub;
use certstream_engine::stats::Stats;
use certstream_engine::Frames;
use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt as _;
use tokio::sync::{mpsc, oneshot, watch};

use crate::stream_log::{Resume, StreamLog};

/// How long JetStream remembers a message id (a re-fetch after a crash comes sooner).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);
/// Most certificates one resuming client is served from JetStream.
pub const REPLAY_MAX: usize = 100_000;
/// Silence after which an edge's consumer that is behind the stream is recreated.
const STALL: Duration = Duration::from_secs(2);
/// Header of an upstream message.
const HEADER: usize = 38;
const VERSION: u8 = 2;
/// Header flag: the certificate is a dedup duplicate ([`Frames::duplicate`]).
const FLAG_DUPLICATE: u8 = 1;
/// Longest name carried for the edges' filters.
const NAME_MAX: usize = 1024;

/// What this node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Watches CT logs and serves; no NATS.
    #[default]
    Single,
    /// Watches CT logs, serves, and publishes to JetStream.
    Ingest,
    /// Serves what it consumes from JetStream; watches no log.
    Edge,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Single => "single",
            Role::Ingest => "ingest",
            Role::Edge => "edge",
        }
    }
}

/// NATS settings.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// Ingest node: the NATS servers to publish to.
    pub publish: Vec<String>,
    /// Edge node: the NATS servers to consume from.
    pub upstream: Vec<String>,
    /// The JetStream stream's name.
    pub stream: String,
    /// Messages older than this are removed from the stream.
    pub retention: Duration,
    /// The stream's size limit in bytes (oldest removed first; -1: none).
    pub max_bytes: i64,
    /// Replicas of the stream (in a NATS cluster).
    pub replicas: usize,
    /// Certificates the ingest holds while NATS is down or slow.
    pub backlog: usize,
    /// Certificates an edge reads back from the stream when it starts.
    pub backfill: u64,
    /// Ingest: publishes awaiting their acknowledgement at most.
    pub inflight: usize,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            publish: Vec::new(),
            upstream: Vec::new(),
            stream: "certstream".into(),
            retention: Duration::from_secs(24 * 3600),
            max_bytes: -1,
            replicas: 1,
            backlog: 100_000,
            backfill: 10_000,
            inflight: 256,
        }
    }
}

impl NatsConfig {
    pub fn role(&self) -> Role {
        if !self.upstream.is_empty() {
            Role::Edge
        } else if !self.publish.is_empty() {
            Role::Ingest
        } else {
            Role::Single
        }
    }

    fn subject(&self) -> String {
        format!("{}.frames", self.stream)
    }
}

/// Errors of the NATS side.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("bad NATS server address {0}")]
    Address(String),
    #[error("NATS: {0}")]
    Nats(String),
    #[error("malformed upstream message: {0}")]
    Malformed(&'static str),
}

fn nats<E: std::fmt::Display>(e: E) -> UpstreamError {
    UpstreamError::Nats(e.to_string())
}

/// The NATS side's state for `/stats`, `/metrics` and the index page.
#[derive(Debug, Default)]
pub struct Status {
    pub role: Role,
    /// The NATS servers, comma-separated.
    pub servers: String,
    pub stream: String,
    pub connected: AtomicBool,
    /// The stream's last sequence, as last seen (publish ack or stream info).
    pub last_sequence: AtomicU64,
    /// Ingest: certificates acknowledged by JetStream, those it found duplicate, failed
    /// publish attempts (each retried), certificates queued, and dropped (queue full, or
    /// still queued at shutdown).
    pub published: AtomicU64,
    pub duplicates: AtomicU64,
    pub publish_errors: AtomicU64,
    pub backlog: AtomicU64,
    pub dropped: AtomicU64,
    /// Ingest: certificates taken from the queue and not acknowledged yet (in flight, or
    /// to be sent again), at most `--nats-inflight`; publishes JetStream refused because
    /// the stream's last message was not the one they expected (not stored; sent again in
    /// order); publishes sent again after a failure in their window.
    pub inflight: AtomicU64,
    pub mismatches: AtomicU64,
    pub resent: AtomicU64,
    /// Edge: certificates fed to the hub, the stream sequence of the last one, those
    /// skipped (cursor not above the last fed), malformed messages, consumer restarts.
    pub consumed: AtomicU64,
    pub consumed_sequence: AtomicU64,
    pub skipped: AtomicU64,
    pub malformed: AtomicU64,
    pub consumer_restarts: AtomicU64,
    /// Edge: clients served from JetStream, and the certificates they were sent.
    pub replays: AtomicU64,
    pub replayed: AtomicU64,
    replay: OnceLock<mpsc::Sender<ReplayRequest>>,
    /// Ingest: what is queued or in flight and not acknowledged, per log (the positions
    /// file is held back to it: [`Unacked::floor`]).
    pub unacked: Unacked,
}

/// Per log id, the indices of the certificates the ingest has queued for JetStream and not
/// had acknowledged (nor dropped, which is counted), oldest first. A crash loses them with
/// the queue; the positions file never claims them ([`Positions::set_floor`]), so the next
/// run fetches them again (and JetStream finds the ones it had stored duplicates).
///
/// [`Positions::set_floor`]: certstream_engine::positions::Positions::set_floor
#[derive(Debug, Default)]
pub struct Unacked(std::sync::Mutex<std::collections::HashMap<u32, VecDeque<u64>>>);

impl Unacked {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u32, VecDeque<u64>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Certificate `index` of `log` is queued (call before it can be acknowledged).
    pub fn hold(&self, log: u32, index: u64) {
        self.lock().entry(log).or_default().push_back(index);
    }

    /// Certificate `index` of `log` was acknowledged, or dropped and counted.
    pub fn release(&self, log: u32, index: u64) {
        let mut m = self.lock();
        if let Some(q) = m.get_mut(&log) {
            if q.front() == Some(&index) {
                q.pop_front();
            } else if let Some(at) = q.iter().position(|&i| i == index) {
                q.remove(at);
            }
        }
    }

    /// Everything left was dropped (and counted).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The oldest index of `log` held, if any: what its saved position may not pass.
    pub fn floor(&self, log: u32) -> Option<u64> {
        self.lock().get(&log).and_then(|q| q.iter().min().copied())
    }
}

impl Status {
    pub fn new(cfg: &NatsConfig) -> Self {
        let role = cfg.role();
        let servers = match role {
            Role::Edge => cfg.upstream.join(","),
            Role::Ingest => cfg.publish.join(","),
            Role::Single => String::new(),
        };
        Status {
            role,
            servers,
            stream: if role == Role::Single {
                String::new()
            } else {
                cfg.stream.clone()
            },
            ..Status::default()
        }
    }

    /// Edge: stream messages not yet fed to the hub.
    pub fn lag(&self) -> u64 {
        if self.role != Role::Edge {
            return 0;
        }
        self.last_sequence
            .load(Relaxed)
            .saturating_sub(self.consumed_sequence.load(Relaxed))
    }
}

/// Encodes one certificate's upstream message.
pub fn encode(f: &Frames) -> Bytes {
    let names: usize = f.names.iter().map(|n| 2 + n.len().min(NAME_MAX)).sum();
    let mut out = BytesMut::with_capacity(HEADER + f.len() + names);
    out.put_u8(VERSION);
    out.put_u8(if f.duplicate { FLAG_DUPLICATE } else { 0 });
    out.put_u64_le(f.cursor);
    out.put_u32_le(f.log);
    out.put_u64_le(f.index);
    for b in [&f.lite, &f.full, &f.domains] {
        out.put_u32_le(b.len() as u32);
    }
    out.put_u32_le(names as u32);
    for b in [&f.lite, &f.full, &f.domains] {
        out.extend_from_slice(b);
    }
    for n in f.names.iter() {
        // A name is at most 253 bytes in DNS; one longer than NAME_MAX is cut, not refused.
        let n = &n.as_bytes()[..n.len().min(NAME_MAX)];
        out.put_u16_le(n.len() as u16);
        out.extend_from_slice(n);
    }
    out.freeze()
}

/// The cursor of an upstream message, from its header alone.
pub fn cursor_of(payload: &[u8]) -> Result<u64, UpstreamError> {
    if payload.len() < HEADER || payload[0] != VERSION {
        return Err(UpstreamError::Malformed("no version 2 header"));
    }
    Ok(u64::from_le_bytes(
        payload[2..10].try_into().unwrap_or_default(),
    ))
}

/// Slices an upstream message into its frames (no copy); each must be one whole frame.
pub fn decode(payload: Bytes) -> Result<Frames, UpstreamError> {
    let cursor = cursor_of(&payload)?;
    let u32_at = |at: usize| u32::from_le_bytes(payload[at..at + 4].try_into().unwrap_or_default());
    let duplicate = payload[1] & FLAG_DUPLICATE != 0;
    let log = u32_at(10);
    let index = u64::from_le_bytes(payload[14..22].try_into().unwrap_or_default());
    let lens = [u32_at(22), u32_at(26), u32_at(30), u32_at(34)].map(|n| n as usize);
    if HEADER + lens.iter().sum::<usize>() != payload.len() {
        return Err(UpstreamError::Malformed("lengths do not add up"));
    }
    let mut at = HEADER;
    let mut part = |n: usize| {
        let b = payload.slice(at..at + n);
        at += n;
        b
    };
    let (lite, full, domains) = (part(lens[0]), part(lens[1]), part(lens[2]));
    if [&lite, &full, &domains]
        .iter()
        .any(|b| frame::parse(b).is_none_or(|(op, _)| op != frame::OP_TEXT))
    {
        return Err(UpstreamError::Malformed("not a text frame"));
    }
    let mut names = Vec::new();
    let mut rest = &part(lens[3])[..];
    while !rest.is_empty() {
        let n = match rest {
            [a, b, tail @ ..] if tail.len() >= u16::from_le_bytes([*a, *b]) as usize => {
                u16::from_le_bytes([*a, *b]) as usize
            }
            _ => return Err(UpstreamError::Malformed("names do not add up")),
        };
        let name = std::str::from_utf8(&rest[2..2 + n])
            .map_err(|_| UpstreamError::Malformed("a name is not UTF-8"))?;
        names.push(Box::from(name));
        rest = &rest[2 + n..];
    }
    Ok(Frames {
        cursor,
        log,
        index,
        lite,
        full,
        domains,
        names: names.into(),
        duplicate,
    })
}

async fn connect(servers: &[String]) -> Result<async_nats::Client, UpstreamError> {
    let addrs = servers
        .iter()
        .map(|s| {
            s.parse::<async_nats::ServerAddr>()
                .map_err(|_| UpstreamError::Address(s.clone()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    async_nats::ConnectOptions::new()
        .name("certstream")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(addrs.as_slice())
        .await
        .map_err(nats)
}

fn connected(client: &async_nats::Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}

/// Exponential retry delay, 50 ms to 2 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(Duration::from_millis(50))
    }
    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
    }
}

/// The cursor after the stream's last message (`None` when NATS does not answer within
/// `wait` or the stream is empty): an ingest node without saved positions continues there.
pub async fn next_cursor_in_stream(cfg: &NatsConfig, wait: Duration) -> Option<u64> {
    let ask = async {
        let addrs = cfg
            .publish
            .iter()
            .filter_map(|s| s.parse::<async_nats::ServerAddr>().ok())
            .collect::<Vec<_>>();
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(wait)
            .connect(addrs.as_slice())
            .await
            .ok()?;
        let js = jetstream::new(client);
        let stream = js.get_stream_no_info(&cfg.stream).await.ok()?;
        let last = stream
            .get_last_raw_message_by_subject(&cfg.subject())
            .await
            .ok()?;
        cursor_of(&last.payload).ok().map(|c| c + 1)
    };
    tokio::time::timeout(wait, ask).await.ok().flatten()
}

/// The ingest side's publisher: started on the ingest runtime, stopped with [`Publisher::finish`].
pub struct Publisher {
    task: tokio::task::JoinHandle<()>,
    draining: Arc<AtomicBool>,
}

impl Publisher {
    /// Taps `hub` and starts publishing to JetStream (connecting in the background: NATS
    /// may be down now).
    pub async fn start(
        cfg: NatsConfig,
        hub: &Hub,
        stats: Arc<Stats>,
        status: Arc<Status>,
    ) -> Result<Publisher, UpstreamError> {
        let client = connect(&cfg.publish).await?;
        let (tx, rx) = mpsc::channel::<Frames>(cfg.backlog.max(1));
        let st = status.clone();
        let tap = move |f: &Frames| {
            st.unacked.hold(f.log, f.index);
            match tx.try_send(f.clone()) {
                Ok(()) => {
                    st.backlog.fetch_add(1, Relaxed);
                }
                Err(_) => {
                    st.unacked.release(f.log, f.index);
                    st.dropped.fetch_add(1, Relaxed);
                }
            }
        };
        if hub.set_tap(Box::new(tap)).is_err() {
            return Err(UpstreamError::Nats("the hub has a tap already".into()));
        }
        let draining = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(publish_loop(
            cfg,
            client,
            rx,
            stats,
            status,
            draining.clone(),
        ));
        Ok(Publisher { task, draining })
    }

    /// Publishes what is queued (for at most `deadline`), then stops; what is left is
    /// counted as dropped.
    pub async fn finish(self, deadline: Duration) {
        self.draining.store(true, Relaxed);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(deadline, self.task).await.is_err() {
            abort.abort();
        }
    }
}

async fn ensure_stream(
    js: &jetstream::Context,
    cfg: &NatsConfig,
) -> Result<stream::Stream, UpstreamError> {
    js.get_or_create_stream(stream::Config {
        name: cfg.stream.clone(),
        subjects: vec![cfg.subject()],
        max_age: cfg.retention,
        max_bytes: cfg.max_bytes,
        num_replicas: cfg.replicas.max(1),
        duplicate_window: DUPLICATE_WINDOW.min(cfg.retention),
        storage: stream::StorageType::File,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .map_err(nats)
}

/// A certificate on its way to JetStream.
#[derive(Debug)]
struct Outgoing {
    /// The certificate's log and index (for [`Status::unacked`]).
    log: u32,
    index: u64,
    payload: Bytes,
    /// `Nats-Msg-Id`: `<log url>#<index>`.
    id: String,
    /// Times it was sent before (each in a window that failed).
    sends: u32,
}

/// The publisher's certificates between the queue and their acknowledgement, in cursor
/// order: up to `cap` publishes sent and awaiting their acks (`A`), then certificates not
/// sent yet (taken from the queue, or to be sent again).
///
/// Each publish expects the stream's last sequence (`Nats-Expected-Last-Sequence`) to be
/// the one the publish before it gets if stored: the first of a window the sequence just
/// read from the stream, each later one the previous one's plus one. nats-server checks a
/// publish's message id before its expectation (a duplicate is acknowledged, as a
/// duplicate, whatever it expects) and stores nothing that expects another sequence. So
/// once a publish is not stored (refused, lost; or a duplicate, which does not advance the
/// sequence, followed by a new certificate), none sent after it in its window is stored
/// either: the expectations only grow, the stream's sequence does not move. Then the
/// window settles (every ack in flight awaited: [`Window::settled`]), the stream's last
/// sequence is read again ([`Window::learned`]), and the certificates not acknowledged are
/// sent again in order, from the first.
///
/// This holds for what one connection carries to the stream in order (or loses); the
/// model test below checks it with lost publishes, lost connections and lost acks. A
/// publish that reached the stream only after its ack timed out (5 s) and the window was
/// sent again could, in principle, still land after its successors (through another
/// server of a NATS cluster, say); that is not modelled.
struct Window<A> {
    sent: VecDeque<(Outgoing, A)>,
    unsent: VecDeque<Outgoing>,
    /// A publish failed: those in flight settle first, and the certificates not
    /// acknowledged (in order) are sent again after them.
    retry: Option<Vec<Outgoing>>,
    /// The last sequence the next publish expects (`None`: read the stream first).
    next: Option<u64>,
    cap: usize,
}

impl<A> Window<A> {
    fn new(cap: usize) -> Self {
        Window {
            sent: VecDeque::with_capacity(cap.max(1)),
            unsent: VecDeque::new(),
            retry: None,
            next: None,
            cap: cap.max(1),
        }
    }

    /// Certificates not acknowledged yet, sent or not.
    fn len(&self) -> usize {
        self.sent.len() + self.unsent.len() + self.retry.as_ref().map_or(0, Vec::len)
    }

    /// Whether nothing waits in the window to be sent (the next comes from the queue).
    fn wants_more(&self) -> bool {
        self.unsent.is_empty() && self.retry.is_none()
    }

    /// Whether another publish may be sent now.
    fn has_room(&self) -> bool {
        self.sent.len() < self.cap && self.retry.is_none()
    }

    /// Appends a certificate from the queue.
    fn queue(&mut self, o: Outgoing) {
        self.unsent.push_back(o);
    }

    /// The next certificate to send (when there is room) and the last sequence its
    /// publish expects; `None` for the expectation when the stream must be read first.
    fn next(&mut self) -> Option<(Outgoing, Option<u64>)> {
        if !self.has_room() {
            return None;
        }
        let o = self.unsent.pop_front()?;
        Some((o, self.next))
    }

    /// Gives back what [`Window::next`] took, unsent: the stream could not be read.
    fn unsend(&mut self, o: Outgoing) {
        self.unsent.push_front(o);
    }

    /// The stream's last sequence, read with nothing in flight.
    fn learned(&mut self, last_sequence: u64) {
        if self.sent.is_empty() && self.retry.is_none() {
            self.next = Some(last_sequence);
        }
    }

    /// `o` was sent; `ack` is its acknowledgement to come.
    fn sent(&mut self, mut o: Outgoing, ack: A) {
        self.next = self.next.map(|n| n + 1);
        o.sends += 1;
        self.sent.push_back((o, ack));
    }

    /// `o`, from [`Window::next`], could not be sent: as a publish that failed.
    fn not_sent(&mut self, o: Outgoing) {
        // After those in flight that are not acknowledged.
        self.unsent.push_front(o);
        self.retry.get_or_insert_with(Vec::new);
        self.settle();
    }

    /// The oldest publish in flight was answered: stored or found duplicate (`ok`:
    /// returned, acknowledged), or not (kept to be sent again; so is every publish after
    /// it that is not acknowledged).
    fn settled(&mut self, ok: bool) -> Option<Outgoing> {
        let (o, _) = self.sent.pop_front()?;
        let acked = if ok {
            Some(o)
        } else {
            self.retry.get_or_insert_with(Vec::new).push(o);
            None
        };
        self.settle();
        acked
    }

    /// After a failure, once nothing is in flight: what was not acknowledged goes first.
    fn settle(&mut self) {
        if !self.sent.is_empty() {
            return;
        }
        if let Some(retry) = self.retry.take() {
            for o in retry.into_iter().rev() {
                self.unsent.push_front(o);
            }
            self.next = None;
        }
    }

    /// Whether a failure is settling (nothing is sent meanwhile).
    fn failing(&self) -> bool {
        self.retry.is_some()
    }

    /// Everything not acknowledged, out of the window (stopping).
    fn clear(&mut self) -> usize {
        let n = self.len();
        self.sent.clear();
        self.unsent.clear();
        self.retry = None;
        n
    }
}

type AckFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
            > + Send,
    >,
>;

async fn publish_loop(
    cfg: NatsConfig,
    client: async_nats::Client,
    mut rx: mpsc::Receiver<Frames>,
    stats: Arc<Stats>,
    status: Arc<Status>,
    draining: Arc<AtomicBool>,
) {
    use jetstream::context::PublishErrorKind;
    let js = jetstream::new(client.clone());
    let subject = cfg.subject();
    let mut urls: Vec<String> = Vec::new();
    let mut outgoing = |f: Frames| {
        if urls.len() <= f.log as usize {
            urls = stats.logs().iter().map(|l| l.url.clone()).collect();
        }
        let id = match urls.get(f.log as usize) {
            Some(url) => format!("{url}#{}", f.index),
            None => format!("log{}#{}", f.log, f.index),
        };
        Outgoing {
            log: f.log,
            index: f.index,
            payload: encode(&f),
            id,
            sends: 0,
        }
    };
    let mut window: Window<()> = Window::new(cfg.inflight);
    // The acks of the publishes in flight, in the window's order, awaited together (each
    // times out on its own, 5 s after it was sent).
    let mut acks: FuturesOrdered<AckFuture> = FuturesOrdered::new();
    let mut backoff = Backoff::new();
    let mut drain_deadline = None;
    let mut closed = false;
    // Whether a failure (other than a refused expectation) is settling: back off after.
    let mut broken = false;
    // Whether a publish was stored since the last refusal (two refusals in a row back off:
    // another publisher on the stream, say).
    let mut progress = true;
    loop {
        status.inflight.store(window.len() as u64, Relaxed);
        if draining.load(Relaxed) {
            let deadline = *drain_deadline
                .get_or_insert_with(|| tokio::time::Instant::now() + Duration::from_secs(5));
            if tokio::time::Instant::now() > deadline {
                // NATS is not there to take what is left: counted, not lost silently.
                let left = (window.clear() + rx.len()) as u64;
                acks.clear();
                status.unacked.clear();
                status.dropped.fetch_add(left, Relaxed);
                status.inflight.store(0, Relaxed);
                tracing::warn!(dropped = left, "stopping with certificates unpublished");
                return;
            }
        }
        if broken && acks.is_empty() {
            // A failure settled: wait before sending again.
            broken = false;
            backoff.wait().await;
        }
        // Send while there is room: what the window holds first, then the queue.
        while window.has_room() {
            if window.wants_more() {
                match rx.try_recv() {
                    Ok(f) => {
                        status.backlog.fetch_sub(1, Relaxed);
                        window.queue(outgoing(f));
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            let Some((o, expect)) = window.next() else {
                break;
            };
            let expect = match expect {
                Some(n) => n,
                // At the start, and after a failure once nothing is in flight.
                None => match ensure_stream(&js, &cfg).await {
                    Ok(s) => {
                        let last = s.cached_info().state.last_sequence;
                        status.last_sequence.store(last, Relaxed);
                        window.learned(last);
                        last
                    }
                    Err(e) => {
                        window.unsend(o);
                        status.publish_errors.fetch_add(1, Relaxed);
                        status.connected.store(false, Relaxed);
                        tracing::debug!(error = %e, "JetStream stream unavailable; retrying");
                        backoff.wait().await;
                        break;
                    }
                },
            };
            let publish = jetstream::message::PublishMessage::build()
                .payload(o.payload.clone())
                .message_id(&o.id)
                .expected_last_sequence(expect);
            if o.sends > 0 {
                status.resent.fetch_add(1, Relaxed);
            }
            match js.send_publish(subject.clone(), publish).await {
                Ok(ack) => {
                    window.sent(o, ());
                    acks.push_back(std::future::IntoFuture::into_future(ack));
                }
                Err(e) => {
                    window.not_sent(o);
                    if status.publish_errors.fetch_add(1, Relaxed) % 100 == 0 {
                        tracing::warn!(error = %e, backlog = rx.len(), "JetStream publish failed; retrying");
                    }
                    status.connected.store(connected(&client), Relaxed);
                    broken = true;
                    break;
                }
            }
        }
        status.inflight.store(window.len() as u64, Relaxed);
        let room = window.has_room() && window.wants_more() && !closed;
        let deadline = drain_deadline.unwrap_or_else(|| tokio::time::Instant::now() + STALL);
        if acks.is_empty() {
            if window.len() > 0 {
                continue; // not sent: the stream could not be read, retried above
            }
            if closed {
                return;
            }
            match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
                Ok(Some(f)) => {
                    status.backlog.fetch_sub(1, Relaxed);
                    window.queue(outgoing(f));
                }
                Ok(None) => return,
                Err(_) if draining.load(Relaxed) => return,
                Err(_) => status.connected.store(connected(&client), Relaxed),
            }
            continue;
        }
        tokio::select! {
            biased;
            Some(r) = acks.next() => {
                let failing = window.failing();
                match r {
                    Ok(ack) => {
                        if let Some(o) = window.settled(true) {
                            status.unacked.release(o.log, o.index);
                        }
                        status.connected.store(true, Relaxed);
                        if ack.duplicate {
                            status.duplicates.fetch_add(1, Relaxed);
                        } else {
                            status.published.fetch_add(1, Relaxed);
                            status.last_sequence.fetch_max(ack.sequence, Relaxed);
                            progress = true;
                        }
                        if !broken {
                            backoff = Backoff::new();
                        }
                    }
                    Err(e) if matches!(e.kind(), PublishErrorKind::WrongLastSequence) => {
                        // Not stored, nor is anything sent after it: sent again in order.
                        window.settled(false);
                        if !failing {
                            status.mismatches.fetch_add(1, Relaxed);
                            tracing::debug!(error = %e, "the stream's last sequence is not the one expected; sending again from there");
                            if !std::mem::replace(&mut progress, false) {
                                broken = true;
                            }
                        }
                    }
                    Err(e) => {
                        window.settled(false);
                        if !failing {
                            if status.publish_errors.fetch_add(1, Relaxed) % 100 == 0 {
                                tracing::warn!(error = %e, backlog = rx.len(), "JetStream publish failed; retrying");
                            }
                            status.connected.store(connected(&client), Relaxed);
                            broken = true;
                        }
                    }
                }
            },
            f = rx.recv(), if room => match f {
                Some(f) => {
                    status.backlog.fetch_sub(1, Relaxed);
                    window.queue(outgoing(f));
                }
                None => closed = true,
            },
            _ = tokio::time::sleep_until(deadline), if drain_deadline.is_some() => {}
        }
    }
}

/// A client's request for cursors `from..=to`.
#[derive(Debug)]
struct ReplayRequest {
    from: u64,
    to: u64,
    reply: oneshot::Sender<Replayed>,
}

/// Frames served from JetStream to one resuming client.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Cursors after `since` that JetStream no longer has either: `(from, to)`.
    pub gap: Option<(u64, u64)>,
    /// The certificates, in cursor order.
    pub frames: Vec<Frames>,
    /// The last cursor sent (0 for none).
    pub last: u64,
}

/// Edge node: consumes the stream into `hub` until `stop`; serves replays meanwhile.
pub async fn run_edge(
    cfg: NatsConfig,
    hub: Arc<Hub>,
    status: Arc<Status>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), UpstreamError> {
    let client = connect(&cfg.upstream).await?;
    let js = jetstream::new(client.clone());
    let (tx, rx) = mpsc::channel(64);
    let _ = status.replay.set(tx);
    let replayer = tokio::spawn(replay_loop(
        js.clone(),
        cfg.stream.clone(),
        rx,
        status.clone(),
    ));
    let watcher = tokio::spawn(watch_stream(
        js.clone(),
        client.clone(),
        cfg.stream.clone(),
        status.clone(),
    ));
    let mut backoff = Backoff::new();
    while !*stop.borrow() {
        let run = consume(&cfg, &js, &hub, &status, &mut backoff);
        tokio::select! {
            r = run => {
                if let Err(e) = r {
                    status.consumer_restarts.fetch_add(1, Relaxed);
                    tracing::warn!(error = %e, "upstream consumer lost; restarting it");
                }
                backoff.wait().await;
            }
            _ = stop.changed() => {}
        }
    }
    replayer.abort();
    watcher.abort();
    Ok(())
}

/// Keeps the stream's last sequence (for the lag) and the connection state current.
async fn watch_stream(
    js: jetstream::Context,
    client: async_nats::Client,
    name: String,
    status: Arc<Status>,
) {
    loop {
        if let Ok(s) = js.get_stream_no_info(&name).await {
            if let Ok(info) = s.get_info().await {
                status
                    .last_sequence
                    .fetch_max(info.state.last_sequence, Relaxed);
            }
        }
        status.connected.store(connected(&client), Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One consumer's life: from where the hub is, until an error.
async fn consume(
    cfg: &NatsConfig,
    js: &jetstream::Context,
    hub: &Hub,
    status: &Status,
    backoff: &mut Backoff,
) -> Result<(), UpstreamError> {
    let stream = js.get_stream(&cfg.stream).await.map_err(nats)?;
    let state = &stream.cached_info().state;
    status.last_sequence.fetch_max(state.last_sequence, Relaxed);
    let fed = status.consumed_sequence.load(Relaxed);
    let start = if fed > 0 {
        fed + 1
    } else {
        (state.last_sequence + 1)
            .saturating_sub(cfg.backfill)
            .max(state.first_sequence)
            .max(1)
    };
    tracing::info!(stream = %cfg.stream, start_sequence = start, "consuming upstream");
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ..Default::default()
        })
        .await
        .map_err(nats)?;
    let mut messages = consumer.messages().await.map_err(nats)?;
    loop {
        // A consumer on a NATS node that died can stay silent: while the stream (as the
        // watcher sees it) is ahead of what came, two quiet seconds mean a new consumer.
        let m = match tokio::time::timeout(STALL, messages.next()).await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(_) if status.lag() > 0 => {
                return Err(UpstreamError::Nats("the consumer stalled".into()))
            }
            Err(_) => continue,
        };
        let m = m.map_err(nats)?;
        *backoff = Backoff::new();
        let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
        match decode(m.message.payload.clone()) {
            Ok(f) => {
                // Catching up must not overrun the cores' rings: wait (a little) for room.
                for _ in 0..100 {
                    if hub.room() > 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                if hub.publish_stamped(f) {
                    status.consumed.fetch_add(1, Relaxed);
                } else {
                    status.skipped.fetch_add(1, Relaxed);
                }
            }
            Err(e) => {
                status.malformed.fetch_add(1, Relaxed);
                tracing::warn!(sequence = seq, error = %e, "skipping an upstream message");
            }
        }
        status.consumed_sequence.fetch_max(seq, Relaxed);
        status.last_sequence.fetch_max(seq, Relaxed);
    }
    Err(UpstreamError::Nats("the consumer ended".into()))
}

async fn replay_loop(
    js: jetstream::Context,
    name: String,
    mut rx: mpsc::Receiver<ReplayRequest>,
    status: Arc<Status>,
) {
    while let Some(req) = rx.recv().await {
        let r = match replay(&js, &name, req.from, req.to).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, from = req.from, to = req.to, "replay from JetStream failed");
                Replayed {
                    gap: Some((req.from, req.to)),
                    ..Replayed::default()
                }
            }
        };
        status.replays.fetch_add(1, Relaxed);
        status.replayed.fetch_add(r.frames.len() as u64, Relaxed);
        let _ = req.reply.send(r);
    }
}

/// Cursors `from..=to` from JetStream.
async fn replay(
    js: &jetstream::Context,
    name: &str,
    from: u64,
    to: u64,
) -> Result<Replayed, UpstreamError> {
    let stream = js.get_stream(name).await.map_err(nats)?;
    let state = &stream.cached_info().state;
    let (first, last) = (state.first_sequence, state.last_sequence);
    let mut out = Replayed::default();
    if state.messages == 0 || last < first {
        out.gap = Some((from, to));
        return Ok(out);
    }
    // The first sequence whose cursor is `from` or more (cursors grow with sequences).
    let (mut lo, mut hi) = (first, last + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let m = stream.get_raw_message(mid).await.map_err(nats)?;
        if cursor_of(&m.payload)? < from {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if lo > last {
        out.gap = Some((from, to));
        return Ok(out);
    }
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: lo },
            ..Default::default()
        })
        .await
        .map_err(nats)?;
    let mut messages = consumer.messages().await.map_err(nats)?;
    let mut seq = lo;
    while seq <= last && out.frames.len() < REPLAY_MAX {
        let Some(m) = messages.next().await else {
            break;
        };
        let m = m.map_err(nats)?;
        seq = m.info().map(|i| i.stream_sequence).unwrap_or(seq) + 1;
        let f = decode(m.message.payload.clone())?;
        if f.cursor > to {
            break;
        }
        if out.frames.is_empty() && f.cursor > from {
            out.gap = Some((from, f.cursor - 1));
        }
        out.last = f.cursor;
        out.frames.push(f);
    }
    if out.frames.is_empty() && out.gap.is_none() {
        out.gap = Some((from, to));
    }
    Ok(out)
}

/// Where a resuming client starts, and what it is sent first: when `start` has a gap and
/// this is an edge, the gap's certificates from JetStream that `pick` keeps (the client's
/// stream variant, when its filter wants it), then the core's log after the last of them
/// (`gap_message` makes the notice of what neither has).
pub async fn fill_gap(
    status: &Status,
    log: &RefCell<StreamLog>,
    start: Resume,
    pick: impl Fn(&Frames) -> Option<Bytes>,
    gap_message: fn(u64, u64) -> Bytes,
) -> (Resume, Vec<Bytes>) {
    // An edge's core may not hold anything yet (just started, the stream still on its way
    // from NATS): then everything after `since` comes from JetStream.
    let gap = match start.gap {
        None if start.min_cursor > 0 && log.borrow().is_empty() => {
            Some((start.min_cursor, u64::MAX))
        }
        gap => gap,
    };
    let (Some((from, to)), Some(tx)) = (gap, status.replay.get()) else {
        let first = start
            .gap
            .map(|(f, t)| gap_message(f, t))
            .into_iter()
            .collect();
        return (Resume { gap: None, ..start }, first);
    };
    tracing::info!(from, to, "resuming a client from JetStream");
    let (reply, answer) = oneshot::channel();
    let asked = tx.try_send(ReplayRequest { from, to, reply });
    // Polled, not awaited: a serving core's (monoio) waker must not be woken from the
    // ingest thread. A replay is rare and takes milliseconds at least.
    let mut answer = answer;
    let replayed = match asked {
        Ok(()) => loop {
            match answer.try_recv() {
                Ok(r) => break r,
                Err(oneshot::error::TryRecvError::Empty) => {
                    monoio::time::sleep(Duration::from_millis(2)).await
                }
                Err(oneshot::error::TryRecvError::Closed) => break Replayed::default(),
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "no replay from JetStream");
            Replayed::default()
        }
    };
    let mut first = Vec::with_capacity(replayed.frames.len() + 2);
    if let Some((f, t)) = replayed.gap.filter(|&(_, t)| t != u64::MAX) {
        first.push(gap_message(f, t));
    }
    first.extend(replayed.frames.iter().filter_map(pick));
    let since = match replayed.last {
        0 if to == u64::MAX => from - 1,
        0 => to,
        last => last,
    };
    // The log may have moved on while JetStream answered: resume again after what was sent.
    let again = log.borrow().resume(since);
    if let Some((f, t)) = again.gap {
        first.push(gap_message(f, t));
    }
    (Resume { gap: None, ..again }, first)
}

/// `/stats`' `upstream` object.
pub fn write_stats(out: &mut String, s: &Status) {
    use std::fmt::Write as _;
    let mut servers = Vec::new();
    certstream_engine::json::write_str(&mut servers, &s.servers);
    let mut stream = Vec::new();
    certstream_engine::json::write_str(&mut stream, &s.stream);
    let _ = write!(
        out,
        "{{\"role\":\"{}\",\"servers\":{},\"stream\":{},\"connected\":{},\"last_sequence\":{},\"lag\":{},\"published\":{},\"duplicates\":{},\"publish_errors\":{},\"backlog\":{},\"dropped\":{},\"inflight\":{},\"mismatches\":{},\"resent\":{},\"consumed\":{},\"consumed_sequence\":{},\"skipped\":{},\"malformed\":{},\"consumer_restarts\":{},\"replays\":{},\"replayed\":{}}}",
        s.role.name(),
        String::from_utf8_lossy(&servers),
        String::from_utf8_lossy(&stream),
        s.connected.load(Relaxed),
        s.last_sequence.load(Relaxed),
        s.lag(),
        s.published.load(Relaxed),
        s.duplicates.load(Relaxed),
        s.publish_errors.load(Relaxed),
        s.backlog.load(Relaxed),
        s.dropped.load(Relaxed),
        s.inflight.load(Relaxed),
        s.mismatches.load(Relaxed),
        s.resent.load(Relaxed),
        s.consumed.load(Relaxed),
        s.consumed_sequence.load(Relaxed),
        s.skipped.load(Relaxed),
        s.malformed.load(Relaxed),
        s.consumer_restarts.load(Relaxed),
        s.replays.load(Relaxed),
        s.replayed.load(Relaxed),
    );
}

/// `/metrics`' NATS samples: `(name, kind, help, value)`; none on a single node.
pub fn metrics(s: &Status) -> Vec<(&'static str, &'static str, &'static str, u64)> {
    let v = |a: &AtomicU64| a.load(Relaxed);
    match s.role {
        Role::Single => Vec::new(),
        Role::Ingest => vec![
            (
                "nats_connected",
                "gauge",
                "1 while connected to NATS.",
                s.connected.load(Relaxed) as u64,
            ),
            (
                "nats_last_sequence",
                "gauge",
                "The stream's last sequence, as last acknowledged.",
                v(&s.last_sequence),
            ),
            (
                "nats_published_total",
                "counter",
                "Certificates acknowledged by JetStream.",
                v(&s.published),
            ),
            (
                "nats_duplicates_total",
                "counter",
                "Publishes JetStream found duplicate (message id seen).",
                v(&s.duplicates),
            ),
            (
                "nats_publish_errors_total",
                "counter",
                "Failed publish attempts (each retried).",
                v(&s.publish_errors),
            ),
            (
                "nats_backlog",
                "gauge",
                "Certificates waiting to be published.",
                v(&s.backlog),
            ),
            (
                "nats_dropped_total",
                "counter",
                "Certificates never published (backlog full, or left at shutdown).",
                v(&s.dropped),
            ),
            (
                "nats_inflight",
                "gauge",
                "Certificates taken from the backlog and not acknowledged yet.",
                v(&s.inflight),
            ),
            (
                "nats_publish_mismatches_total",
                "counter",
                "Publishes refused as out of order (stream's last message not the one expected; sent again).",
                v(&s.mismatches),
            ),
            (
                "nats_resent_total",
                "counter",
                "Publishes sent again after a failure before them in their window.",
                v(&s.resent),
            ),
        ],
        Role::Edge => vec![
            (
                "nats_connected",
                "gauge",
                "1 while connected to NATS.",
                s.connected.load(Relaxed) as u64,
            ),
            (
                "nats_last_sequence",
                "gauge",
                "The stream's last sequence.",
                v(&s.last_sequence),
            ),
            (
                "nats_lag",
                "gauge",
                "Stream messages not yet fed to the cores.",
                s.lag(),
            ),
            (
                "nats_consumed_total",
                "counter",
                "Certificates consumed into the hub.",
                v(&s.consumed),
            ),
            (
                "nats_skipped_total",
                "counter",
                "Upstream certificates skipped (cursor already seen).",
                v(&s.skipped),
            ),
            (
                "nats_malformed_total",
                "counter",
                "Upstream messages that did not decode.",
                v(&s.malformed),
            ),
            (
                "nats_consumer_restarts_total",
                "counter",
                "Times the upstream consumer was recreated.",
                v(&s.consumer_restarts),
            ),
            (
                "nats_replays_total",
                "counter",
                "Resuming clients served from JetStream.",
                v(&s.replays),
            ),
            (
                "nats_replayed_total",
                "counter",
                "Certificates sent to resuming clients from JetStream.",
                v(&s.replayed),
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certstream_engine::frame::Draft;

    fn frames(cursor: u64) -> Frames {
        let mut d = Draft::new(3, 77, [8, 8, 8]);
        for (i, b) in d.bodies().into_iter().enumerate() {
            b.extend(format!("\"data\":{}}}", "x".repeat(i * 100)).as_bytes());
        }
        d.names = vec![
            Box::from("example.com"),
            Box::from("*.xn--bcher-kva.example"),
        ]
        .into();
        let mut f = d.stamp(cursor);
        f.duplicate = true;
        f
    }

    #[test]
    fn a_message_carries_the_frames_byte_for_byte() {
        let f = frames(123_456);
        let m = encode(&f);
        assert_eq!(m.len(), HEADER + f.len() + 2 + 11 + 2 + 23);
        assert_eq!(cursor_of(&m).unwrap(), 123_456);
        let g = decode(m.clone()).unwrap();
        assert_eq!((g.cursor, g.log, g.index), (123_456, 3, 77));
        assert_eq!(
            (&g.lite, &g.full, &g.domains),
            (&f.lite, &f.full, &f.domains)
        );
        // The edges filter and dedup as the ingest would.
        assert_eq!(g.names, f.names);
        assert!(g.duplicate);
        let mut plain = frames(1);
        plain.duplicate = false;
        plain.names = Vec::new().into();
        let p = decode(encode(&plain)).unwrap();
        assert!(!p.duplicate && p.names.is_empty());
        // Sliced out of the message, not copied.
        let at = HEADER + f.lite.len() + f.full.len();
        assert_eq!(g.domains.as_ptr(), m[at..].as_ptr());
    }

    #[test]
    fn malformed_messages_are_refused() {
        let m = encode(&frames(1));
        assert!(decode(Bytes::new()).is_err());
        assert!(decode(m.slice(..m.len() - 1)).is_err());
        let mut v = m.to_vec();
        v[0] = 1; // the version before names
        assert!(decode(Bytes::from(v)).is_err());
        let mut v = m.to_vec();
        v[HEADER] = 0x82; // a binary frame
        assert!(decode(Bytes::from(v)).is_err());
        let mut v = m.to_vec();
        v[23] = 0xff; // lengths beyond the message
        assert!(decode(Bytes::from(v)).is_err());
        let mut v = m.to_vec();
        let last_name = v.len() - 23 - 2;
        v[last_name] = 200; // a name longer than what is left
        assert!(decode(Bytes::from(v)).is_err());
    }

    #[test]
    fn the_role_follows_the_options() {
        let mut c = NatsConfig::default();
        assert_eq!(c.role(), Role::Single);
        c.publish = vec!["nats://127.0.0.1:4222".into()];
        assert_eq!(c.role(), Role::Ingest);
        c.upstream = c.publish.clone();
        assert_eq!(c.role(), Role::Edge);
        assert_eq!(Status::new(&c).servers, "nats://127.0.0.1:4222");
    }

    fn out(id: &str) -> Outgoing {
        Outgoing {
            log: 0,
            index: 0,
            payload: Bytes::new(),
            id: id.into(),
            sends: 0,
        }
    }

    #[test]
    fn a_window_settles_a_failure_and_sends_again_from_the_first_not_acknowledged() {
        let mut w: Window<()> = Window::new(3);
        for id in ["a", "b", "c", "d", "e"] {
            w.queue(out(id));
        }
        // Nothing known of the stream yet: read it first.
        let (a, e) = w.next().unwrap();
        assert_eq!(e, None);
        w.learned(7);
        w.sent(a, ());
        for want in [8, 9] {
            let (o, e) = w.next().unwrap();
            assert_eq!(e, Some(want));
            w.sent(o, ());
        }
        assert!(!w.has_room() && w.next().is_none());
        assert_eq!(w.len(), 5);
        assert_eq!(w.settled(true).unwrap().id, "a");
        // b fails; c is acknowledged anyway (b was stored, its ack lost): nothing is sent
        // until both settled, then b goes again, then d, after the stream is read again.
        assert!(w.settled(false).is_none());
        assert!(w.failing() && !w.has_room() && w.next().is_none());
        w.learned(99); // ignored: c is in flight
        assert_eq!(w.settled(true).unwrap().id, "c");
        assert!(!w.failing());
        let (b, e) = w.next().unwrap();
        assert_eq!((b.id.as_str(), b.sends, e), ("b", 1, None));
        w.unsend(b); // the stream could not be read: b stays first
        let (b, _) = w.next().unwrap();
        w.learned(9);
        w.sent(b, ());
        let (d, e) = w.next().unwrap();
        assert_eq!((d.id.as_str(), e), ("d", Some(10)));
        // d cannot be sent: settles once b has.
        w.not_sent(d);
        assert!(w.failing());
        assert!(w.settled(false).is_none());
        let order: Vec<String> =
            std::iter::from_fn(|| w.unsent.pop_front().map(|o| o.id)).collect();
        assert_eq!(order, ["b", "d", "e"]);
        w.queue(out("f"));
        assert_eq!(w.clear(), 1);
    }

    /// nats-server's checks in its order (stream.go, processJetStreamMsg): the duplicate
    /// window first (a duplicate's ack carries the sequence it was stored at), then the
    /// expected last sequence.
    #[derive(Default)]
    struct Model {
        stream: Vec<String>,
        ids: std::collections::HashMap<String, u64>,
    }

    impl Model {
        fn publish(&mut self, (id, expect): &(String, u64)) -> Result<bool, ()> {
            if self.ids.contains_key(id) {
                return Ok(true);
            }
            if *expect != self.stream.len() as u64 {
                return Err(());
            }
            self.stream.push(id.clone());
            self.ids.insert(id.clone(), self.stream.len() as u64);
            Ok(false)
        }
    }

    /// The window against a model JetStream over one connection that loses publishes
    /// (and every one after them for a while: a connection lost), loses acks, and answers
    /// too late: the stream ends with what it had, then every other certificate once, in
    /// queue order.
    #[test]
    fn whatever_the_connection_does_the_stream_keeps_queue_order() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..500 {
            let ids: Vec<String> = (0..200).map(|i| format!("log#{i}")).collect();
            // A previous run stored some of the first ones (an ingest fetching them again
            // after a crash): duplicates, mixed with new certificates.
            let mut js = Model::default();
            let prefix = rand(80) as usize;
            for id in &ids[..prefix] {
                if rand(3) > 0 {
                    let n = js.stream.len() as u64;
                    js.publish(&(id.clone(), n)).unwrap();
                }
            }
            let before = js.stream.clone();
            let mut w: Window<usize> = Window::new(1 + rand(32) as usize);
            for id in &ids {
                w.queue(out(id));
            }
            let mut packets: Vec<(String, u64)> = Vec::new();
            // In order on the wire; answers, `None` for one lost or not in time.
            let mut wire: VecDeque<usize> = VecDeque::new();
            let mut answers: Vec<Option<Result<bool, ()>>> = Vec::new();
            let mut down = 0;
            let mut stored = 0;
            for _ in 0..1_000_000 {
                if w.len() == 0 {
                    break;
                }
                while let Some((o, e)) = w.next() {
                    let e = e.unwrap_or_else(|| {
                        let n = js.stream.len() as u64;
                        w.learned(n);
                        n
                    });
                    packets.push((o.id.clone(), e));
                    answers.push(None);
                    wire.push_back(packets.len() - 1);
                    w.sent(o, packets.len() - 1);
                }
                // The server takes what is on the wire in order, up to the awaited one.
                let front = w.sent.front().unwrap().1;
                while let Some(p) = wire.pop_front() {
                    if down > 0 {
                        down -= 1; // lost with the connection
                    } else {
                        match rand(40) {
                            0 => down = rand(40), // the connection is lost
                            1 => {
                                let _ = js.publish(&packets[p]); // the ack is lost
                            }
                            _ => answers[p] = Some(js.publish(&packets[p])),
                        }
                    }
                    if p == front {
                        break;
                    }
                }
                let ok = matches!(answers[front], Some(Ok(_)));
                if let Some(o) = w.settled(ok) {
                    stored += (answers[front] == Some(Ok(false))) as usize;
                    assert!(packets[front].0 == o.id);
                }
            }
            assert_eq!(w.len(), 0, "round {round}: no end");
            let mut want = before.clone();
            want.extend(ids.iter().filter(|id| !before.contains(id)).cloned());
            assert_eq!(js.stream, want, "round {round}");
            assert!(stored <= want.len() - before.len());
        }
    }
}
