//! `ctlog-sim`: the CT log simulator on its own (see the `certstream_sim` library). Prints
//! the log list URL, then one line per log (its URL, kind, and for a static-ct-api log its
//! origin and key), and serves until interrupted.

use std::path::PathBuf;

use anyhow::Context as _;
use certstream_sim::{self as sim, Faults, LogConfig, LogKind, SimConfig, Source};
use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "ctlog-sim",
    version,
    about = "Simulated CT logs, RFC 6962 and static-ct-api (tests, benchmarks, demos)"
)]
struct SimCli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: std::net::SocketAddr,
    /// Serve HTTPS with a self-signed certificate (its PEM goes to --ca-out).
    #[arg(long)]
    tls: bool,
    /// Where to write the TLS certificate (PEM) to trust.
    #[arg(long)]
    ca_out: Option<PathBuf>,
    /// Number of RFC 6962 logs.
    #[arg(long, default_value_t = 1)]
    logs: usize,
    /// Number of static-ct-api (tiled) logs besides them (checkpoints signed with a key the
    /// served log list carries).
    #[arg(long, default_value_t = 0)]
    static_ct: usize,
    /// Folder of get-entries bodies or DER certificates to replay (default: generated).
    #[arg(long)]
    source: Option<PathBuf>,
    /// A file of names to make certificates for: one certificate per line, its names
    /// comma-separated (wildcards and `xn--` names as given); instead of --source.
    #[arg(long, conflicts_with = "source")]
    names: Option<PathBuf>,
    /// With --names: each certificate as a precertificate entry and then its final
    /// certificate (the same issuance twice).
    #[arg(long, requires = "names")]
    precerts: bool,
    /// Entries at start.
    #[arg(long, default_value_t = 1000)]
    initial_size: u64,
    /// Entries added per second, per log. Repeat it to set logs one by one (RFC 6962 logs
    /// first, then static-ct-api ones); the last value applies to the logs after.
    #[arg(long, default_value = "10")]
    rate: Vec<f64>,
    /// The tree stops growing at this size.
    #[arg(long)]
    max_size: Option<u64>,
    /// Most entries per get-entries answer (repeatable per log, as --rate).
    #[arg(long, default_value = "256")]
    batch_cap: Vec<u64>,
    /// Faults: name=probability,... (429, 500, 503, slow, truncated, garbage, reset, corrupt, forged, gzip, retry-after=<s>, retry-after-omit=<share>, slow-ms=<ms>, all=<p>); repeatable per log, as --rate.
    #[arg(long, default_value = "")]
    faults: Vec<String>,
    /// Serve `/control` (GET: every log's state; POST /control[/<name>]?rate=&max=&listed=&faults=: change it while it runs).
    #[arg(long)]
    control: bool,
}

/// The `i`-th value of a per-log option (the last one for logs beyond the list).
fn per_log<T: Clone>(values: &[T], i: usize, default: T) -> T {
    values.get(i).or(values.last()).cloned().unwrap_or(default)
}

/// Parses the command line, starts the simulator, prints its URLs and serves until interrupted.
fn main() -> anyhow::Result<()> {
    init_tracing();
    let a = SimCli::parse();
    let faults = a
        .faults
        .iter()
        .map(|f| Faults::parse(f).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let source = match (&a.source, &a.names) {
        (Some(p), _) => Source::Dir(p.clone()),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            Source::Names {
                names: text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from)
                    .collect(),
                precerts: a.precerts,
            }
        }
        (None, None) => Source::Generated(256),
    };
    let cfg = SimConfig {
        addr: a.addr,
        tls: a.tls,
        logs: (0..a.logs + a.static_ct)
            .map(|i| LogConfig {
                name: if i < a.logs {
                    format!("log{i}")
                } else {
                    format!("tiled{}", i - a.logs)
                },
                kind: if i < a.logs {
                    LogKind::Rfc6962
                } else {
                    LogKind::StaticCt
                },
                source: source.clone(),
                initial_size: a.initial_size,
                rate: per_log(&a.rate, i, 10.0),
                max_size: a.max_size,
                batch_cap: per_log(&a.batch_cap, i, 256),
                faults: per_log(&faults, i, Faults::default()),
            })
            .collect(),
        control: a.control,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let h = sim::start(cfg).await?;
        if let (Some(out), Some(pem)) = (&a.ca_out, &h.ca_pem) {
            std::fs::write(out, pem).with_context(|| format!("writing {}", out.display()))?;
        }
        println!("{}", h.log_list_url);
        for (i, log) in h.logs.iter().enumerate() {
            match log.public_key() {
                Some(key) => println!(
                    "{} static-ct origin={} key={}",
                    h.log_url(i),
                    log.origin().unwrap_or(""),
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key)
                ),
                None => println!("{} rfc6962", h.log_url(i)),
            }
        }
        tracing::info!(log_list = %h.log_list_url, "simulator serving; Ctrl-C stops it");
        shutdown_signal().await;
        Ok(())
    })
}
