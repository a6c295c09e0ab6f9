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

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;

use crate::error::Error;

/// The positions of every log, shared by the watchers and the saver.
#[derive(Debug, Default)]
pub struct Positions {
    path: Option<PathBuf>,
    map: Mutex<BTreeMap<String, u64>>,
    /// What the file holds (written or loaded), so that an unchanged snapshot is not
    /// written again; its lock also keeps writes in order.
    written: Mutex<BTreeMap<String, u64>>,
}

#[derive(Deserialize)]
struct File {
    logs: BTreeMap<String, u64>,
}

impl Positions {
    /// Positions kept in memory only.
    pub fn in_memory() -> Self {
        Positions::default()
    }

    /// Loads `path` if it exists (a missing file is an empty map; a corrupt one is an error,
    /// so a bad file never silently restarts every log from its head).
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, Error> {
        let path = path.into();
        let map = match std::fs::read(&path) {
            Ok(mut bytes) => {
                let f: File = simd_json::serde::from_slice(&mut bytes)
                    .map_err(|e| Error::Json(format!("{}: {e}", path.display())))?;
                f.logs
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(Error::io(&path, e)),
        };
        Ok(Positions {
            path: Some(path),
            written: Mutex::new(map.clone()),
            map: Mutex::new(map),
        })
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

    /// A copy of every position.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the current positions (on shutdown, once nothing is published any more).
    pub fn save(&self) -> Result<(), Error> {
        self.save_snapshot(&self.snapshot())
    }

    /// Writes an earlier [`Positions::snapshot`], unless the file already holds it.
    pub fn save_snapshot(&self, snapshot: &BTreeMap<String, u64>) -> Result<(), Error> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if *written == *snapshot {
            return Ok(());
        }
        let mut out = Vec::with_capacity(64 * snapshot.len() + 32);
        out.extend_from_slice(b"{\"version\":1,\"logs\":{");
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
        written.clone_from(snapshot);
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
        p.save().unwrap();
        let q = Positions::load(&path).unwrap();
        assert_eq!(q.get("https://a/"), Some(10));
        assert_eq!(q.get("https://b/\"x"), Some(7));
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
        p.save_snapshot(&old).unwrap();
        assert_eq!(Positions::load(&path).unwrap().get("a"), Some(5));
        // The same snapshot again: the file is not touched.
        std::fs::remove_file(&path).unwrap();
        p.save_snapshot(&old).unwrap();
        assert!(!path.exists());
        p.save().unwrap();
        assert_eq!(Positions::load(&path).unwrap().get("a"), Some(9));
        // Loading counts as written.
        let q = Positions::load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        q.save().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("positions.json");
        std::fs::write(&path, b"{\"logs\":{\"a\":").unwrap();
        assert!(Positions::load(&path).is_err());
    }
}
