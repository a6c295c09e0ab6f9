//! HTTP/1.1 requests (parsed with `httparse`) and the routes of FORMAT.md.

/// Which websocket stream a client subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// `/`: certificate_update without `as_der`.
    Lite,
    /// `/full-stream`.
    Full,
    /// `/domains-only`.
    Domains,
}

impl StreamKind {
    pub const ALL: [StreamKind; 3] = [StreamKind::Lite, StreamKind::Full, StreamKind::Domains];

    /// The path clients connect to.
    pub fn path(self) -> &'static str {
        match self {
            StreamKind::Lite => "/",
            StreamKind::Full => "/full-stream",
            StreamKind::Domains => "/domains-only",
        }
    }

    /// A short name for stats.
    pub fn name(self) -> &'static str {
        match self {
            StreamKind::Lite => "lite",
            StreamKind::Full => "full",
            StreamKind::Domains => "domains",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// What a path leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A websocket stream (also `GET /` without an upgrade: see [`Route::Index`]).
    Stream(StreamKind),
    Latest,
    Example,
    Stats,
    Metrics,
    /// `/sse?stream=lite|full|domains`: a stream as Server-Sent Events.
    Sse,
    Health,
    HealthDeep,
    NotFound,
}

/// Routes a request path (query ignored, one trailing `/` accepted).
pub fn route(path: &str) -> Route {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let trimmed = if path.len() > 1 {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    };
    match trimmed {
        "/" | "" => Route::Stream(StreamKind::Lite),
        "/full-stream" => Route::Stream(StreamKind::Full),
        "/domains-only" => Route::Stream(StreamKind::Domains),
        "/latest.json" => Route::Latest,
        "/example.json" => Route::Example,
        "/stats" => Route::Stats,
        "/metrics" => Route::Metrics,
        "/sse" => Route::Sse,
        "/health" => Route::Health,
        "/health/deep" => Route::HealthDeep,
        _ => Route::NotFound,
    }
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request is refused (each answered with a status and this one line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("malformed HTTP request")]
    Malformed,
    #[error("request head too large")]
    TooLarge,
    #[error("since must be a cursor: a non-negative integer")]
    BadSince,
    #[error("since given more than once")]
    RepeatedSince,
    #[error("since={since} is ahead of the stream: the last cursor is {last}")]
    SinceAhead { since: u64, last: u64 },
    #[error("stream must be lite, full or domains")]
    BadSseStream,
    #[error("Last-Event-ID must be a cursor: a non-negative integer")]
    BadLastEventId,
    #[error("a valid token is needed: Authorization: Bearer <token>, or ?token=<token>")]
    Unauthorized,
    #[error("this address may not connect")]
    Forbidden,
    #[error("too many connections from this address")]
    TooManyFromAddress,
    #[error("unknown query parameter {0:?} (known: since, domain, match, dedup, token, stream)")]
    UnknownParameter(String),
    #[error("bad percent-encoding in query parameter {0}")]
    BadEncoding(&'static str),
    #[error("dedup must be 1 or 0")]
    BadDedup,
    #[error(transparent)]
    Filter(#[from] crate::filter::FilterError),
}

impl HttpError {
    /// The status line this error is answered with.
    pub fn status(&self) -> &'static str {
        match self {
            HttpError::TooLarge => "431 Request Header Fields Too Large",
            HttpError::Unauthorized => "401 Unauthorized",
            HttpError::Forbidden => "403 Forbidden",
            HttpError::TooManyFromAddress => "429 Too Many Requests",
            _ => "400 Bad Request",
        }
    }
}

/// What a stream request's query asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamQuery {
    /// Resume after this cursor (`?since=N`).
    pub since: Option<u64>,
    /// `domain=` values (percent-decoded; each a comma-separated list), in order.
    pub domains: Vec<String>,
    /// `match=` values (percent-decoded), in order.
    pub regexes: Vec<String>,
    /// `dedup=1`: only the first sighting of each issuance.
    pub dedup: bool,
}

/// The query parameters stream paths accept; any other is refused with 400. Parameters
/// other stages read are listed here too: `token` ([`crate::access`]) and `stream` (the
/// SSE stream's kind, [`crate::sse`]).
pub const STREAM_PARAMETERS: &[&str] = &["since", "domain", "match", "dedup", "token", "stream"];

/// Parses a stream request's query string; an unknown parameter is an error.
pub fn stream_query(path: &str) -> Result<StreamQuery, HttpError> {
    let mut q = StreamQuery::default();
    let Some((_, query)) = path.split_once('?') else {
        return Ok(q);
    };
    let query = query.split('#').next().unwrap_or("");
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "since" => {
                if q.since.is_some() {
                    return Err(HttpError::RepeatedSince);
                }
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(HttpError::BadSince);
                }
                q.since = Some(v.parse().map_err(|_| HttpError::BadSince)?);
            }
            "domain" => q
                .domains
                .push(percent_decode(v).ok_or(HttpError::BadEncoding("domain"))?),
            "match" => q
                .regexes
                .push(percent_decode(v).ok_or(HttpError::BadEncoding("match"))?),
            "dedup" => {
                q.dedup = match v {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err(HttpError::BadDedup),
                }
            }
            k if STREAM_PARAMETERS.contains(&k) => {}
            k => {
                let mut k = k.to_owned();
                if k.len() > 40 {
                    let mut end = 40;
                    while !k.is_char_boundary(end) {
                        end -= 1;
                    }
                    k.truncate(end);
                }
                return Err(HttpError::UnknownParameter(k));
            }
        }
    }
    Ok(q)
}

