//! `loadclient`: N websocket clients on one certstream stream, reading as fast as they can.
//!
//! Counts complete frames and bytes over a measured window, measures latency (receipt time
//! minus the message's `seen`) on every message of a sample of clients, and, given the
//! server's PID, its CPU time and RSS over the same window (`/proc/PID/stat`, `status`).
//! Prints one JSON summary on stdout and a progress line per second on stderr.
//!
//! The client is deliberately lean (a raw RFC 6455 client: handshake, then frame headers)
//! so that it costs as little of the shared machine as possible.
//!
//! `--stall`: clients that complete the upgrade and never read (the server's memory per
//! connection it cannot send to).
//!
//! `--deflate`: every client offers permessage-deflate; the sampled clients inflate each
//! compressed message (for its `seen`), the others only count frames and bytes (so the
//! clients' own CPU stays small beside the server's).
//!
//! `--churn`: instead, `--clients` client slots for `--duration` seconds, each connecting (to
//! a stream picked at random from `--paths`), reading for a random stay, leaving (half with a
//! close frame, half by dropping the connection), pausing, and connecting again: the memory
//! soak's load. Prints a progress line per second and one JSON summary.
//!
//! `--queries FILE`: client `i` connects to `--path` with the query on line `i` of FILE
//! (cycling), e.g. a different `domain=` filter per client (`perf/filters.sh`).

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use bytes::Buf;
use clap::Parser;
use tokio::io::AsyncReadExt;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "N websocket clients against a certstream server")]
struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:4000")]
    addr: String,
    /// Stream path: `/`, `/full-stream` or `/domains-only`.
    #[arg(long, default_value = "/")]
    path: String,
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Seconds after every client connected before measuring.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Measure latency on every message of one client in this many.
    #[arg(long, default_value_t = 20)]
    sample_every: usize,
    /// The server's PID, for its CPU time and RSS over the window.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Runtime threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Connections opened at once while connecting.
    #[arg(long, default_value_t = 200)]
    connect_batch: usize,
    /// Offer permessage-deflate (see the module docs).
    #[arg(long)]
    deflate: bool,
    /// A file of query strings, one per line: client `i` adds line `i` (cycling) to --path.
    #[arg(long)]
    queries: Option<std::path::PathBuf>,
    /// Churn mode (see the module docs).
    #[arg(long)]
    churn: bool,
    /// Clients that never read after the upgrade (stalled: RSS per connection of clients
    /// the server cannot send to).
    #[arg(long)]
    stall: bool,
    /// Churn: streams to pick from at random, comma separated (default: --path).
    #[arg(long)]
    paths: Option<String>,
    /// Churn: shortest and longest stay of one connection, seconds.
    #[arg(long, default_value_t = 1.0)]
    stay_min: f64,
    #[arg(long, default_value_t = 30.0)]
    stay_max: f64,
    /// Churn: longest pause between leaving and connecting again, seconds.
    #[arg(long, default_value_t = 2.0)]
    pause_max: f64,
}

