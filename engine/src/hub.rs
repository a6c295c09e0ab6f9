//! Fanout hand-off: the ingest side pushes each certificate's [`Frames`] into one bounded
//! single-producer/single-consumer ring per serving core (`rtrb`: lock-free, wait-free push
//! and pop).
//!
//! # Load shedding
//! A full ring hands the frames back instead of blocking or growing: the certificate is
//! dropped **for that core only** and counted in [`CoreRing::dropped`]. The producer never
//! waits for a core, so one slow core cannot slow ingest or the other cores.
//!
//! Watchers publish from several ingest threads, so the producer ends sit behind one mutex
//! that only the ingest side takes (a few thousand times a second at most); serving cores
//! never touch it: each owns its consumer end.
//!
//! # Cursors
//! Under that mutex each certificate gets its cursor, the previous one + 1, and is stamped
//! with it ([`Draft::stamp`]) before any core sees it: every core's ring holds the stream in
//! cursor order. The first cursor comes from the saved positions ([`crate::positions`]), so
//! a restart continues the sequence (after a clean stop) or jumps ahead of it (after a crash),
//! never repeating one.
//!
//! # Beyond one machine
//! An ingest node that also publishes upstream sets a [`Hub::set_tap`]: it sees every stamped
//! certificate under the same mutex, so in cursor order. An edge node's hub is fed frames
//! stamped elsewhere ([`Hub::publish_stamped`]) and keeps their cursors.
//! # Dedup
//! Under the same mutex each certificate's issuance key ([`crate::issuance`]) is looked up in
//! a time-windowed set: a key first published less than the window ago marks the frames a
//! [`Frames::duplicate`] (the same certificate from another log, or the final certificate of
//! a precertificate already sent). Decided once per certificate, for every core and client;
//! clients that ask for `dedup=1` skip duplicates. The set forgets keys older than the
//! window and holds at most `capacity` keys (the oldest go first): memory is bounded
//! whatever the rate.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::issuance::IssuanceKey;

use crate::frame::{Draft, Frames};

/// Where watchers hand each certificate to the fanout. [`Hub`] implements it (and stamps each
/// certificate's cursor); tests collect with a closure. The ingest side depends on this
/// trait, the fanout on no watcher.
pub trait Sink: Send + Sync + 'static {
    /// Hands one certificate's messages on. Must not block.
    fn publish(&self, draft: Draft);

    /// The cursor the next certificate will get, for sinks that number the stream (saved
    /// with the positions so that a restart never reuses one).
    fn next_cursor(&self) -> Option<u64> {
        None
    }
}

/// A closure sink gets the frames without a cursor, as `decode` prints them.
impl<F: Fn(Frames) + Send + Sync + 'static> Sink for F {
    fn publish(&self, draft: Draft) {
        self(draft.unstamped())
    }
}

/// How many recent certificates `/latest.json` shows.
pub const LATEST: usize = 25;

/// Counters of one core's ring.
#[derive(Debug, Default)]
pub struct CoreRing {
    /// Certificates pushed into this core's ring.
    pub pushed: AtomicU64,
    /// Certificates dropped because this core's ring was full.
    pub dropped: AtomicU64,
}

/// The ingest side's end of every core's ring.
#[derive(Debug)]
pub struct Hub {
    producers: Mutex<Producers>,
    /// The next cursor, readable without the lock (written under it).
    next: AtomicU64,
    /// The first cursor of this run.
    pub first_cursor: u64,
    /// Per-core ring counters, index = core.
    pub rings: Vec<Arc<CoreRing>>,
    latest: Mutex<VecDeque<Frames>>,
    /// Certificates published.
    pub published: AtomicU64,
    /// Called with every stamped certificate, in cursor order, under the producers' lock.
    tap: TapSlot,
    /// Certificates marked [`Frames::duplicate`].
    pub dedup_hits: AtomicU64,
    /// Issuance keys the dedup set holds now, and its capacity.
    pub dedup_keys: AtomicU64,
    pub dedup_capacity: AtomicU64,
}

#[derive(Default)]
struct TapSlot(OnceLock<Tap>);

