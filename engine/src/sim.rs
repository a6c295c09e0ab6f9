//! A CT log simulator: RFC 6962 `get-sth` and `get-entries` of logs that grow at a set rate,
//! replaying real entries (a folder of `get-entries` bodies or DER certificates) or
//! certificates it makes itself with `rcgen`; optionally over TLS with a self-signed
//! certificate; with fault injection (429 with `Retry-After`, 500, slow answers, truncated
//! or garbage bodies, dropped connections) switchable while it runs. It also serves a v3 log
//! list naming its logs at `/log_list.json`, so the service can be pointed at it.
//!
//! Tests, benchmarks and the service's `--demo` start it in-process; the `ctlog-sim` binary
//! runs it alone.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::Error;
use crate::leaf;

/// Fault switches: each is the probability (0..=1) that a request gets that fault.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// 429 Too Many Requests (with `Retry-After: retry_after_secs` when that is set).
    pub rate_limit: f64,
    pub retry_after_secs: Option<u64>,
    /// 500 Internal Server Error.
    pub server_error: f64,
    /// Answer only after `slow_delay`.
    pub slow: f64,
    pub slow_delay: Duration,
    /// A 200 whose JSON body is cut short.
    pub truncated: f64,
    /// A 200 whose body is not JSON at all.
    pub garbage: f64,
    /// The connection is dropped without an answer.
    pub reset: f64,
    /// A 200 in which one entry is broken (bad base64, a truncated `MerkleTreeLeaf`, or a
    /// certificate that is not DER, in turn).
    pub corrupt: f64,
}

impl Faults {
    /// Parses `name=prob,...` (`429`, `500`, `slow`, `truncated`, `garbage`, `reset`,
    /// `retry-after=<secs>`, `slow-ms=<ms>`), or `all=<prob>` for every fault at once.
    pub fn parse(spec: &str) -> Result<Faults, String> {
        let mut f = Faults {
            slow_delay: Duration::from_millis(300),
            ..Faults::default()
        };
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("fault {part:?}: expected name=value"))?;
            let p: f64 = v
                .parse()
                .map_err(|_| format!("fault {part:?}: bad number"))?;
            match k {
                "429" => f.rate_limit = p,
                "500" => f.server_error = p,
                "slow" => f.slow = p,
                "truncated" => f.truncated = p,
                "garbage" => f.garbage = p,
                "reset" => f.reset = p,
                "corrupt" => f.corrupt = p,
                "retry-after" => f.retry_after_secs = Some(p as u64),
                "slow-ms" => f.slow_delay = Duration::from_millis(p as u64),
                "all" => {
                    f.rate_limit = p;
                    f.server_error = p;
                    f.slow = p;
                    f.truncated = p;
                    f.garbage = p;
                    f.reset = p;
                }
                _ => return Err(format!("unknown fault {k:?}")),
            }
        }
        Ok(f)
    }
}

/// Where a simulated log's entries come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A folder of `get-entries` bodies (`*.json`) and/or DER certificates (`*.der`).
    Dir(std::path::PathBuf),
    /// `n` certificates made with rcgen (one CA, leaves with random-looking names).
    Generated(usize),
}

/// One simulated log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Path segment: the log lives at `/logs/<name>/`.
    pub name: String,
    pub source: Source,
    /// Entries at start.
    pub initial_size: u64,
    /// Entries added per second.
    pub rate: f64,
    /// The tree stops growing here.
    pub max_size: Option<u64>,
    /// Most entries one `get-entries` answer holds.
    pub batch_cap: u64,
    pub faults: Faults,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            name: "sim".into(),
            source: Source::Generated(64),
            initial_size: 1000,
            rate: 10.0,
            max_size: None,
            batch_cap: 256,
            faults: Faults::default(),
        }
    }
}

/// The simulator's settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub addr: SocketAddr,
    /// Serve HTTPS with a self-signed certificate for `localhost` and `127.0.0.1`.
    pub tls: bool,
    pub logs: Vec<LogConfig>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: false,
            logs: vec![LogConfig::default()],
        }
    }
}

