//! A core's fanout: its stream log, its connections, and the tick that feeds them.
//!
//! Every coalescing tick the core moves what its hand-off ring holds into its
//! [`StreamLog`] (the hub's shared frames: no copy) and wakes its clients' writers once; each
//! writer then sends from its own position. The tick also sends heartbeats and closes clients
//! that stay behind. Nothing here takes a lock or waits for another core, or for a client.
//!
//! # When writers are woken
//! The ingest publishes a fetched answer one certificate at a time, so a burst often reaches
//! the core over two ticks; waking every writer on both costs each client two writes (and
//! the kernel two sends) for one burst. So a tick that took fewer than [`WAKE_FRAMES`] new
//! certificates holds the wake-up for one more tick, and the writers are woken when the
//! burst has ended (a tick that took nothing), when [`WAKE_FRAMES`] are waiting, or on the
//! next tick in any case: a certificate waits at most one extra coalescing interval.
//! Control frames (heartbeats, pongs, closes) wake their writer at once.
//!
//! # Filters
//! While the core has filtered clients, the drain evaluates each new certificate once
//! against the core's [`Matcher`] and keeps the ids it matched beside it in the log; only
//! the filtered clients it matched are woken (unfiltered ones always are); the others, when
//! caught up, just move their position past what they did not want.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use certstream_engine::frame::{self, OP_PING};
use certstream_engine::Frames;

use crate::conn::Conn;
use crate::filter::{Filter, Matcher, Subscription};
use crate::shared::{CoreCounters, Shared};
use crate::stream_log::{Resume, StreamLog};
use crate::wire::Wire;

/// New certificates that wake the writers on the tick that took them; fewer wait for the
/// next tick (see the module's "When writers are woken").
pub const WAKE_FRAMES: u64 = 32;

/// One core's stream and clients (everything on it runs on the core's thread).
#[derive(Debug)]
pub struct Fanout {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub counters: Arc<CoreCounters>,
    pub log: RefCell<StreamLog>,
    conns: RefCell<Vec<Rc<Conn>>>,
    matcher: RefCell<Matcher>,
    next_filter: Cell<u32>,
    /// The log's head when the writers were last woken.
    woken_head: Cell<u64>,
    /// Filter ids matched by certificates taken since then.
    woken_ids: RefCell<Vec<u32>>,
}

impl Fanout {
    /// The fanout of core `id`, its log expecting the hub's next cursor first.
    pub fn new(id: usize, shared: Arc<Shared>) -> Self {
        let cfg = &shared.config;
        let log = StreamLog::new(
            cfg.stream_log_bytes,
            cfg.stream_log_frames,
            shared.hub.next_cursor(),
        );
        Fanout {
            id,
            woken_head: Cell::new(log.head_seq()),
            woken_ids: RefCell::new(Vec::new()),
            counters: shared.cores[id].clone(),
            log: RefCell::new(log),
            conns: RefCell::new(Vec::new()),
            matcher: RefCell::new(Matcher::default()),
            next_filter: Cell::new(0),
            shared,
        }
    }

    /// Where a new client starts: live at the head, or after cursor `since`.
    pub fn start(&self, since: Option<u64>) -> Resume {
        let log = self.log.borrow();
        match since {
            None => Resume {
                seq: log.head_seq(),
                min_cursor: 0,
                gap: None,
            },
            Some(since) => {
                self.counters.resumed.fetch_add(1, Relaxed);
                let r = log.resume(since);
                if r.gap.is_some() {
                    self.counters.resume_gaps.fetch_add(1, Relaxed);
                }
                r
            }
        }
    }

    /// A subscription for a new client (`None` when it wants everything), its filter
    /// registered with this core's matcher: certificates taken from now on are evaluated
    /// for it. The client must be [`Fanout::attach`]ed, which keeps it until it ends.
    pub fn subscribe(&self, filter: Option<Filter>, dedup: bool) -> Option<Subscription> {
        if filter.is_none() && !dedup {
            return None;
        }
        let id = self.next_filter.get();
        self.next_filter.set(id.wrapping_add(1));
        if let Some(f) = &filter {
            let mut m = self.matcher.borrow_mut();
            m.add(id, f);
            self.counters.filtered_clients.fetch_add(1, Relaxed);
            self.counters
                .filter_patterns
                .store(m.patterns() as u64, Relaxed);
        }
        if dedup {
            self.counters.dedup_clients.fetch_add(1, Relaxed);
        }
        Some(Subscription {
            id,
            filter,
            from_seq: self.log.borrow().head_seq(),
            dedup,
        })
    }

    /// Forgets a finished client's subscription.
    fn unsubscribe(&self, sub: &Subscription) {
        if let Some(f) = &sub.filter {
            let mut m = self.matcher.borrow_mut();
            m.remove(sub.id, f);
            self.counters.filtered_clients.fetch_sub(1, Relaxed);
            self.counters
                .filter_patterns
                .store(m.patterns() as u64, Relaxed);
        }
        if sub.dedup {
            self.counters.dedup_clients.fetch_sub(1, Relaxed);
        }
    }

    /// Adds a client to this core's fanout.
    pub fn attach(&self, conn: Rc<Conn>) {
        self.counters.clients[conn.kind.index()].fetch_add(1, Relaxed);
        self.wire_gauge(&conn).map(|g| g.fetch_add(1, Relaxed));
        self.conns.borrow_mut().push(conn);
    }

