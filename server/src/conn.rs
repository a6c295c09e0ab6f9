//! One websocket client: its position in the core's stream log and its partial-write state,
//! its writer (ours: vectored writes of the shared frames) and its reader (fastwebsockets:
//! pings, closes, masking and size limits).
//!
//! # Slow clients
//! A connection holds no queue of frames: only its position in the core's
//! [`StreamLog`], which the core appends to and never waits on. A client that cannot keep up
//! falls behind in the log; once the log has evicted its position, it skips to the oldest
//! certificate still held, and the frames it skipped are counted (per connection and in
//! `/metrics`): it loses old messages, never new ones, and never slows anyone else down. A
//! client that has been skipping frames without once catching up with the head for
//! `slow_client_timeout` is closed with 1008 and a reason; if even the close frame cannot be
//! written within a grace period, the socket is shut down.
//!
//! # Writes
//! The writer takes its control frames (pongs, heartbeats, a gap notice, a close) and then
//! the log's frames from its position towards the head, up to [`MAX_BATCH`], and hands the
//! kernel one `writev` whose iovecs point straight into the shared `Bytes`: no copy and no
//! per-client encoding. The core wakes writers once per coalescing tick, so a busy client
//! gets several frames per system call.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use certstream_engine::frame::{self, OP_CLOSE, OP_PONG};
use fastwebsockets::{OpCode, Role, WebSocketError};
use monoio::buf::IoVecBuf;
use monoio::io::AsyncWriteRent;

use crate::deflate::{self, Inflate, Seen, SeenQueue};
use crate::filter::Subscription;
use crate::http::StreamKind;
use crate::shared::CoreCounters;
use crate::stream_log::{Resume, StreamLog};
use crate::wire::{self, Wire};

/// Most frames one `writev` carries (Linux allows 1,024 iovecs). 64 lite frames are ~180 KB,
/// more than a socket buffer takes at once. A write the kernel took only part of is followed
/// by one that carries just the frame in progress ([`FrameBatch::keep_started`]), so a client
/// whose socket is full holds one frame while it waits, not a batch beside the core's log.
pub const MAX_BATCH: usize = 64;

/// What a batch holds room for while a client keeps up: at 500 certificates/s a client gets
/// two or three frames per 5 ms tick.
const SMALL_BATCH: usize = 8;