/// A running log, whose faults and growth can be changed while it runs.
#[derive(Debug)]
pub struct SimLog {
    pub name: String,
    entries: Arc<Vec<(String, String)>>,
    batch_cap: u64,
    faults: Mutex<Faults>,
    growth: Mutex<Growth>,
    /// Requests served, by kind, for tests.
    pub requests: AtomicU64,
    pub faults_injected: AtomicU64,
}

#[derive(Debug)]
struct Growth {
    base: u64,
    since: Instant,
    rate: f64,
    max: Option<u64>,
}

impl SimLog {
    /// The current tree size.
    pub fn tree_size(&self) -> u64 {
        let g = self.growth.lock().unwrap_or_else(|e| e.into_inner());
        let grown = g.base + (g.since.elapsed().as_secs_f64() * g.rate) as u64;
        g.max.map_or(grown, |m| grown.min(m.max(g.base)))
    }

    /// Replaces the fault switches.
    pub fn set_faults(&self, f: Faults) {
        *self.faults.lock().unwrap_or_else(|e| e.into_inner()) = f;
    }

    /// Changes the growth rate (0 stops growth) and the size limit from now on.
    pub fn set_growth(&self, rate: f64, max: Option<u64>) {
        let size = self.tree_size();
        let mut g = self.growth.lock().unwrap_or_else(|e| e.into_inner());
        *g = Growth {
            base: size,
            since: Instant::now(),
            rate,
            max,
        };
    }

    /// The `(leaf_input, extra_data)` of entry `i` (entries repeat the pool in order).
    pub fn entry(&self, i: u64) -> &(String, String) {
        &self.entries[(i % self.entries.len() as u64) as usize]
    }
}

/// A running simulator.
#[derive(Debug)]
pub struct SimHandle {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:port/` or `https://...`.
    pub base_url: String,
    /// The v3 log list naming every simulated log.
    pub log_list_url: String,
    /// PEM of the self-signed TLS certificate (trust it as a CA), when TLS is on.
    pub ca_pem: Option<String>,
    pub logs: Vec<Arc<SimLog>>,
    stop: watch::Sender<bool>,
}

impl SimHandle {
    /// The URL of a log as the log list gives it.
    pub fn log_url(&self, i: usize) -> String {
        format!("{}logs/{}/", self.base_url, self.logs[i].name)
    }

    /// Stops serving.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Loads a source into `(leaf_input, extra_data)` base64 pairs.
pub fn load_source(source: &Source) -> Result<Vec<(String, String)>, Error> {
    match source {
        Source::Dir(dir) => load_dir(dir),
        Source::Generated(n) => generate(*n),
    }
}

fn load_dir(dir: &Path) -> Result<Vec<(String, String)>, Error> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    let b64 = &base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    let ts = now_ms();
    for path in names {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => {
                let mut body = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
                let entries = leaf::parse_get_entries(&mut body)
                    .map_err(|e| Error::Json(format!("{}: {e}", path.display())))?;
                out.extend(
                    entries
                        .into_iter()
                        .map(|e| (e.leaf_input.into_owned(), e.extra_data.into_owned())),
                );
            }
            Some("der") => {
                let der = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
                out.push((
                    b64.encode(leaf::encode_x509_leaf(ts, &der)),
                    b64.encode(leaf::encode_x509_extra([])),
                ));
            }
            _ => {}
        }
    }
    if out.is_empty() {
        return Err(Error::Io {
            path: dir.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no *.json get-entries bodies or *.der certificates",
            ),
        });
    }
    Ok(out)
}

fn rcgen_err(e: rcgen::Error) -> Error {
    Error::Tls(format!("rcgen: {e}"))
}

