//! Where each log was left: the next index to fetch, per log URL.
//!
//! The watcher updates a log's position right after it has published the entries before it,
//! with no await in between, so the in-memory map never runs ahead of what was published.
//! The file is written atomically (temporary file, fsync, rename, fsync of the directory); a
//! restart resumes from it.
//!
//! # What a restart costs
//! Published is not yet delivered: a frame still waits in a core's ring, a client's queue or
//! the writer for a few milliseconds (longer under load). So while running, the ingest side
//! ([`crate::ingest`]) writes the file every half `save_interval` with the positions **as
//! they were half an interval earlier** ([`Positions::save_snapshot`]): the file is between
//! half and one interval old, and every entry it covers was handed to the clients long ago.
//! - **Clean shutdown** (SIGTERM): the watchers stop, the current positions are written, and
//!   the serving cores send everything published before closing their clients (1001): no
//!   entry is skipped and none is sent twice.
//! - **Crash** (SIGKILL, power loss): the entries published in the last save interval or so
//!   are sent again, and none is skipped for a client that receives frames within half an
//!   interval of their publication (one that falls further behind is losing frames by the
//!   slow-client policy anyway). Writing the current positions instead would skip the frames
//!   still in flight when the crash comes right after a save.
//!
//! # Cursors
//! The file also holds `next_cursor`, the first cursor a new run may give a certificate
//! ([`crate::hub`]). A clean shutdown writes the hub's next cursor itself, so the sequence
//! continues with no gap and no repeat. While running, every save writes a **lease**: the
//! next cursor plus [`CURSOR_LEASE`], renewed once half of it is used. After a crash the new
//! run starts at the lease, ahead of every cursor the old run can have given (as long as a
//! save succeeded within the last half lease: 524,288 certificates, minutes of the public
//! stream's peak): cursors jump, never repeat.
//!
//! # Held back by what comes after
//! A stage after publication that can lose what it holds in a crash (an ingest node's queue
//! to NATS JetStream) sets a [`Floor`] ([`Positions::set_floor`]): per log, the oldest index
//! it still holds. A snapshot never claims a log beyond it, so after a crash the entries
//! that stage had not made durable are fetched again (and found duplicate downstream where
//! it had).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::Deserialize;

use crate::error::Error;

/// How far ahead of the stream a running service's saved `next_cursor` is kept.
pub const CURSOR_LEASE: u64 = 1 << 20;

/// Per log URL, the oldest entry index a later stage still holds and could lose (`None`:
/// nothing held). Must not block.
pub type Floor = Box<dyn Fn(&str) -> Option<u64> + Send + Sync>;

/// The positions of every log, shared by the watchers and the saver.
#[derive(Default)]
pub struct Positions {
    path: Option<PathBuf>,
    map: Mutex<BTreeMap<String, u64>>,
    /// What the file holds (written or loaded): positions and `next_cursor`, so that an
    /// unchanged snapshot is not written again; its lock also keeps writes in order.
    written: Mutex<(BTreeMap<String, u64>, u64)>,
    /// The file's `next_cursor` when loaded (1 without one).
    first_cursor: u64,
    /// What snapshots are held back by ([`Positions::set_floor`]).
    floor: OnceLock<Floor>,
}

