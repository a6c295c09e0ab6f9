//! The HTTP(S) client every watcher shares: hyper on tokio, TLS by rustls with the system's
//! root certificates (plus an optional CA file, which tests use for the simulator's
//! self-signed certificate). Bodies are size-limited and every request has a timeout.

use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;

use crate::error::Error;

/// Largest body accepted (a 1,024-entry get-entries body is a few MB).
pub const MAX_BODY: usize = 64 << 20;

/// What came back from a GET.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// `Retry-After`, when the server sent one in seconds.
    pub retry_after: Option<Duration>,
    /// The body, already gunzipped when it came with `Content-Encoding: gzip`.
    pub body: Bytes,
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Extra PEM CA certificates to trust besides the system roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Whether to load the system's roots (off in tests that trust only their CA).
    pub system_roots: bool,
    /// Whole-request timeout (connect, headers and body).
    pub timeout: Duration,
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            ca_file: None,
            system_roots: true,
            timeout: Duration::from_secs(30),
            user_agent: concat!("certstream/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// A shareable HTTP/1.1 client (cheap to clone).
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
    user_agent: Arc<str>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Builds the rustls client configuration: system roots and/or a PEM CA file.
pub fn tls_config(cfg: &ClientConfig) -> Result<rustls::ClientConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    if cfg.system_roots {
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::warn!(error = %e, "could not load some system root certificates");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, ignored, "system root certificates");
    }
    if let Some(path) = &cfg.ca_file {
        for cert in load_pem_certs(path)? {
            roots
                .add(cert)
                .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
        }
    }
    if roots.is_empty() {
        return Err(Error::Tls("no trusted root certificates".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Reads every certificate of a PEM file.
pub fn load_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?
        .collect();
    let certs = certs.map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!("{}: no certificates", path.display())));
    }
    Ok(certs)
}

impl HttpClient {
    /// A client for `http://` and `https://` URLs.
    pub fn new(cfg: &ClientConfig) -> Result<Self, Error> {
        let tls = tls_config(cfg)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(cfg.timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(8)
            .build(https);
        Ok(HttpClient {
            inner,
            timeout: cfg.timeout,
            user_agent: cfg.user_agent.as_str().into(),
        })
    }

    /// GETs a URL; any status comes back as a [`Response`], failures before one as errors.
    pub async fn get(&self, url: &str) -> Result<Response, Error> {
        let fail = |reason: String| Error::Http {
            url: url.to_owned(),
            reason,
        };
        let req = hyper::Request::get(url)
            .header(hyper::header::USER_AGENT, &*self.user_agent)
            .header(hyper::header::ACCEPT_ENCODING, "gzip")
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(e.to_string()))?;
        let fut = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| fail(error_chain(&e)))?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let gzip = resp
                .headers()
                .get(hyper::header::CONTENT_ENCODING)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| fail(format!("reading body: {e}")))?
                .to_bytes();
            let body = if gzip {
                gunzip(&body).map_err(fail)?
            } else {
                body
            };
            Ok(Response {
                status,
                retry_after,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(fail(format!("timed out after {:?}", self.timeout))),
        }
    }
}

/// Decompresses a gzip body, refusing to inflate past [`MAX_BODY`].
pub fn gunzip(data: &[u8]) -> Result<Bytes, String> {
    let mut out = Vec::with_capacity(data.len() * 4);
    flate2::read::GzDecoder::new(data)
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("bad gzip body: {e}"))?;
    if out.len() > MAX_BODY {
        return Err("gzip body inflates past the size limit".into());
    }
    Ok(Bytes::from(out))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Reads a log list (or any body) from a URL or a local file.
pub async fn fetch_url_or_file(client: &HttpClient, source: &str) -> Result<Bytes, Error> {
    if source.starts_with("http://") || source.starts_with("https://") {
        let r = client.get(source).await?;
        if r.status != 200 {
            return Err(Error::Status {
                url: source.to_owned(),
                status: r.status,
            });
        }
        Ok(r.body)
    } else {
        let path = source.strip_prefix("file://").unwrap_or(source);
        tokio::fs::read(path)
            .await
            .map(Bytes::from)
            .map_err(|e| Error::io(path, e))
    }
}
