//! A CT log simulator: logs that grow at a set rate, replaying real entries (a folder of
//! `get-entries` bodies or DER certificates, or real static-ct-api data tiles) or certificates
//! it makes itself with `rcgen`; optionally over TLS with a self-signed certificate; with
//! fault injection (429 with `Retry-After`, 500, slow answers, truncated or garbage bodies,
//! dropped connections, broken entries, forged checkpoints) switchable while it runs. It also
//! serves a v3 log list naming its logs at `/log_list.json`, so the service can be pointed at
//! it.
//!
//! Each log speaks one API ([`LogConfig::kind`]):
//! - RFC 6962: `/logs/<name>/ct/v1/get-sth` and `ct/v1/get-entries`, listed under `logs`.
//! - static-ct-api: `/logs/<name>/checkpoint` (signed with an ECDSA P-256 key made at start;
//!   origin `<host:port>/logs/<name>`), `tile/data/<N>[.p/<W>]` (a partial tile only while
//!   its full tile does not exist yet; gzip-encoded when the `gzip` switch says so) and
//!   `issuer/<hex>`, listed under `tiled_logs` with its key (base64 SPKI), `monitoring_url`
//!   and `submission_url` (both `<base>/logs/<name>/`). Hash tiles are not served, and the
//!   checkpoint's root hash is a placeholder: watchers here do not verify inclusion.
//!
//! With [`SimConfig::control`] on, `/control` changes logs while they run (the soak scripts
//! and tests use it; everything it does is also a [`SimLog`] method):
//! - `GET /control`: every log's name, URL, kind, tree size, growth rate, size limit, batch
//!   cap, whether the log list names it, and its request and fault counters (JSON).
//! - `POST /control/<name>?rate=<per s>&max=<size|none>&listed=<bool>&faults=<spec>`: any
//!   of these, for one log (`POST /control?...` for every log); answers with the log's state.
//!   `rate=0` stops growth, a later `rate` resumes it; `listed=false` leaves the log out of
//!   `/log_list.json` (it is still served); `faults` takes [`Faults::parse`]'s syntax.
//!
//! Tests, benchmarks and the service's `--demo` start it in-process; the `ctlog-sim` binary
//! runs it alone.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use certstream_engine::checkpoint::{self, Signer};
use certstream_engine::json;
use certstream_engine::leaf;
pub use certstream_engine::loglist::LogKind;
use certstream_engine::tile::{self, TileLeaf, TILE_WIDTH};

/// What can keep the simulator from loading its entries or starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a source folder, or binding the listener.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A source file that does not decode (a `get-entries` body, a data tile).
    #[error("{path}: {source}")]
    Source {
        path: String,
        #[source]
        source: certstream_engine::Error,
    },
    /// Making certificates or keys (rcgen), or setting up TLS (rustls).
    #[error("TLS setup: {0}")]
    Tls(String),
    /// A checkpoint signer the engine could not make.
    #[error(transparent)]
    Engine(#[from] certstream_engine::Error),
}

impl Error {
    fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    fn source(path: &Path, source: certstream_engine::Error) -> Self {
        Error::Source {
            path: path.display().to_string(),
            source,
        }
    }
}

/// An issuer's fingerprint, as static-ct-api names it.
fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Fault switches: each is the probability (0..=1) that a request gets that fault.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// 429 Too Many Requests (with `Retry-After: retry_after_secs` when that is set).
    pub rate_limit: f64,
    pub retry_after_secs: Option<u64>,
    /// The share of 429 and 503 answers sent without `Retry-After` even when
    /// `retry_after_secs` is set (0: all carry it).
    pub retry_after_omit: f64,
    /// 500 Internal Server Error.
    pub server_error: f64,
    /// 503 Service Unavailable (with `Retry-After` as for 429).
    pub unavailable: f64,
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
    /// certificate that is not DER, in turn; in a data tile: a certificate that is not DER).
    pub corrupt: f64,
    /// static-ct-api: a checkpoint for a larger tree, signed by another key under the log's
    /// name and key ID (a watcher must reject it).
    pub forged: f64,
    /// static-ct-api: a data tile sent with `Content-Encoding: gzip` (not a fault: logs may
    /// compress tiles without negotiation).
    pub gzip: f64,
}

