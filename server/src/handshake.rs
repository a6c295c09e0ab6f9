//! The websocket upgrade (RFC 6455 §4.2): validate the client's request and answer 101 with
//! `Sec-WebSocket-Accept`.

use base64::Engine as _;

use crate::http::Request;

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an upgrade request is refused (answered 400 / 426).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("not a GET request")]
    Method,
    #[error("missing or bad Connection: upgrade")]
    Connection,
    #[error("Sec-WebSocket-Version must be 13")]
    Version,
    #[error("missing or bad Sec-WebSocket-Key")]
    Key,
}

/// Whether a request asks for a websocket upgrade at all.
pub fn wants_upgrade(req: &Request) -> bool {
    req.header("upgrade")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// Checks an upgrade request and returns the 101 response to send.
pub fn accept(req: &Request) -> Result<Vec<u8>, HandshakeError> {
    accept_with(req, None)
}

/// [`accept`], answering with the `Sec-WebSocket-Extensions` value `extensions` when given.
pub fn accept_with(req: &Request, extensions: Option<&str>) -> Result<Vec<u8>, HandshakeError> {
    if req.method != "GET" {
        return Err(HandshakeError::Method);
    }
    let conn_ok = req.header("connection").is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    });
    if !conn_ok {
        return Err(HandshakeError::Connection);
    }
    if req.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(HandshakeError::Version);
    }
    let key = req
        .header("sec-websocket-key")
        .map(str::trim)
        .ok_or(HandshakeError::Key)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| HandshakeError::Key)?;
    if decoded.len() != 16 {
        return Err(HandshakeError::Key);
    }
    let ext = extensions
        .map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"))
        .unwrap_or_default();
    Ok(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{ext}\r\n",
        accept_key(key)
    )
    .into_bytes())
}

/// `base64(SHA-1(key + GUID))`.
pub fn accept_key(key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_example_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

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
    fn validates_the_request() {
        let good = [
            ("Upgrade", "websocket"),
            ("Connection", "keep-alive, Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        assert!(wants_upgrade(&req(&good)));
        let resp = String::from_utf8(accept(&req(&good)).unwrap()).unwrap();
        assert!(resp.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        let mut bad = good;
        bad[2].1 = "8";
        assert_eq!(accept(&req(&bad)), Err(HandshakeError::Version));
        let mut bad = good;
        bad[3].1 = "short";
        assert_eq!(accept(&req(&bad)), Err(HandshakeError::Key));
        let mut bad = good;
        bad[1].1 = "close";
        assert_eq!(accept(&req(&bad)), Err(HandshakeError::Connection));
    }
}
