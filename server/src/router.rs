//! One accepted connection: its request head, its route, and its answer: an HTTP response
//! (the index page, the reports, a one-line error), or the websocket upgrade into a client
//! of this core's [`Fanout`].

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

use certstream_engine::Frames;
use monoio::buf::IoBufMut as _;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, Splitable as _};
use tokio::io::AsyncReadExt as _;

use crate::access;
use crate::conn::{self, Conn, ReadEnd};
use crate::deflate;
use crate::fanout::Fanout;
use crate::filter::{Filter, Subscription};
use crate::handshake;
use crate::http::{self, HttpError, Route, StreamKind};
use crate::report;
use crate::shared::Admission;
use crate::sse;
use crate::wire::Wire;

/// Bytes a client's reader reads at once (client frames are pongs, pings and closes: a
/// few bytes each; a larger frame is read in several pieces).
const READ_BUFFER: usize = 256;

/// Reads the request head: `(request, bytes after the head)`.
async fn read_head(
    stream: &mut monoio::net::TcpStream,
    max_head: usize,
) -> Result<(http::Request, Vec<u8>), Option<HttpError>> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(2048);
        }
        let (len, cap) = (buf.len(), buf.capacity());
        let (res, b) = stream.read(buf.slice_mut(len..cap)).await;
        buf = b.into_inner();
        match res {
            Ok(0) | Err(_) => return Err(None),
            Ok(_) => {}
        }
        match http::parse(&buf, max_head) {
            Ok(Some((req, n))) => return Ok((req, buf.split_off(n))),
            Ok(None) => continue,
            Err(e) => return Err(Some(e)),
        }
    }
}

async fn write_all(stream: &mut monoio::net::TcpStream, data: Vec<u8>) {
    let _ = stream.write_all(data).await;
}

