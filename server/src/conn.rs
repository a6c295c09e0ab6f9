//! One websocket client: its bounded queue, its writer (ours: vectored writes of the shared
//! frames) and its reader (fastwebsockets: pings, closes, masking and size limits).
//!
//! # Slow clients
//! Each connection queues at most `client_queue` frames. When a frame arrives and the queue
//! is full, the **oldest** queued frame is dropped and counted (per connection and in
//! `/metrics`): a client that cannot keep up loses old messages, never new ones, and never
//! slows anyone else down, since the core only appends to queues and never waits for a
//! socket. A client that has been dropping frames without once catching up (emptying its
//! queue) for `slow_client_timeout` is closed with 1008 and a reason; if even the close frame
//! cannot be written within a grace period, the socket is shut down.
//!
//! # Writes
//! The writer takes everything queued at once (control frames first) and hands the kernel
//! one `writev` per wake-up whose iovecs point straight into the shared `Bytes`: no copy and
//! no per-client encoding. The core wakes writers once per coalescing tick, so a busy client
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

use crate::core::CoreCounters;
use crate::http::StreamKind;

/// Most frames one `writev` carries (Linux allows 1,024 iovecs). 64 lite frames are ~180 KB,
/// more than a socket buffer takes at once, and a stalled client's pending batch stays small
/// (it is held until the kernel takes it, on top of the client's queue).
const MAX_BATCH: usize = 64;

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
    start: usize,
}

impl FrameBatch {
    fn new() -> Self {
        FrameBatch {
            frames: Vec::with_capacity(64),
            iov: Vec::with_capacity(64),
            start: 0,
        }
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

    fn push(&mut self, b: Bytes) {
        self.iov.push(libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        });
        self.frames.push(b);
    }

    fn clear(&mut self) {
        self.iov.clear();
        self.frames.clear();
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
    pub peer: SocketAddr,
    fd: RawFd,
    queue: RefCell<VecDeque<Bytes>>,
    control: RefCell<VecDeque<Bytes>>,
    cap: usize,
    /// Frames dropped from this client's queue.
    pub dropped: Cell<u64>,
    behind_since: Cell<Option<Instant>>,
    closing: Cell<Option<Instant>>,
    /// The code of the close frame queued, once one is.
    close_code: Cell<Option<u16>>,
    dead: Cell<bool>,
    reader_done: Cell<bool>,
    wake: Notify,
    reader_wake: Notify,
}

impl Conn {
    pub fn new(kind: StreamKind, peer: SocketAddr, fd: RawFd, cap: usize) -> Self {
        Conn {
            kind,
            peer,
            fd,
            queue: RefCell::new(VecDeque::with_capacity(cap.min(64))),
            control: RefCell::new(VecDeque::new()),
            cap: cap.max(1),
            dropped: Cell::new(0),
            behind_since: Cell::new(None),
            closing: Cell::new(None),
            close_code: Cell::new(None),
            dead: Cell::new(false),
            reader_done: Cell::new(false),
            wake: Notify::default(),
            reader_wake: Notify::default(),
        }
    }

    /// Whether the connection is finished (its writer has exited).
    pub fn is_dead(&self) -> bool {
        self.dead.get()
    }

    /// Queues a data frame, dropping the oldest when full. Returns whether one was dropped.
    #[inline]
    pub fn push(&self, frame: Bytes) -> bool {
        if self.closing.get().is_some() {
            return false;
        }
        let mut q = self.queue.borrow_mut();
        let dropped = q.len() >= self.cap;
        if dropped {
            q.pop_front();
            self.dropped.set(self.dropped.get() + 1);
            if self.behind_since.get().is_none() {
                self.behind_since.set(Some(Instant::now()));
            }
        }
        q.push_back(frame);
        dropped
    }

    /// Wakes the writer (after a batch of pushes).
    pub fn wake(&self) {
        self.wake.notify();
    }

    /// Queues a control frame, written before any queued data frame.
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

