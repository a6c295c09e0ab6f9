//! `/health` and `/health/deep`: whether the stream is alive, and each log's state.
//!
//! `/health` is 200 `ok` while at least one log published an entry within the health
//! window (`--health-window`, 5 minutes by default), and 503 with the reason otherwise.
//! `/health/deep` is a JSON report per log: its state, position, tree size and lag, its
//! last error and last success. A log whose tree is smaller than the position it is to
//! continue from (the log went backwards, or the positions file belongs to another
//! deployment) is `behind`, with the reason: it is otherwise followed silently, waiting for
//! a size it may never reach.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use certstream_engine::json::write_str;
use certstream_engine::stats::{now_ms, LogStats};

use crate::shared::Shared;

/// What a log is doing, for `/health/deep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogState {
    /// No watcher runs for it (left the list, or stopping).
    Stopped,
    /// Its tree is smaller than the position it is to continue from.
    Behind,
    /// Its last request failed (and it is backing off).
    Failing,
    /// Fetching what it has published.
    CatchingUp,
    /// At its head.
    Following,
}

impl LogState {
    pub fn name(self) -> &'static str {
        match self {
            LogState::Stopped => "stopped",
            LogState::Behind => "behind",
            LogState::Failing => "failing",
            LogState::CatchingUp => "catching_up",
            LogState::Following => "following",
        }
    }
}

fn last_error(l: &LogStats) -> Option<(u64, String)> {
    l.last_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// A log's state and, when it is not well, why.
pub fn log_state(l: &LogStats) -> (LogState, Option<String>) {
    let (position, tree) = (l.position.load(Relaxed), l.tree_size.load(Relaxed));
    if l.active.load(Relaxed) == 0 {
        return (
            LogState::Stopped,
            Some("no watcher runs for this log".into()),
        );
    }
    if l.behind.load(Relaxed) == 1 {
        return (
            LogState::Behind,
            Some(format!(
                "the log's tree size {tree} is smaller than the saved position {position}: the log went backwards, or the positions file belongs to another deployment"
            )),
        );
    }
    if let Some((at, e)) = last_error(l) {
        if at > l.last_success_ms.load(Relaxed) && at > l.last_advance_ms.load(Relaxed) {
            return (LogState::Failing, Some(e));
        }
    }
    if position < tree {
        (LogState::CatchingUp, None)
    } else {
        (LogState::Following, None)
    }
}

/// `/health`: `Ok("ok")`, or `Err(reason)` for a 503.
pub fn health(shared: &Shared) -> Result<&'static str, String> {
    let window = shared.config.health_window;
    let logs = shared.engine.logs();
    if logs.is_empty() {
        return Err("no CT log is watched (yet)".into());
    }
    let since = now_ms().saturating_sub(window.as_millis() as u64);
    if logs
        .iter()
        .any(|l| l.last_advance_ms.load(Relaxed) >= since && l.last_advance_ms.load(Relaxed) > 0)
    {
        return Ok("ok");
    }
    let mut counts = [0usize; 5];
    for l in &logs {
        counts[log_state(l).0 as usize] += 1;
    }
    let mut reason = format!(
        "no CT log published an entry in the last {} s ({} logs:",
        window.as_secs(),
        logs.len()
    );
    for (state, n) in [
        LogState::Stopped,
        LogState::Behind,
        LogState::Failing,
        LogState::CatchingUp,
        LogState::Following,
    ]
    .iter()
    .map(|s| (s, counts[*s as usize]))
    {
        if n > 0 {
            let _ = write!(reason, " {n} {}", state.name());
        }
    }
    reason.push(')');
    Err(reason)
}

/// `/health/deep`: `{"status":"ok"|"unhealthy","reason":...,"logs":[...]}`.
pub fn deep(shared: &Shared) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    match health(shared) {
        Ok(_) => out.extend_from_slice(b"{\"status\":\"ok\",\"reason\":null,\"logs\":["),
        Err(r) => {
            out.extend_from_slice(b"{\"status\":\"unhealthy\",\"reason\":");
            write_str(&mut out, &r);
            out.extend_from_slice(b",\"logs\":[");
        }
    }
    let ms = |v: u64| {
        if v == 0 {
            "null".to_owned()
        } else {
            format!("{:.3}", v as f64 / 1000.0)
        }
    };
    for (i, l) in shared.engine.logs().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let (state, reason) = log_state(l);
        let (position, tree) = (l.position.load(Relaxed), l.tree_size.load(Relaxed));
        out.extend_from_slice(b"{\"url\":");
        write_str(&mut out, &l.url);
        out.extend_from_slice(b",\"name\":");
        write_str(&mut out, &l.name);
        out.extend_from_slice(b",\"state\":");
        write_str(&mut out, state.name());
        out.extend_from_slice(b",\"reason\":");
        match &reason {
            Some(r) => write_str(&mut out, r),
            None => out.extend_from_slice(b"null"),
        }
        let _ = write!(
            Adapter(&mut out),
            ",\"position\":{position},\"tree_size\":{tree},\"lag\":{},\"last_success\":{},\"last_advance\":{},\"errors\":{},\"last_error\":",
            tree.saturating_sub(position),
            ms(l.last_success_ms.load(Relaxed)),
            ms(l.last_advance_ms.load(Relaxed)),
            l.errors.load(Relaxed),
        );
        match last_error(l) {
            Some((at, e)) => {
                out.extend_from_slice(b"{\"at\":");
                out.extend_from_slice(ms(at).as_bytes());
                out.extend_from_slice(b",\"error\":");
                write_str(&mut out, &e);
                out.push(b'}');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

/// `fmt::Write` into a byte buffer.
struct Adapter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Adapter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}
