//! The stream checker: reads a certstream stream and verifies, per log (`data.source.url`),
//! that every `cert_index` arrives exactly once and in order.
//!
//! - **Per log**: the next expected index and the holes still open. An index above the next
//!   expected one opens a hole (a *gap*); an index inside an open hole fills it (*reordered*:
//!   it came late); an index already received is a *duplicate*. At the end, the holes still
//!   open plus what a log's final tree size says never came (the *tail*) are the entries lost.
//! - **Across reconnections**: the per-log state lives in [`Checker`], not in the connection,
//!   so a server restart is just a new connection ([`stream`] reconnects with backoff). Each
//!   connection keeps its own counts (first index per log, duplicates, gaps), which is how the
//!   restart script tells what each kind of restart cost.
//! - **Latency**: receipt time minus the message's `seen` (when the server parsed the entry).
//!   certstream messages carry no log timestamp, so time spent upstream is not in it.
//! - **Server drops**: a client that cannot keep up loses frames by policy (the server counts
//!   them). [`scrape_metrics`] reads `/metrics` every second (summing over server restarts)
//!   so that frames the server dropped are reported beside, and apart from, real gaps.
//!
//! Only the tail of each message is read (`cert_index`, `seen`, `source.url`): the checker
//! must keep up with the server, so it does not parse certificates.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::ws::{self, Client, OP_CLOSE, OP_TEXT};

/// Seconds since the epoch.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What the checker needs of one `certificate_update`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Update<'a> {
    /// `data.source.url` as written in the message.
    pub url: &'a str,
    pub index: u64,
    pub seen: f64,
    /// The stream cursor (the key after `message_type`), when the server sends one.
    pub cursor: Option<u64>,
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The number at the start of `b` (up to `,` or `}`).
fn number(b: &[u8]) -> Option<&str> {
    let end = b.iter().position(|&c| c == b',' || c == b'}')?;
    std::str::from_utf8(&b[..end]).ok()
}

/// Reads `cert_index`, `seen` and `source.url` from a `certificate_update` message. These
/// follow every certificate field, and a `"` inside a JSON string is always escaped, so the
/// last `"cert_index":` of the message is the real one.
pub fn parse_update(msg: &[u8]) -> Option<Update<'_>> {
    const HEAD: &[u8] = b"{\"message_type\":\"certificate_update\",";
    if !msg.starts_with(HEAD) {
        return None;
    }
    let cursor = msg[HEAD.len()..]
        .strip_prefix(b"\"cursor\":")
        .and_then(number)
        .and_then(|n| n.parse().ok());
    const INDEX: &[u8] = b"\"cert_index\":";
    const SEEN: &[u8] = b"\"seen\":";
    const URL: &[u8] = b"\"source\":{\"url\":\"";
    let i = rfind(msg, INDEX)? + INDEX.len();
    let tail = &msg[i..];
    let index = number(tail)?.parse().ok()?;
    let s = find(tail, SEEN)? + SEEN.len();
    let seen = number(&tail[s..])?.parse().ok()?;
    let u = find(&tail[s..], URL)? + s + URL.len();
    let rest = &tail[u..];
    let mut end = 0;
    while end < rest.len() && rest[end] != b'"' {
        end += if rest[end] == b'\\' { 2 } else { 1 };
    }
    let url = std::str::from_utf8(rest.get(..end)?).ok()?;
    Some(Update {
        url,
        index,
        seen,
        cursor,
    })
}

/// One log's sequence.
#[derive(Debug, Default, Clone)]
pub struct LogTrack {
    /// The first index received.
    pub first: Option<u64>,
    /// One past the highest index received.
    pub next: u64,
    /// Missing ranges `[start, end)` still open, by start.
    holes: BTreeMap<u64, u64>,
    pub received: u64,
    pub duplicates: u64,
    /// Entries that arrived after a later one (they filled a hole).
    pub reordered: u64,
    /// Times a hole was opened, and the entries those holes spanned.
    pub gap_events: u64,
    pub gap_entries_opened: u64,
    /// The log's tree size at the end (when known) and what of it never arrived after the
    /// highest index received.
    pub final_size: Option<u64>,
    pub tail_missing: u64,
}

