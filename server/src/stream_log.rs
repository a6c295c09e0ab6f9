//! A core's stream log: the recent stream, kept once per core, in cursor order.
//!
//! The core appends every certificate it takes from its hand-off ring ([`StreamLog::push`]);
//! the entries are the hub's shared [`Frames`], so a certificate's bytes are held once
//! however many cores refer to them. The log is bounded by a byte budget and a count: past
//! either, the oldest certificates are evicted.
//!
//! # Readers are positions
//! A connection is only a position in this log (a core-local sequence number, consecutive
//! even where the hand-off ring shed a certificate and cursors jump), so a burst costs each
//! client nothing but a number: the log absorbs it once for all. A reader whose position
//! fell off the tail skips to the tail, and the frames it skipped are counted (drop-oldest,
//! as tokio's broadcast channel reports `Lagged(n)`).
//!
//! # Resuming
//! [`StreamLog::resume`] turns a client's `since` cursor into a position: every certificate
//! after `since` still held, and the range it can no longer have when `since` is older
//! than the tail.
//!
//! # Other wire forms
//! Beside each certificate's websocket frames the log keeps the other wire forms clients of
//! this core asked for (an SSE event, a deflated frame: see [`crate::wire`]), each made the
//! first time a client wants it ([`StreamLog::form`]) and then shared by every client of
//! that form; they count against the byte budget and are evicted with their certificate.
//! # Filters
//! Beside each certificate the log keeps the ids of the core's filters it matched
//! ([`crate::filter::Matcher`], evaluated once when the core took it), so a filtered reader
//! only looks its id up.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use bytes::Bytes;

use certstream_engine::Frames;

/// Where a resuming client starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The position of the first certificate it gets.
    pub seq: u64,
    /// Certificates with a smaller cursor are skipped (they may reach this core after the
    /// client connected, when `since` was published but not yet handed to this core).
    pub min_cursor: u64,
    /// `(from, to)`: the cursors after `since` that this core no longer holds.
    pub gap: Option<(u64, u64)>,
}

/// The recent stream of one core.
#[derive(Debug)]
pub struct StreamLog {
    frames: VecDeque<Frames>,
    /// The other wire forms made so far of `frames[i]`: `(form key, bytes)`.
    forms: VecDeque<RefCell<Vec<(u8, Bytes)>>>,
    /// Bytes of those forms.
    form_bytes: Cell<usize>,
    /// The filter ids each certificate matched, beside `frames` (empty: none, or no filters).
    matched: VecDeque<Box<[u32]>>,
    /// Position of `frames[0]`.
    tail_seq: u64,
    bytes: usize,
    max_bytes: usize,
    max_frames: usize,
    /// The cursor the next certificate is expected to carry.
    next_cursor: u64,
    /// Certificates evicted so far.
    pub evicted: u64,
}

impl StreamLog {
    /// An empty log holding at most `max_bytes` of frames and `max_frames` certificates
    /// (at least one), expecting `next_cursor` first.
    pub fn new(max_bytes: usize, max_frames: usize, next_cursor: u64) -> Self {
        StreamLog {
            frames: VecDeque::new(),
            forms: VecDeque::new(),
            form_bytes: Cell::new(0),
            matched: VecDeque::new(),
            tail_seq: 0,
            bytes: 0,
            max_bytes,
            max_frames: max_frames.max(1),
            next_cursor,
            evicted: 0,
        }
    }

    /// Appends a certificate (cursors only grow), evicting the oldest past the budget; the
    /// newest is always kept.
    pub fn push(&mut self, f: Frames) {
        self.push_matched(f, Box::default());
    }

    /// [`StreamLog::push`] with the (sorted) ids of the filters the certificate matched.
    pub fn push_matched(&mut self, f: Frames, matched: Box<[u32]>) {
        self.matched.push_back(matched);
        self.next_cursor = self.next_cursor.max(f.cursor + 1);
        self.bytes += f.len();
        self.frames.push_back(f);
        self.forms.push_back(RefCell::new(Vec::new()));
        while self.frames.len() > 1
            && (self.bytes() > self.max_bytes || self.frames.len() > self.max_frames)
        {
            if let Some(old) = self.frames.pop_front() {
                self.matched.pop_front();
                self.bytes -= old.len();
                if let Some(forms) = self.forms.pop_front() {
                    let n: usize = forms.borrow().iter().map(|(_, b)| b.len()).sum();
                    self.form_bytes.set(self.form_bytes.get() - n);
                }
                self.tail_seq += 1;
                self.evicted += 1;
            }
        }
    }

    /// The position of the oldest certificate held.
    pub fn tail_seq(&self) -> u64 {
        self.tail_seq
    }

    /// The position the next certificate will get.
    pub fn head_seq(&self) -> u64 {
        self.tail_seq + self.frames.len() as u64
    }

    /// The certificate at position `seq`, while held.
    #[inline]
    pub fn get(&self, seq: u64) -> Option<&Frames> {
        let i = usize::try_from(seq.checked_sub(self.tail_seq)?).ok()?;
        self.frames.get(i)
    }

    /// Wire form `key` of the certificate at position `seq`, while held: made by `make` the
    /// first time it is asked for, then the same shared bytes for every client.
    pub fn form(&self, seq: u64, key: u8, make: impl FnOnce(&Frames) -> Bytes) -> Option<Bytes> {
        let i = usize::try_from(seq.checked_sub(self.tail_seq)?).ok()?;
        let f = self.frames.get(i)?;
        let mut forms = self.forms.get(i)?.borrow_mut();
        if let Some((_, b)) = forms.iter().find(|(k, _)| *k == key) {
            return Some(b.clone());
        }
        let b = make(f);
        self.form_bytes.set(self.form_bytes.get() + b.len());
        forms.push((key, b.clone()));
        Some(b)
    }