/// A single-task wake-up flag (everything on a core is single-threaded).
#[derive(Debug, Default)]
pub struct Notify {
    flag: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    /// Wakes the waiter (or lets the next wait return at once).
    pub fn notify(&self) {
        self.flag.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Waits for a notification.
    pub async fn notified(&self) {
        poll_fn(|cx| {
            if self.flag.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// Frames of one `writev`: the `Bytes` are kept alive by the batch itself while the kernel
/// reads them through `iov[start..]`.
///
/// Partial writes are tracked here ([`FrameBatch::consume`]) rather than with monoio 0.2.4's
/// `write_vectored_all`, whose `IoVecMeta` neither advances the base of a partly written
/// iovec nor shortens the iovec count after whole ones (it resent bytes and, once past the
/// first iovec, handed the kernel iovecs beyond the array: `EFAULT`).
pub struct FrameBatch {
    frames: Vec<Bytes>,
    iov: Vec<libc::iovec>,
    /// For each frame from the log, the client's position after it; [`NOT_LOGGED`] for a
    /// control frame (or a close).
    after: Vec<u64>,
    /// The client's position after the batch was gathered.
    to: u64,
    start: usize,
}

/// [`FrameBatch::after`] of a frame that is not from the log.
const NOT_LOGGED: u64 = u64::MAX;

impl FrameBatch {
    /// A batch sized for a caught-up client (a few frames per tick); it grows to
    /// [`MAX_BATCH`] while a client catches up and shrinks back once it has.
    fn new() -> Self {
        FrameBatch {
            frames: Vec::with_capacity(SMALL_BATCH),
            iov: Vec::with_capacity(SMALL_BATCH),
            after: Vec::with_capacity(SMALL_BATCH),
            to: 0,
            start: 0,
        }
    }

    /// Gives back what a burst grew the batch to, once batches are small again.
    fn shrink_if_idle(&mut self, last_len: usize) {
        if last_len <= SMALL_BATCH && self.frames.capacity() > SMALL_BATCH {
            self.shrink();
        }
    }

    fn shrink(&mut self) {
        self.frames.shrink_to(SMALL_BATCH);
        self.iov.shrink_to(SMALL_BATCH);
        self.after.shrink_to(SMALL_BATCH);
    }

    /// After a write the kernel took only part of (the client's socket is full): keeps only
    /// the frame in progress (the first not wholly written) and drops the log's frames
    /// after it from the batch; returns the position to go on from, the first of them (they
    /// stay in the core's log), or `None` when nothing was dropped. A
    /// batch with a control frame after the one in progress is left whole (control frames
    /// are queued once; they are small and rare).
    fn keep_started(&mut self) -> Option<u64> {
        let keep = self.start + 1;
        if keep >= self.frames.len() || self.after[keep..].contains(&NOT_LOGGED) {
            return None;
        }
        let resume = self.after[keep] - 1;
        self.frames.truncate(keep);
        self.iov.truncate(keep);
        self.after.truncate(keep);
        self.shrink();
        Some(resume)
    }

    /// Bytes still to write.
    fn remaining(&self) -> usize {
        self.iov[self.start..].iter().map(|v| v.iov_len).sum()
    }

    /// Marks `n` more bytes as written.
    fn consume(&mut self, mut n: usize) {
        while n > 0 && self.start < self.iov.len() {
            let v = &mut self.iov[self.start];
            if n >= v.iov_len {
                n -= v.iov_len;
                self.start += 1;
            } else {
                v.iov_base = (v.iov_base as *mut u8).wrapping_add(n) as *mut libc::c_void;
                v.iov_len -= n;
                n = 0;
            }
        }
    }

    /// Adds a control frame (or a close).
    fn push(&mut self, b: Bytes) {
        self.push_at(b, NOT_LOGGED);
    }

    /// Adds a frame from the log, after which the client's position is `after`.
    fn push_at(&mut self, b: Bytes, after: u64) {
        self.iov.push(libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        });
        self.frames.push(b);
        self.after.push(after);
    }

    fn clear(&mut self) {
        self.iov.clear();
        self.frames.clear();
        self.after.clear();
        self.start = 0;
    }

    fn len(&self) -> usize {
        self.frames.len()
    }
}

// SAFETY: every iovec in `iov[start..]` points inside the heap bytes of a `Bytes` held in
// `frames` of the same batch (`consume` only moves a base forward within its iovec's
// length). `Bytes` never moves or frees its data while a handle exists, and the batch is
// only changed through `push`/`consume`/`clear`, which the writer calls only while it owns
// it (never while monoio holds it for a write). So the pointers and the count stay valid for
// as long as the batch lives, which is what `IoVecBuf` requires.
unsafe impl IoVecBuf for FrameBatch {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iov[self.start..].as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iov.len() - self.start
    }
}

/// A websocket client's state, shared by its reader, its writer and its core.
#[derive(Debug)]
pub struct Conn {
    pub kind: StreamKind,
    /// The form its messages take on the wire (websocket, deflated, SSE).
    pub wire: Wire,
    pub peer: SocketAddr,
    fd: RawFd,
    /// The position of the next certificate to send, in the core's stream log.
    next_seq: Cell<u64>,
    /// Certificates with a smaller cursor are not sent (a resumed client has them).
    min_cursor: Cell<u64>,
    control: RefCell<VecDeque<Bytes>>,
    /// Frames this client skipped because its position fell off the log's tail.
    pub dropped: Cell<u64>,
    behind_since: Cell<Option<Instant>>,
    closing: Cell<Option<Instant>>,
    /// The code of the close frame queued, once one is.
    close_code: Cell<Option<u16>>,
    /// A close frame (and its code) to send once the client has everything up to the head
    /// (shutdown).
    close_at_head: RefCell<Option<(u16, Bytes)>>,
    dead: Cell<bool>,
    reader_done: Cell<bool>,
    wake: Notify,
    reader_wake: Notify,
    /// Its filters and dedup, when it asked for any (`None`: everything).
    pub sub: Option<Subscription>,
}

impl Conn {
    /// The same client with a subscription: only what it asked for is sent.
    pub fn with_subscription(mut self, sub: Option<Subscription>) -> Self {
        self.sub = sub;
        self
    }

    /// A filtered client at `from` that matched none of the certificates up to `to` moves to
    /// `to` (the core knows it wants none of them).
    pub fn pass_over(&self, from: u64, to: u64) {
        if self.next_seq.get() == from {
            self.next_seq.set(to);
        }
    }

    /// Whether this client only takes certificates its filter matched.
    pub fn filtered(&self) -> Option<u32> {
        self.sub
            .as_ref()
            .and_then(|s| s.filter.as_ref().map(|_| s.id))
    }

    /// A client of stream `kind` that starts at `start` in its core's log; a gap in the
    /// start is announced first, with a `gap` message.
    pub fn new(kind: StreamKind, peer: SocketAddr, fd: RawFd, start: Resume) -> Self {
        Conn::with_wire(kind, Wire::Ws, peer, fd, start)
    }

    /// A client whose messages take the form `wire`.
    pub fn with_wire(
        kind: StreamKind,
        wire: Wire,
        peer: SocketAddr,
        fd: RawFd,
        start: Resume,
    ) -> Self {
        let control = match start.gap {
            Some((from, to)) => VecDeque::from([wire.message(&gap_json(from, to))]),
            None => VecDeque::new(),
        };
        Conn {
            kind,
            wire,
            peer,
            fd,
            next_seq: Cell::new(start.seq),
            min_cursor: Cell::new(start.min_cursor),
            control: RefCell::new(control),
            dropped: Cell::new(0),
            behind_since: Cell::new(None),
            closing: Cell::new(None),
            close_code: Cell::new(None),
            close_at_head: RefCell::new(None),
            dead: Cell::new(false),
            reader_done: Cell::new(false),
            wake: Notify::default(),
            reader_wake: Notify::default(),
            sub: None,
        }
    }

    /// Whether the connection is finished (its writer has exited).
    pub fn is_dead(&self) -> bool {
        self.dead.get()
    }

    /// Wakes the writer (after the log grew, or a control frame was queued).
    pub fn wake(&self) {
        self.wake.notify();
    }

    /// Queues a control frame (or a heartbeat message), written before the log's frames.
    pub fn push_control(&self, frame: Bytes) {
        if self.close_code.get().is_some() {
            return;
        }
        self.control.borrow_mut().push_back(frame);
        self.wake.notify();
    }

    /// Queues the pong answering a client's ping. While an earlier pong still waits to be
    /// written it is replaced, so only the latest ping is answered (RFC 6455 §5.5.3 allows
    /// it): a client that sends pings and never reads cannot grow the control queue.
    pub fn push_pong(&self, payload: &[u8]) {
        if self.close_code.get().is_some() {
            return;
        }
        let pong = frame::frame(OP_PONG, payload);
        {
            let mut control = self.control.borrow_mut();
            match control
                .iter_mut()
                .find(|f| f.first() == Some(&(0x80 | OP_PONG)))
            {
                Some(queued) => *queued = pong,
                None => control.push_back(pong),
            }
        }
        self.wake.notify();
    }

    /// Starts closing: nothing more from the log, a close frame queued, the writer woken.
    pub fn close(&self, code: u16, reason: &str) {
        if self.closing.get().is_some() {
            return;
        }
        self.closing.set(Some(Instant::now()));
        self.control
            .borrow_mut()
            .push_back(self.close_frame(code, reason));
        self.close_code.set(Some(code));
        self.wake.notify();
    }

    /// Closes once the client has been sent everything the log holds (graceful shutdown).
    pub fn close_at_head(&self, code: u16, reason: &str) {
        if self.closing.get().is_some() {
            return;
        }
        self.closing.set(Some(Instant::now()));
        *self.close_at_head.borrow_mut() = Some((code, self.close_frame(code, reason)));
        self.wake.notify();
    }

    /// A close frame, or for an SSE client a comment line with the reason (the stream then
    /// ends).
    fn close_frame(&self, code: u16, reason: &str) -> Bytes {
        match self.wire {
            Wire::Sse => wire::sse_comment(&format!("closed ({code}): {reason}")),
            _ => close_frame(code, reason),
        }
    }

    /// Marks the client's read side finished (it went away); the writer then ends.
    pub fn end_reading(&self) {
        self.reader_done.set(true);
        self.reader_wake.notify();
        self.wake.notify();
    }

    /// The code of the close frame queued for this client, once closing started.
    pub fn close_code(&self) -> Option<u16> {
        self.close_code.get()
    }

    /// How long this client has been skipping frames without catching up.
    pub fn behind_for(&self, now: Instant) -> Option<Duration> {
        self.behind_since.get().map(|t| now.duration_since(t))
    }

    /// How long ago closing started.
    pub fn closing_for(&self, now: Instant) -> Option<Duration> {
        self.closing.get().map(|t| now.duration_since(t))
    }

    /// Shuts the socket down in both directions: a pending write or read fails at once.
    pub fn kill(&self) {
        if self.dead.get() {
            return;
        }
        // SAFETY: `fd` is the writer's socket; the writer owns (its half of) the stream until
        // it sets `dead`, and everything here runs on one thread, so while `dead` is false the
        // fd is open and still this connection's. `shutdown` only changes the socket's state.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RDWR);
        }
    }

    /// When this client's position fell off the log's tail (`tail_seq`), moves it to the
    /// tail, counts the frames skipped and marks the client behind; returns how many. The
    /// writer calls it before each write, and the core's sweep for writers stuck in one.
    pub fn skip_to_tail(&self, tail_seq: u64) -> u64 {
        let skipped = tail_seq.saturating_sub(self.next_seq.get());
        if skipped > 0 {
            self.next_seq.set(tail_seq);
            self.dropped.set(self.dropped.get() + skipped);
            if self.behind_since.get().is_none() {
                self.behind_since.set(Some(Instant::now()));
            }
        }
        skipped
    }

    /// After a partial write, gives the frames of `batch` not yet started back to the log
    /// ([`FrameBatch::keep_started`]): the position moves back to the first of them. Not when
    /// the position moved while the batch was written (the core's sweep skipped this client
    /// to the tail, or passed a filtered one over): then the batch is written whole.
    fn hold_less(&self, batch: &mut FrameBatch) {
        if self.next_seq.get() != batch.to {
            return;
        }
        if let Some(resume) = batch.keep_started() {
            self.next_seq.set(resume);
        }
    }

    /// Fills `batch` with the control frames and then the log's frames from this client's
    /// position on (at most [`MAX_BATCH`]), advancing the position. Returns the frames
    /// skipped because the position had fallen off the log's tail.
    fn gather(&self, log: &StreamLog, batch: &mut FrameBatch) -> u64 {
        {
            let mut control = self.control.borrow_mut();
            while batch.len() < MAX_BATCH {
                match control.pop_front() {
                    Some(f) => batch.push(f),
                    None => break,
                }
            }
        }
        if self.close_code.get().is_some() {
            return 0;
        }
        let skipped = self.skip_to_tail(log.tail_seq());
        let mut seq = self.next_seq.get();
        let (min, kind, wire) = (self.min_cursor.get(), self.kind, self.wire);
        while batch.len() < MAX_BATCH {
            let Some(f) = log.get(seq) else { break };
            let wanted = match &self.sub {
                None => true,
                Some(sub) => sub.wants(seq, f, log.matched(seq)),
            };
            if f.cursor >= min && wanted {
                if let Some(b) = wire.get(log, seq, kind) {
                    batch.push_at(b, seq + 1);
                }
            }
            seq += 1;
        }
        batch.to = seq;
        self.next_seq.set(seq);
        if seq == log.head_seq() {
            self.behind_since.set(None);
            if batch.len() < MAX_BATCH {
                if let Some((code, close)) = self.close_at_head.borrow_mut().take() {
                    batch.push(close);
                    self.close_code.set(Some(code));
                }
            }
        }
        skipped
    }
}

/// A close frame with `code` and (at most 120 bytes of) `reason`.
fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut payload = code.to_be_bytes().to_vec();
    let mut end = reason.len().min(120);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    frame::frame(OP_CLOSE, &payload)
}

/// `{"message_type":"gap","from":F,"to":T}`: what a resuming client can no longer get.
pub fn gap_message(from: u64, to: u64) -> Bytes {
    frame::frame(frame::OP_TEXT, &gap_json(from, to))
}

fn gap_json(from: u64, to: u64) -> Vec<u8> {
    format!("{{\"message_type\":\"gap\",\"from\":{from},\"to\":{to}}}").into_bytes()
}

/// Writes this client's frames from the core's `log` until the connection ends; then marks
/// it dead. `stream` is the socket's write side (the whole socket, or its write half while
/// the reader holds the other).
pub async fn writer<W: AsyncWriteRent>(
    conn: Rc<Conn>,
    mut stream: W,
    log: &RefCell<StreamLog>,
    counters: &CoreCounters,
) {
    let mut batch = FrameBatch::new();
    'outer: loop {
        let skipped = conn.gather(&log.borrow(), &mut batch);
        if skipped > 0 {
            counters.client_drops.fetch_add(skipped, Relaxed);
        }
        if batch.len() == 0 {
            if conn.close_code.get().is_some()
                || (conn.reader_done.get() && conn.closing.get().is_none())
            {
                break; // closed (the close frame went out) or the client went away
            }
            conn.wake.notified().await;
            continue;
        }
        let with_close = conn.close_code.get().is_some() && conn.control.borrow().is_empty();
        let batch_len = batch.len();
        let mut written = 0;
        while batch.remaining() > 0 {
            let (res, b) = stream.writev(batch).await;
            batch = b;
            match res {
                Ok(0) => break 'outer,
                Ok(n) => {
                    batch.consume(n);
                    written += n as u64;
                    if batch.remaining() > 0 {
                        conn.hold_less(&mut batch);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(peer = %conn.peer, error = %e, "write failed; connection ends");
                    break 'outer;
                }
            }
        }
        let frames = batch.len() as u64;
        batch.clear();
        batch.shrink_if_idle(batch_len);
        counters.messages_sent.fetch_add(frames, Relaxed);
        counters.bytes_sent.fetch_add(written, Relaxed);
        if with_close {
            // Give the client a moment to answer the close, then end.
            let _ = monoio::time::timeout(Duration::from_secs(1), async {
                while !conn.reader_done.get() {
                    conn.reader_wake.notified().await;
                }
            })
            .await;
            break;
        }
    }
    conn.kill();
    conn.dead.set(true);
    tracing::debug!(peer = %conn.peer, dropped = conn.dropped.get(), "writer done");
    drop(stream);
}

/// Why a reader ended, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEnd {
    /// The client closed (close frame or EOF).
    Closed,
    /// The client broke the protocol and was closed with a code.
    Protocol,
}

