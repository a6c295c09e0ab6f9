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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::frame::Frames;

/// Where watchers hand each certificate's frames to the fanout. [`Hub`] implements it; tests
/// collect with a closure. The ingest side depends on this trait, the fanout on no watcher.
pub trait Sink: Send + Sync + 'static {
    /// Hands one certificate's frames on. Must not block.
    fn publish(&self, frames: Frames);
}

impl<F: Fn(Frames) + Send + Sync + 'static> Sink for F {
    fn publish(&self, frames: Frames) {
        self(frames)
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
    producers: Mutex<Vec<rtrb::Producer<Frames>>>,
    /// Per-core ring counters, index = core.
    pub rings: Vec<Arc<CoreRing>>,
    latest: Mutex<VecDeque<Frames>>,
    /// Certificates published.
    pub published: AtomicU64,
}

impl Hub {
    /// A hub for `cores` cores with rings of `capacity` certificates each; returns the
    /// consumer end of each core's ring.
    pub fn new(cores: usize, capacity: usize) -> (Arc<Hub>, Vec<rtrb::Consumer<Frames>>) {
        let mut producers = Vec::with_capacity(cores);
        let mut consumers = Vec::with_capacity(cores);
        for _ in 0..cores {
            let (p, c) = rtrb::RingBuffer::new(capacity.max(1));
            producers.push(p);
            consumers.push(c);
        }
        let hub = Hub {
            producers: Mutex::new(producers),
            rings: (0..cores).map(|_| Arc::new(CoreRing::default())).collect(),
            latest: Mutex::new(VecDeque::with_capacity(LATEST)),
            published: AtomicU64::new(0),
        };
        (Arc::new(hub), consumers)
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
    fn publish(&self, frames: Frames) {
        self.published.fetch_add(1, Relaxed);
        {
            let mut producers = self.producers.lock().unwrap_or_else(|e| e.into_inner());
            for (p, ring) in producers.iter_mut().zip(&self.rings) {
                // A clone is three reference-count bumps; a full ring hands it back.
                match p.push(frames.clone()) {
                    Ok(()) => ring.pushed.fetch_add(1, Relaxed),
                    Err(rtrb::PushError::Full(_)) => ring.dropped.fetch_add(1, Relaxed),
                };
            }
        }
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        if latest.len() == LATEST {
            latest.pop_front();
        }
        latest.push_back(frames);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frames(i: u64) -> Frames {
        Frames {
            log: 0,
            index: i,
            lite: Bytes::from(format!("lite{i}")),
            full: Bytes::from(format!("full{i}")),
            domains: Bytes::from(format!("domains{i}")),
        }
    }

    #[test]
    fn a_full_ring_drops_for_that_core_only() {
        let (hub, mut consumers) = Hub::new(2, 4);
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
        let (hub, mut consumers) = Hub::new(2, 4);
        let f = frames(1);
        let ptr = f.full.as_ptr();
        hub.publish(f);
        assert_eq!(consumers[0].pop().unwrap().full.as_ptr(), ptr);
        assert_eq!(consumers[1].pop().unwrap().full.as_ptr(), ptr);
    }
}