impl Faults {
    /// Parses `name=prob,...` (`429`, `500`, `503`, `slow`, `truncated`, `garbage`, `reset`,
    /// `corrupt`, `forged`, `gzip`, `retry-after=<secs>`, `retry-after-omit=<share>`,
    /// `slow-ms=<ms>`), or `all=<prob>` for every failure at once (`corrupt` and `gzip`
    /// excepted).
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
                "503" => f.unavailable = p,
                "slow" => f.slow = p,
                "truncated" => f.truncated = p,
                "garbage" => f.garbage = p,
                "reset" => f.reset = p,
                "corrupt" => f.corrupt = p,
                "forged" => f.forged = p,
                "gzip" => f.gzip = p,
                "retry-after" => f.retry_after_secs = Some(p as u64),
                "retry-after-omit" => f.retry_after_omit = p,
                "slow-ms" => f.slow_delay = Duration::from_millis(p as u64),
                "all" => {
                    f.rate_limit = p;
                    f.server_error = p;
                    f.unavailable = p;
                    f.slow = p;
                    f.truncated = p;
                    f.garbage = p;
                    f.reset = p;
                    f.forged = p;
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
    /// A static-ct-api log's files: the data tiles under `<dir>/tile/data/` (full tiles from
    /// 0 on, then a partial one if there is one) and issuers from `<dir>/issuer/`, plus the
    /// certificates in `issuers` (DER files, or the chains of `get-entries` bodies) when
    /// the log's own issuers are not there. Every fingerprint must resolve.
    Tiles {
        dir: PathBuf,
        issuers: Option<PathBuf>,
    },
    /// One certificate per item, for the names it lists (comma-separated: wildcards,
    /// upper case and `xn--` names as given), chained to one made-up CA; with `precerts`,
    /// each as a precertificate entry followed by its final certificate (the same
    /// issuance), so filters have names to find and dedup has pairs to fold.
    Names { names: Vec<String>, precerts: bool },
    /// Ready-made `(leaf_input, extra_data)` base64 pairs ([`generate_names`]): several logs
    /// given the same ones carry the very same certificates.
    Entries(Arc<Vec<(String, String)>>),
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
    /// The API it speaks: RFC 6962 (the default) or static-ct-api.
    pub kind: LogKind,
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
            kind: LogKind::Rfc6962,
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
    /// Serve the `/control` endpoint (see the module docs).
    pub control: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: false,
            logs: vec![LogConfig::default()],
            control: false,
        }
    }
}

/// A running log, whose faults and growth can be changed while it runs.
#[derive(Debug)]
pub struct SimLog {
    pub name: String,
    entries: Arc<Vec<(String, String)>>,
    /// The static-ct-api side, for logs of that kind.
    tiled: Option<Tiled>,
    batch_cap: u64,
    faults: Mutex<Faults>,
    growth: Mutex<Growth>,
    /// Whether `/log_list.json` names this log.
    listed: AtomicBool,
    /// Requests served, by kind, for tests.
    pub requests: AtomicU64,
    pub faults_injected: AtomicU64,
}

/// What a static-ct-api log serves besides its size.
#[derive(Debug)]
struct Tiled {
    /// The entries, repeated in order (each served with its own `leaf_index`).
    leaves: Vec<TileLeaf>,
    issuers: HashMap<[u8; 32], Bytes>,
    signer: Signer,
    /// Signs the `forged` fault's checkpoints.
    impostor: Signer,
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

    /// The growth rate (entries per second) and the size limit.
    pub fn growth(&self) -> (f64, Option<u64>) {
        let g = self.growth.lock().unwrap_or_else(|e| e.into_inner());
        (g.rate, g.max)
    }

    /// Whether the served log list names this log.
    pub fn listed(&self) -> bool {
        self.listed.load(Relaxed)
    }

    /// Names this log in the served log list, or leaves it out (it is still served).
    pub fn set_listed(&self, listed: bool) {
        self.listed.store(listed, Relaxed);
    }

