//! One accepted connection: its request head, its route, and its answer: an HTTP response
//! (the index page, the reports, a one-line error), or the websocket upgrade into a client
//! of this core's [`Fanout`].

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

use monoio::buf::IoBufMut as _;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Splitable as _};
use tokio::io::AsyncReadExt as _;

use crate::conn::{self, Conn, ReadEnd};
use crate::fanout::Fanout;
use crate::filter::{Filter, Subscription};
use crate::handshake;
use crate::http::{self, HttpError, Route, StreamKind};
use crate::report;
use crate::shared::Admission;

/// Bytes a client's reader reads at once (client frames are pings and closes: small).
const READ_BUFFER: usize = 1024;

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
    _admission: Admission,
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
    let route = http::route(&req.path);
    if let Route::Stream(kind) = route {
        if handshake::wants_upgrade(&req) {
            let (since, filter, dedup) = match stream_since(&core, &req.path) {
                Ok(s) => s,
                Err(e) => return refuse(&core, &mut stream, peer, e).await,
            };
            match handshake::accept(&req) {
                Ok(resp) => {
                    let (res, _) = stream.write_all(resp).await;
                    if res.is_ok() {
                        let sub = core.subscribe(filter, dedup);
                        websocket(core, stream, peer, kind, since, sub, leftover).await;
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
        Route::NotFound => http::response("404 Not Found", "text/plain", b"not found\n"),
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
    write_all(
        stream,
        http::response(e.status(), "text/plain", body.as_bytes()),
    )
    .await;
}

/// The `since` cursor, filter and dedup of a stream request: a `since` malformed or ahead of
/// what was published, a bad filter or an unknown parameter is an error.
fn stream_since(
    core: &Fanout,
    path: &str,
) -> Result<(Option<u64>, Option<Filter>, bool), HttpError> {
    let q = http::stream_query(path)?;
    let next = core.shared.hub.next_cursor();
    let since = match q.since {
        Some(since) if since >= next => {
            return Err(HttpError::SinceAhead {
                since,
                last: next - 1,
            })
        }
        since => since,
    };
    let filter = Filter::parse(&q.domains, &q.regexes)?;
    Ok((since, filter, q.dedup))
}

async fn websocket(
    core: Rc<Fanout>,
    stream: monoio::net::TcpStream,
    peer: SocketAddr,
    kind: StreamKind,
    since: Option<u64>,
    sub: Option<Subscription>,
    leftover: Vec<u8>,
) {
    let cfg = &core.shared.config;
    let conn = Rc::new(
        Conn::new(kind, peer, stream.as_raw_fd(), core.start(since)).with_subscription(sub),
    );
    // One socket, two halves: the hot write side stays on the native completion driver;
    // the cold read side is adapted to tokio's `AsyncRead` for fastwebsockets by
    // monoio-compat (reads into its own small buffer), so a client costs one descriptor.
    let (read, write) = stream.into_split();
    let read = monoio_compat::StreamWrapper::new_with_buffer_size(read, READ_BUFFER, 0);
    core.attach(conn.clone());
    let reader = {
        let conn = conn.clone();
        let core = core.clone();
        let max = cfg.max_client_frame;
        monoio::spawn(async move {
            let io = std::io::Cursor::new(leftover).chain(read);
            if conn::reader(conn, io, max).await == ReadEnd::Protocol {
                core.counters.protocol_closed.fetch_add(1, Relaxed);
            }
        })
    };
    conn::writer(conn, write, &core.log, &core.counters).await;
    reader.await;
}
