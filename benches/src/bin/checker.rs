//! `checker`: one client on a certstream stream that verifies, per log, that every
//! `cert_index` arrives exactly once and in order (see `certstream_benches::checker`).
//!
//! Reconnects with backoff whenever the connection ends (server restarts) and keeps its
//! per-log state across connections. Prints a progress line per second on stderr and, at
//! the end (`--duration`, SIGINT or SIGTERM), one JSON report on stdout or into `--out`.
//! With `--sim`, the end first waits until every log of the simulator has been received up
//! to its tree size (freeze the simulator's growth first: `POST /control?rate=0`), so
//! entries that never came are counted too.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use certstream_benches::checker::{self, Checker, Options};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Verifies a certstream stream: every index of every log once, in order")]
struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:4000")]
    addr: String,
    /// Stream path.
    #[arg(long, default_value = "/full-stream")]
    path: String,
    /// Seconds to run (0: until SIGINT or SIGTERM).
    #[arg(long, default_value_t = 0.0)]
    duration: f64,
    /// The index every log starts at (the service's `--start`); without it, each log's
    /// first index received is its start.
    #[arg(long)]
    expect_start: Option<u64>,
    /// The simulator's base URL (`http://host:port/`): at the end, wait for every log up to
    /// its tree size and count what never came.
    #[arg(long)]
    sim: Option<String>,
    /// Seconds to wait for the stream to reach the simulator's tree sizes at the end.
    #[arg(long, default_value_t = 120.0)]
    drain_timeout: f64,
    /// Read the server's /metrics every second (its drop counters).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    metrics: bool,
    /// First wait before reconnecting, milliseconds (doubles up to --reconnect-max-ms).
    #[arg(long, default_value_t = 5)]
    reconnect_min_ms: u64,
    /// Longest wait between reconnection attempts, milliseconds.
    #[arg(long, default_value_t = 200)]
    reconnect_max_ms: u64,
    /// Reconnect with `?since=<last cursor>` (a client that resumes).
    #[arg(long)]
    resume: bool,
    /// Where to write the JSON report (default: stdout).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let state = Arc::new(Mutex::new(Checker::new(args.expect_start)));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let opts = Options {
        addr: args.addr.clone(),
        path: args.path.clone(),
        reconnect_min: Duration::from_millis(args.reconnect_min_ms.max(1)),
        reconnect_max: Duration::from_millis(
            args.reconnect_max_ms.max(args.reconnect_min_ms).max(1),
        ),
        resume: args.resume,
        ..Options::default()
    };
    let reader = {
        let (state, stop) = (state.clone(), stop.clone());
        tokio::spawn(async move { checker::stream(&opts, &state, stop).await })
    };
    let scraper = args.metrics.then(|| {
        let (state, stop) = (state.clone(), stop.clone());
        let url = format!("http://{}/metrics", args.addr);
        tokio::spawn(async move {
            checker::scrape_metrics(&url, Duration::from_secs(1), &state, stop).await
        })
    });
    let t0 = Instant::now();
    let until = (args.duration > 0.0).then(|| t0 + Duration::from_secs_f64(args.duration));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let line = state.lock().expect("lock").progress(last.elapsed().as_secs_f64());
                last = Instant::now();
                eprintln!("{line}");
                if until.is_some_and(|u| Instant::now() >= u) {
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    let mut drained = None;
    if let Some(sim) = &args.sim {
        let control = format!("{}/control", sim.trim_end_matches('/'));
        let sizes = checker::sim_sizes(&control)
            .await
            .with_context(|| format!("reading {control}"))?;
        eprintln!(
            "waiting for {} logs to reach their tree sizes ({:?})",
            sizes.len(),
            sizes.iter().map(|s| s.1).collect::<Vec<_>>()
        );
        drained =
            Some(checker::drain(&state, &sizes, Duration::from_secs_f64(args.drain_timeout)).await);
    }
    let _ = stop_tx.send(true);
    let _ = reader.await;
    if let Some(s) = scraper {
        let _ = s.await;
    }
    let mut report = state.lock().expect("lock").summary();
    report["addr"] = args.addr.clone().into();
    report["path"] = args.path.clone().into();
    report["caught_up"] = drained.into();
    let text = serde_json::to_string_pretty(&report)?;
    match &args.out {
        Some(p) => {
            std::fs::write(p, text + "\n").with_context(|| format!("writing {}", p.display()))?
        }
        None => println!("{text}"),
    }
    eprintln!(
        "checker: {} messages, {} gaps, {} duplicates, {} reordered, {} connections; server drops: client {} ring {}",
        report["messages"],
        report["gaps"],
        report["duplicates"],
        report["reordered"],
        report["connections"],
        report["server"]["client_dropped"],
        report["server"]["ring_dropped"],
    );
    Ok(())
}