/// What one index did to a log's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    InOrder,
    /// A hole of this many entries opened before it.
    Gap(u64),
    Reordered,
    Duplicate,
}

impl LogTrack {
    /// Records `index`; `expect_start`: the first index every log should start at.
    pub fn observe(&mut self, index: u64, expect_start: Option<u64>) -> Seen {
        self.received += 1;
        let from = match self.first {
            None => {
                self.first = Some(index);
                expect_start.filter(|&s| s < index).unwrap_or(index)
            }
            Some(_) => self.next,
        };
        if index >= from {
            self.next = index + 1;
            if index == from {
                return Seen::InOrder;
            }
            self.holes.insert(from, index);
            self.gap_events += 1;
            self.gap_entries_opened += index - from;
            return Seen::Gap(index - from);
        }
        // Below the next expected index: inside a hole, or a repeat.
        let hole = self
            .holes
            .range(..=index)
            .next_back()
            .map(|(&s, &e)| (s, e))
            .filter(|&(_, e)| index < e);
        match hole {
            Some((s, e)) => {
                self.holes.remove(&s);
                if s < index {
                    self.holes.insert(s, index);
                }
                if index + 1 < e {
                    self.holes.insert(index + 1, e);
                }
                self.reordered += 1;
                Seen::Reordered
            }
            None => {
                self.duplicates += 1;
                Seen::Duplicate
            }
        }
    }

    /// Entries missing inside what was received (holes still open).
    pub fn missing(&self) -> u64 {
        self.holes.iter().map(|(s, e)| e - s).sum()
    }

    /// The open holes, first `n`.
    pub fn holes(&self, n: usize) -> Vec<(u64, u64)> {
        self.holes.iter().take(n).map(|(&s, &e)| (s, e)).collect()
    }

    /// Records the log's final tree size; what lies between the highest index received and
    /// it never came.
    pub fn set_final_size(&mut self, size: u64, expect_start: Option<u64>) {
        self.final_size = Some(size);
        let from = match self.first {
            Some(_) => self.next,
            None => expect_start.unwrap_or(size),
        };
        self.tail_missing = size.saturating_sub(from);
    }
}

/// One connection's share.
#[derive(Debug, Clone, Default)]
pub struct ConnRecord {
    /// Epoch seconds.
    pub started: f64,
    pub ended: Option<f64>,
    /// How it ended: `close <code>`, `eof`, `idle`, `error: ...`, `stopped`.
    pub end: String,
    pub messages: u64,
    pub duplicates: u64,
    pub gap_entries: u64,
    pub reordered: u64,
    /// First and last index per log on this connection.
    pub first: BTreeMap<String, u64>,
    pub last: BTreeMap<String, u64>,
}

/// Counters read from the server's `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServerCounters {
    pub uptime: u64,
    pub processed: u64,
    pub client_dropped: u64,
    pub ring_dropped: u64,
    pub slow_closed: u64,
    pub bad_entries: u64,
}

impl ServerCounters {
    /// Parses the Prometheus text of `/metrics`.
    pub fn parse(text: &str) -> ServerCounters {
        let mut c = ServerCounters::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, v)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = v.trim().parse::<u64>() else {
                continue;
            };
            let name = name.split('{').next().unwrap_or(name);
            match name {
                "certstream_uptime_seconds" => c.uptime = v,
                "certstream_certificates_processed_total" => c.processed = v,
                "certstream_client_dropped_total" => c.client_dropped += v,
                "certstream_ring_dropped_total" => c.ring_dropped += v,
                "certstream_slow_clients_closed_total" => c.slow_closed += v,
                "certstream_ingest_bad_entries_total" => c.bad_entries += v,
                _ => {}
            }
        }
        c
    }

    fn add(&mut self, o: &ServerCounters) {
        self.processed += o.processed;
        self.client_dropped += o.client_dropped;
        self.ring_dropped += o.ring_dropped;
        self.slow_closed += o.slow_closed;
        self.bad_entries += o.bad_entries;
    }
}

