//! permessage-deflate (RFC 7692), shared: negotiated per connection, compressed once.
//!
//! The server always answers `server_no_context_takeover`, so every message is compressed
//! on its own and a certificate's deflated frame is the same for every client: the core
//! makes it the first time one of its deflate clients wants it and shares it (see
//! [`crate::wire`]). A client's `server_max_window_bits=N` is honoured by compressing with
//! a window of `2^N` bytes: one form per window size actually asked for (almost every client
//! asks for none, and gets 15). An offer of 8 is declined (zlib's raw deflate cannot
//! promise a 256-byte window), and that client gets plain frames. Heartbeats, gap notices
//! and control frames are sent uncompressed, as each message may choose.
//!
//! Client frames with RSV1 set are inflated (with the client's context kept, whatever it
//! negotiated) up to the connection's frame limit: past it, a decompression bomb, the
//! connection closes with 1009. fastwebsockets, which reads client frames, refuses RSV1:
//! [`Rsv1Strip`] clears the bit on the way in and records it for the reader.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use certstream_engine::frame::{self, OP_TEXT};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::http::Request;

/// What was agreed with a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreed {
    /// The window the server compresses with: `2^bits` bytes.
    pub bits: u8,
    /// The `Sec-WebSocket-Extensions` value of the 101 answer.
    pub response: String,
}

/// Picks the first permessage-deflate offer of the request's `Sec-WebSocket-Extensions`
/// that can be honoured; `None` when there is none (plain frames).
pub fn negotiate(req: &Request) -> Option<Agreed> {
    req.headers
        .iter()
        .filter(|(k, _)| k == "sec-websocket-extensions")
        .flat_map(|(_, v)| v.split(','))
        .find_map(offer)
}

/// One offer: `permessage-deflate; param[=value]; ...`.
fn offer(text: &str) -> Option<Agreed> {
    let mut parts = text.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let (mut server_bits, mut client_nct, mut seen) = (None, false, Vec::new());
    for p in parts {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (p, None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return None; // a parameter twice: decline the offer (RFC 7692 §5.1)
        }
        match (name.as_str(), value) {
            ("server_no_context_takeover", None) => {}
            ("client_no_context_takeover", None) => client_nct = true,
            ("server_max_window_bits", Some(v)) => {
                let bits: u8 = v.parse().ok().filter(|b| (8..=15).contains(b))?;
                if bits == 8 {
                    return None;
                }
                server_bits = Some(bits);
            }
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(v)) => {
                v.parse::<u8>().ok().filter(|b| (8..=15).contains(b))?;
            }
            _ => return None,
        }
        seen.push(name);
    }
    let mut response = "permessage-deflate; server_no_context_takeover".to_owned();
    if let Some(b) = server_bits {
        response.push_str(&format!("; server_max_window_bits={b}"));
    }
    if client_nct {
        response.push_str("; client_no_context_takeover");
    }
    Some(Agreed {
        bits: server_bits.unwrap_or(15),
        response,
    })
}

thread_local! {
    /// One compressor per window size, per core (reset between messages).
    static COMPRESSORS: RefCell<[Option<Compress>; 7]> = const { RefCell::new([const { None }; 7]) };
}

/// The deflated text frame (RSV1 set) of one message, compressed on its own with a window
/// of `2^bits` bytes (9..=15), the trailing `00 00 ff ff` removed (RFC 7692 §7.2.1).
pub fn frame(payload: &[u8], bits: u8) -> Bytes {
    let bits = bits.clamp(9, 15);
    let mut out = Vec::with_capacity(frame::MAX_HEADER + payload.len() / 2 + 64);
    out.resize(frame::MAX_HEADER, 0);
    COMPRESSORS.with(|c| {
        let mut c = c.borrow_mut();
        let z = c[usize::from(bits - 9)].get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::default(), false, bits)
        });
        z.reset();
        let start = z.total_in();
        loop {
            let done = (z.total_in() - start) as usize;
            out.reserve(payload.len() - done + 64);
            // Compressing into a Vec with room left does not fail.
            let _ = z.compress_vec(&payload[done..], &mut out, FlushCompress::Sync);
            if (z.total_in() - start) as usize == payload.len() && out.len() < out.capacity() {
                break;
            }
        }
    });
    if out.ends_with(&[0, 0, 0xff, 0xff]) {
        out.truncate(out.len() - 4);
    }
    let len = out.len() - frame::MAX_HEADER;
    let mut header = [0u8; frame::MAX_HEADER];
    let hlen = frame::encode_header(&mut header, OP_TEXT, len);
    header[0] |= RSV1;
    let start = frame::MAX_HEADER - hlen;
    out[start..frame::MAX_HEADER].copy_from_slice(&header[..hlen]);
    Bytes::from(out).slice(start..)
}