/// Makes `n` x509 entries: leaves for made-up names, each chained to one made-up CA.
pub fn generate(n: usize) -> Result<Vec<(String, String)>, Error> {
    let ca_key = rcgen::KeyPair::generate().map_err(rcgen_err)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(rcgen_err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "certstream simulator CA");
    ca_params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "certstream");
    let ca = ca_params.self_signed(&ca_key).map_err(rcgen_err)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().map_err(rcgen_err)?;
    let b64 = &base64::engine::general_purpose::STANDARD;
    let extra = b64.encode(leaf::encode_x509_extra([ca.der().as_ref()]));
    let ts = now_ms();
    let words = [
        "alpha", "bravo", "cobalt", "delta", "ember", "fjord", "garnet", "harbor", "indigo",
        "juniper", "kestrel", "lumen",
    ];
    let tlds = ["com", "net", "org", "io", "dev", "example"];
    (0..n.max(1))
        .map(|i| {
            let w = words[i % words.len()];
            let host = format!("{w}-{i}.{}", tlds[(i / words.len()) % tlds.len()]);
            let mut p = rcgen::CertificateParams::new(vec![host.clone(), format!("www.{host}")])
                .map_err(rcgen_err)?;
            p.distinguished_name.push(rcgen::DnType::CommonName, host);
            let c = p.signed_by(&leaf_key, &issuer).map_err(rcgen_err)?;
            Ok((
                b64.encode(leaf::encode_x509_leaf(ts + i as u64, c.der())),
                extra.clone(),
            ))
        })
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Starts the simulator on the current tokio runtime.
pub async fn start(cfg: SimConfig) -> Result<SimHandle, Error> {
    let listener = TcpListener::bind(cfg.addr)
        .await
        .map_err(|e| Error::io(cfg.addr.to_string(), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io(cfg.addr.to_string(), e))?;
    let mut logs = Vec::new();
    for l in &cfg.logs {
        logs.push(Arc::new(SimLog {
            name: l.name.clone(),
            entries: Arc::new(load_source(&l.source)?),
            batch_cap: l.batch_cap.max(1),
            faults: Mutex::new(l.faults.clone()),
            growth: Mutex::new(Growth {
                base: l.initial_size,
                since: Instant::now(),
                rate: l.rate,
                max: l.max_size,
            }),
            requests: AtomicU64::new(0),
            faults_injected: AtomicU64::new(0),
        }));
    }
    let (acceptor, ca_pem) = if cfg.tls {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .map_err(rcgen_err)?;
        let key = rustls_pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der())
            .map_err(|e| Error::Tls(e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .map_err(|e| Error::Tls(e.to_string()))?;
        (
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(server))),
            Some(ck.cert.pem()),
        )
    } else {
        (None, None)
    };
    let scheme = if cfg.tls { "https" } else { "http" };
    let host = if cfg.tls {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    };
    let base_url = format!("{scheme}://{host}/");
    let log_list = Bytes::from(log_list_json(&base_url, &logs));
    let state = Arc::new(State {
        logs: logs.clone(),
        log_list,
        seq: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
    });
    let (stop, mut stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "simulator accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop_rx.changed() => break,
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            let acceptor = acceptor.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { state.handle(req).await }
                });
                let http = hyper::server::conn::http1::Builder::new();
                let served = async {
                    match acceptor {
                        Some(a) => match a.accept(stream).await {
                            Ok(tls) => {
                                let _ = http.serve_connection(TokioIo::new(tls), svc).await;
                            }
                            Err(e) => tracing::debug!(error = %e, "simulator TLS handshake failed"),
                        },
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                };
                tokio::select! {
                    _ = served => {},
                    _ = stop.changed() => {},
                }
            });
        }
    });
    Ok(SimHandle {
        addr,
        log_list_url: format!("{base_url}log_list.json"),
        base_url,
        ca_pem,
        logs,
        stop,
    })
}