    /// The current fault switches.
    pub fn faults(&self) -> Faults {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The most entries one `get-entries` answer holds.
    pub fn batch_cap(&self) -> u64 {
        self.batch_cap
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

    /// The API this log speaks.
    pub fn kind(&self) -> LogKind {
        if self.tiled.is_some() {
            LogKind::StaticCt
        } else {
            LogKind::Rfc6962
        }
    }

    /// A static-ct-api log's checkpoint key (DER SubjectPublicKeyInfo, as its log list entry
    /// gives it in base64).
    pub fn public_key(&self) -> Option<&[u8]> {
        self.tiled.as_ref().map(|t| t.signer.spki())
    }

    /// A static-ct-api log's checkpoint origin.
    pub fn origin(&self) -> Option<&str> {
        self.tiled.as_ref().map(|t| t.signer.origin())
    }

    /// A static-ct-api log's data tile `n` with `width` entries, as served without faults
    /// (`None` for an RFC 6962 log).
    pub fn data_tile(&self, n: u64, width: u64) -> Option<Vec<u8>> {
        Some(self.tiled.as_ref()?.tile(n, width, false))
    }
}

impl Tiled {
    /// Data tile `n` with `width` entries; `broken`: its first entry's certificate is not DER.
    fn tile(&self, n: u64, width: u64, broken: bool) -> Vec<u8> {
        let start = n.saturating_mul(TILE_WIDTH);
        let mut out = Vec::with_capacity(width as usize * 2048);
        for i in start..start.saturating_add(width) {
            if broken && i == start {
                TileLeaf::x509(now_ms(), b"\x30\x03not a certificate", Vec::new())
                    .encode_at(i, &mut out);
            } else {
                self.leaves[(i % self.leaves.len() as u64) as usize].encode_at(i, &mut out);
            }
        }
        out
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
        Source::Tiles { dir, issuers } => {
            let (leaves, issuers) = load_tiles(dir, issuers.as_deref())?;
            Ok(to_rfc6962(&leaves, &issuers))
        }
        Source::Names { names, precerts } => generate_names(names, *precerts),
        Source::Entries(e) => Ok(e.as_ref().clone()),
    }
}

/// Issuers by SHA-256.
pub type IssuerMap = HashMap<[u8; 32], Bytes>;

/// Loads a source as static-ct-api entries and the issuers they name.
pub fn load_tiled_source(source: &Source) -> Result<(Vec<TileLeaf>, IssuerMap), Error> {
    if let Source::Tiles { dir, issuers } = source {
        return load_tiles(dir, issuers.as_deref());
    }
    let b64 = &base64::engine::general_purpose::STANDARD;
    let mut leaves = Vec::new();
    let mut issuers = HashMap::new();
    for (l, x) in load_source(source)? {
        let parsed = b64
            .decode(l.as_bytes())
            .ok()
            .zip(b64.decode(x.as_bytes()).ok())
            .map(|(l, x)| TileLeaf::from_rfc6962(&l, Bytes::from(x)));
        match parsed {
            Some(Ok((leaf, chain))) => {
                for c in chain {
                    issuers.insert(sha256(&c), c);
                }
                leaves.push(leaf);
            }
            _ => tracing::warn!(
                "simulator: an entry that does not decode is left out of a static-ct-api log"
            ),
        }
    }
    if leaves.is_empty() {
        return Err(not_found(&format!("{source:?}"), "no decodable entries"));
    }
    Ok((leaves, issuers))
}

fn not_found(path: &str, what: &str) -> Error {
    Error::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, what.to_owned()),
    }
}

fn to_rfc6962(leaves: &[TileLeaf], issuers: &IssuerMap) -> Vec<(String, String)> {
    let b64 = &base64::engine::general_purpose::STANDARD;
    leaves
        .iter()
        .map(|l| {
            let chain: Vec<Bytes> = l
                .chain
                .iter()
                .filter_map(|fp| issuers.get(fp).cloned())
                .collect();
            (
                b64.encode(l.merkle_tree_leaf()),
                b64.encode(l.extra_data(&chain)),
            )
        })
        .collect()
}

/// Reads a static-ct-api log's data tiles and issuers (see [`Source::Tiles`]).
fn load_tiles(dir: &Path, extra: Option<&Path>) -> Result<(Vec<TileLeaf>, IssuerMap), Error> {
    let data = dir.join("tile/data");
    let mut leaves = Vec::new();
    for n in 0.. {
        let full = dir.join(tile::data_tile_path(n, TILE_WIDTH));
        if full.is_file() {
            let body = Bytes::from(std::fs::read(&full).map_err(|e| Error::io(&full, e))?);
            let tile = tile::decode_tile(&body, TILE_WIDTH as usize)
                .map_err(|e| Error::source(&full, e))?;
            leaves.extend(tile);
            continue;
        }
        // The right edge: the widest partial tile there is.
        let partial_dir = PathBuf::from(format!("{}.p", full.display()));
        let widest = std::fs::read_dir(&partial_dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .filter(|w| (1..TILE_WIDTH).contains(w))
            .max();
        if let Some(w) = widest {
            let path = partial_dir.join(w.to_string());
            let body = Bytes::from(std::fs::read(&path).map_err(|e| Error::io(&path, e))?);
            let tile = tile::decode_tile(&body, w as usize).map_err(|e| Error::source(&path, e))?;
            leaves.extend(tile);
        }
        break;
    }
    if leaves.is_empty() {
        return Err(not_found(&data.display().to_string(), "no data tiles"));
    }
    let mut issuers = HashMap::new();
    let mut add = |der: Vec<u8>| {
        let der = Bytes::from(der);
        issuers.insert(sha256(&der), der);
    };
    for folder in std::iter::once(dir.join("issuer")).chain(extra.map(Path::to_path_buf)) {
        let Ok(list) = std::fs::read_dir(&folder) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = list.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths.into_iter().filter(|p| p.is_file()) {
            let mut body = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                add(body);
                continue;
            }
            let Ok(entries) = leaf::parse_get_entries(&mut body) else {
                continue;
            };
            for e in entries.iter().filter_map(|e| leaf::decode(e).ok()) {
                for c in e.chain {
                    add(c.to_vec());
                }
            }
        }
    }
    if let Some(fp) = leaves
        .iter()
        .flat_map(|l| &l.chain)
        .find(|fp| !issuers.contains_key(*fp))
    {
        return Err(not_found(
            &dir.display().to_string(),
            &format!("no issuer certificate for {}", tile::issuer_path(fp)),
        ));
    }
    Ok((leaves, issuers))
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
                let entries =
                    leaf::parse_get_entries(&mut body).map_err(|e| Error::source(&path, e))?;
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

/// `oid 1.3.6.1.4.1.11129.2.4.3`, the CT poison extension (critical, NULL).
const POISON_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 11129, 2, 4, 3];
/// `oid 1.3.6.1.4.1.11129.2.4.2`, the embedded SCT list extension.
const SCT_LIST_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 11129, 2, 4, 2];

