//! Where each log was left: the next index to fetch, per log URL.
//!
//! The watcher updates a log's position right after it has published the entries before it,
//! with no await in between, so the in-memory map never runs ahead of what was published.
//! The file is written atomically (temporary file, fsync, rename, fsync of the directory)
//! every few seconds and on shutdown; a restart resumes from it. After a clean shutdown no
//! entry is skipped and none is sent twice; after a crash, entries published since the last
//! save are sent again (at most one save interval's worth), and none is skipped.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::Deserialize;

use crate::error::Error;

/// The positions of every log, shared by the watchers and the saver.
#[derive(Debug, Default)]
pub struct Positions {
    path: Option<PathBuf>,
    map: Mutex<BTreeMap<String, u64>>,
    dirty: AtomicBool,
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
            map: Mutex::new(map),
            dirty: AtomicBool::new(false),
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
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// A copy of every position.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the file if anything changed since the last save.
    pub fn save(&self) -> Result<(), Error> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let snapshot = self.snapshot();
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
        if let Err(e) = write_atomic(path, &out) {
            self.dirty.store(true, Ordering::Release);
            return Err(e);
        }
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
    fn corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("positions.json");
        std::fs::write(&path, b"{\"logs\":{\"a\":").unwrap();
        assert!(Positions::load(&path).is_err());
    }
}