/// Decodes `%XX` escapes (a `+` stays a `+`: regexes need it); `None` for a bad escape or
/// bytes that are not UTF-8.
pub fn percent_decode(v: &str) -> Option<String> {
    if !v.contains('%') {
        return Some(v.to_owned());
    }
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Most headers a request may carry.
pub const MAX_HEADERS: usize = 64;

/// Parses a request head from the start of `buf`: `Ok(Some((request, head_len)))` when
/// complete, `Ok(None)` when more bytes are needed.
pub fn parse(buf: &[u8], max_head: usize) -> Result<Option<(Request, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            if n > max_head {
                return Err(HttpError::TooLarge);
            }
            let request = Request {
                method: req.method.unwrap_or("").to_owned(),
                path: req.path.unwrap_or("/").to_owned(),
                headers: req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect(),
            };
            Ok(Some((request, n)))
        }
        Ok(httparse::Status::Partial) => {
            if buf.len() >= max_head {
                Err(HttpError::TooLarge)
            } else {
                Ok(None)
            }
        }
        Err(httparse::Error::TooManyHeaders) => Err(HttpError::TooLarge),
        Err(_) => Err(HttpError::Malformed),
    }
}

/// A complete response that closes the connection.
pub fn response(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/"), Route::Stream(StreamKind::Lite));
        assert_eq!(route("/full-stream/"), Route::Stream(StreamKind::Full));
        assert_eq!(
            route("/domains-only?x=1"),
            Route::Stream(StreamKind::Domains)
        );
        assert_eq!(route("/latest.json"), Route::Latest);
        assert_eq!(route("/example.json/"), Route::Example);
        assert_eq!(route("/stats"), Route::Stats);
        assert_eq!(route("/metrics"), Route::Metrics);
        assert_eq!(route("/nope"), Route::NotFound);
        assert_eq!(route("/full-stream//"), Route::NotFound);
    }

    #[test]
    fn stream_queries() {
        assert_eq!(stream_query("/"), Ok(StreamQuery::default()));
        assert_eq!(stream_query("/?since=42").unwrap().since, Some(42));
        assert_eq!(
            stream_query("/full-stream?since=0#frag").unwrap().since,
            Some(0)
        );
        assert_eq!(
            stream_query("/?other=1"),
            Err(HttpError::UnknownParameter("other".into()))
        );
        let q =
            stream_query("/?domain=a.example,.b.example&match=%5Ex%2B%24&domain=c&dedup=1&since=3")
                .unwrap();
        assert_eq!(q.domains, ["a.example,.b.example", "c"]);
        assert_eq!(q.regexes, ["^x+$"]);
        assert!(q.dedup);
        assert_eq!(q.since, Some(3));
        assert_eq!(stream_query("/?dedup=yes"), Err(HttpError::BadDedup));
        assert_eq!(
            stream_query("/?match=%zz"),
            Err(HttpError::BadEncoding("match"))
        );
        assert_eq!(
            stream_query("/?match=%ff").unwrap_err().to_string(),
            "bad percent-encoding in query parameter match"
        );
        for bad in [
            "/?since=",
            "/?since",
            "/?since=-1",
            "/?since=1e3",
            "/?since=%31",
            "/?since=18446744073709551616",
            "/?since= 1",
        ] {
            assert_eq!(stream_query(bad), Err(HttpError::BadSince), "{bad}");
        }
        assert_eq!(
            stream_query("/?since=1&since=2"),
            Err(HttpError::RepeatedSince)
        );
        assert_eq!(
            HttpError::SinceAhead { since: 9, last: 4 }.to_string(),
            "since=9 is ahead of the stream: the last cursor is 4"
        );
    }

    #[test]
    fn parses_heads() {
        let r = b"GET /stats HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\n\r\nrest";
        let (req, n) = parse(r, 8192).unwrap().unwrap();
        assert_eq!(n, r.len() - 4);
        assert_eq!(req.path, "/stats");
        assert_eq!(req.header("upgrade"), Some("WebSocket"));
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHo", 8192), Ok(None));
        assert_eq!(
            parse(b"\x16\x03\x01garbage\r\n\r\n", 8192),
            Err(HttpError::Malformed)
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(parse(big.as_bytes(), 8192), Err(HttpError::TooLarge));
        let many: String = (0..100).map(|i| format!("H{i}: v\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(many.as_bytes(), 1 << 20), Err(HttpError::TooLarge));
    }
}
