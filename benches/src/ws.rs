//! A lean websocket client for the load clients: a raw RFC 6455 handshake, then server frames
//! parsed in place from one growing buffer. Pings are answered with pongs and a close with a
//! close (client frames are masked, with a zero key: the payload stays as it is). Also a
//! one-shot HTTP GET for `/metrics`, `/stats` and the simulator's `/control`.

use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const OP_TEXT: u8 = 1;
pub const OP_CLOSE: u8 = 8;
pub const OP_PING: u8 = 9;
pub const OP_PONG: u8 = 10;

/// A connected websocket client.
pub struct Client {
    stream: TcpStream,
    buf: BytesMut,
    /// Bytes of the frame handed out by the last [`Client::next_frame`], dropped at the next.
    consumed: usize,
}

/// `host:port` and path of `ws://host:port/path` or `http://...`, or of a bare `host:port`.
pub fn split_url(url: &str) -> (&str, &str) {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    }
}

/// Connects to `addr` (`host:port`) and upgrades `path`: the stream and the bytes read past
/// the 101 response head.
pub async fn handshake(addr: &str, path: &str) -> anyhow::Result<(TcpStream, BytesMut)> {
    handshake_with(addr, path, "").await
}

/// [`handshake`] with extra request header lines (each ending in `\r\n`), e.g. a
/// `Sec-WebSocket-Extensions` offer.
pub async fn handshake_with(
    addr: &str,
    path: &str,
    extra: &str,
) -> anyhow::Result<(TcpStream, BytesMut)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    stream.write_all(req.as_bytes()).await?;
    let mut buf = BytesMut::with_capacity(256 << 10);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            bail!("closed during the handshake");
        }
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                bail!("handshake refused: {}", String::from_utf8_lossy(&buf[..p]));
            }
            buf.advance(p + 4);
            return Ok((stream, buf));
        }
        if buf.len() > 16 << 10 {
            bail!("no end of the response head");
        }
    }
}

impl Client {
    /// Connects to `addr` (`host:port`) and upgrades `path`, within `timeout`.
    pub async fn connect(addr: &str, path: &str, timeout: Duration) -> anyhow::Result<Client> {
        tokio::time::timeout(timeout, Self::connect_inner(addr, path))
            .await
            .context("handshake timed out")?
    }

    async fn connect_inner(addr: &str, path: &str) -> anyhow::Result<Client> {
        let (stream, buf) = handshake(addr, path).await?;
        Ok(Client {
            stream,
            buf,
            consumed: 0,
        })
    }

    /// The next complete frame `(opcode, payload)`; `None` at end of stream. Pings are
    /// answered before they are returned.
    pub async fn next_frame(&mut self) -> anyhow::Result<Option<(u8, &[u8])>> {
        self.buf.advance(self.consumed);
        self.consumed = 0;
        loop {
            if let Some((op, hlen, len)) = frame_at(&self.buf) {
                self.consumed = hlen + len;
                if op == OP_PING {
                    let payload = self.buf[hlen..hlen + len].to_vec();
                    self.send(OP_PONG, &payload).await?;
                }
                return Ok(Some((op, &self.buf[hlen..hlen + len])));
            }
            if self.buf.capacity() - self.buf.len() < 64 << 10 {
                self.buf.reserve(256 << 10);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Sends one masked frame (zero mask key).
    pub async fn send(&mut self, op: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut f = Vec::with_capacity(payload.len() + 14);
        f.push(0x80 | op);
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.extend_from_slice(payload);
        self.stream.write_all(&f).await
    }

    /// Sends a close frame with `code` (best effort) and drops the connection.
    pub async fn close(mut self, code: u16) {
        let _ = tokio::time::timeout(
            Duration::from_millis(500),
            self.send(OP_CLOSE, &code.to_be_bytes()),
        )
        .await;
    }
}

/// `(opcode, header length, payload length)` of the complete frame at the start of `buf`.
pub fn frame_at(buf: &[u8]) -> Option<(u8, usize, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let masked = buf[1] & 0x80 != 0;
    let (len, hlen) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    // Server frames are never masked; a masked one is skipped whole.
    let hlen = hlen + if masked { 4 } else { 0 };
    if buf.len() < hlen + len {
        return None;
    }
    Some((buf[0] & 0x0f, hlen, len))
}

/// The close code of a close frame's payload (1005 when it has none).
pub fn close_code(payload: &[u8]) -> u16 {
    if payload.len() >= 2 {
        u16::from_be_bytes([payload[0], payload[1]])
    } else {
        1005
    }
}

/// `GET` (or `POST` with an empty body) `http://host:port/path`: `(status, body)`.
pub async fn http(method: &str, url: &str, timeout: Duration) -> anyhow::Result<(u16, Vec<u8>)> {
    let (addr, path) = split_url(url);
    tokio::time::timeout(timeout, async {
        let mut s = TcpStream::connect(addr).await?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await?;
        let end = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("no response head")?;
        let status: u16 = std::str::from_utf8(resp.get(9..12).context("short status line")?)?
            .parse()?;
        let head = String::from_utf8_lossy(&resp[..end]).to_ascii_lowercase();
        let mut body = resp[end + 4..].to_vec();
        if head.contains("transfer-encoding: chunked") {
            body = dechunk(&body).context("bad chunked body")?;
        }
        Ok((status, body))
    })
    .await
    .context("HTTP request timed out")?
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line = b.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&b[..line]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        b = &b[line + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_urls() {
        assert_eq!(frame_at(b"\x81\x03abc"), Some((1, 2, 3)));
        assert_eq!(frame_at(b"\x81\x03ab"), None);
        let mut long = vec![0x81, 126, 0x01, 0x00];
        long.extend(std::iter::repeat_n(b'x', 256));
        assert_eq!(frame_at(&long), Some((1, 4, 256)));
        assert_eq!(frame_at(&long[..100]), None);
        assert_eq!(close_code(&[0x03, 0xe9]), 1001);
        assert_eq!(close_code(&[]), 1005);
        assert_eq!(
            split_url("ws://127.0.0.1:4000/full-stream"),
            ("127.0.0.1:4000", "/full-stream")
        );
        assert_eq!(split_url("http://h:1"), ("h:1", "/"));
        assert_eq!(split_url("h:1/x?y"), ("h:1", "/x?y"));
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
    }
}
