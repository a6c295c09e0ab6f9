//! Command line: `certstream-server [OPTIONS]` runs the service; `decode` and `cert` print
//! certstream's format for local files (`ctlog-sim`, the simulator alone, is in `sim/`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use certstream_engine::http::ClientConfig;
use certstream_engine::ingest::IngestConfig;
use certstream_engine::loglist::{LogKind, StateFilter, APPLE_LOG_LIST, GOOGLE_LOG_LIST};
use certstream_engine::watcher::{StartAt, WatcherConfig};
use certstream_sim::{LogConfig, SimConfig, Source};
use clap::{Args, Parser, Subcommand};

use crate::access::Cidr;
use crate::service::{self, Config};
use crate::shared::{CoreConfig, Driver};
use crate::tools::{self, DecodeOptions, Stream};
use crate::upstream::NatsConfig;

#[derive(Debug, Parser)]
#[command(
    name = "certstream-server",
    version,
    about = "Every new certificate from every Certificate Transparency log, live"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print one message per entry of a get-entries body (file or `-` for stdin).
    Decode {
        /// The get-entries JSON body.
        #[arg(default_value = "-")]
        input: PathBuf,
        /// Which stream's message to print.
        #[arg(long, value_enum, default_value = "full")]
        stream: Stream,
        /// `cert_index` of the first entry.
        #[arg(long, default_value_t = 0)]
        index: u64,
        #[arg(long, default_value = "ct.example/log")]
        source_url: String,
        #[arg(long, default_value = "Example log")]
        source_name: String,
        /// Fixed `seen` value (default: now).
        #[arg(long)]
        seen: Option<f64>,
    },
    /// Print the `leaf_cert` object of one DER or PEM certificate (file or `-`).
    Cert {
        #[arg(default_value = "-")]
        input: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Port to serve on.
    #[arg(long, env = "PORT", default_value_t = 4000)]
    pub port: u16,
    /// Address to serve on.
    #[arg(long, env = "CERTSTREAM_HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// CT log list (v3): a URL or a local file; may repeat (or comma separated in the
    /// variable): the lists are merged by log ID, a log in several watched once. Default:
    /// Google's and Apple's.
    #[arg(
        long,
        env = "CERTSTREAM_LOG_LIST",
        value_delimiter = ',',
        default_values_t = [GOOGLE_LOG_LIST.to_owned(), APPLE_LOG_LIST.to_owned()]
    )]
    pub log_list: Vec<String>,
    /// Log states to watch, comma separated (pending, qualified, usable, readonly, retired, rejected, or all).
    #[arg(
        long,
        env = "CERTSTREAM_LOG_STATES",
        default_value = "usable,qualified,readonly"
    )]
    pub log_states: String,
    /// Extra CA certificates (PEM) to trust for log URLs, besides the system roots.
    #[arg(long, env = "CERTSTREAM_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Where a log without a saved position starts: head, head-N or an index.
    #[arg(long, env = "CERTSTREAM_START", default_value = "head")]
    pub start: StartAt,
    /// File of saved log positions (resumed on restart).
    #[arg(
        long,
        env = "CERTSTREAM_POSITIONS",
        default_value = "certstream-positions.json"
    )]
    pub positions: PathBuf,
    /// Keep positions in memory only.
    #[arg(long)]
    pub no_positions: bool,
    /// Seconds between position saves.
    #[arg(long, default_value_t = 2.0)]
    pub save_interval: f64,
    /// Seconds to wait after a restart (saved positions found) before fetching from the
    /// logs, so that clients dropped by the restart reconnect before what they missed is sent.
    #[arg(long, default_value_t = 2.0)]
    pub resume_delay: f64,
    /// Entries asked for per get-entries until a log's cap is learned.
    #[arg(long, default_value_t = 1024)]
    pub max_batch: u64,
    /// get-entries requests in flight per log.
    #[arg(long, default_value_t = 4)]
    pub max_in_flight: usize,
    /// Requests per second per log operator (0: unlimited).
    #[arg(long, default_value_t = 20.0)]
    pub operator_rate: f64,
    /// Seconds between get-sth polls of a caught-up log.
    #[arg(long, default_value_t = 5.0)]
    pub poll_interval: f64,
    /// Seconds between log list refreshes.
    #[arg(long, default_value_t = 3600.0)]
    pub refresh_interval: f64,
    /// Run against an in-process simulated CT log instead of the public logs (no network).
    #[arg(long)]
    pub demo: bool,
    /// Certificates per second the demo log grows by.
    #[arg(long, default_value_t = 20.0)]
    pub demo_rate: f64,
    /// Folder of get-entries bodies or DER certificates for the demo log (default: generated).
    #[arg(long)]
    pub demo_source: Option<PathBuf>,
    /// Serving cores (threads); default: every core.
    #[arg(long, env = "CERTSTREAM_CORES")]
    pub cores: Option<usize>,
    /// io driver of the serving cores.
    #[arg(long, value_enum, default_value = "auto")]
    pub driver: Driver,
    /// MiB of recent certificates each serving core keeps for its clients (all three
    /// streams; the frames are shared by the cores, so this is the memory of the stream
    /// kept: about a minute of the public logs at their peak). A client that falls further
    /// behind skips to the oldest kept; `?since=` resumes from what is kept.
    #[arg(long, env = "CERTSTREAM_STREAM_LOG_MIB", default_value_t = 256)]
    pub stream_log_mib: usize,
    /// Most certificates each serving core keeps.
    #[arg(long, default_value_t = 1 << 18)]
    pub stream_log_frames: usize,
    /// Seconds a client may keep skipping frames before it is closed with 1008.
    #[arg(long, default_value_t = 30.0)]
    pub slow_client_timeout: f64,
    /// Seconds within which a certificate seen again (another log, or the final certificate
    /// of a precertificate) is a duplicate, skipped by clients that ask for `dedup=1`.
    #[arg(long, env = "CERTSTREAM_DEDUP_WINDOW", default_value_t = 900.0)]
    pub dedup_window: f64,
    /// Most issuance keys the dedup set holds (about 80 bytes each).
    #[arg(long, default_value_t = 1 << 20)]
    pub dedup_keys: usize,
    /// Milliseconds between hand-offs of new frames to clients (write coalescing window).
    #[arg(long, default_value_t = 5.0)]
    pub coalesce_ms: f64,
    /// Most connections in all.
    #[arg(long, env = "CERTSTREAM_MAX_CONNECTIONS", default_value_t = 200_000)]
    pub max_connections: usize,
    /// Most connections from one IP address.
    #[arg(long, env = "CERTSTREAM_MAX_PER_IP", default_value_t = 20_000)]
    pub max_per_ip: usize,
    /// Never negotiate permessage-deflate (clients that offer it get plain frames).
    #[arg(long, env = "CERTSTREAM_NO_DEFLATE")]
    pub no_deflate: bool,
    /// Seconds: `/health` answers 503 when no log published an entry for this long.
    #[arg(long, env = "CERTSTREAM_HEALTH_WINDOW", default_value_t = 300.0)]
    pub health_window: f64,
    /// A proxy (CIDR or address) whose X-Forwarded-For / Forwarded give the real client
    /// address; may repeat. From other peers those headers are ignored.
    #[arg(
        long = "trusted-proxy",
        env = "CERTSTREAM_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<Cidr>,
    /// Only these real client addresses (CIDR or address) may connect; may repeat.
    #[arg(long, env = "CERTSTREAM_ALLOW", value_delimiter = ',')]
    pub allow: Vec<Cidr>,
    /// A token stream requests must carry (`Authorization: Bearer`, or `?token=`); may repeat.
    #[arg(
        long = "auth-token",
        env = "CERTSTREAM_AUTH_TOKENS",
        value_delimiter = ','
    )]
    pub auth_tokens: Vec<String>,
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// Beyond one machine (see `upstream`): an ingest node publishes to NATS JetStream, an edge
/// node serves what it consumes from it. Neither: no NATS at all.
#[derive(Debug, Args)]
pub struct NatsArgs {
    /// Ingest node: also publish every certificate to this NATS server (repeat for a cluster).
    #[arg(long, env = "CERTSTREAM_PUBLISH", value_delimiter = ',')]
    pub publish: Vec<String>,
    /// Edge node: watch no CT log; serve the stream consumed from this NATS server (repeat
    /// for a cluster).
    #[arg(
        long,
        env = "CERTSTREAM_UPSTREAM",
        value_delimiter = ',',
        conflicts_with = "publish"
    )]
    pub upstream: Vec<String>,
    /// The JetStream stream's name (created by the ingest when absent).
    #[arg(long, env = "CERTSTREAM_NATS_STREAM", default_value = "certstream")]
    pub nats_stream: String,
    /// Age after which the stream drops messages, e.g. 24h, 90m, 3600s.
    #[arg(long, default_value = "24h", value_parser = parse_age)]
    pub nats_retention: Duration,
    /// Size at which the stream drops its oldest messages (bytes; 0: no limit).
    #[arg(long, default_value_t = 0)]
    pub nats_max_bytes: u64,
    /// Replicas of the stream when the ingest creates it (a NATS cluster: 3).
    #[arg(long, default_value_t = 1)]
    pub nats_replicas: usize,
    /// Certificates the ingest holds while NATS is down or slow (beyond: dropped, counted).
    #[arg(long, default_value_t = 100_000)]
    pub nats_backlog: usize,
    /// Certificates an edge reads back from the stream when it starts.
    #[arg(long, default_value_t = 10_000)]
    pub nats_backfill: u64,
    /// Ingest: publishes in flight at most (awaiting JetStream's acknowledgement; each is
    /// stored only after the one before it).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub nats_inflight: u64,
}