fn log_list_json(base: &str, logs: &[Arc<SimLog>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(
        b"{\"version\":\"sim\",\"log_list_timestamp\":\"2026-01-01T00:00:00Z\",\"operators\":[{\"name\":\"certstream simulator\",\"email\":[],\"logs\":[",
    );
    for (i, l) in logs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let id = ring::digest::digest(&ring::digest::SHA256, l.name.as_bytes());
        let id = base64::engine::general_purpose::STANDARD.encode(id.as_ref());
        out.extend_from_slice(b"{\"description\":");
        crate::json::write_str(&mut out, &format!("Simulated log '{}'", l.name));
        out.extend_from_slice(b",\"log_id\":");
        crate::json::write_str(&mut out, &id);
        out.extend_from_slice(b",\"key\":\"\",\"url\":");
        crate::json::write_str(&mut out, &format!("{base}logs/{}/", l.name));
        out.extend_from_slice(
            b",\"mmd\":86400,\"state\":{\"usable\":{\"timestamp\":\"2026-01-01T00:00:00Z\"}}}",
        );
    }
    out.extend_from_slice(b"],\"tiled_logs\":[]}]}");
    out
}

struct State {
    logs: Vec<Arc<SimLog>>,
    log_list: Bytes,
    seq: AtomicU64,
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// Why a request was dropped without an answer (the `reset` fault).
#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("simulated connection reset")
    }
}

impl std::error::Error for Reset {}