/// An embedded SCT list with one (unsigned, made-up) SCT: an OCTET STRING around the
/// RFC 6962 `SignedCertificateTimestampList`.
fn sct_list(ts: u64) -> Vec<u8> {
    let mut sct = vec![0u8]; // v1
    sct.extend_from_slice(&[0x5a; 32]); // log id
    sct.extend_from_slice(&ts.to_be_bytes());
    sct.extend_from_slice(&[0, 0]); // no extensions
    sct.extend_from_slice(&[4, 3, 0, 2, 0x30, 0x00]); // sha256/ecdsa, a 2-byte signature
    let mut list = ((sct.len() + 2) as u16).to_be_bytes().to_vec();
    list.extend_from_slice(&(sct.len() as u16).to_be_bytes());
    list.extend_from_slice(&sct);
    let mut out = vec![0x04, list.len() as u8];
    out.extend_from_slice(&list);
    out
}

fn put_vec24(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(data);
}

/// Makes one entry per item of `names` (each a comma-separated list of the certificate's
/// names); with `precerts`, a precertificate entry and then its final certificate (same
/// serial, key, validity and names; the poison in one, an SCT list in the other).
pub fn generate_names(names: &[String], precerts: bool) -> Result<Vec<(String, String)>, Error> {
    let ca_key = rcgen::KeyPair::generate().map_err(rcgen_err)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(rcgen_err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "certstream simulator names CA");
    let ca = ca_params.self_signed(&ca_key).map_err(rcgen_err)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().map_err(rcgen_err)?;
    let b64 = &base64::engine::general_purpose::STANDARD;
    let extra = b64.encode(leaf::encode_x509_extra([ca.der().as_ref()]));
    let issuer_key_hash = sha256(ca.der());
    let ts = now_ms();
    let mut out = Vec::new();
    for (i, item) in names.iter().enumerate() {
        let sans: Vec<String> = item
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(String::from)
            .collect();
        if sans.is_empty() {
            continue;
        }
        let cert = |ext: Option<rcgen::CustomExtension>| -> Result<Vec<u8>, Error> {
            let mut p = rcgen::CertificateParams::new(sans.clone()).map_err(rcgen_err)?;
            p.distinguished_name
                .push(rcgen::DnType::CommonName, sans[0].as_str());
            let serial = (i as u64 + 1).to_be_bytes();
            p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
            p.not_before = rcgen::date_time_ymd(2026, 1, 1);
            p.not_after = rcgen::date_time_ymd(2026, 4, 1);
            p.custom_extensions = ext.into_iter().collect();
            Ok(p.signed_by(&leaf_key, &issuer)
                .map_err(rcgen_err)?
                .der()
                .to_vec())
        };
        let at = ts + i as u64;
        if precerts {
            let mut poison = rcgen::CustomExtension::from_oid_content(POISON_OID, vec![0x05, 0]);
            poison.set_criticality(true);
            let pre = cert(Some(poison))?;
            // leaf_input: a precert_entry (its TBS stands in for the poison-free one:
            // certstream shows the pre_certificate from extra_data).
            let mut leaf_input = vec![0, 0];
            leaf_input.extend_from_slice(&at.to_be_bytes());
            leaf_input.extend_from_slice(&1u16.to_be_bytes());
            leaf_input.extend_from_slice(&issuer_key_hash);
            put_vec24(&mut leaf_input, &pre);
            leaf_input.extend_from_slice(&0u16.to_be_bytes());
            let mut pre_extra = Vec::new();
            put_vec24(&mut pre_extra, &pre);
            pre_extra.extend_from_slice(&leaf::encode_x509_extra([ca.der().as_ref()]));
            out.push((b64.encode(leaf_input), b64.encode(pre_extra)));
            let scts = rcgen::CustomExtension::from_oid_content(SCT_LIST_OID, sct_list(at));
            let fin = cert(Some(scts))?;
            out.push((b64.encode(leaf::encode_x509_leaf(at, &fin)), extra.clone()));
        } else {
            let c = cert(None)?;
            out.push((b64.encode(leaf::encode_x509_leaf(at, &c)), extra.clone()));
        }
    }
    if out.is_empty() {
        return Err(not_found("names", "no names to make certificates for"));
    }
    Ok(out)
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
    let scheme = if cfg.tls { "https" } else { "http" };
    let host = if cfg.tls {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    };
    let base_url = format!("{scheme}://{host}/");
    let mut logs = Vec::new();
    for l in &cfg.logs {
        let (entries, tiled) = match l.kind {
            LogKind::Rfc6962 => (load_source(&l.source)?, None),
            LogKind::StaticCt => {
                let (leaves, issuers) = load_tiled_source(&l.source)?;
                let origin = checkpoint::origin_of(&format!("{base_url}logs/{}/", l.name));
                let tiled = Tiled {
                    signer: Signer::generate(&origin)?,
                    impostor: Signer::generate(&origin)?,
                    leaves,
                    issuers,
                };
                (to_rfc6962(&tiled.leaves, &tiled.issuers), Some(tiled))
            }
        };
        logs.push(Arc::new(SimLog {
            name: l.name.clone(),
            entries: Arc::new(entries),
            tiled,
            batch_cap: l.batch_cap.max(1),
            faults: Mutex::new(l.faults.clone()),
            growth: Mutex::new(Growth {
                base: l.initial_size,
                since: Instant::now(),
                rate: l.rate,
                max: l.max_size,
            }),
            listed: AtomicBool::new(true),
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
    let state = Arc::new(State {
        logs: logs.clone(),
        base_url: base_url.clone(),
        control: cfg.control,
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

/// The v3 log list naming every listed log.
fn log_list_json(base: &str, logs: &[Arc<SimLog>]) -> Vec<u8> {
    let b64 = &base64::engine::general_purpose::STANDARD;
    let mut rfc = Vec::new();
    let mut tiled = Vec::new();
    for l in logs.iter().filter(|l| l.listed()) {
        let url = format!("{base}logs/{}/", l.name);
        let (out, id, key) = match l.public_key() {
            Some(key) => (&mut tiled, sha256(key), b64.encode(key)),
            None => (&mut rfc, sha256(l.name.as_bytes()), String::new()),
        };
        if !out.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"description\":");
        json::write_str(out, &format!("Simulated log '{}'", l.name));
        out.extend_from_slice(b",\"log_id\":");
        json::write_str(out, &b64.encode(id));
        out.extend_from_slice(b",\"key\":");
        json::write_str(out, &key);
        if l.tiled.is_some() {
            out.extend_from_slice(b",\"monitoring_url\":");
            json::write_str(out, &url);
            out.extend_from_slice(b",\"submission_url\":");
            json::write_str(out, &url);
            out.extend_from_slice(b",\"mmd\":60");
        } else {
            out.extend_from_slice(b",\"url\":");
            json::write_str(out, &url);
            out.extend_from_slice(b",\"mmd\":86400");
        }
        out.extend_from_slice(b",\"state\":{\"usable\":{\"timestamp\":\"2026-01-01T00:00:00Z\"}}}");
    }
    let mut out = Vec::new();
    out.extend_from_slice(
        b"{\"version\":\"sim\",\"log_list_timestamp\":\"2026-01-01T00:00:00Z\",\"operators\":[{\"name\":\"certstream simulator\",\"email\":[],\"logs\":[",
    );
    out.extend_from_slice(&rfc);
    out.extend_from_slice(b"],\"tiled_logs\":[");
    out.extend_from_slice(&tiled);
    out.extend_from_slice(b"]}]}");
    out
}

struct State {
    logs: Vec<Arc<SimLog>>,
    base_url: String,
    control: bool,
    seq: AtomicU64,
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    respond_as(status, body, "application/json")
}

fn respond_as(status: StatusCode, body: impl Into<Bytes>, content_type: &'static str) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
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
            return Ok(respond(
                StatusCode::OK,
                log_list_json(&self.base_url, &self.logs),
            ));
        }
        if self.control && (path == "/control" || path.starts_with("/control/")) {
            let post = req.method() == hyper::Method::POST;
            return Ok(self.control(&path, req.uri().query().unwrap_or(""), post));
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
        for (p, status, body) in [
            (
                faults.rate_limit,
                StatusCode::TOO_MANY_REQUESTS,
                "slow down",
            ),
            (faults.unavailable, StatusCode::SERVICE_UNAVAILABLE, "busy"),
        ] {
            if self.roll() < p {
                log.faults_injected.fetch_add(1, Relaxed);
                let mut r = respond(status, body);
                if let Some(s) = faults.retry_after_secs {
                    if self.roll() >= faults.retry_after_omit {
                        r.headers_mut().insert(
                            hyper::header::RETRY_AFTER,
                            s.to_string().parse().expect("digits"),
                        );
                    }
                }
                return Ok(r);
            }
        }
        if self.roll() < faults.server_error {
            log.faults_injected.fetch_add(1, Relaxed);
            return Ok(respond(StatusCode::INTERNAL_SERVER_ERROR, "oops"));
        }
        if let Some(t) = &log.tiled {
            return Ok(self.handle_tiled(log, t, call, &faults));
        }
        let body = match call {
            "ct/v1/get-sth" => sth_json(log.tree_size()),
            "ct/v1/get-entries" => match entries_json(
                log,
                req.uri().query().unwrap_or(""),
                if self.roll() < faults.corrupt {
                    // The three breakages in turn, so a test sees each of them.
                    Some(log.faults_injected.fetch_add(1, Relaxed))
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

impl State {
    /// `/control` and `/control/<name>` (see the module docs).
    fn control(&self, path: &str, query: &str, post: bool) -> Resp {
        let name = path
            .strip_prefix("/control")
            .unwrap_or("")
            .trim_matches('/');
        let targets: Vec<&Arc<SimLog>> = if name.is_empty() {
            self.logs.iter().collect()
        } else {
            match self.logs.iter().find(|l| l.name == name) {
                Some(l) => vec![l],
                None => return respond(StatusCode::NOT_FOUND, "no such log"),
            }
        };
        if post {
            let change = match ControlChange::parse(query) {
                Ok(c) => c,
                Err(e) => return respond(StatusCode::BAD_REQUEST, e),
            };
            for log in &targets {
                change.apply(log);
            }
        } else if !query.is_empty() {
            return respond(StatusCode::METHOD_NOT_ALLOWED, "changes are POSTed");
        }
        let mut out = b"{\"logs\":[".to_vec();
        for (i, log) in targets.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            self.log_status(log, &mut out);
        }
        out.extend_from_slice(b"]}");
        respond(StatusCode::OK, out)
    }

    /// One log's state as a JSON object.
    fn log_status(&self, log: &SimLog, out: &mut Vec<u8>) {
        let (rate, max) = log.growth();
        out.extend_from_slice(b"{\"name\":");
        json::write_str(out, &log.name);
        out.extend_from_slice(b",\"url\":");
        json::write_str(out, &format!("{}logs/{}/", self.base_url, log.name));
        out.extend_from_slice(b",\"kind\":");
        json::write_str(
            out,
            match log.kind() {
                LogKind::Rfc6962 => "rfc6962",
                LogKind::StaticCt => "static-ct",
            },
        );
        let max = max.map_or("null".to_owned(), |m| m.to_string());
        out.extend_from_slice(
            format!(
                ",\"tree_size\":{},\"rate\":{rate},\"max_size\":{max},\"batch_cap\":{},\"listed\":{},\"requests\":{},\"faults_injected\":{}}}",
                log.tree_size(),
                log.batch_cap,
                log.listed(),
                log.requests.load(Relaxed),
                log.faults_injected.load(Relaxed),
            )
            .as_bytes(),
        );
    }
}

/// What one `POST /control` changes.
#[derive(Debug, Default, PartialEq)]
struct ControlChange {
    rate: Option<f64>,
    /// `Some(None)`: no size limit any more.
    max: Option<Option<u64>>,
    listed: Option<bool>,
    faults: Option<Faults>,
}

impl ControlChange {
    /// Parses `rate=..&max=..&listed=..&faults=..` (values may be percent-encoded).
    fn parse(query: &str) -> Result<Self, String> {
        let mut c = ControlChange::default();
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let v = percent_decode(v);
            let bad = || format!("bad {k}: {v:?}");
            match k {
                "rate" => {
                    let r: f64 = v.parse().map_err(|_| bad())?;
                    if !(r.is_finite() && r >= 0.0) {
                        return Err(bad());
                    }
                    c.rate = Some(r);
                }
                "max" => {
                    c.max = Some(match v.as_str() {
                        "" | "none" => None,
                        n => Some(n.parse().map_err(|_| bad())?),
                    })
                }
                "listed" => {
                    c.listed = Some(match v.as_str() {
                        "1" | "true" | "yes" => true,
                        "0" | "false" | "no" => false,
                        _ => return Err(bad()),
                    })
                }
                "faults" => c.faults = Some(Faults::parse(&v)?),
                _ => return Err(format!("unknown control {k:?} (rate, max, listed, faults)")),
            }
        }
        Ok(c)
    }

    fn apply(&self, log: &SimLog) {
        if self.rate.is_some() || self.max.is_some() {
            let (rate, max) = log.growth();
            log.set_growth(self.rate.unwrap_or(rate), self.max.unwrap_or(max));
        }
        if let Some(l) = self.listed {
            log.set_listed(l);
        }
        if let Some(f) = &self.faults {
            log.set_faults(f.clone());
        }
    }
}

/// `%XX` escapes decoded (`+` stays `+`); a malformed escape is kept as it is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl State {
    /// A static-ct-api request, after the faults that come before any answer.
    fn handle_tiled(&self, log: &SimLog, t: &Tiled, call: &str, faults: &Faults) -> Resp {
        let size = log.tree_size();
        let (mut body, content_type) = if call == "checkpoint" {
            let root = ring::digest::digest(&ring::digest::SHA256, &size.to_be_bytes());
            let mut root_hash = [0u8; 32];
            root_hash.copy_from_slice(root.as_ref());
            let note = if self.roll() < faults.forged {
                log.faults_injected.fetch_add(1, Relaxed);
                t.impostor.sign_as(
                    t.signer.origin(),
                    t.signer.key_id(),
                    size + 1000,
                    &root_hash,
                    now_ms(),
                )
            } else {
                t.signer.sign(size, &root_hash, now_ms())
            };
            (note, "text/plain; charset=utf-8")
        } else if let Some(p) = call.strip_prefix("tile/data/") {
            let Some((n, width)) = tile::parse_data_tile_path(p) else {
                return respond(StatusCode::NOT_FOUND, "not found");
            };
            let start = n.saturating_mul(TILE_WIDTH);
            // Full tiles once complete; a partial tile only while its full tile is not.
            let exists = if width == TILE_WIDTH {
                start.saturating_add(TILE_WIDTH) <= size
            } else {
                start.saturating_add(width) <= size && start.saturating_add(TILE_WIDTH) > size
            };
            if !exists {
                return respond(StatusCode::NOT_FOUND, "no such tile");
            }
            let broken = self.roll() < faults.corrupt;
            if broken {
                log.faults_injected.fetch_add(1, Relaxed);
            }
            (t.tile(n, width, broken), "application/octet-stream")
        } else if let Some(hex) = call.strip_prefix("issuer/") {
            match parse_fingerprint(hex).and_then(|fp| t.issuers.get(&fp)) {
                Some(der) => (der.to_vec(), "application/pkix-cert"),
                None => return respond(StatusCode::NOT_FOUND, "no such issuer"),
            }
        } else {
            return respond(StatusCode::NOT_FOUND, "not found");
        };
        if self.roll() < faults.truncated {
            log.faults_injected.fetch_add(1, Relaxed);
            body.truncate(body.len() / 2);
        } else if self.roll() < faults.garbage {
            log.faults_injected.fetch_add(1, Relaxed);
            body = b"<html>\x00\xff not a tile".to_vec();
        }
        if call.starts_with("tile/") && self.roll() < faults.gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            if std::io::Write::write_all(&mut gz, &body).is_ok() {
                if let Ok(z) = gz.finish() {
                    let mut r = respond_as(StatusCode::OK, z, content_type);
                    r.headers_mut().insert(
                        hyper::header::CONTENT_ENCODING,
                        hyper::header::HeaderValue::from_static("gzip"),
                    );
                    return r;
                }
            }
        }
        respond_as(StatusCode::OK, body, content_type)
    }
}

/// 64 lowercase hex digits → 32 bytes.
fn parse_fingerprint(hex: &str) -> Option<[u8; 32]> {
    let h = hex.as_bytes();
    if h.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut fp = [0u8; 32];
    for (i, b) in fp.iter_mut().enumerate() {
        *b = (digit(h[2 * i])? << 4) | digit(h[2 * i + 1])?;
    }
    Some(fp)
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
        assert_eq!((f.forged, f.gzip, f.corrupt), (0.2, 0.0, 0.0));
        let f = Faults::parse("forged=1,gzip=0.5").unwrap();
        assert_eq!((f.forged, f.gzip), (1.0, 0.5));
        assert!(Faults::parse("nope=1").is_err());
        assert!(Faults::parse("429").is_err());
        let f = Faults::parse("503=0.3,retry-after=1,retry-after-omit=0.5").unwrap();
        assert_eq!((f.unavailable, f.retry_after_omit), (0.3, 0.5));
        assert_eq!(Faults::parse("all=0.1").unwrap().unavailable, 0.1);
    }

    #[test]
    fn control_changes() {
        let c = ControlChange::parse("rate=0&listed=false").unwrap();
        assert_eq!(
            c,
            ControlChange {
                rate: Some(0.0),
                listed: Some(false),
                ..ControlChange::default()
            }
        );
        let c = ControlChange::parse("max=none&faults=429=0.5%2Cretry-after=2").unwrap();
        assert_eq!(c.max, Some(None));
        let f = c.faults.unwrap();
        assert_eq!((f.rate_limit, f.retry_after_secs), (0.5, Some(2)));
        assert_eq!(ControlChange::parse("max=7").unwrap().max, Some(Some(7)));
        assert_eq!(ControlChange::parse("").unwrap(), ControlChange::default());
        for bad in [
            "rate=-1",
            "rate=x",
            "listed=maybe",
            "max=x",
            "faults=nope=1",
            "colour=red",
        ] {
            assert!(ControlChange::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(percent_decode("a%2Cb%3d%zz%"), "a,b=%zz%");
    }

    /// One HTTP/1.1 request over a fresh connection: `(status, body)`.
    async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("{method} {path} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await.unwrap();
        let resp = String::from_utf8(resp).unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        (head[9..12].parse().unwrap(), body.to_owned())
    }

    #[tokio::test]
    async fn control_endpoint_stops_growth_and_unlists_logs() {
        let log = |name: &str| LogConfig {
            name: name.into(),
            source: Source::Generated(4),
            initial_size: 10,
            rate: 1000.0,
            ..LogConfig::default()
        };
        let sim = start(SimConfig {
            logs: vec![log("a"), log("b")],
            control: true,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let (status, body) = http(sim.addr, "POST", "/control/a?rate=0&listed=false").await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let a = &v["logs"][0];
        assert_eq!(
            (a["name"].as_str(), a["listed"].as_bool()),
            (Some("a"), Some(false))
        );
        assert_eq!(a["rate"], 0.0);
        assert_eq!(a["url"].as_str().unwrap(), sim.log_url(0));
        let frozen = sim.logs[0].tree_size();
        assert_eq!(a["tree_size"].as_u64(), Some(frozen));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(sim.logs[0].tree_size(), frozen);
        assert!(sim.logs[1].tree_size() > 10);
        // The list names only b; a is still served.
        let (_, list) = http(sim.addr, "GET", "/log_list.json").await;
        assert!(!list.contains(&sim.log_url(0)) && list.contains(&sim.log_url(1)));
        let (status, _) = http(sim.addr, "GET", "/logs/a/ct/v1/get-sth").await;
        assert_eq!(status, 200);
        // Everything at once: growth back, listed again, faults on.
        let (status, body) =
            http(sim.addr, "POST", "/control?rate=500&listed=1&faults=500=1").await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["logs"].as_array().unwrap().len(), 2);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(sim.logs[0].tree_size() > frozen);
        assert!(sim
            .logs
            .iter()
            .all(|l| l.listed() && l.faults().server_error == 1.0));
        let (_, list) = http(sim.addr, "GET", "/log_list.json").await;
        assert!(list.contains(&sim.log_url(0)));
        // Status, errors.
        let (status, body) = http(sim.addr, "GET", "/control").await;
        assert_eq!(status, 200);
        assert!(body.contains("\"kind\":\"rfc6962\""));
        assert_eq!(http(sim.addr, "POST", "/control/zz?rate=1").await.0, 404);
        assert_eq!(http(sim.addr, "POST", "/control/a?rate=fast").await.0, 400);
        assert_eq!(http(sim.addr, "GET", "/control/a?rate=1").await.0, 405);
    }

    #[tokio::test]
    async fn no_control_endpoint_unless_asked() {
        let sim = start(SimConfig::default()).await.unwrap();
        assert_eq!(http(sim.addr, "POST", "/control?rate=0").await.0, 404);
    }

    #[test]
    fn fingerprints_in_issuer_paths() {
        let fp: [u8; 32] = std::array::from_fn(|i| i as u8 * 7);
        let path = tile::issuer_path(&fp);
        assert_eq!(
            parse_fingerprint(path.strip_prefix("issuer/").unwrap()),
            Some(fp)
        );
        assert_eq!(parse_fingerprint(&"AB".repeat(32)), None);
        assert_eq!(parse_fingerprint("ab"), None);
        assert_eq!(parse_fingerprint(&"zz".repeat(32)), None);
    }

    #[test]
    fn generated_entries_as_tiles() {
        let (leaves, issuers) = load_tiled_source(&Source::Generated(3)).unwrap();
        assert_eq!((leaves.len(), issuers.len()), (3, 1));
        assert!(leaves
            .iter()
            .all(|l| l.chain.len() == 1 && issuers.contains_key(&l.chain[0])));
        // Back to RFC 6962 form: the same entries.
        for ((l, x), t) in to_rfc6962(&leaves, &issuers).iter().zip(&leaves) {
            let e = leaf::decode_b64(l.as_bytes(), x.as_bytes()).unwrap();
            assert_eq!(e.leaf, t.leaf);
            assert_eq!(e.chain, vec![issuers[&t.chain[0]].clone()]);
        }
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

    #[test]
    fn named_certificates_carry_their_names_and_pair_precerts_with_certificates() {
        let names = vec![
            "a.example,*.a.example".to_string(),
            "xn--bcher-kva.example".into(),
        ];
        let entries = generate_names(&names, true).unwrap();
        assert_eq!(entries.len(), 4);
        let decoded: Vec<_> = entries
            .iter()
            .map(|(l, x)| leaf::decode_b64(l.as_bytes(), x.as_bytes()).unwrap())
            .collect();
        assert_eq!(decoded[0].kind, leaf::EntryKind::Precert);
        assert_eq!(decoded[1].kind, leaf::EntryKind::X509);
        let key = |i: usize| certstream_engine::issuance::issuance_key(&decoded[i].leaf);
        assert_eq!(key(0), key(1));
        assert_eq!(key(2), key(3));
        assert_ne!(key(0), key(2));
        let fields = certstream_engine::x509::parse_cert(&decoded[1].leaf).unwrap();
        assert_eq!(fields.all_domains, ["a.example", "*.a.example"]);
        let fields = certstream_engine::x509::parse_cert(&decoded[2].leaf).unwrap();
        assert_eq!(fields.all_domains, ["xn--bcher-kva.example"]);
        assert_eq!(generate_names(&names, false).unwrap().len(), 2);
    }
}