/// Reads client frames: pings get pongs, a close gets a close, everything else is ignored.
/// Unmasked frames close with 1002, oversized ones with 1009.
pub async fn reader<R>(conn: Rc<Conn>, io: R, max_frame: usize) -> ReadEnd
where
    R: tokio::io::AsyncRead + Unpin,
{
    read_frames(conn, io, max_frame, None).await
}

/// [`reader`] for a client that negotiated permessage-deflate: frames with RSV1 are
/// inflated (to at most `max_frame` bytes) and checked; see [`crate::deflate`].
pub async fn deflate_reader<R>(conn: Rc<Conn>, io: R, max_frame: usize) -> ReadEnd
where
    R: tokio::io::AsyncRead + Unpin,
{
    let seen = SeenQueue::default();
    let io = deflate::Rsv1Strip::new(io, seen.clone());
    read_frames(conn, io, max_frame, Some((seen, Inflate::default()))).await
}

async fn read_frames<R>(
    conn: Rc<Conn>,
    io: R,
    max_frame: usize,
    mut deflate: Option<(SeenQueue, Inflate)>,
) -> ReadEnd
where
    R: tokio::io::AsyncRead + Unpin,
{
    let (mut ws, _) = fastwebsockets::after_handshake_split(io, tokio::io::sink(), Role::Server);
    ws.set_auto_close(false);
    ws.set_auto_pong(false);
    ws.set_auto_apply_mask(true);
    ws.set_max_message_size(max_frame);
    let mut no_send = |_| async { Ok::<(), std::io::Error>(()) };
    let end = loop {
        match ws.read_frame(&mut no_send).await {
            Ok(mut f) => {
                let mut head = [0u8; 16];
                f.fmt_head(&mut head);
                if head[1] & 0x80 == 0 {
                    conn.close(1002, "client frames must be masked");
                    break ReadEnd::Protocol;
                }
                if let Some((seen, inflate)) = deflate.as_mut() {
                    let s = seen.borrow_mut().pop_front().unwrap_or(Seen::Plain);
                    let control = matches!(f.opcode, OpCode::Ping | OpCode::Pong | OpCode::Close);
                    let cont = f.opcode == OpCode::Continuation;
                    if let Err((code, reason)) =
                        inflate.frame(s, control, cont, f.fin, &f.payload, max_frame)
                    {
                        conn.close(code, reason);
                        break ReadEnd::Protocol;
                    }
                }
                match f.opcode {
                    OpCode::Ping => conn.push_pong(&f.payload),
                    OpCode::Close => match close_reply(&f.payload) {
                        Ok(code) => {
                            conn.close(code, "");
                            break ReadEnd::Closed;
                        }
                        Err((code, reason)) => {
                            conn.close(code, reason);
                            break ReadEnd::Protocol;
                        }
                    },
                    _ => {}
                }
            }
            Err(WebSocketError::FrameTooLarge | WebSocketError::PingFrameTooLarge) => {
                conn.close(1009, "client frame too large");
                break ReadEnd::Protocol;
            }
            Err(
                WebSocketError::UnexpectedEOF
                | WebSocketError::ConnectionClosed
                | WebSocketError::IoError(_),
            ) => break ReadEnd::Closed,
            Err(WebSocketError::InvalidUTF8) => {
                conn.close(1007, "invalid UTF-8");
                break ReadEnd::Protocol;
            }
            Err(_) => {
                conn.close(1002, "websocket protocol error");
                break ReadEnd::Protocol;
            }
        }
    };
    conn.end_reading();
    end
}