    /// Starts closing: drops queued data, queues a close frame, wakes the writer.
    pub fn close(&self, code: u16, reason: &str) {
        self.start_close(code, reason, false);
    }

    /// Closes after the frames already queued have been written (graceful shutdown).
    pub fn close_after_queue(&self, code: u16, reason: &str) {
        self.start_close(code, reason, true);
    }

    fn start_close(&self, code: u16, reason: &str, after_queue: bool) {
        if self.closing.get().is_some() {
            return;
        }
        self.closing.set(Some(Instant::now()));
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(120)]);
        let close = frame::frame(OP_CLOSE, &payload);
        if after_queue {
            self.queue.borrow_mut().push_back(close);
        } else {
            self.queue.borrow_mut().clear();
            self.control.borrow_mut().push_back(close);
        }
        self.close_code.set(Some(code));
        self.wake.notify();
    }

    /// The code of the close frame queued for this client, once closing started.
    pub fn close_code(&self) -> Option<u16> {
        self.close_code.get()
    }

    /// How long this client has been dropping frames without catching up.
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
}

/// Writes queued frames until the connection ends; then marks it dead. `stream` is the
/// socket's write side (the whole socket, or its write half while the reader holds the other).
pub async fn writer<W: AsyncWriteRent>(conn: Rc<Conn>, mut stream: W, counters: &CoreCounters) {
    let mut batch = FrameBatch::new();
    'outer: loop {
        if conn.control.borrow().is_empty() && conn.queue.borrow().is_empty() {
            if conn.reader_done.get() && conn.closing.get().is_none() {
                break; // the client went away
            }
            conn.wake.notified().await;
            continue;
        }
        {
            let mut control = conn.control.borrow_mut();
            let mut queue = conn.queue.borrow_mut();
            while batch.len() < MAX_BATCH {
                match control.pop_front().or_else(|| queue.pop_front()) {
                    Some(f) => batch.push(f),
                    None => break,
                }
            }
        }
        let with_close = conn.close_code.get().is_some()
            && conn.control.borrow().is_empty()
            && conn.queue.borrow().is_empty();
        let frames = batch.len() as u64;
        let total = batch.remaining();
        while batch.remaining() > 0 {
            let (res, b) = stream.writev(batch).await;
            batch = b;
            match res {
                Ok(0) => break 'outer,
                Ok(n) => batch.consume(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(peer = %conn.peer, error = %e, "write failed; connection ends");
                    break 'outer;
                }
            }
        }
        batch.clear();
        counters.messages_sent.fetch_add(frames, Relaxed);
        counters.bytes_sent.fetch_add(total as u64, Relaxed);
        if conn.queue.borrow().is_empty() {
            conn.behind_since.set(None);
        }
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
    conn.reader_done.set(true);
    conn.reader_wake.notify();
    conn.wake.notify();
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

    fn conn(cap: usize) -> Conn {
        Conn::new(StreamKind::Lite, "127.0.0.1:1".parse().unwrap(), -1, cap)
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
    fn a_full_queue_drops_the_oldest_and_marks_the_client_behind() {
        let c = conn(3);
        for i in 0..5u8 {
            c.push(Bytes::from(vec![i]));
        }
        let q: Vec<u8> = c.queue.borrow().iter().map(|b| b[0]).collect();
        assert_eq!(q, [2, 3, 4]);
        assert_eq!(c.dropped.get(), 2);
        assert!(c.behind_for(Instant::now()).is_some());
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
    fn close_discards_data_and_queues_one_close_frame() {
        let c = conn(8);
        c.push(Bytes::from_static(b"x"));
        c.close(1008, "too slow");
        c.close(1000, "again");
        assert!(c.queue.borrow().is_empty());
        assert!(!c.push(Bytes::from_static(b"y")));
        let control = c.control.borrow();
        assert_eq!(control.len(), 1);
        let (op, payload) = frame::parse(&control[0]).unwrap();
        assert_eq!(op, OP_CLOSE);
        assert_eq!(&payload[..2], &1008u16.to_be_bytes());
        assert_eq!(&payload[2..], b"too slow");
    }
}
