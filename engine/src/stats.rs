//! Counters of the ingest side, read by the server's `/stats` and `/metrics`.
//!
//! Plain relaxed atomics: written by the watcher that owns a log, read rarely.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Engine-wide counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Entries turned into frames and published.
    pub entries: AtomicU64,
    /// Entries whose leaf or extra_data could not be decoded at all (skipped).
    pub bad_entries: AtomicU64,
    /// Leaf certificates that did not parse (delivered with what could be read).
    pub leaf_parse_errors: AtomicU64,
    /// Chain certificates that did not parse (delivered with what could be read).
    pub chain_parse_errors: AtomicU64,
    /// Requests that failed before a status (connect, TLS, timeout, truncated body).
    pub http_errors: AtomicU64,
    /// Responses with an error status (429 excluded).
    pub http_status_errors: AtomicU64,
    /// 429 answers.
    pub rate_limited: AtomicU64,
    /// Bodies that did not parse or said something impossible.
    pub bad_responses: AtomicU64,
    /// static-ct-api checkpoints rejected (unparsable, wrong origin, bad or missing
    /// signature): never followed.
    pub bad_checkpoints: AtomicU64,
    /// Log list fetches that failed.
    pub loglist_errors: AtomicU64,
    /// Position file writes that failed.
    pub position_save_errors: AtomicU64,
    /// Polls that found a log's tree smaller than the position it is to continue from.
    pub behind_position: AtomicU64,
    logs: Mutex<Vec<Arc<LogStats>>>,
}

/// Per-log counters.
#[derive(Debug)]
pub struct LogStats {
    pub id: u32,
    pub url: String,
    pub name: String,
    pub operator: String,
    /// `rfc6962` or `static-ct`.
    pub kind: &'static str,
    /// Next index to fetch.
    pub position: AtomicU64,
    /// Latest tree size seen.
    pub tree_size: AtomicU64,
    pub entries: AtomicU64,
    pub errors: AtomicU64,
    /// The batch size the log was seen to cap `get-entries` at (0 until learned).
    pub batch_cap: AtomicU64,
    /// 1 while a watcher runs for it.
    pub active: AtomicU64,
    /// 1 while its tree is smaller than the position it is to continue from (the log went
    /// backwards, or the positions file belongs to another deployment).
    pub behind: AtomicU64,
    /// When (Unix milliseconds) its tree size was last read, and when an entry of it was
    /// last published (0: never).
    pub last_success_ms: AtomicU64,
    pub last_advance_ms: AtomicU64,
    /// The last failure: when (Unix milliseconds) and what.
    pub last_error: Mutex<Option<(u64, String)>>,
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Stats {
    /// A new, shared set of counters.
    pub fn new() -> Arc<Self> {
        Arc::new(Stats::default())
    }

    /// Registers a log (or returns the existing record for the same URL).
    pub fn log(&self, url: &str, name: &str, operator: &str, kind: &'static str) -> Arc<LogStats> {
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = logs.iter().find(|l| l.url == url) {
            return l.clone();
        }
        let l = Arc::new(LogStats {
            id: logs.len() as u32,
            url: url.to_owned(),
            name: name.to_owned(),
            operator: operator.to_owned(),
            kind,
            position: AtomicU64::new(0),
            tree_size: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            batch_cap: AtomicU64::new(0),
            active: AtomicU64::new(0),
            behind: AtomicU64::new(0),
            last_success_ms: AtomicU64::new(0),
            last_advance_ms: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        logs.push(l.clone());
        l
    }

    /// Every log registered so far, in registration order (index = id).
    pub fn logs(&self) -> Vec<Arc<LogStats>> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `(name, value)` of every engine-wide counter, for `/metrics`.
    pub fn counters(&self) -> [(&'static str, u64); 12] {
        [
            ("entries", self.entries.load(Relaxed)),
            ("bad_entries", self.bad_entries.load(Relaxed)),
            ("leaf_parse_errors", self.leaf_parse_errors.load(Relaxed)),
            ("chain_parse_errors", self.chain_parse_errors.load(Relaxed)),
            ("http_errors", self.http_errors.load(Relaxed)),
            ("http_status_errors", self.http_status_errors.load(Relaxed)),
            ("rate_limited", self.rate_limited.load(Relaxed)),
            ("bad_responses", self.bad_responses.load(Relaxed)),
            ("bad_checkpoints", self.bad_checkpoints.load(Relaxed)),
            ("loglist_errors", self.loglist_errors.load(Relaxed)),
            (
                "position_save_errors",
                self.position_save_errors.load(Relaxed),
            ),
            ("behind_position", self.behind_position.load(Relaxed)),
        ]
    }
}