/// Serves one accepted connection until it ends.
pub async fn handle(
    core: Rc<Fanout>,
    mut stream: monoio::net::TcpStream,
    peer: SocketAddr,
    mut admission: Admission,
) {
    let cfg = &core.shared.config;
    let head =
        monoio::time::timeout(cfg.handshake_timeout, read_head(&mut stream, cfg.max_head)).await;
    let (req, leftover) = match head {
        Err(_) => {
            core.counters.handshake_timeouts.fetch_add(1, Relaxed);
            tracing::debug!(%peer, "no request head in time; closed");
            return;
        }
        Ok(Err(None)) => return,
        Ok(Err(Some(e))) => return refuse(&core, &mut stream, peer, e).await,
        Ok(Ok(r)) => r,
    };
    core.counters.http_requests.fetch_add(1, Relaxed);
    let real = access::real_ip(peer.ip(), &req, &cfg.trusted_proxies);
    if !admission.bind(real) {
        core.counters.rejected.fetch_add(1, Relaxed);
        return refuse(&core, &mut stream, peer, HttpError::TooManyFromAddress).await;
    }
    if !cfg.allow.is_empty() && !access::any_contains(&cfg.allow, real) {
        core.counters.access_denied.fetch_add(1, Relaxed);
        tracing::info!(%peer, %real, "address not allowed");
        return refuse(&core, &mut stream, peer, HttpError::Forbidden).await;
    }
    let route = http::route(&req.path);
    let streams = matches!(route, Route::Stream(_) | Route::Sse)
        && (handshake::wants_upgrade(&req) || sse::wants_events(&req) || route == Route::Sse);
    if streams && !access::authorized(&req, &cfg.auth_tokens) {
        core.counters.unauthorized.fetch_add(1, Relaxed);
        tracing::info!(%peer, %real, "stream request without a valid token");
        return refuse(&core, &mut stream, peer, HttpError::Unauthorized).await;
    }
    if let Route::Stream(kind) = route {
        if handshake::wants_upgrade(&req) {
            let Asked {
                since,
                filter,
                dedup,
            } = match asked(&core, &req, false) {
                Ok(a) => a,
                Err(e) => return refuse(&core, &mut stream, peer, e).await,
            };
            let agreed = cfg.deflate.then(|| deflate::negotiate(&req)).flatten();
            let ext = agreed.as_ref().map(|a| a.response.as_str());
            match handshake::accept_with(&req, ext) {
                Ok(resp) => {
                    let (res, _) = stream.write_all(resp).await;
                    if res.is_ok() {
                        let wire = agreed.map_or(Wire::Ws, |a| Wire::Deflate { bits: a.bits });
                        let sub = core.subscribe(filter, dedup);
                        // Its own task: what this one held for the request goes now,
                        // not when the connection ends (a client is a few KiB).
                        monoio::spawn(websocket(
                            core,
                            stream,
                            peer,
                            Upgrade {
                                kind,
                                wire,
                                since,
                                sub,
                            },
                            leftover,
                            admission,
                        ));
                    }
                }
                Err(e) => {
                    core.counters.bad_requests.fetch_add(1, Relaxed);
                    let body = format!("bad websocket upgrade: {e}\n");
                    write_all(
                        &mut stream,
                        http::response("400 Bad Request", "text/plain", body.as_bytes()),
                    )
                    .await;
                }
            }
            return;
        }
    }
    if req.method != "GET" && req.method != "HEAD" {
        let resp = http::response("405 Method Not Allowed", "text/plain", b"only GET\n");
        return write_all(&mut stream, resp).await;
    }
    let events = match route {
        Route::Stream(kind) if sse::wants_events(&req) => Some(Ok(kind)),
        Route::Sse => Some(sse::stream_param(&req.path)),
        _ => None,
    };
    if let (Some(kind), "GET") = (events, req.method.as_str()) {
        let start = kind.and_then(|k| Ok((k, asked(&core, &req, true)?)));
        return match start {
            Ok((kind, a)) => sse::serve(core, stream, peer, kind, a.since, a.filter, a.dedup).await,
            Err(e) => refuse(&core, &mut stream, peer, e).await,
        };
    }
    let resp = match route {
        Route::Stream(StreamKind::Lite) => http::response(
            "200 OK",
            "text/html; charset=utf-8",
            crate::page::INDEX.as_bytes(),
        ),
        Route::Stream(kind) => http::response(
            "426 Upgrade Required",
            "text/plain",
            format!(
                "{} is a websocket stream: connect with a websocket client\n",
                kind.path()
            )
            .as_bytes(),
        ),
        Route::Latest => {
            http::response("200 OK", "application/json", &report::latest(&core.shared))
        }
        Route::Example => match report::example(&core.shared) {
            Some(body) => http::response("200 OK", "application/json", &body),
            None => http::response(
                "503 Service Unavailable",
                "application/json",
                b"{\"error\":\"no certificate seen yet\"}",
            ),
        },
        Route::Stats => http::response("200 OK", "application/json", &report::stats(&core.shared)),
        Route::Metrics => http::response(
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            report::metrics(&core.shared).as_bytes(),
        ),
        Route::Health => match crate::health::health(&core.shared) {
            Ok(ok) => http::response("200 OK", "text/plain", format!("{ok}\n").as_bytes()),
            Err(why) => http::response(
                "503 Service Unavailable",
                "text/plain",
                format!("{why}\n").as_bytes(),
            ),
        },
        Route::HealthDeep => {
            let body = crate::health::deep(&core.shared);
            let status = if crate::health::health(&core.shared).is_ok() {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            http::response(status, "application/json", &body)
        }
        Route::NotFound | Route::Sse => {
            http::response("404 Not Found", "text/plain", b"not found\n")
        }
    };
    write_all(&mut stream, resp).await;
}

/// Answers a refused request with its status and one line, and counts it.
async fn refuse(
    core: &Fanout,
    stream: &mut monoio::net::TcpStream,
    peer: SocketAddr,
    e: HttpError,
) {
    core.counters.bad_requests.fetch_add(1, Relaxed);
    tracing::info!(%peer, error = %e, "bad request");
    let body = format!("{e}\n");
    let mut resp = http::response(e.status(), "text/plain", body.as_bytes());
    if e == HttpError::Unauthorized {
        let at = resp
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(0, |p| p + 2);
        resp.splice(at..at, b"WWW-Authenticate: Bearer\r\n".iter().copied());
    }
    write_all(stream, resp).await;
}

/// What a stream request asks for: where it starts, its filter and whether it wants dedup.
struct Asked {
    since: Option<u64>,
    filter: Option<Filter>,
    dedup: bool,
}

/// Reads a stream request's query (and for an event stream its `Last-Event-ID`, which wins
/// over `since`): a `since` malformed or ahead of what was published, a bad filter or an
/// unknown parameter is an error.
fn asked(core: &Fanout, req: &http::Request, events: bool) -> Result<Asked, HttpError> {
    let q = http::stream_query(&req.path)?;
    let since = match events {
        true => sse::last_event_id(req)?.or(q.since),
        false => q.since,
    };
    Ok(Asked {
        since: check_since(core, since)?,
        filter: Filter::parse(&q.domains, &q.regexes)?,
        dedup: q.dedup,
    })
}

fn check_since(core: &Fanout, since: Option<u64>) -> Result<Option<u64>, HttpError> {
    let next = core.shared.hub.next_cursor();
    match since {
        Some(since) if since >= next => Err(HttpError::SinceAhead {
            since,
            last: next - 1,
        }),
        since => Ok(since),
    }
}

/// What an upgraded client asked for: its stream, its wire form, where it starts and what
/// it subscribed to.
struct Upgrade {
    kind: StreamKind,
    wire: Wire,
    since: Option<u64>,
    sub: Option<Subscription>,
}

async fn websocket(
    core: Rc<Fanout>,
    stream: monoio::net::TcpStream,
    peer: SocketAddr,
    upgrade: Upgrade,
    leftover: Vec<u8>,
    _admission: Admission,
) {
    let Upgrade {
        kind,
        wire,
        since,
        sub,
    } = upgrade;
    let cfg = &core.shared.config;
    let pick = |f: &Frames| {
        let wanted = sub.as_ref().is_none_or(|s| s.wants_unheld(f));
        wanted.then(|| f.variant(kind.index()).clone())
    };
    // A gap in the start is announced first; an edge fills it from JetStream first.
    let (start, first) = crate::upstream::fill_gap(
        &core.shared.upstream,
        &core.log,
        core.start(since),
        pick,
        conn::gap_message,
    )
    .await;
    let fd = stream.as_raw_fd();
    let conn = Rc::new(Conn::with_wire(kind, wire, peer, fd, start).with_subscription(sub));
    first.into_iter().for_each(|f| conn.push_control(f));
    // One socket, two halves: the hot write side stays on the native completion driver,
    // the cold read side is `read_side`, so a client costs one descriptor.
    let (read, write) = stream.into_split();
    core.attach(conn.clone());
    let reader = {
        let conn = conn.clone();
        let core = core.clone();
        let max = cfg.max_client_frame;
        monoio::spawn(async move {
            let end = read_side(conn, read, leftover, wire, max).await;
            if end == ReadEnd::Protocol {
                core.counters.protocol_closed.fetch_add(1, Relaxed);
            }
        })
    };
    conn::writer(conn, write, &core.log, &core.counters).await;
    reader.await;
}

/// A websocket client's read side. Most clients never send a frame, so until one does (or
/// sent one with its request, `first`) the reader is one pending read of [`READ_BUFFER`]
/// bytes. Then fastwebsockets takes over: its read state (an 8 KiB buffer) and the frame
/// reader (boxed: about 1.7 KiB of future) exist only for clients that talk, over
/// monoio-compat's adapter to tokio's `AsyncRead` (reading into its own small buffer).
async fn read_side(
    conn: Rc<Conn>,
    mut read: OwnedReadHalf<monoio::net::TcpStream>,
    mut first: Vec<u8>,
    wire: Wire,
    max: usize,
) -> ReadEnd {
    if first.is_empty() {
        let (res, buf) = read.read(Vec::with_capacity(READ_BUFFER)).await;
        match res {
            Ok(n) if n > 0 => first = buf,
            _ => {
                conn.end_reading();
                return ReadEnd::Closed;
            }
        }
    }
    let read = monoio_compat::StreamWrapper::new_with_buffer_size(read, READ_BUFFER, 0);
    let io = std::io::Cursor::new(first).chain(read);
    match wire {
        Wire::Deflate { .. } => Box::pin(conn::deflate_reader(conn, io, max)).await,
        _ => Box::pin(conn::reader(conn, io, max)).await,
    }
}