impl std::fmt::Debug for TapSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Some(tap)"
        } else {
            "None"
        })
    }
}

/// A hook that sees every stamped certificate ([`Hub::set_tap`]). Must not block.
pub type Tap = Box<dyn Fn(&Frames) + Send + Sync>;

#[derive(Debug)]
struct Producers {
    rings: Vec<rtrb::Producer<Frames>>,
    next: u64,
    dedup: Dedup,
}

/// Default dedup window: a certificate seen again within 15 minutes is a duplicate.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Default bound of the dedup set (about 80 bytes a key with the map and the queue: 80 MiB at
/// most; 15 minutes of the public logs at their peak is about half of it).
pub const DEDUP_CAPACITY: usize = 1 << 20;

/// The issuance keys first seen within the window, oldest first.
#[derive(Debug)]
struct Dedup {
    window: Duration,
    capacity: usize,
    first_seen: HashMap<IssuanceKey, Instant>,
    order: VecDeque<(Instant, IssuanceKey)>,
}

impl Dedup {
    fn new(window: Duration, capacity: usize) -> Self {
        Dedup {
            window,
            capacity: capacity.max(1),
            first_seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether `key` was first seen within the window before `now`; remembers it if not.
    fn seen(&mut self, key: IssuanceKey, now: Instant) -> bool {
        while let Some(&(t, k)) = self.order.front() {
            if now.duration_since(t) < self.window && self.order.len() < self.capacity {
                break;
            }
            self.order.pop_front();
            self.first_seen.remove(&k);
        }
        if self.first_seen.contains_key(&key) {
            return true;
        }
        self.first_seen.insert(key, now);
        self.order.push_back((now, key));
        false
    }
}

impl Hub {
    /// A hub for `cores` cores with rings of `capacity` certificates each, numbering the
    /// stream from `first_cursor` (at least 1); returns the consumer end of each core's ring.
    pub fn new(
        cores: usize,
        capacity: usize,
        first_cursor: u64,
    ) -> (Arc<Hub>, Vec<rtrb::Consumer<Frames>>) {
        let first_cursor = first_cursor.max(1);
        let mut producers = Vec::with_capacity(cores);
        let mut consumers = Vec::with_capacity(cores);
        for _ in 0..cores {
            let (p, c) = rtrb::RingBuffer::new(capacity.max(1));
            producers.push(p);
            consumers.push(c);
        }
        let hub = Hub {
            producers: Mutex::new(Producers {
                rings: producers,
                next: first_cursor,
                dedup: Dedup::new(DEDUP_WINDOW, DEDUP_CAPACITY),
            }),
            next: AtomicU64::new(first_cursor),
            first_cursor,
            rings: (0..cores).map(|_| Arc::new(CoreRing::default())).collect(),
            latest: Mutex::new(VecDeque::with_capacity(LATEST)),
            published: AtomicU64::new(0),
            tap: TapSlot::default(),
            dedup_hits: AtomicU64::new(0),
            dedup_keys: AtomicU64::new(0),
            dedup_capacity: AtomicU64::new(DEDUP_CAPACITY as u64),
        };
        (Arc::new(hub), consumers)
    }

    /// Sets the dedup window and the most keys the dedup set holds (forgets what it held).
    pub fn set_dedup(&self, window: Duration, capacity: usize) {
        let mut producers = self.producers.lock().unwrap_or_else(|e| e.into_inner());
        producers.dedup = Dedup::new(window, capacity);
        self.dedup_capacity.store(capacity.max(1) as u64, Relaxed);
        self.dedup_keys.store(0, Relaxed);
    }

    /// The cursor the next certificate will get (every cursor below it was published).
    pub fn next_cursor(&self) -> u64 {
        self.next.load(Acquire)
    }

    /// Sets the hook that sees every certificate once stamped, in cursor order (once: a
    /// second tap is refused and handed back).
    pub fn set_tap(&self, tap: Tap) -> Result<(), Tap> {
        self.tap.0.set(tap)
    }

    /// Publishes a certificate stamped elsewhere (an edge node's upstream), keeping its
    /// cursor. One below the next cursor (seen already) is refused: `false`.
    pub fn publish_stamped(&self, frames: Frames) -> bool {
        {
            let mut producers = self.producers.lock().unwrap_or_else(|e| e.into_inner());
            if frames.cursor < producers.next {
                return false;
            }
            producers.next = frames.cursor + 1;
            self.next.store(producers.next, Release);
            self.fan_out(&mut producers, &frames);
        }
        self.published.fetch_add(1, Relaxed);
        self.remember(frames);
        true
    }

    /// The fewest free slots of any core's ring (an edge's upstream waits for room).
    pub fn room(&self) -> usize {
        let producers = self.producers.lock().unwrap_or_else(|e| e.into_inner());
        producers.rings.iter().map(|p| p.slots()).min().unwrap_or(0)
    }

    fn fan_out(&self, producers: &mut Producers, frames: &Frames) {
        if let Some(tap) = self.tap.0.get() {
            tap(frames);
        }
        for (p, ring) in producers.rings.iter_mut().zip(&self.rings) {
            // A clone is three reference-count bumps; a full ring hands it back.
            match p.push(frames.clone()) {
                Ok(()) => ring.pushed.fetch_add(1, Relaxed),
                Err(rtrb::PushError::Full(_)) => ring.dropped.fetch_add(1, Relaxed),
            };
        }
    }

    fn remember(&self, frames: Frames) {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        if latest.len() == LATEST {
            latest.pop_front();
        }
        latest.push_back(frames);
    }

    /// The most recent certificates, oldest first.
    pub fn latest(&self) -> Vec<Frames> {
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

impl Sink for Hub {
    fn publish(&self, draft: Draft) {
        self.published.fetch_add(1, Relaxed);
        let frames = {
            let mut producers = self.producers.lock().unwrap_or_else(|e| e.into_inner());
            let issuance = draft.issuance;
            let mut frames = draft.stamp(producers.next);
            if let Some(key) = issuance {
                frames.duplicate = producers.dedup.seen(key, Instant::now());
                if frames.duplicate {
                    self.dedup_hits.fetch_add(1, Relaxed);
                }
                self.dedup_keys
                    .store(producers.dedup.first_seen.len() as u64, Relaxed);
            }
            producers.next += 1;
            self.next.store(producers.next, Release);
            self.fan_out(&mut producers, &frames);
            frames
        };
        self.remember(frames);
    }

    fn next_cursor(&self) -> Option<u64> {
        Some(Hub::next_cursor(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(i: u64) -> Draft {
        let mut d = Draft::new(0, i, [8, 8, 8]);
        for b in d.bodies() {
            b.extend(format!("\"data\":{i}}}").as_bytes());
        }
        d
    }

    #[test]
    fn a_full_ring_drops_for_that_core_only() {
        let (hub, mut consumers) = Hub::new(2, 4, 1);
        for i in 0..4 {
            hub.publish(frames(i));
        }
        // Core 0 keeps up, core 1 does not.
        let got: Vec<u64> = std::iter::from_fn(|| consumers[0].pop().ok())
            .map(|f| f.index)
            .collect();
        assert_eq!(got, [0, 1, 2, 3]);
        for i in 4..10 {
            hub.publish(frames(i));
        }
        let core0: Vec<u64> = std::iter::from_fn(|| consumers[0].pop().ok())
            .map(|f| f.index)
            .collect();
        let core1: Vec<u64> = std::iter::from_fn(|| consumers[1].pop().ok())
            .map(|f| f.index)
            .collect();
        assert_eq!(core0, [4, 5, 6, 7]);
        assert_eq!(core1, [0, 1, 2, 3]);
        assert_eq!(hub.rings[0].dropped.load(Relaxed), 2);
        assert_eq!(hub.rings[1].dropped.load(Relaxed), 6);
        assert_eq!(hub.published.load(Relaxed), 10);
        let latest: Vec<u64> = hub.latest().iter().map(|f| f.index).collect();
        assert_eq!(latest, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn frames_are_shared_not_copied() {
        let (hub, mut consumers) = Hub::new(2, 4, 1);
        hub.publish(frames(1));
        let ptr = consumers[0].pop().unwrap().full.as_ptr();
        assert_eq!(consumers[1].pop().unwrap().full.as_ptr(), ptr);
        assert_eq!(hub.latest()[0].full.as_ptr(), ptr);
    }

    #[test]
    fn dedup_marks_a_key_seen_within_the_window_and_stays_bounded() {
        let (hub, mut consumers) = Hub::new(1, 64, 1);
        hub.set_dedup(Duration::from_secs(3600), 3);
        let keyed = |i: u64, key: u8| {
            let mut d = frames(i);
            d.issuance = Some([key; 16]);
            d
        };
        for (i, key) in [1, 2, 1, 3, 2, 4, 5, 1].into_iter().enumerate() {
            hub.publish(keyed(i as u64, key));
        }
        hub.publish(frames(99)); // no key: never a duplicate
        let dup: Vec<bool> = std::iter::from_fn(|| consumers[0].pop().ok())
            .map(|f| f.duplicate)
            .collect();
        // Capacity 3: by the time 1 comes back the last time, 4 and 5 pushed it out.
        assert_eq!(
            dup,
            [false, false, true, false, true, false, false, false, false]
        );
        assert_eq!(hub.dedup_hits.load(Relaxed), 2);
        assert!(hub.dedup_keys.load(Relaxed) <= 3);
        let mut d = Dedup::new(Duration::from_secs(10), 100);
        let t0 = Instant::now();
        assert!(!d.seen([1; 16], t0));
        assert!(d.seen([1; 16], t0 + Duration::from_secs(9)));
        assert!(
            !d.seen([1; 16], t0 + Duration::from_secs(11)),
            "window over"
        );
    }

    #[test]
    fn cursors_are_consecutive_in_ring_order_from_the_first() {
        let (hub, mut consumers) = Hub::new(1, 16, 1000);
        assert_eq!(hub.next_cursor(), 1000);
        for i in 0..5 {
            hub.publish(frames(i));
        }
        let got: Vec<(u64, u64)> = std::iter::from_fn(|| consumers[0].pop().ok())
            .map(|f| (f.cursor, f.index))
            .collect();
        assert_eq!(got, [(1000, 0), (1001, 1), (1002, 2), (1003, 3), (1004, 4)]);
        assert_eq!(hub.next_cursor(), 1005);
        let f = &hub.latest()[4];
        assert!(crate::frame::payload(&f.lite)
            .starts_with(b"{\"message_type\":\"certificate_update\",\"cursor\":1004,\"data\":"));
        // Cursor 0 means "never published": a hub starts at 1 at least.
        assert_eq!(Hub::new(1, 1, 0).0.next_cursor(), 1);
    }

    #[test]
    fn the_tap_sees_every_stamped_certificate_in_cursor_order() {
        let (hub, _consumers) = Hub::new(1, 16, 7);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        assert!(hub
            .set_tap(Box::new(move |f: &Frames| s.lock().unwrap().push(f.cursor)))
            .is_ok());
        assert!(hub.set_tap(Box::new(|_: &Frames| {})).is_err());
        for i in 0..3 {
            hub.publish(frames(i));
        }
        assert_eq!(*seen.lock().unwrap(), [7, 8, 9]);
    }

    #[test]
    fn stamped_frames_keep_their_cursor_and_never_go_back() {
        let (hub, mut consumers) = Hub::new(1, 16, 1);
        let (a, b) = (frames(1).stamp(40), frames(2).stamp(42));
        assert!(hub.publish_stamped(a.clone()));
        assert!(hub.publish_stamped(b));
        assert!(!hub.publish_stamped(a), "a cursor seen already is refused");
        assert_eq!(hub.next_cursor(), 43);
        let got: Vec<u64> = std::iter::from_fn(|| consumers[0].pop().ok())
            .map(|f| f.cursor)
            .collect();
        assert_eq!(got, [40, 42]);
        assert_eq!(hub.room(), 16);
    }
}