impl NatsArgs {
    fn config(&self) -> NatsConfig {
        NatsConfig {
            publish: self.publish.clone(),
            upstream: self.upstream.clone(),
            stream: self.nats_stream.clone(),
            retention: self.nats_retention,
            max_bytes: if self.nats_max_bytes == 0 {
                -1
            } else {
                i64::try_from(self.nats_max_bytes).unwrap_or(i64::MAX)
            },
            replicas: self.nats_replicas.max(1),
            backlog: self.nats_backlog.max(1),
            backfill: self.nats_backfill,
            inflight: self.nats_inflight as usize,
        }
    }
}

/// `24h`, `90m`, `3600s` or plain seconds.
fn parse_age(s: &str) -> Result<Duration, String> {
    let (n, unit) = match s
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit() && *c != '.')
    {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = n.parse().map_err(|_| format!("not an age: {s}"))?;
    let scale = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return Err(format!("unknown unit in {s} (s, m, h or d)")),
    };
    Ok(secs(n * scale))
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 1e9))
}

impl RunArgs {
    /// The service configuration these options describe.
    pub fn config(&self) -> anyhow::Result<Config> {
        let ingest = IngestConfig {
            log_list: self.log_list.first().cloned().unwrap_or_default(),
            more_log_lists: self.log_list.iter().skip(1).cloned().collect(),
            states: StateFilter::parse(&self.log_states)?,
            client: ClientConfig {
                ca_file: self.ca_file.clone(),
                ..ClientConfig::default()
            },
            watcher: WatcherConfig {
                poll_interval: secs(self.poll_interval),
                max_batch: self.max_batch.max(1),
                max_in_flight: self.max_in_flight.max(1),
                start: self.start,
                operator_rate: self.operator_rate,
                ..WatcherConfig::default()
            },
            refresh: secs(self.refresh_interval),
            save_interval: secs(self.save_interval),
            resume_delay: secs(self.resume_delay),
        };
        let demo_log = |name: &str, kind: LogKind| LogConfig {
            name: name.into(),
            kind,
            source: match &self.demo_source {
                Some(p) => Source::Dir(p.clone()),
                None => Source::Generated(256),
            },
            initial_size: 0,
            rate: self.demo_rate / 2.0,
            ..LogConfig::default()
        };
        let demo = self.demo.then(|| SimConfig {
            logs: vec![
                demo_log("demo", LogKind::Rfc6962),
                demo_log("demo-tiled", LogKind::StaticCt),
            ],
            ..SimConfig::default()
        });
        let mut ingest = ingest;
        if demo.is_some() {
            ingest.watcher.start = StartAt::Index(0);
            ingest.watcher.poll_interval = ingest.watcher.poll_interval.min(Duration::from_secs(1));
        }
        let defaults = CoreConfig::default();
        Ok(Config {
            ingest,
            positions_file: (!self.no_positions && !self.demo).then(|| self.positions.clone()),
            demo,
            serve: CoreConfig {
                cores: self.cores.unwrap_or(defaults.cores).max(1),
                driver: self.driver,
                stream_log_bytes: self.stream_log_mib.max(1) << 20,
                stream_log_frames: self.stream_log_frames.max(1),
                slow_client_timeout: secs(self.slow_client_timeout),
                coalesce: secs(self.coalesce_ms / 1000.0),
                max_connections: self.max_connections,
                max_per_ip: self.max_per_ip,
                deflate: !self.no_deflate,
                health_window: secs(self.health_window),
                trusted_proxies: self.trusted_proxies.clone(),
                allow: self.allow.clone(),
                auth_tokens: self.auth_tokens.clone(),
                dedup_window: secs(self.dedup_window),
                dedup_capacity: self.dedup_keys.max(1),
                ..defaults
            },
            nats: self.nats.config(),
        })
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The `certstream-server` entry point.
pub fn main() -> anyhow::Result<()> {
    init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Decode {
            input,
            stream,
            index,
            source_url,
            source_name,
            seen,
        }) => {
            let body = tools::read_input(&input)?;
            let opts = DecodeOptions {
                stream,
                index,
                source_url,
                source_name,
                seen,
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let report = tools::decode(body, &opts, &mut out)?;
            if report.skipped > 0 || report.leaf_errors > 0 {
                tracing::warn!(?report, "some entries could not be fully decoded");
            }
            Ok(())
        }
        Some(Command::Cert { input }) => {
            let data = tools::read_input(&input)?;
            tools::cert(&data, &mut std::io::stdout().lock())
        }
        None => run_service(&cli.run),
    }
}

fn run_service(args: &RunArgs) -> anyhow::Result<()> {
    let cfg = args.config()?;
    let addr: std::net::SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .or_else(|_| format!("[{}]:{}", args.host, args.port).parse())
        .with_context(|| format!("bad --host {:?}", args.host))?;
    let listener = crate::listen::bind(addr).with_context(|| format!("binding {addr}"))?;
    tracing::info!(%addr, log_lists = ?args.log_list, demo = cfg.demo.is_some(), "certstream starting");
    let (tx, rx) = tokio::sync::watch::channel(false);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("signal runtime");
            rt.block_on(shutdown_signal());
            let _ = tx.send(true);
        })?;
    service::run(cfg, listener, rx)
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