impl std::fmt::Debug for Positions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Positions")
            .field("path", &self.path)
            .field("map", &self.map)
            .field("first_cursor", &self.first_cursor)
            .field("floor", &self.floor.get().is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct File {
    logs: BTreeMap<String, u64>,
    #[serde(default)]
    next_cursor: Option<u64>,
}

impl Positions {
    /// Positions kept in memory only.
    pub fn in_memory() -> Self {
        Positions {
            first_cursor: 1,
            ..Positions::default()
        }
    }

    /// Loads `path` if it exists (a missing file is an empty map; a corrupt one is an error,
    /// so a bad file never silently restarts every log from its head).
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, Error> {
        let path = path.into();
        let (map, cursor) = match std::fs::read(&path) {
            Ok(mut bytes) => {
                let f: File = simd_json::serde::from_slice(&mut bytes)
                    .map_err(|e| Error::Json(format!("{}: {e}", path.display())))?;
                (f.logs, f.next_cursor)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (BTreeMap::new(), None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let first_cursor = cursor.unwrap_or(1).max(1);
        Ok(Positions {
            path: Some(path),
            written: Mutex::new((map.clone(), cursor.unwrap_or(0))),
            map: Mutex::new(map),
            first_cursor,
            floor: OnceLock::new(),
        })
    }

    /// The first cursor this run may give: the saved `next_cursor` (1 without one).
    pub fn first_cursor(&self) -> u64 {
        self.first_cursor
    }

    /// The `next_cursor` to save while running, when the stream is at `next`: the lease
    /// already written while less than half of it is used, a new one otherwise.
    pub fn cursor_lease(&self, next: u64) -> u64 {
        let written = self.written.lock().unwrap_or_else(|e| e.into_inner()).1;
        if written >= next.saturating_add(CURSOR_LEASE / 2) {
            written
        } else {
            next.saturating_add(CURSOR_LEASE)
        }
    }

    /// The saved next index of a log.
    pub fn get(&self, url: &str) -> Option<u64> {
        self.lock().get(url).copied()
    }

    /// Records that every entry before `next` has been published.
    pub fn set(&self, url: &str, next: u64) {
        let mut m = self.lock();
        if m.get(url) != Some(&next) {
            m.insert(url.to_owned(), next);
        }
    }

    /// Holds snapshots back to `floor` (once; a second floor is refused and handed back).
    pub fn set_floor(&self, floor: Floor) -> Result<(), Floor> {
        self.floor.set(floor)
    }

    /// A copy of every position, none beyond the [`Floor`].
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let mut m = self.lock().clone();
        if let Some(floor) = self.floor.get() {
            for (url, next) in m.iter_mut() {
                if let Some(held) = floor(url) {
                    *next = (*next).min(held);
                }
            }
        }
        m
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the current positions and `next_cursor` (on shutdown, once nothing is
    /// published any more: `next_cursor` is then the hub's next cursor itself).
    pub fn save(&self, next_cursor: u64) -> Result<(), Error> {
        self.save_snapshot(&self.snapshot(), next_cursor)
    }

    /// Writes an earlier [`Positions::snapshot`] and `next_cursor`, unless the file already
    /// holds them.
    pub fn save_snapshot(
        &self,
        snapshot: &BTreeMap<String, u64>,
        next_cursor: u64,
    ) -> Result<(), Error> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if written.0 == *snapshot && written.1 == next_cursor {
            return Ok(());
        }
        let mut out = Vec::with_capacity(64 * snapshot.len() + 64);
        out.extend_from_slice(b"{\"version\":1,\"next_cursor\":");
        out.extend_from_slice(itoa::Buffer::new().format(next_cursor).as_bytes());
        out.extend_from_slice(b",\"logs\":{");
        for (i, (url, next)) in snapshot.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"\n  ");
            crate::json::write_str(&mut out, url);
            out.push(b':');
            out.extend_from_slice(itoa::Buffer::new().format(*next).as_bytes());
        }
        out.extend_from_slice(b"\n}}\n");
        write_atomic(path, &out)?;
        written.0.clone_from(snapshot);
        written.1 = next_cursor;
        Ok(())
    }
}

/// Writes `data` to `path` so that a reader sees either the old or the new file, whole.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), Error> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("positions")
    ));
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(data).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("positions.json");
        let p = Positions::load(&path).unwrap();
        assert_eq!(p.get("https://a/"), None);
        p.set("https://a/", 10);
        p.set("https://b/\"x", 7);
        assert_eq!(p.first_cursor(), 1);
        p.save(1234).unwrap();
        let q = Positions::load(&path).unwrap();
        assert_eq!(q.get("https://a/"), Some(10));
        assert_eq!(q.get("https://b/\"x"), Some(7));
        assert_eq!(q.first_cursor(), 1234);
        assert!(!dir.path().join(".positions.json.tmp").exists());
    }

    #[test]
    fn snapshots_are_written_as_they_were_and_only_when_new() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("positions.json");
        let p = Positions::load(&path).unwrap();
        p.set("a", 5);
        let old = p.snapshot();
        p.set("a", 9);
        p.save_snapshot(&old, 7).unwrap();
        assert_eq!(Positions::load(&path).unwrap().get("a"), Some(5));
        // The same snapshot again: the file is not touched.
        std::fs::remove_file(&path).unwrap();
        p.save_snapshot(&old, 7).unwrap();
        assert!(!path.exists());
        // A new cursor alone is written.
        p.save_snapshot(&old, 8).unwrap();
        assert_eq!(Positions::load(&path).unwrap().first_cursor(), 8);
        p.save(8).unwrap();
        assert_eq!(Positions::load(&path).unwrap().get("a"), Some(9));
        // Loading counts as written.
        let q = Positions::load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        q.save(8).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_floor_holds_snapshots_back_to_what_a_later_stage_still_holds() {
        let p = Positions::in_memory();
        p.set("a", 100);
        p.set("b", 50);
        let held = std::sync::Arc::new(Mutex::new(Some(40)));
        let h = held.clone();
        let floor = p.set_floor(Box::new(move |url| match url {
            "a" => *h.lock().unwrap(),
            _ => None,
        }));
        assert!(floor.is_ok());
        assert!(p.set_floor(Box::new(|_| None)).is_err());
        let snap = p.snapshot();
        assert_eq!((snap["a"], snap["b"]), (40, 50));
        // Beyond the position the floor changes nothing; once released, the position counts.
        *held.lock().unwrap() = Some(200);
        assert_eq!(p.snapshot()["a"], 100);
        *held.lock().unwrap() = None;
        assert_eq!(p.snapshot()["a"], 100);
        assert_eq!(p.get("a"), Some(100), "the live position is not changed");
    }

    #[test]
    fn the_cursor_lease_is_renewed_once_half_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("positions.json");
        let p = Positions::load(&path).unwrap();
        let lease = p.cursor_lease(100);
        assert_eq!(lease, 100 + CURSOR_LEASE);
        p.save_snapshot(&p.snapshot(), lease).unwrap();
        assert_eq!(p.cursor_lease(100 + CURSOR_LEASE / 2), lease);
        assert_eq!(
            p.cursor_lease(101 + CURSOR_LEASE / 2),
            101 + CURSOR_LEASE / 2 + CURSOR_LEASE
        );
        // A crash now: the next run starts past every cursor the lease covered.
        assert_eq!(Positions::load(&path).unwrap().first_cursor(), lease);
    }

    #[test]
    fn corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("positions.json");
        std::fs::write(&path, b"{\"logs\":{\"a\":").unwrap();
        assert!(Positions::load(&path).is_err());
    }
}