/// The server's counters summed over its restarts (a restart starts them from zero).
#[derive(Debug, Default, Clone)]
pub struct ServerTotals {
    /// Server processes seen.
    pub instances: u32,
    done: ServerCounters,
    current: Option<ServerCounters>,
}

impl ServerTotals {
    pub fn update(&mut self, s: ServerCounters) {
        match &self.current {
            Some(c) if s.uptime < c.uptime || s.processed < c.processed => {
                self.done.add(c);
                self.instances += 1;
            }
            None => self.instances += 1,
            _ => {}
        }
        self.current = Some(s);
    }

    pub fn totals(&self) -> ServerCounters {
        let mut t = self.done;
        if let Some(c) = &self.current {
            t.add(c);
        }
        t
    }
}

/// Everything the checker has seen.
#[derive(Debug)]
pub struct Checker {
    pub logs: BTreeMap<String, LogTrack>,
    /// The index every log should start at (`--start` of the service), when known.
    pub expect_start: Option<u64>,
    pub conns: Vec<ConnRecord>,
    /// Receipt − `seen`, milliseconds, every message.
    latencies: Vec<f32>,
    window: Vec<f32>,
    window_messages: u64,
    pub messages: u64,
    pub heartbeats: u64,
    /// Text frames that were neither a certificate_update nor a heartbeat.
    pub unparsed: u64,
    pub server: ServerTotals,
    /// Cursors: the last one seen, how often the next was not the last + 1 (and by how
    /// many it jumped in all), how often one came again or went backwards, and the `gap`
    /// messages a resumed connection was sent.
    pub last_cursor: Option<u64>,
    pub cursor_jumps: u64,
    pub cursor_skipped: u64,
    pub cursor_repeats: u64,
    pub gap_messages: u64,
    started: Instant,
}

impl Checker {
    pub fn new(expect_start: Option<u64>) -> Self {
        Checker {
            logs: BTreeMap::new(),
            expect_start,
            conns: Vec::new(),
            latencies: Vec::with_capacity(1 << 20),
            window: Vec::new(),
            window_messages: 0,
            messages: 0,
            heartbeats: 0,
            unparsed: 0,
            server: ServerTotals::default(),
            last_cursor: None,
            cursor_jumps: 0,
            cursor_skipped: 0,
            cursor_repeats: 0,
            gap_messages: 0,
            started: Instant::now(),
        }
    }

    pub fn begin_connection(&mut self) {
        self.conns.push(ConnRecord {
            started: now_secs(),
            ..ConnRecord::default()
        });
    }

    pub fn end_connection(&mut self, why: String) {
        if let Some(c) = self.conns.last_mut() {
            if c.ended.is_none() {
                c.ended = Some(now_secs());
                c.end = why;
            }
        }
    }

    /// Records one text frame received at `at` (epoch seconds).
    pub fn observe_text(&mut self, payload: &[u8], at: f64) {
        let Some(u) = parse_update(payload) else {
            if payload.starts_with(b"{\"message_type\":\"heartbeat\"") {
                self.heartbeats += 1;
            } else if payload.starts_with(b"{\"message_type\":\"gap\"") {
                self.gap_messages += 1;
            } else {
                self.unparsed += 1;
            }
            return;
        };
        self.observe(u, at);
    }

    /// Records one certificate.
    pub fn observe(&mut self, u: Update<'_>, at: f64) {
        self.messages += 1;
        if let Some(c) = u.cursor {
            match self.last_cursor {
                Some(l) if c <= l => self.cursor_repeats += 1,
                Some(l) if c > l + 1 => {
                    self.cursor_jumps += 1;
                    self.cursor_skipped += c - l - 1;
                }
                _ => {}
            }
            self.last_cursor = Some(self.last_cursor.map_or(c, |l| l.max(c)));
        }
        self.window_messages += 1;
        let ms = ((at - u.seen) * 1000.0) as f32;
        self.latencies.push(ms);
        self.window.push(ms);
        if !self.logs.contains_key(u.url) {
            self.logs.insert(u.url.to_owned(), LogTrack::default());
        }
        let start = self.expect_start;
        let seen = self
            .logs
            .get_mut(u.url)
            .expect("inserted")
            .observe(u.index, start);
        if self.conns.is_empty() {
            self.begin_connection();
        }
        let c = self.conns.last_mut().expect("a connection");
        c.messages += 1;
        match seen {
            Seen::InOrder => {}
            Seen::Gap(n) => c.gap_entries += n,
            Seen::Reordered => c.reordered += 1,
            Seen::Duplicate => c.duplicates += 1,
        }
        if !c.first.contains_key(u.url) {
            c.first.insert(u.url.to_owned(), u.index);
        }
        match c.last.get_mut(u.url) {
            Some(l) => *l = u.index,
            None => {
                c.last.insert(u.url.to_owned(), u.index);
            }
        }
    }

