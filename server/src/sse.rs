//! The streams as Server-Sent Events (`text/event-stream`): the stream paths when the
//! request's `Accept` is `text/event-stream` (what a browser's `EventSource` sends), and
//! `/sse?stream=lite|full|domains`.
//!
//! Each certificate is one event, `id: <cursor>` and `data: <the message JSON>`, made once
//! per core and stream and shared by its SSE clients ([`crate::wire`]). A `Last-Event-ID`
//! header resumes exactly as `since` does (and wins over it). Keep-alives are comment lines
//! at the heartbeat interval. An SSE client is a position in the core's stream log like a
//! websocket one: a slow one skips, is counted and is shed the same way (a comment line
//! with the reason, then the stream ends).

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Splitable as _};

use crate::conn::{self, Conn};
use crate::fanout::Fanout;
use crate::filter::Filter;
use crate::http::{HttpError, Request, StreamKind};
use crate::wire::Wire;

/// The response head of an event stream (no length: it ends when the connection does).
pub const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nAccess-Control-Allow-Origin: *\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\n";

/// Whether a request for a stream path asks for events (`Accept: text/event-stream`).
pub fn wants_events(req: &Request) -> bool {
    req.header("accept").is_some_and(|v| {
        v.split(',').any(|t| {
            t.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
        })
    })
}

/// The stream `/sse?stream=` names (`lite` when absent).
pub fn stream_param(path: &str) -> Result<StreamKind, HttpError> {
    let query = path.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or("");
    let mut kind = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "stream" {
            if kind.is_some() {
                return Err(HttpError::BadSseStream);
            }
            kind = Some(match v {
                "lite" => StreamKind::Lite,
                "full" => StreamKind::Full,
                "domains" => StreamKind::Domains,
                _ => return Err(HttpError::BadSseStream),
            });
        }
    }
    Ok(kind.unwrap_or(StreamKind::Lite))
}

/// The `Last-Event-ID` header as a cursor, when sent (empty means none, as a fresh
/// `EventSource` that never got an id sends nothing at all).
pub fn last_event_id(req: &Request) -> Result<Option<u64>, HttpError> {
    match req.header("last-event-id").map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if v.bytes().all(|b| b.is_ascii_digit()) => {
            v.parse().map(Some).map_err(|_| HttpError::BadLastEventId)
        }
        Some(_) => Err(HttpError::BadLastEventId),
    }
}

/// Streams events of `kind` from after `since` (or live) until the client goes away.
pub async fn serve(
    core: Rc<Fanout>,
    mut stream: monoio::net::TcpStream,
    peer: SocketAddr,
    kind: StreamKind,
    since: Option<u64>,
    filter: Option<Filter>,
    dedup: bool,
) {
    let (res, _) = stream.write_all(HEAD).await;
    if res.is_err() {
        return;
    }
    // Registered only for a client that will be attached (which unregisters it at its end).
    let sub = core.subscribe(filter, dedup);
    let conn = Rc::new(
        Conn::with_wire(kind, Wire::Sse, peer, stream.as_raw_fd(), core.start(since))
            .with_subscription(sub),
    );
    let (mut read, write) = stream.into_split();
    core.attach(conn.clone());
    // The client sends nothing more: reading only notices that it went away.
    let reader = {
        let conn = conn.clone();
        monoio::spawn(async move {
            let mut buf = vec![0u8; 256];
            loop {
                let (res, b) = read.read(buf).await;
                buf = b;
                if !matches!(res, Ok(n) if n > 0) {
                    break;
                }
            }
            conn.end_reading();
        })
    };
    conn::writer(conn, write, &core.log, &core.counters).await;
    reader.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: "/".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn requests_for_events() {
        assert!(wants_events(&req(&[("Accept", "text/event-stream")])));
        assert!(wants_events(&req(&[(
            "Accept",
            "text/html, Text/Event-Stream;q=0.9"
        )])));
        assert!(!wants_events(&req(&[("Accept", "*/*")])));
        assert!(!wants_events(&req(&[])));
        assert_eq!(stream_param("/sse"), Ok(StreamKind::Lite));
        assert_eq!(stream_param("/sse?stream=full"), Ok(StreamKind::Full));
        assert_eq!(
            stream_param("/sse?since=3&stream=domains"),
            Ok(StreamKind::Domains)
        );
        for bad in [
            "/sse?stream=",
            "/sse?stream=x",
            "/sse?stream=lite&stream=full",
        ] {
            assert_eq!(stream_param(bad), Err(HttpError::BadSseStream), "{bad}");
        }
        assert_eq!(last_event_id(&req(&[])), Ok(None));
        assert_eq!(last_event_id(&req(&[("Last-Event-ID", "")])), Ok(None));
        assert_eq!(
            last_event_id(&req(&[("Last-Event-ID", "42")])),
            Ok(Some(42))
        );
        for bad in ["-1", "x", "99999999999999999999999"] {
            assert_eq!(
                last_event_id(&req(&[("Last-Event-ID", bad)])),
                Err(HttpError::BadLastEventId)
            );
        }
    }
}