    fn wire_gauge(&self, c: &Conn) -> Option<&std::sync::atomic::AtomicU64> {
        match c.wire {
            Wire::Ws => None,
            Wire::Sse => Some(&self.counters.sse_clients),
            Wire::Deflate { .. } => Some(&self.counters.deflate_clients),
        }
    }

    /// Moves everything the hand-off ring holds into the log; wakes the writers when
    /// anything came (on this tick or the next: see "When writers are woken").
    pub fn drain(&self, ring: &mut rtrb::Consumer<Frames>) {
        self.take(ring, false);
    }

    /// [`Fanout::drain`]; `now`: wake the writers for anything new without waiting a tick.
    fn take(&self, ring: &mut rtrb::Consumer<Frames>, now: bool) {
        let mut log = self.log.borrow_mut();
        let mut matcher = self.matcher.borrow_mut();
        let filtering = matcher.filters() > 0;
        let mut n = 0;
        // Filter ids matched by anything since the last wake-up, to wake just those clients.
        let mut woken = self.woken_ids.borrow_mut();
        let mut ids = Vec::new();
        let (mut evaluated, mut matched, mut nanos) = (0u64, 0u64, 0u64);
        while let Ok(f) = ring.pop() {
            if filtering {
                let t = Instant::now();
                matcher.eval(&f.names, &mut ids);
                nanos += t.elapsed().as_nanos() as u64;
                evaluated += 1;
                if !ids.is_empty() {
                    matched += 1;
                    woken.extend_from_slice(&ids);
                }
                log.push_matched(f, ids.as_slice().into());
            } else {
                log.push(f);
            }
            n += 1;
        }
        drop(matcher);
        if filtering {
            let c = &self.counters;
            c.filter_nanos.fetch_add(nanos, Relaxed);
            c.filter_evaluated.fetch_add(evaluated, Relaxed);
            c.filter_matched.fetch_add(matched, Relaxed);
        }
        if n > 0 {
            let c = &self.counters;
            c.log_frames.store(log.len() as u64, Relaxed);
            c.log_bytes.store(log.bytes() as u64, Relaxed);
            c.log_tail_cursor.store(log.tail_cursor(), Relaxed);
            c.log_next_cursor.store(log.next_cursor(), Relaxed);
            c.log_evicted.store(log.evicted, Relaxed);
        }
        let (old_head, new_head) = (self.woken_head.get(), log.head_seq());
        drop(log);
        let waiting = new_head - old_head;
        // Held for a tick: all that waits came on this tick, and it is fewer than WAKE_FRAMES.
        let hold = !now && waiting == n && waiting < WAKE_FRAMES;
        if waiting == 0 || hold {
            return;
        }
        self.woken_head.set(new_head);
        woken.sort_unstable();
        woken.dedup();
        for c in self.conns.borrow().iter() {
            match c.filtered() {
                // Nothing new for it: a caught-up client moves to the head without waking
                // (so idle filtered clients never scan what they do not want).
                Some(id) if woken.binary_search(&id).is_err() => c.pass_over(old_head, new_head),
                _ => c.wake(),
            }
        }
        woken.clear();
    }

    /// Sends every client a ping and a `heartbeat` message.
    pub fn heartbeat(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let mut msg = b"{\"message_type\":\"heartbeat\",\"timestamp\":".to_vec();
        certstream_engine::json::write_f64(&mut msg, now);
        msg.push(b'}');
        let text = frame::frame(frame::OP_TEXT, &msg);
        let ping = frame::frame(OP_PING, b"");
        let comment = crate::wire::sse_comment("keep-alive");
        for c in self.conns.borrow().iter() {
            if c.wire == Wire::Sse {
                c.push_control(comment.clone());
            } else {
                c.push_control(ping.clone());
                c.push_control(text.clone());
            }
        }
    }

    /// Closes clients that stayed behind too long; forgets finished connections.
    pub fn sweep(&self, now: Instant) {
        let timeout = self.shared.config.slow_client_timeout;
        let tail = self.log.borrow().tail_seq();
        let mut skipped = 0;
        self.conns.borrow_mut().retain(|c| {
            if c.is_dead() {
                self.counters.clients[c.kind.index()].fetch_sub(1, Relaxed);
                self.wire_gauge(c).map(|g| g.fetch_sub(1, Relaxed));
                if let Some(sub) = &c.sub {
                    self.unsubscribe(sub);
                }
                return false;
            }
            // A writer stuck in a write to a client that does not read never gets to
            // notice it fell behind: the sweep does.
            skipped += c.skip_to_tail(tail);
            if let Some(d) = c.closing_for(now) {
                if d > Duration::from_secs(2) {
                    c.kill();
                }
            } else if c.behind_for(now).is_some_and(|d| d > timeout) {
                tracing::info!(core = self.id, peer = %c.peer, dropped = c.dropped.get(), "closing a client that stays behind");
                self.counters.slow_closed.fetch_add(1, Relaxed);
                c.close(1008, "client too slow: messages were dropped for too long");
            }
            true
        });
        if skipped > 0 {
            self.counters.client_drops.fetch_add(skipped, Relaxed);
        }
    }

    /// Shutdown: what the ring still holds goes into the log, every client gets it and then
    /// 1001, and has two seconds to receive it.
    pub async fn close_all(&self, ring: &mut rtrb::Consumer<Frames>) {
        self.take(ring, true);
        for c in self.conns.borrow().iter() {
            c.close_at_head(1001, "server shutting down");
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && self.conns.borrow().iter().any(|c| !c.is_dead()) {
            monoio::time::sleep(Duration::from_millis(20)).await;
        }
        self.conns.borrow().iter().for_each(|c| c.kill());
    }
}