/// The code to answer a client's close frame with (RFC 6455 5.5.1, 7.4): its own code when
/// that is one an endpoint may send, 1000 when it gave none; a payload of one byte, a code
/// that must not be sent (1005, 1006, 1015, unassigned ones) or a reason that is not UTF-8 is
/// a protocol error, answered with 1002 or 1007 and a reason.
pub fn close_reply(payload: &[u8]) -> Result<u16, (u16, &'static str)> {
    match payload {
        [] => Ok(1000),
        [_] => Err((1002, "close payload of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !sendable_close_code(code) {
                Err((1002, "invalid close code"))
            } else if std::str::from_utf8(reason).is_err() {
                Err((1007, "close reason is not UTF-8"))
            } else {
                Ok(code)
            }
        }
    }
}

/// Whether an endpoint may send this close code (RFC 6455 7.4: the registered codes other
/// than 1004, 1005, 1006 and 1015, and the 3000-4999 ranges for libraries and applications).
pub fn sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(_cap: usize) -> Conn {
        Conn::new(StreamKind::Lite, "127.0.0.1:1".parse().unwrap(), -1, live())
    }

    fn live() -> Resume {
        Resume {
            seq: 0,
            min_cursor: 0,
            gap: None,
        }
    }

    fn log_of(cursors: std::ops::RangeInclusive<u64>, max_frames: usize) -> StreamLog {
        let mut log = StreamLog::new(usize::MAX, max_frames, *cursors.start());
        for c in cursors {
            log.push(certstream_engine::Frames {
                cursor: c,
                log: 0,
                index: c,
                lite: Bytes::from(format!("lite{c}")),
                full: Bytes::from(format!("full{c}")),
                domains: Bytes::from(format!("domains{c}")),
                ..Default::default()
            });
        }
        log
    }

    fn gathered(c: &Conn, log: &StreamLog) -> (Vec<Bytes>, u64) {
        let mut b = FrameBatch::new();
        let skipped = c.gather(log, &mut b);
        (b.frames.clone(), skipped)
    }

    /// A masked client frame with a payload of at most 125 bytes.
    fn masked(op: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut f = vec![0x80 | op, 0x80 | payload.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        f
    }

    /// Runs the reader over `input` until it ends.
    fn read_all(c: &Rc<Conn>, input: Vec<u8>, max_frame: usize) -> ReadEnd {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(reader(c.clone(), std::io::Cursor::new(input), max_frame))
    }

    #[test]
    fn a_position_off_the_tail_skips_to_it_and_marks_the_client_behind() {
        let c = conn(0);
        let log = log_of(1..=200, 100); // holds 101..=200
        let (got, skipped) = gathered(&c, &log);
        assert_eq!(skipped, 100);
        assert_eq!(c.dropped.get(), 100);
        assert_eq!(got.len(), MAX_BATCH);
        assert_eq!(&got[0][..], b"lite101");
        assert!(c.behind_for(Instant::now()).is_some());
        // The rest, then caught up: no longer behind.
        let (got, skipped) = gathered(&c, &log);
        assert_eq!((got.len(), skipped), (100 - MAX_BATCH, 0));
        assert_eq!(&got.last().unwrap()[..], b"lite200");
        assert!(c.behind_for(Instant::now()).is_none());
        assert!(gathered(&c, &log).0.is_empty());
    }

    #[test]
    fn each_client_gets_its_own_stream_from_the_shared_frames() {
        let log = log_of(1..=3, 10);
        for (kind, want) in [
            (StreamKind::Lite, "lite"),
            (StreamKind::Full, "full"),
            (StreamKind::Domains, "domains"),
        ] {
            let c = Conn::new(kind, "127.0.0.1:1".parse().unwrap(), -1, log.resume(1));
            let (got, _) = gathered(&c, &log);
            let texts: Vec<_> = got.iter().map(|b| String::from_utf8_lossy(b)).collect();
            assert_eq!(texts, [format!("{want}2"), format!("{want}3")]);
            assert_eq!(
                got[0].as_ptr(),
                log.get(1).unwrap().variant(kind.index()).as_ptr()
            );
        }
    }

    #[test]
    fn a_resume_with_a_gap_sends_the_gap_message_first() {
        let log = log_of(50..=52, 10);
        let c = Conn::new(
            StreamKind::Lite,
            "127.0.0.1:1".parse().unwrap(),
            -1,
            log.resume(7),
        );
        let (got, _) = gathered(&c, &log);
        assert_eq!(got.len(), 4);
        let (op, p) = frame::parse(&got[0]).unwrap();
        assert_eq!(op, frame::OP_TEXT);
        assert_eq!(p, br#"{"message_type":"gap","from":8,"to":49}"#);
        assert_eq!(&got[1][..], b"lite50");
    }

    #[test]
    fn a_client_ahead_of_the_log_skips_what_it_has_seen() {
        let mut log = log_of(1..=3, 10);
        // Cursor 5 was published but has not reached this core yet.
        let c = Conn::new(
            StreamKind::Lite,
            "127.0.0.1:1".parse().unwrap(),
            -1,
            log.resume(5),
        );
        for n in 4..=7 {
            log.push(certstream_engine::Frames {
                cursor: n,
                log: 0,
                index: n,
                lite: Bytes::from(format!("lite{n}")),
                full: Bytes::new(),
                domains: Bytes::new(),
                ..Default::default()
            });
        }
        let (got, _) = gathered(&c, &log);
        assert_eq!(got, [Bytes::from("lite6"), Bytes::from("lite7")]);
    }

    #[test]
    fn close_at_head_goes_out_after_everything_held() {
        let log = log_of(1..=3, 10);
        let c = Conn::new(
            StreamKind::Lite,
            "127.0.0.1:1".parse().unwrap(),
            -1,
            log.resume(0),
        );
        c.close_at_head(1001, "server shutting down");
        let (got, _) = gathered(&c, &log);
        assert_eq!(got.len(), 4);
        let (op, p) = frame::parse(&got[3]).unwrap();
        assert_eq!(op, OP_CLOSE);
        assert_eq!(&p[..2], &1001u16.to_be_bytes());
        assert_eq!(c.close_code(), Some(1001));
        assert!(gathered(&c, &log).0.is_empty());
    }

    #[test]
    fn partial_writes_advance_within_and_across_frames() {
        let mut b = FrameBatch::new();
        b.push(Bytes::from_static(b"hello"));
        b.push(Bytes::from_static(b"world!"));
        assert_eq!(b.remaining(), 11);
        b.consume(3);
        assert_eq!(b.read_iovec_len(), 2);
        let first = b.iov[b.start];
        assert_eq!(first.iov_len, 2);
        assert_eq!(
            first.iov_base as *const u8,
            b.frames[0].as_ptr().wrapping_add(3)
        );
        b.consume(4);
        assert_eq!(b.read_iovec_len(), 1);
        assert_eq!(b.remaining(), 4);
        assert_eq!(
            b.iov[b.start].iov_base as *const u8,
            b.frames[1].as_ptr().wrapping_add(2)
        );
        b.consume(4);
        assert_eq!(b.remaining(), 0);
        assert_eq!(b.read_iovec_len(), 0);
    }

    /// Takes `n` bytes from the front of what `batch` still has to write, as the kernel
    /// would, and marks them written.
    fn write_some(batch: &mut FrameBatch, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for v in &batch.iov[batch.start..] {
            // SAFETY: every iovec from `start` on points into a `Bytes` the batch holds (the
            // invariant `IoVecBuf` relies on), and nothing changes the batch meanwhile.
            let bytes = unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) };
            out.extend_from_slice(&bytes[..bytes.len().min(n - out.len())]);
            if out.len() == n {
                break;
            }
        }
        batch.consume(out.len());
        out
    }

    #[test]
    fn a_partial_write_keeps_only_the_frame_in_progress_and_nothing_is_lost_or_repeated() {
        let log = log_of(1..=300, 1000);
        let c = Conn::new(
            StreamKind::Full,
            "127.0.0.1:1".parse().unwrap(),
            -1,
            log.resume(0),
        );
        c.push_control(Bytes::from_static(b"<gap>"));
        let mut batch = FrameBatch::new();
        let (mut out, mut writes) = (Vec::new(), 0);
        // A socket that takes 13 bytes at a time: every write ends inside a frame, or on a
        // frame's end.
        loop {
            c.gather(&log, &mut batch);
            if batch.len() == 0 {
                break;
            }
            let first = batch.len();
            while batch.remaining() > 0 {
                out.extend(write_some(&mut batch, 13));
                writes += 1;
                if batch.remaining() > 0 {
                    c.hold_less(&mut batch);
                    assert!(batch.len() <= batch.start + 1, "only the frame in progress");
                }
            }
            assert!(first > 1 || batch.len() == 1);
            batch.clear();
        }
        let want: Vec<u8> = std::iter::once(b"<gap>".to_vec())
            .chain((1..=300).map(|c| format!("full{c}").into_bytes()))
            .flatten()
            .collect();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(want).unwrap()
        );
        assert!(writes > 100);
        assert_eq!(c.dropped.get(), 0);
    }

    #[test]
    fn a_batch_is_written_whole_when_the_position_moved_or_a_control_frame_follows() {
        let log = log_of(1..=100, 1000);
        // The core's sweep skipped this client while its write was pending.
        let c = conn(0);
        let mut batch = FrameBatch::new();
        c.gather(&log, &mut batch);
        assert_eq!(batch.len(), MAX_BATCH);
        write_some(&mut batch, 3);
        c.skip_to_tail(90);
        c.hold_less(&mut batch);
        assert_eq!((batch.len(), c.next_seq.get()), (MAX_BATCH, 90));
        // A close after the frames (a shutdown's close at the head) stays with them.
        let c = Conn::new(
            StreamKind::Lite,
            "127.0.0.1:1".parse().unwrap(),
            -1,
            log.resume(95),
        );
        c.close_at_head(1001, "server shutting down");
        let mut batch = FrameBatch::new();
        c.gather(&log, &mut batch);
        assert_eq!(batch.len(), 5 + 1);
        write_some(&mut batch, 3);
        c.hold_less(&mut batch);
        assert_eq!(batch.len(), 6);
        // Otherwise the frames after the one in progress go back to the log.
        let c = conn(0);
        let mut batch = FrameBatch::new();
        c.gather(&log, &mut batch);
        write_some(&mut batch, "lite1".len() + 2);
        c.hold_less(&mut batch);
        assert_eq!((batch.len(), batch.start, c.next_seq.get()), (2, 1, 2));
        assert!(batch.frames.capacity() <= MAX_BATCH / 2, "the batch shrank");
    }

    /// Found while writing the `ws_client_frames` fuzz target: every ping queued its own
    /// pong, so a client sending pings without reading grew the control queue without bound.
    #[test]
    fn a_ping_flood_keeps_one_pong_queued() {
        let c = Rc::new(conn(8));
        let input: Vec<u8> = (0..10_000u32)
            .flat_map(|i| masked(0x9, &i.to_be_bytes()))
            .collect();
        assert_eq!(read_all(&c, input, 64 << 10), ReadEnd::Closed);
        let control = c.control.borrow();
        assert_eq!(control.len(), 1, "one pong, for the latest ping");
        let (op, payload) = frame::parse(&control[0]).unwrap();
        assert_eq!(op, OP_PONG);
        assert_eq!(payload, 9_999u32.to_be_bytes());
    }

    /// Found while writing the `ws_client_frames` fuzz target: the reader answered a close
    /// with whatever code the client sent (1005, 1006, 1015 or 0 included, which must never
    /// be sent) and a one-byte close payload with 1000.
    #[test]
    fn close_codes_are_echoed_only_when_valid() {
        assert_eq!(close_reply(b""), Ok(1000));
        assert_eq!(close_reply(&1000u16.to_be_bytes()), Ok(1000));
        assert_eq!(close_reply(&1001u16.to_be_bytes()), Ok(1001));
        assert_eq!(close_reply(&4321u16.to_be_bytes()), Ok(4321));
        assert_eq!(close_reply(b"\x03\xe8bye"), Ok(1000));
        assert_eq!(close_reply(b"\x03").unwrap_err().0, 1002);
        for bad in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert_eq!(
                close_reply(&bad.to_be_bytes()).unwrap_err().0,
                1002,
                "{bad}"
            );
        }
        assert_eq!(close_reply(b"\x03\xe8\xff\xfe").unwrap_err().0, 1007);
    }

    /// The reader puts that answer on the wire: a client closing with 1005 gets 1002.
    #[test]
    fn a_client_close_with_a_reserved_code_is_answered_with_1002() {
        for (sent, want, end) in [
            (1005u16, 1002u16, ReadEnd::Protocol),
            (1001, 1001, ReadEnd::Closed),
        ] {
            let c = Rc::new(conn(8));
            let got = read_all(&c, masked(0x8, &sent.to_be_bytes()), 1 << 10);
            assert_eq!(got, end);
            let control = c.control.borrow();
            let (op, payload) = frame::parse(&control[0]).unwrap();
            assert_eq!(op, OP_CLOSE);
            assert_eq!(&payload[..2], &want.to_be_bytes(), "client sent {sent}");
        }
    }

    #[test]
    fn close_sends_no_more_data_and_queues_one_close_frame() {
        let log = log_of(1..=3, 10);
        let c = conn(8);
        c.close(1008, "too slow");
        c.close(1000, "again");
        let (got, _) = gathered(&c, &log);
        assert_eq!(got.len(), 1);
        let (op, payload) = frame::parse(&got[0]).unwrap();
        assert_eq!(op, OP_CLOSE);
        assert_eq!(&payload[..2], &1008u16.to_be_bytes());
        assert_eq!(&payload[2..], b"too slow");
        assert!(gathered(&c, &log).0.is_empty());
    }
}