    /// Entries lost so far: open holes plus known tails.
    pub fn gaps(&self) -> u64 {
        self.logs
            .values()
            .map(|t| t.missing() + t.tail_missing)
            .sum()
    }

    pub fn duplicates(&self) -> u64 {
        self.logs.values().map(|t| t.duplicates).sum()
    }

    pub fn reordered(&self) -> u64 {
        self.logs.values().map(|t| t.reordered).sum()
    }

    /// Whether every log in `sizes` (`(url, tree size)`) was received up to its size.
    pub fn caught_up(&self, sizes: &[(String, u64)]) -> bool {
        sizes.iter().all(|(url, size)| {
            let start = self.expect_start.unwrap_or(*size);
            match self.logs.get(url) {
                Some(t) if t.first.is_some() => t.next >= *size,
                _ => *size <= start,
            }
        })
    }

    /// Records every log's final tree size (see [`LogTrack::set_final_size`]).
    pub fn finish(&mut self, sizes: &[(String, u64)]) {
        let start = self.expect_start;
        for (url, size) in sizes {
            self.logs
                .entry(url.clone())
                .or_default()
                .set_final_size(*size, start);
        }
    }

    /// One progress line (and starts a new window).
    pub fn progress(&mut self, window_secs: f64) -> String {
        let mut w = std::mem::take(&mut self.window);
        w.sort_by(|a, b| a.total_cmp(b));
        let n = std::mem::take(&mut self.window_messages);
        let s = self.server.totals();
        format!(
            "{:>6.0} s  conn {:>2}  {:>6.0} msg/s  total {:>9}  logs {}  gaps {}  dups {}  reordered {}  latency p50/p99/max {:.1}/{:.1}/{:.1} ms  server drops: client {} ring {}",
            self.started.elapsed().as_secs_f64(),
            self.conns.len(),
            n as f64 / window_secs.max(1e-9),
            self.messages,
            self.logs.len(),
            self.gaps(),
            self.duplicates(),
            self.reordered(),
            percentile(&w, 0.5),
            percentile(&w, 0.99),
            w.last().copied().unwrap_or(f32::NAN),
            s.client_dropped,
            s.ring_dropped,
        )
    }