impl State {
    fn roll(&self) -> f64 {
        // splitmix64 over a shared counter: cheap, good enough for fault dice.
        let mut z = self.seq.fetch_add(0x9E37_79B9_7F4A_7C15, Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    async fn handle(&self, req: Request<hyper::body::Incoming>) -> Result<Resp, Reset> {
        let path = req.uri().path().to_owned();
        if path == "/log_list.json" {
            return Ok(respond(StatusCode::OK, self.log_list.clone()));
        }
        let Some(rest) = path.strip_prefix("/logs/") else {
            return Ok(respond(StatusCode::NOT_FOUND, "not found"));
        };
        let Some((name, call)) = rest.split_once('/') else {
            return Ok(respond(StatusCode::NOT_FOUND, "not found"));
        };
        let Some(log) = self.logs.iter().find(|l| l.name == name) else {
            return Ok(respond(StatusCode::NOT_FOUND, "no such log"));
        };
        log.requests.fetch_add(1, Relaxed);
        let faults = log.faults.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if self.roll() < faults.slow {
            tokio::time::sleep(faults.slow_delay).await;
        }
        if self.roll() < faults.reset {
            log.faults_injected.fetch_add(1, Relaxed);
            return Err(Reset);
        }
        if self.roll() < faults.rate_limit {
            log.faults_injected.fetch_add(1, Relaxed);
            let mut r = respond(StatusCode::TOO_MANY_REQUESTS, "slow down");
            if let Some(s) = faults.retry_after_secs {
                r.headers_mut().insert(
                    hyper::header::RETRY_AFTER,
                    s.to_string().parse().expect("digits"),
                );
            }
            return Ok(r);
        }
        if self.roll() < faults.server_error {
            log.faults_injected.fetch_add(1, Relaxed);
            return Ok(respond(StatusCode::INTERNAL_SERVER_ERROR, "oops"));
        }
        let body = match call {
            "ct/v1/get-sth" => sth_json(log.tree_size()),
            "ct/v1/get-entries" => match entries_json(
                log,
                req.uri().query().unwrap_or(""),
                if self.roll() < faults.corrupt {
                    log.faults_injected.fetch_add(1, Relaxed);
                    Some(self.seq.load(Relaxed))
                } else {
                    None
                },
            ) {
                Ok(b) => b,
                Err(msg) => return Ok(respond(StatusCode::BAD_REQUEST, msg)),
            },
            _ => return Ok(respond(StatusCode::NOT_FOUND, "not found")),
        };
        if self.roll() < faults.truncated {
            log.faults_injected.fetch_add(1, Relaxed);
            let cut = body.len() / 2;
            return Ok(respond(StatusCode::OK, Bytes::from(body).slice(..cut)));
        }
        if self.roll() < faults.garbage {
            log.faults_injected.fetch_add(1, Relaxed);
            return Ok(respond(StatusCode::OK, &b"<html>\x00\xff not json"[..]));
        }
        Ok(respond(StatusCode::OK, body))
    }
}

fn sth_json(size: u64) -> Vec<u8> {
    let root = ring::digest::digest(&ring::digest::SHA256, &size.to_be_bytes());
    let b64 = &base64::engine::general_purpose::STANDARD;
    format!(
        "{{\"tree_size\":{size},\"timestamp\":{},\"sha256_root_hash\":\"{}\",\"tree_head_signature\":\"{}\"}}",
        now_ms(),
        b64.encode(root.as_ref()),
        b64.encode(b"\x04\x03\x00\x00"),
    )
    .into_bytes()
}

/// The three ways [`Faults::corrupt`] breaks an entry.
fn corrupt_entry(variant: u64) -> (String, String) {
    let b64 = &base64::engine::general_purpose::STANDARD;
    let extra = b64.encode(leaf::encode_x509_extra([]));
    match variant % 3 {
        0 => ("!!not base64!!".into(), extra),
        1 => (b64.encode([0u8, 0, 0, 0, 1]), extra),
        _ => (
            b64.encode(leaf::encode_x509_leaf(
                now_ms(),
                b"\x30\x03not a certificate",
            )),
            extra,
        ),
    }
}

fn entries_json(log: &SimLog, query: &str, corrupt: Option<u64>) -> Result<Vec<u8>, &'static str> {
    let mut start = None;
    let mut end = None;
    for kv in query.split('&') {
        match kv.split_once('=') {
            Some(("start", v)) => start = v.parse::<u64>().ok(),
            Some(("end", v)) => end = v.parse::<u64>().ok(),
            _ => {}
        }
    }
    let (Some(start), Some(end)) = (start, end) else {
        return Err("start and end are required");
    };
    let size = log.tree_size();
    if start > end || start >= size {
        return Err("start beyond the tree");
    }
    let end = end.min(size - 1).min(start + log.batch_cap - 1);
    let mut out = Vec::with_capacity(((end - start + 1) as usize) * 4096);
    out.extend_from_slice(b"{\"entries\":[");
    for i in start..=end {
        if i > start {
            out.push(b',');
        }
        let broken;
        let (l, x) = match corrupt {
            Some(v) if i == start => {
                broken = corrupt_entry(v);
                (&broken.0, &broken.1)
            }
            _ => {
                let e = log.entry(i);
                (&e.0, &e.1)
            }
        };
        out.extend_from_slice(b"{\"leaf_input\":\"");
        out.extend_from_slice(l.as_bytes());
        out.extend_from_slice(b"\",\"extra_data\":\"");
        out.extend_from_slice(x.as_bytes());
        out.extend_from_slice(b"\"}");
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_specs() {
        let f = Faults::parse("429=0.5,retry-after=2,garbage=0.1").unwrap();
        assert_eq!(f.rate_limit, 0.5);
        assert_eq!(f.retry_after_secs, Some(2));
        assert_eq!(f.garbage, 0.1);
        let f = Faults::parse("all=0.2").unwrap();
        assert_eq!(f.reset, 0.2);
        assert!(Faults::parse("nope=1").is_err());
        assert!(Faults::parse("429").is_err());
    }

    #[test]
    fn generated_entries_decode() {
        let pool = generate(3).unwrap();
        assert_eq!(pool.len(), 3);
        for (l, x) in &pool {
            let e = leaf::decode_b64(l.as_bytes(), x.as_bytes()).unwrap();
            assert_eq!(e.chain.len(), 1);
            let (_, cert) = x509_parser::parse_x509_certificate(&e.leaf).unwrap();
            let cn = cert.subject().iter_common_name().next().unwrap();
            assert!(cn.as_str().unwrap().contains('-'));
        }
    }
}