/// The RSV1 bit of a frame's first byte: "this message is compressed".
pub const RSV1: u8 = 0x40;

/// Why a client's compressed message is refused: a close code and reason.
pub type Refusal = (u16, &'static str);

/// A client's compressed messages, inflated with its context kept.
#[derive(Default)]
pub struct Inflate {
    z: Option<Decompress>,
    /// The compressed message being received (between its first frame and its last).
    message: Option<(bool, Vec<u8>)>,
}

impl std::fmt::Debug for Inflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflate").finish_non_exhaustive()
    }
}

/// What a client frame was, as [`Rsv1Strip`] saw it on the way in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Plain,
    /// RSV1 set on a text frame (handed on as binary, so that nobody checks its UTF-8).
    CompressedText,
    CompressedOther,
}

impl Inflate {
    /// One data or control frame, with what [`Rsv1Strip`] saw of it; inflates a compressed
    /// message at its last frame, to at most `max` bytes.
    pub fn frame(
        &mut self,
        seen: Seen,
        control: bool,
        continuation: bool,
        fin: bool,
        payload: &[u8],
        max: usize,
    ) -> Result<(), Refusal> {
        if seen != Seen::Plain && (control || continuation) {
            return Err((1002, "RSV1 on a control or continuation frame"));
        }
        if control {
            return Ok(());
        }
        if !continuation {
            self.message =
                (seen != Seen::Plain).then(|| (seen == Seen::CompressedText, Vec::new()));
        }
        let Some((text, buf)) = self.message.as_mut() else {
            return Ok(());
        };
        if buf.len() + payload.len() > max {
            return Err((1009, "compressed message too large"));
        }
        buf.extend_from_slice(payload);
        if !fin {
            return Ok(());
        }
        let (text, mut input) = (*text, std::mem::take(buf));
        self.message = None;
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let out = inflate(
            self.z.get_or_insert_with(|| Decompress::new(false)),
            &input,
            max,
        )?;
        if text && std::str::from_utf8(&out).is_err() {
            return Err((1007, "invalid UTF-8"));
        }
        Ok(())
    }
}

/// Inflates `input` with `z`'s context; more than `max` bytes out is a refusal (1009).
pub fn inflate(z: &mut Decompress, input: &[u8], max: usize) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::new();
    let start = z.total_in();
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(16 << 10);
        }
        let done = (z.total_in() - start) as usize;
        let before = (z.total_in(), out.len());
        let status = z
            .decompress_vec(&input[done..], &mut out, FlushDecompress::Sync)
            .map_err(|_| (1007, "bad compressed data"))?;
        if out.len() > max {
            return Err((1009, "decompressed message too large"));
        }
        let all_in = (z.total_in() - start) as usize == input.len();
        if status == Status::StreamEnd
            || (all_in && out.len() < out.capacity())
            || (z.total_in(), out.len()) == before
        {
            return Ok(out);
        }
    }
}

/// What [`Rsv1Strip`] saw of each client frame, in order, for the reader.
pub type SeenQueue = Rc<RefCell<VecDeque<Seen>>>;

#[derive(Debug, Clone, Copy)]
enum At {
    First,
    Second,
    Length { left: u8 },
    Mask { left: u8 },
    Payload { left: u64 },
}