    /// The whole report as JSON.
    pub fn summary(&self) -> Value {
        let mut lat = self.latencies.clone();
        lat.sort_by(|a, b| a.total_cmp(b));
        let r = |v: f32| {
            if v.is_finite() {
                json!((v as f64 * 1000.0).round() / 1000.0)
            } else {
                Value::Null
            }
        };
        let logs: serde_json::Map<String, Value> = self
            .logs
            .iter()
            .map(|(url, t)| {
                (
                    url.clone(),
                    json!({
                        "first": t.first,
                        "next": t.next,
                        "received": t.received,
                        "final_size": t.final_size,
                        "gaps": t.missing() + t.tail_missing,
                        "holes": t.holes(20),
                        "tail_missing": t.tail_missing,
                        "gap_events": t.gap_events,
                        "gap_entries_opened": t.gap_entries_opened,
                        "duplicates": t.duplicates,
                        "reordered": t.reordered,
                    }),
                )
            })
            .collect();
        let conns: Vec<Value> = self
            .conns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                json!({
                    "n": i + 1,
                    "started": c.started,
                    "ended": c.ended,
                    "end": c.end,
                    "messages": c.messages,
                    "duplicates": c.duplicates,
                    "gap_entries": c.gap_entries,
                    "reordered": c.reordered,
                    "first": c.first,
                    "last": c.last,
                })
            })
            .collect();
        let s = self.server.totals();
        json!({
            "seconds": (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            "messages": self.messages,
            "heartbeats": self.heartbeats,
            "unparsed": self.unparsed,
            "cursor": {
                "last": self.last_cursor,
                "jumps": self.cursor_jumps,
                "skipped": self.cursor_skipped,
                "repeats": self.cursor_repeats,
                "gap_messages": self.gap_messages,
            },
            "connections": self.conns.len(),
            "gaps": self.gaps(),
            "duplicates": self.duplicates(),
            "reordered": self.reordered(),
            "tail_missing": self.logs.values().map(|t| t.tail_missing).sum::<u64>(),
            "latency_ms": {
                "samples": lat.len(),
                "p50": r(percentile(&lat, 0.5)),
                "p90": r(percentile(&lat, 0.9)),
                "p99": r(percentile(&lat, 0.99)),
                "p999": r(percentile(&lat, 0.999)),
                "max": r(lat.last().copied().unwrap_or(f32::NAN)),
            },
            "server": {
                "instances": self.server.instances,
                "processed": s.processed,
                "client_dropped": s.client_dropped,
                "ring_dropped": s.ring_dropped,
                "slow_clients_closed": s.slow_closed,
                "bad_entries": s.bad_entries,
            },
            "logs": logs,
            "by_connection": conns,
        })
    }
}

/// The `p` quantile of sorted samples (NaN when empty).
pub fn percentile(sorted: &[f32], p: f64) -> f32 {
    if sorted.is_empty() {
        return f32::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// How [`stream`] connects.
#[derive(Debug, Clone)]
pub struct Options {
    /// `host:port`.
    pub addr: String,
    /// `/full-stream`, `/` or ...
    pub path: String,
    /// The wait before reconnecting after a lost connection, and before the first retry of
    /// a failed attempt; retries double it up to `reconnect_max`.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// A connection silent this long is dropped and made again (heartbeats come every 30 s).
    pub idle_timeout: Duration,
    /// Reconnect with `?since=<the last cursor seen>`, as a client that resumes.
    pub resume: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            addr: "127.0.0.1:4000".into(),
            path: "/full-stream".into(),
            reconnect_min: Duration::from_millis(5),
            reconnect_max: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(65),
            resume: false,
        }
    }
}

/// Reads the stream into `state` until `stop` turns true, reconnecting whenever the
/// connection ends.
pub async fn stream(opts: &Options, state: &Mutex<Checker>, mut stop: watch::Receiver<bool>) {
    let mut delay = opts.reconnect_min;
    while !*stop.borrow() {
        let path = match lock(state).last_cursor {
            Some(c) if opts.resume => {
                let sep = if opts.path.contains('?') { '&' } else { '?' };
                format!("{}{sep}since={c}", opts.path)
            }
            _ => opts.path.clone(),
        };
        let connected = tokio::select! {
            c = Client::connect(&opts.addr, &path, Duration::from_secs(5)) => c,
            _ = stop.changed() => break,
        };
        let mut client = match connected {
            Ok(c) => c,
            Err(_) => {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {},
                    _ = stop.changed() => break,
                }
                delay = (delay * 2).min(opts.reconnect_max);
                continue;
            }
        };
        delay = opts.reconnect_min;
        lock(state).begin_connection();
        let why = loop {
            let frame = tokio::select! {
                f = tokio::time::timeout(opts.idle_timeout, client.next_frame()) => f,
                _ = stop.changed() => {
                    client.close(1000).await;
                    lock(state).end_connection("stopped".into());
                    return;
                }
            };
            match frame {
                Ok(Ok(Some((OP_TEXT, payload)))) => {
                    let at = now_secs();
                    lock(state).observe_text(payload, at);
                }
                Ok(Ok(Some((OP_CLOSE, payload)))) => {
                    let code = ws::close_code(payload);
                    client.close(code).await;
                    break format!("close {code}");
                }
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => break "eof".to_owned(),
                Ok(Err(e)) => break format!("error: {e}"),
                Err(_) => break "idle".to_owned(),
            }
        };
        lock(state).end_connection(why);
        // Like real clients, wait a moment before coming back.
        tokio::select! {
            _ = tokio::time::sleep(opts.reconnect_min) => {},
            _ = stop.changed() => break,
        }
    }
}