#[derive(Default)]
struct Totals {
    frames: AtomicU64,
    cert_frames: AtomicU64,
    bytes: AtomicU64,
    disconnects: AtomicU64,
    connected: AtomicU64,
    /// Clients whose connection or handshake failed.
    failed: AtomicU64,
    latencies_ms: Mutex<Vec<f64>>,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `seen` of a certificate_update payload (it sits near the end).
fn seen_of(payload: &[u8]) -> Option<f64> {
    const KEY: &[u8] = b"\"seen\":";
    let start = payload.len().saturating_sub(512);
    let tail = &payload[start..];
    let pos = tail.windows(KEY.len()).rposition(|w| w == KEY)? + KEY.len();
    let rest = &tail[pos..];
    let end = rest.iter().position(|&b| b == b',' || b == b'}')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// The lines of `--queries`, loaded once.
static QUERIES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// The path client `id` connects to: `--path`, plus its line of `--queries`.
fn client_path(args: &Args, id: usize) -> String {
    match QUERIES.get().filter(|q| !q.is_empty()) {
        Some(q) => format!("{}?{}", args.path, q[id % q.len()]),
        None => args.path.clone(),
    }
}

async fn client(
    id: usize,
    args: Arc<Args>,
    totals: Arc<Totals>,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let offer = if args.deflate {
        "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    } else {
        ""
    };
    let path = client_path(&args, id);
    let (mut s, mut buf) = certstream_benches::ws::handshake_with(&args.addr, &path, offer)
        .await
        .map_err(|e| anyhow::anyhow!("handshake: {e:#}"))?;
    totals.connected.fetch_add(1, Relaxed);
    if args.stall {
        // Hold the connection open and never read from it.
        while !stop.load(Relaxed) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drop((s, buf));
        return Ok(());
    }
    let sample = id % args.sample_every.max(1) == 0;
    let mut inflated = Vec::new();
    let mut lat = Vec::new();
    let (mut frames, mut certs, mut bytes) = (0u64, 0u64, 0u64);
    while !stop.load(Relaxed) {
        // Parse every complete frame in the buffer.
        loop {
            if buf.len() < 2 {
                break;
            }
            let (len, hlen) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => (
                    u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if buf.len() < hlen + len {
                break;
            }
            if measuring.load(Relaxed) {
                frames += 1;
                bytes += (hlen + len) as u64;
                let mut payload = &buf[hlen..hlen + len];
                if buf[0] & 0x40 != 0 {
                    // Compressed: certificates only (the server sends heartbeats plain).
                    certs += 1;
                    if sample {
                        inflated = inflate(payload, inflated)?;
                        if let Some(seen) = seen_of(&inflated) {
                            lat.push((now_secs() - seen) * 1000.0);
                        }
                    }
                    payload = b"";
                }
                if buf[0] & 0x0f == 1
                    && !payload.is_empty()
                    && !payload.starts_with(b"{\"message_type\":\"heartbeat\"")
                {
                    certs += 1;
                    if sample {
                        if let Some(seen) = seen_of(payload) {
                            lat.push((now_secs() - seen) * 1000.0);
                        }
                    }
                }
            }
            if buf[0] & 0x0f == 8 {
                totals.disconnects.fetch_add(1, Relaxed);
                return Ok(());
            }
            buf.advance(hlen + len);
        }
        if buf.capacity() - buf.len() < 64 << 10 {
            buf.reserve(256 << 10);
        }
        let n = tokio::select! {
            r = s.read_buf(&mut buf) => r?,
            _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
        };
        if n == 0 {
            totals.disconnects.fetch_add(1, Relaxed);
            break;
        }
        if frames > 0 && !measuring.load(Relaxed) {
            // The window closed: publish this client's counts.
            break;
        }
    }
    totals.frames.fetch_add(frames, Relaxed);
    totals.cert_frames.fetch_add(certs, Relaxed);
    totals.bytes.fetch_add(bytes, Relaxed);
    totals.latencies_ms.lock().expect("lock").extend(lat);
    Ok(())
}

/// Inflates one permessage-deflate message compressed on its own, into `out` (reused).
fn inflate(payload: &[u8], mut out: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut z = flate2::Decompress::new(false);
    out.clear();
    out.reserve(input.len() * 6 + 1024);
    loop {
        let at = z.total_in() as usize;
        z.decompress_vec(&input[at..], &mut out, flate2::FlushDecompress::Sync)
            .context("bad compressed frame")?;
        if z.total_in() as usize == input.len() && out.len() < out.capacity() {
            return Ok(out);
        }
        out.reserve(out.capacity());
    }
}

/// `(cpu seconds, rss KiB)` of a process.
fn proc_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`, which may contain spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(((utime + stime) as f64 / tck, rss))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    if let Some(file) = &args.queries {
        let text = std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
        let lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let _ = QUERIES.set(lines.map(String::from).collect());
    }
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    if args.churn {
        rt.block_on(churn::run(args))
    } else {
        rt.block_on(run(args))
    }
}

mod churn {
    //! `--churn`: clients that come and go at random.

    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use certstream_benches::ws::{Client, OP_CLOSE, OP_TEXT};

    use super::Args;

    #[derive(Default)]
    struct Counts {
        active: AtomicU64,
        connects: AtomicU64,
        failures: AtomicU64,
        server_closes: AtomicU64,
        clean_leaves: AtomicU64,
        abrupt_leaves: AtomicU64,
        messages: AtomicU64,
        bytes: AtomicU64,
    }

    /// xorshift64*: enough randomness for stays and pauses.
    struct Rng(u64);

    impl Rng {
        fn unit(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        }

        fn between(&mut self, lo: f64, hi: f64) -> Duration {
            Duration::from_secs_f64((lo + (hi - lo).max(0.0) * self.unit()).max(0.0))
        }
    }

    async fn slot(
        id: usize,
        args: Arc<Args>,
        paths: Arc<Vec<String>>,
        n: Arc<Counts>,
        end: Instant,
    ) {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((id as u64 + 1) * 0xBF58_476D_1CE4_E5B9));
        // Spread the first connections over the first pause.
        tokio::time::sleep(rng.between(0.0, args.pause_max)).await;
        while Instant::now() < end {
            let path = &paths[(rng.unit() * paths.len() as f64) as usize % paths.len()];
            let mut c = match Client::connect(&args.addr, path, Duration::from_secs(10)).await {
                Ok(c) => c,
                Err(_) => {
                    n.failures.fetch_add(1, Relaxed);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            n.connects.fetch_add(1, Relaxed);
            n.active.fetch_add(1, Relaxed);
            let leave = (Instant::now() + rng.between(args.stay_min, args.stay_max)).min(end);
            let (mut msgs, mut bytes) = (0u64, 0u64);
            let closed_by_server = loop {
                let f = tokio::select! {
                    f = c.next_frame() => f,
                    _ = tokio::time::sleep_until(leave.into()) => break false,
                };
                match f {
                    Ok(Some((OP_TEXT, p))) => {
                        msgs += 1;
                        bytes += p.len() as u64;
                    }
                    Ok(Some((OP_CLOSE, _))) | Ok(None) | Err(_) => break true,
                    Ok(Some(_)) => {}
                }
            };
            n.messages.fetch_add(msgs, Relaxed);
            n.bytes.fetch_add(bytes, Relaxed);
            n.active.fetch_sub(1, Relaxed);
            if closed_by_server {
                n.server_closes.fetch_add(1, Relaxed);
                drop(c);
            } else if rng.unit() < 0.5 {
                n.clean_leaves.fetch_add(1, Relaxed);
                c.close(1000).await;
            } else {
                n.abrupt_leaves.fetch_add(1, Relaxed);
                drop(c);
            }
            tokio::time::sleep(rng.between(0.0, args.pause_max)).await;
        }
    }

    pub async fn run(args: Arc<Args>) -> anyhow::Result<()> {
        let paths: Vec<String> = args
            .paths
            .as_deref()
            .unwrap_or(&args.path)
            .split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        anyhow::ensure!(!paths.is_empty(), "no paths");
        let paths = Arc::new(paths);
        let n = Arc::new(Counts::default());
        let t0 = Instant::now();
        let end = t0 + Duration::from_secs_f64(args.duration);
        let tasks: Vec<_> = (0..args.clients)
            .map(|id| tokio::spawn(slot(id, args.clone(), paths.clone(), n.clone(), end)))
            .collect();
        let mut last = (0u64, 0u64);
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (c, m) = (n.connects.load(Relaxed), n.messages.load(Relaxed));
            eprintln!(
                "{:>6.0} s  active {:>5}  connects {:>7} (+{})  failures {}  server closes {}  messages/s (finished stays) {}",
                t0.elapsed().as_secs_f64(),
                n.active.load(Relaxed),
                c,
                c - last.0,
                n.failures.load(Relaxed),
                n.server_closes.load(Relaxed),
                m - last.1,
            );
            last = (c, m);
        }
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "{{\"mode\":\"churn\",\"clients\":{},\"paths\":{:?},\"seconds\":{secs:.1},\"connects\":{},\"connect_failures\":{},\"server_closes\":{},\"clean_leaves\":{},\"abrupt_leaves\":{},\"messages\":{},\"bytes\":{}}}",
            args.clients,
            paths.join(","),
            n.connects.load(Relaxed),
            n.failures.load(Relaxed),
            n.server_closes.load(Relaxed),
            n.clean_leaves.load(Relaxed),
            n.abrupt_leaves.load(Relaxed),
            n.messages.load(Relaxed),
            n.bytes.load(Relaxed),
        );
        Ok(())
    }
}

async fn run(args: Arc<Args>) -> anyhow::Result<()> {
    let totals = Arc::new(Totals::default());
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let rss_idle = args.server_pid.and_then(proc_usage).map(|u| u.1);
    let mut tasks = Vec::with_capacity(args.clients);
    let t0 = Instant::now();
    for id in 0..args.clients {
        let (a, t, m, s) = (
            args.clone(),
            totals.clone(),
            measuring.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let r = client(id, a, t.clone(), m, s).await;
            if let Err(e) = &r {
                if e.to_string().starts_with("handshake: ") {
                    t.failed.fetch_add(1, Relaxed);
                }
            }
            r
        }));
        if id % args.connect_batch.max(1) == args.connect_batch.max(1) - 1 {
            // Let this batch finish its handshakes before opening more.
            while ((totals.connected.load(Relaxed) + totals.failed.load(Relaxed)) as usize)
                < id + 1 - args.connect_batch / 2
            {
                if t0.elapsed() > Duration::from_secs(120) {
                    bail!("only {} clients connected", totals.connected.load(Relaxed));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    while ((totals.connected.load(Relaxed) + totals.failed.load(Relaxed)) as usize) < args.clients {
        if t0.elapsed() > Duration::from_secs(180) {
            bail!(
                "only {} of {} clients connected",
                totals.connected.load(Relaxed),
                args.clients
            );
        }
        if tasks.iter().all(|t| t.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let connect_s = t0.elapsed().as_secs_f64();
    eprintln!(
        "{} clients connected in {connect_s:.1} s; warming up {:.0} s",
        totals.connected.load(Relaxed),
        args.warmup
    );
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let usage0 = args.server_pid.and_then(proc_usage);
    let own0 = proc_usage(std::process::id());
    let w0 = Instant::now();
    measuring.store(true, Relaxed);
    let window = Duration::from_secs_f64(args.duration);
    while w0.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(1).min(window.saturating_sub(w0.elapsed()))).await;
        let cpu = match (usage0, args.server_pid.and_then(proc_usage)) {
            (Some(a), Some(b)) => format!(
                ", server CPU {:.0} %",
                100.0 * (b.0 - a.0) / w0.elapsed().as_secs_f64()
            ),
            _ => String::new(),
        };
        eprintln!("  {:>5.1} s measured{cpu}", w0.elapsed().as_secs_f64());
    }
    measuring.store(false, Relaxed);
    let secs = w0.elapsed().as_secs_f64();
    let usage1 = args.server_pid.and_then(proc_usage);
    let own1 = proc_usage(std::process::id());
    stop.store(true, Relaxed);
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(5), t).await {
            Ok(Ok(Err(e))) => eprintln!("client error: {e:#}"),
            Ok(_) => {}
            Err(_) => eprintln!("a client did not stop in time"),
        }
    }
    let mut lat = std::mem::take(&mut *totals.latencies_ms.lock().expect("lock"));
    lat.sort_by(|a, b| a.total_cmp(b));
    let frames = totals.frames.load(Relaxed);
    let certs = totals.cert_frames.load(Relaxed);
    let bytes = totals.bytes.load(Relaxed);
    let (cpu_s, rss_start, rss_end) = match (usage0, usage1) {
        (Some(a), Some(b)) => (Some(b.0 - a.0), Some(a.1), Some(b.1)),
        _ => (None, None, None),
    };
    // The clients' own CPU over the window (on loopback the receivers' share of the TCP work).
    let own_cpu_s = match (own0, own1) {
        (Some(a), Some(b)) => Some(b.0 - a.0),
        _ => None,
    };
    let summary = serde_like_json(&[
        ("clients", args.clients.to_string()),
        ("connected", totals.connected.load(Relaxed).to_string()),
        ("failed_to_connect", totals.failed.load(Relaxed).to_string()),
        ("path", format!("\"{}\"", args.path)),
        ("deflate", args.deflate.to_string()),
        ("connect_seconds", format!("{connect_s:.2}")),
        ("window_seconds", format!("{secs:.3}")),
        ("frames", frames.to_string()),
        ("certificate_frames", certs.to_string()),
        ("bytes", bytes.to_string()),
        (
            "certificate_frames_per_second",
            format!("{:.1}", certs as f64 / secs),
        ),
        ("bytes_per_second", format!("{:.0}", bytes as f64 / secs)),
        ("disconnects", totals.disconnects.load(Relaxed).to_string()),
        ("latency_samples", lat.len().to_string()),
        ("latency_p50_ms", json_f64(percentile(&lat, 0.50))),
        ("latency_p99_ms", json_f64(percentile(&lat, 0.99))),
        (
            "latency_max_ms",
            json_f64(lat.last().copied().unwrap_or(f64::NAN)),
        ),
        (
            "server_cpu_seconds",
            cpu_s.map_or("null".into(), |v| format!("{v:.3}")),
        ),
        (
            "server_cpu_seconds_per_gb",
            cpu_s.map_or("null".into(), |v| json_f64(v / (bytes as f64 / 1e9))),
        ),
        (
            "client_cpu_seconds",
            own_cpu_s.map_or("null".into(), |v| format!("{v:.3}")),
        ),
        (
            "server_rss_kib_idle",
            rss_idle.map_or("null".into(), |v| v.to_string()),
        ),
        (
            "server_rss_kib_start",
            rss_start.map_or("null".into(), |v| v.to_string()),
        ),
        (
            "server_rss_kib_end",
            rss_end.map_or("null".into(), |v| v.to_string()),
        ),
    ]);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{summary}").context("writing the summary")?;
    Ok(())
}

fn json_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".into()
    }
}

fn serde_like_json(fields: &[(&str, String)]) -> String {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_seen_near_the_end() {
        let m = br#"{"message_type":"certificate_update","data":{"cert_index":5,"seen":1732512345.25,"source":{"url":"u","name":"n"}}}"#;
        assert_eq!(seen_of(m), Some(1732512345.25));
        assert_eq!(seen_of(b"{}"), None);
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 51.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