/// Clears RSV1 in client frame headers as they are read (so fastwebsockets accepts them),
/// turns a compressed text frame into a binary one (its payload is not UTF-8), and records
/// what each frame was in a queue the reader takes from, one entry per frame.
pub struct Rsv1Strip<R> {
    inner: R,
    at: At,
    masked: bool,
    len: u64,
    seen: SeenQueue,
}

impl<R> Rsv1Strip<R> {
    pub fn new(inner: R, seen: SeenQueue) -> Self {
        Rsv1Strip {
            inner,
            at: At::First,
            masked: false,
            len: 0,
            seen,
        }
    }

    fn after_length(&mut self) -> At {
        if self.masked {
            At::Mask { left: 4 }
        } else {
            self.payload()
        }
    }

    fn payload(&mut self) -> At {
        if self.len == 0 {
            At::First
        } else {
            At::Payload { left: self.len }
        }
    }

    /// Walks newly read bytes, rewriting first header bytes in place.
    fn scan(&mut self, bytes: &mut [u8]) {
        let mut i = 0;
        while i < bytes.len() {
            match self.at {
                At::Payload { left } => {
                    let n = (bytes.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    i += n;
                    let left = left - n as u64;
                    self.at = if left == 0 {
                        At::First
                    } else {
                        At::Payload { left }
                    };
                    continue;
                }
                At::First => {
                    let b = bytes[i];
                    let seen = if b & RSV1 == 0 {
                        Seen::Plain
                    } else if b & 0x0f == OP_TEXT {
                        bytes[i] = (b & !RSV1 & 0xf0) | 0x2;
                        Seen::CompressedText
                    } else {
                        bytes[i] = b & !RSV1;
                        Seen::CompressedOther
                    };
                    self.seen.borrow_mut().push_back(seen);
                    self.at = At::Second;
                }
                At::Second => {
                    let b = bytes[i];
                    self.masked = b & 0x80 != 0;
                    self.len = u64::from(b & 0x7f);
                    self.at = match b & 0x7f {
                        126 => At::Length { left: 2 },
                        127 => At::Length { left: 8 },
                        _ => self.after_length(),
                    };
                    if matches!(self.at, At::Length { .. }) {
                        self.len = 0;
                    }
                }
                At::Length { left } => {
                    self.len = (self.len << 8) | u64::from(bytes[i]);
                    self.at = if left == 1 {
                        self.after_length()
                    } else {
                        At::Length { left: left - 1 }
                    };
                }
                At::Mask { left } => {
                    self.at = if left == 1 {
                        self.payload()
                    } else {
                        At::Mask { left: left - 1 }
                    };
                }
            }
            i += 1;
        }
    }
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Rsv1Strip<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            self.scan(&mut buf.filled_mut()[before..]);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(ext: &[&str]) -> Request {
        Request {
            method: "GET".into(),
            path: "/".into(),
            headers: ext
                .iter()
                .map(|v| ("sec-websocket-extensions".to_owned(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn negotiation_always_answers_no_server_context_takeover() {
        let got = |h: &[&str]| negotiate(&req(h)).map(|a| (a.bits, a.response));
        assert_eq!(got(&[]), None);
        assert_eq!(got(&["x-webkit-deflate-frame"]), None);
        // Chromium's offer.
        assert_eq!(
            got(&["permessage-deflate; client_max_window_bits"]),
            Some((15, "permessage-deflate; server_no_context_takeover".into()))
        );
        assert_eq!(
            got(&["permessage-deflate; server_max_window_bits=9; client_no_context_takeover"]),
            Some((
                9,
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=9; client_no_context_takeover".into()
            ))
        );
        // Offers that cannot be honoured are declined; the next one is taken.
        assert_eq!(
            got(&[
                "permessage-deflate; server_max_window_bits=8, permessage-deflate; x=1",
                "permessage-deflate; server_max_window_bits=12"
            ])
            .map(|g| g.0),
            Some(12)
        );
        for bad in [
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; unknown",
        ] {
            assert_eq!(got(&[bad]), None, "{bad}");
        }
    }

    fn inflated(frame: &[u8]) -> Vec<u8> {
        let (op, payload) = (
            frame[0],
            frame::payload(&[&[frame[0] & !RSV1][..], &frame[1..]].concat()).to_vec(),
        );
        assert_eq!(op, 0x80 | RSV1 | OP_TEXT);
        let mut input = payload;
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        inflate(&mut Decompress::new(false), &input, 1 << 20).unwrap()
    }

    #[test]
    fn a_frame_inflates_to_its_message_on_its_own() {
        let msg = br#"{"message_type":"certificate_update","data":{"all_domains":["a.example","b.example","a.example"]}}"#.repeat(40);
        for bits in 9..=15 {
            let f = frame(&msg, bits);
            assert!(
                f.len() < msg.len() / 4,
                "compressed: {} of {}",
                f.len(),
                msg.len()
            );
            assert_eq!(inflated(&f), msg);
            // Each message on its own: the same bytes however often it is made.
            assert_eq!(frame(&msg, bits), f);
        }
        assert_eq!(inflated(&frame(b"", 15)), b"");
    }

    #[test]
    fn a_window_of_512_bytes_is_kept() {
        // A message whose only repeat is 1,000 bytes back: compressed with window 9, no
        // back-reference may reach it, so it inflates with a 512-byte window too.
        let mut msg: Vec<u8> = (0..1000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        msg.extend_from_within(..1000);
        let small = frame(&msg, 9);
        let big = frame(&msg, 15);
        assert!(
            big.len() + 300 < small.len(),
            "{} vs {}",
            big.len(),
            small.len()
        );
        let (_, payload) = frame::parse(&[&[small[0] & !RSV1][..], &small[1..]].concat())
            .map(|(o, p)| (o, p.to_vec()))
            .unwrap();
        let mut input = payload;
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let out = inflate(&mut Decompress::new(false), &input, 1 << 20).unwrap();
        assert_eq!(out, msg);
    }

    #[test]
    fn a_decompression_bomb_is_refused_with_1009() {
        let bomb = frame(&vec![b'a'; 1 << 20], 15);
        let payload = frame::payload(&[&[bomb[0] & !RSV1][..], &bomb[1..]].concat()).to_vec();
        assert!(payload.len() < 2048);
        let mut inf = Inflate::default();
        assert_eq!(
            inf.frame(Seen::CompressedText, false, false, true, &payload, 64 << 10),
            Err((1009, "decompressed message too large"))
        );
        let mut inf = Inflate::default();
        assert_eq!(
            inf.frame(Seen::CompressedText, false, false, true, &payload, 2 << 20),
            Ok(())
        );
        assert_eq!(
            inf.frame(Seen::CompressedOther, true, false, true, b"", 1 << 10),
            Err((1002, "RSV1 on a control or continuation frame"))
        );
    }

    #[test]
    fn the_strip_clears_rsv1_and_records_each_frame() {
        let seen = SeenQueue::default();
        let mut s = Rsv1Strip::new((), seen.clone());
        // A compressed masked text frame of 3 bytes, a ping, a 200-byte binary frame.
        let mut bytes = vec![
            0xC1, 0x83, 1, 2, 3, 4, 9, 9, 9, 0x89, 0x80, 1, 2, 3, 4, 0x82, 0xFE, 0, 200,
        ];
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        bytes.extend(std::iter::repeat_n(0xC1, 200)); // payload bytes that look like headers
        bytes.push(0xC2);
        let (a, b) = bytes.split_at_mut(7); // split inside a header's mask and a payload
        s.scan(a);
        s.scan(b);
        assert_eq!(bytes[0], 0x82);
        assert_eq!(bytes[9], 0x89);
        assert_eq!(bytes[bytes.len() - 1], 0x82);
        assert_eq!(
            seen.borrow().iter().copied().collect::<Vec<_>>(),
            [
                Seen::CompressedText,
                Seen::Plain,
                Seen::Plain,
                Seen::CompressedOther
            ]
        );
    }
}