fn lock(m: &Mutex<Checker>) -> std::sync::MutexGuard<'_, Checker> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads the server's `/metrics` (`http://host:port/metrics`) every `every` into `state`
/// until `stop` turns true (failures, e.g. while the server restarts, are skipped).
pub async fn scrape_metrics(
    url: &str,
    every: Duration,
    state: &Mutex<Checker>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if let Ok((200, body)) = ws::http("GET", url, Duration::from_secs(2)).await {
            let c = ServerCounters::parse(&String::from_utf8_lossy(&body));
            lock(state).server.update(c);
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {},
            _ = stop.changed() => return,
        }
    }
}

/// Every log's `(url, tree size)` from the simulator's `/control` (`http://host:port/control`).
pub async fn sim_sizes(control_url: &str) -> anyhow::Result<Vec<(String, u64)>> {
    let (status, body) = ws::http("GET", control_url, Duration::from_secs(5)).await?;
    anyhow::ensure!(status == 200, "{control_url}: status {status}");
    let v: Value = serde_json::from_slice(&body)?;
    let logs = v["logs"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("{control_url}: no logs"))?;
    Ok(logs
        .iter()
        .filter_map(|l| Some((l["url"].as_str()?.to_owned(), l["tree_size"].as_u64()?)))
        .collect())
}