    /// The filter ids the certificate at `seq` matched (empty when not held).
    #[inline]
    pub fn matched(&self, seq: u64) -> &[u32] {
        usize::try_from(seq.wrapping_sub(self.tail_seq))
            .ok()
            .and_then(|i| self.matched.get(i))
            .map_or(&[], |m| m)
    }

    /// Certificates held.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes of frames held (other wire forms included).
    pub fn bytes(&self) -> usize {
        self.bytes + self.form_bytes.get()
    }

    /// The oldest cursor held (the next expected one when nothing is).
    pub fn tail_cursor(&self) -> u64 {
        self.frames.front().map_or(self.next_cursor, |f| f.cursor)
    }

    /// The cursor the next certificate is expected to carry.
    pub fn next_cursor(&self) -> u64 {
        self.next_cursor
    }

    /// Where a client that has seen everything up to cursor `since` starts.
    pub fn resume(&self, since: u64) -> Resume {
        let after = since.saturating_add(1);
        let tail = self.tail_cursor();
        if after < tail {
            return Resume {
                seq: self.tail_seq,
                min_cursor: after,
                gap: Some((after, tail - 1)),
            };
        }
        let i = self.frames.partition_point(|f| f.cursor <= since);
        Resume {
            seq: self.tail_seq + i as u64,
            min_cursor: after,
            gap: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frames(cursor: u64, size: usize) -> Frames {
        Frames {
            cursor,
            log: 0,
            index: cursor,
            lite: Bytes::from(vec![b'l'; size]),
            full: Bytes::from(vec![b'f'; size]),
            domains: Bytes::from(vec![b'd'; size]),
            ..Default::default()
        }
    }

    fn cursors(log: &StreamLog) -> Vec<u64> {
        (log.tail_seq()..log.head_seq())
            .map(|s| log.get(s).unwrap().cursor)
            .collect()
    }

    #[test]
    fn the_byte_budget_evicts_the_oldest() {
        let mut log = StreamLog::new(300, 1000, 1);
        for c in 1..=10 {
            log.push(frames(c, 10)); // 30 bytes each
        }
        assert_eq!(cursors(&log), (1..=10).collect::<Vec<_>>());
        log.push(frames(11, 10));
        assert_eq!(cursors(&log), (2..=11).collect::<Vec<_>>());
        assert_eq!((log.bytes(), log.evicted, log.tail_seq()), (300, 1, 1));
        assert_eq!(log.get(0).map(|f| f.cursor), None);
        assert_eq!(log.get(1).map(|f| f.cursor), Some(2));
        // A certificate larger than the whole budget is still kept, alone.
        log.push(frames(12, 1000));
        assert_eq!(cursors(&log), [12]);
        assert_eq!(log.next_cursor(), 13);
    }

    #[test]
    fn a_wire_form_is_made_once_and_evicted_with_its_certificate() {
        let mut log = StreamLog::new(100, 1000, 1);
        log.push(frames(1, 10));
        let mut made = 0;
        for _ in 0..3 {
            let b = log.form(0, 7, |f| {
                made += 1;
                Bytes::from(format!("sse{}", f.cursor).repeat(5))
            });
            assert_eq!(b.as_deref(), Some(&b"sse1sse1sse1sse1sse1"[..]));
        }
        assert_eq!((made, log.bytes()), (1, 50));
        assert_eq!(log.form(1, 7, |_| unreachable!()), None);
        // The form counts against the budget: two more certificates evict the first.
        log.push(frames(2, 10));
        log.push(frames(3, 10));
        assert_eq!(cursors(&log), [2, 3]);
        assert_eq!(log.bytes(), 60);
    }

    #[test]
    fn the_count_bound_evicts_the_oldest() {
        let mut log = StreamLog::new(usize::MAX, 3, 1);
        for c in 1..=5 {
            log.push(frames(c, 1));
        }
        assert_eq!(cursors(&log), [3, 4, 5]);
        assert_eq!((log.tail_seq(), log.head_seq(), log.evicted), (2, 5, 2));
    }

    #[test]
    fn resume_finds_the_first_cursor_after_since() {
        let mut log = StreamLog::new(usize::MAX, 100, 10);
        // Cursors 10..=20 without 15 (shed by the hand-off ring for this core).
        for c in (10..=20).filter(|&c| c != 15) {
            log.push(frames(c, 1));
        }
        let at = |since| {
            let r = log.resume(since);
            (log.get(r.seq).map(|f| f.cursor), r.gap)
        };
        assert_eq!(at(9), (Some(10), None));
        assert_eq!(at(12), (Some(13), None));
        assert_eq!(at(14), (Some(16), None));
        assert_eq!(at(15), (Some(16), None));
        assert_eq!(at(19), (Some(20), None));
        // Everything seen: live at the head.
        assert_eq!(at(20), (None, None));
        assert_eq!(log.resume(20).seq, log.head_seq());
        // Older than the tail: told what is missing, then everything held.
        assert_eq!(at(3), (Some(10), Some((4, 9))));
        assert_eq!(log.resume(3).min_cursor, 4);
        // Published but not yet here: start at the head, skip what it has seen.
        let r = log.resume(25);
        assert_eq!((r.seq, r.min_cursor, r.gap), (log.head_seq(), 26, None));
    }

    #[test]
    fn an_empty_log_reports_a_gap_before_its_first_cursor() {
        let log = StreamLog::new(100, 100, 500);
        assert_eq!(log.tail_cursor(), 500);
        assert_eq!(log.resume(499).gap, None);
        assert_eq!(log.resume(100).gap, Some((101, 499)));
        assert_eq!(log.resume(0).gap, Some((1, 499)));
    }
}