/// Waits until every log in `sizes` was received up to its size, or `timeout`; then records
/// the sizes ([`Checker::finish`]). Returns whether it caught up.
pub async fn drain(state: &Mutex<Checker>, sizes: &[(String, u64)], timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
    let ok = loop {
        if lock(state).caught_up(sizes) {
            break true;
        }
        if Instant::now() >= until {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    lock(state).finish(sizes);
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(url: &str, index: u64, seen: f64) -> Vec<u8> {
        format!(
            r#"{{"message_type":"certificate_update","data":{{"update_type":"X509LogEntry","leaf_cert":{{"subject":{{"CN":"\"cert_index\":7,"}}}},"chain":[],"cert_index":{index},"cert_link":"{url}ct/v1/get-entries?start={index}&end={index}","seen":{seen},"source":{{"url":"{url}","name":"n","operator":"o"}}}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn reads_the_tail_of_a_message() {
        let m = msg("http://127.0.0.1:9/logs/a/", 42, 1732512345.25);
        assert_eq!(
            parse_update(&m),
            Some(Update {
                url: "http://127.0.0.1:9/logs/a/",
                index: 42,
                seen: 1732512345.25,
                cursor: None,
            })
        );
        let stamped = String::from_utf8(m).unwrap().replacen(
            "\"certificate_update\",",
            "\"certificate_update\",\"cursor\":77,",
            1,
        );
        let u = parse_update(stamped.as_bytes()).unwrap();
        assert_eq!((u.cursor, u.index), (Some(77), 42));
        assert_eq!(
            parse_update(b"{\"message_type\":\"heartbeat\",\"timestamp\":1}"),
            None
        );
        assert_eq!(
            parse_update(b"{\"message_type\":\"certificate_update\"}"),
            None
        );
    }

    #[test]
    fn cursor_jumps_and_repeats_are_counted() {
        let mut c = Checker::new(None);
        let with = |cursor: u64, index: u64| {
            String::from_utf8(msg("http://l/", index, 1.0))
                .unwrap()
                .replacen(
                    "\"certificate_update\",",
                    &format!("\"certificate_update\",\"cursor\":{cursor},"),
                    1,
                )
        };
        for (cursor, index) in [(1, 0), (2, 1), (5, 2), (5, 3), (6, 4)] {
            c.observe_text(with(cursor, index).as_bytes(), 2.0);
        }
        c.observe_text(br#"{"message_type":"gap","from":1,"to":3}"#, 2.0);
        assert_eq!(
            (
                c.cursor_jumps,
                c.cursor_skipped,
                c.cursor_repeats,
                c.gap_messages
            ),
            (1, 2, 1, 1)
        );
        assert_eq!(c.last_cursor, Some(6));
        assert_eq!(c.unparsed, 0);
    }

    #[test]
    fn gaps_duplicates_and_reordering() {
        let mut t = LogTrack::default();
        let seq = [0, 1, 2, 5, 3, 6, 6, 4, 1, 10];
        let seen: Vec<Seen> = seq.iter().map(|&i| t.observe(i, Some(0))).collect();
        assert_eq!(
            seen,
            [
                Seen::InOrder,
                Seen::InOrder,
                Seen::InOrder,
                Seen::Gap(2),
                Seen::Reordered,
                Seen::InOrder,
                Seen::Duplicate,
                Seen::Reordered,
                Seen::Duplicate,
                Seen::Gap(3),
            ]
        );
        assert_eq!((t.duplicates, t.reordered, t.gap_events), (2, 2, 2));
        assert_eq!(t.missing(), 3);
        assert_eq!(t.holes(10), [(7, 10)]);
        t.set_final_size(13, Some(0));
        assert_eq!(t.tail_missing, 2);
    }

    #[test]
    fn a_log_that_starts_late_is_a_gap_when_the_start_is_known() {
        let mut t = LogTrack::default();
        assert_eq!(t.observe(5, Some(0)), Seen::Gap(5));
        let mut u = LogTrack::default();
        assert_eq!(u.observe(5, None), Seen::InOrder);
        let mut never = LogTrack::default();
        never.set_final_size(4, Some(0));
        assert_eq!(never.tail_missing, 4);
    }

    #[test]
    fn per_connection_counts_and_catching_up() {
        let mut c = Checker::new(Some(0));
        c.begin_connection();
        for i in 0..5 {
            c.observe_text(&msg("u/", i, now_secs()), now_secs());
        }
        c.end_connection("close 1001".into());
        c.begin_connection();
        for i in 3..8 {
            c.observe_text(&msg("u/", i, now_secs()), now_secs());
        }
        c.observe_text(
            b"{\"message_type\":\"heartbeat\",\"timestamp\":1}",
            now_secs(),
        );
        assert_eq!((c.conns[0].messages, c.conns[0].duplicates), (5, 0));
        assert_eq!((c.conns[1].duplicates, c.conns[1].first["u/"]), (2, 3));
        assert_eq!((c.duplicates(), c.gaps(), c.heartbeats), (2, 0, 1));
        let sizes = vec![("u/".to_owned(), 8), ("v/".to_owned(), 0)];
        assert!(c.caught_up(&sizes));
        assert!(!c.caught_up(&[("u/".to_owned(), 9)]));
        c.finish(&[("u/".to_owned(), 9)]);
        assert_eq!(c.gaps(), 1);
        let s = c.summary();
        assert_eq!(s["by_connection"][1]["duplicates"], 2);
        assert_eq!(s["logs"]["u/"]["tail_missing"], 1);
    }

    #[test]
    fn server_counters_add_up_over_restarts() {
        let text = "# HELP x\ncertstream_uptime_seconds 9\ncertstream_certificates_processed_total 100\ncertstream_client_dropped_total 3\ncertstream_ring_dropped_total{core=\"0\"} 1\ncertstream_ring_dropped_total{core=\"1\"} 2\n";
        let a = ServerCounters::parse(text);
        assert_eq!(
            (a.uptime, a.processed, a.client_dropped, a.ring_dropped),
            (9, 100, 3, 3)
        );
        let mut t = ServerTotals::default();
        t.update(a);
        t.update(ServerCounters {
            uptime: 10,
            processed: 150,
            client_dropped: 4,
            ..a
        });
        t.update(ServerCounters {
            uptime: 1,
            processed: 20,
            client_dropped: 0,
            ..ServerCounters::default()
        });
        assert_eq!(t.instances, 2);
        assert_eq!((t.totals().processed, t.totals().client_dropped), (170, 4));
    }
}
