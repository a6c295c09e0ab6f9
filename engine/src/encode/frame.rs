//! Websocket frames that are written once and shared by every client.
//!
//! A message is encoded straight into a buffer whose first [`MAX_HEADER`] bytes are reserved
//! for the RFC 6455 frame header. [`FrameBuf::finish`] writes the real header (2, 4 or 10
//! bytes, depending on the payload length) just in front of the payload and returns a
//! [`Bytes`] that starts at the header: every client is sent a clone of it, a reference-count
//! bump, never a copy.
//!
//! # Cursors
//! A certificate's three messages are written before it has a cursor: the encoder fills a
//! [`Draft`], whose buffers keep [`PREFIX_ROOM`] bytes free in front of the payload, and the
//! hub stamps it on publish ([`Draft::stamp`]): `{"message_type":"…","cursor":N,` and the
//! frame header go into that room, in front of the `"data":…}` already written. So each
//! message is still written once, straight into its frame, and the cursor costs no copy of
//! the message.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::encode::issuance::IssuanceKey;

/// The longest server frame header: FIN/opcode, 127, 64-bit length (server frames are unmasked).
pub const MAX_HEADER: usize = 10;

/// Websocket opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Websocket opcode of a ping frame.
pub const OP_PING: u8 = 0x9;
/// Websocket opcode of a pong frame.
pub const OP_PONG: u8 = 0xA;
/// Websocket opcode of a close frame.
pub const OP_CLOSE: u8 = 0x8;

/// Room a [`Draft`]'s buffers keep in front of the body: the longest frame header and the
/// longest message opening, `{"message_type":"certificate_update","cursor":<20 digits>,`.
pub const PREFIX_ROOM: usize = MAX_HEADER + 72;

/// A buffer that holds room for a frame header (and, in a [`Draft`], a message opening)
/// followed by the payload being written.
#[derive(Debug)]
pub struct FrameBuf {
    buf: BytesMut,
    /// Where the payload written so far starts.
    room: usize,
}

impl FrameBuf {
    /// Starts a frame whose payload is expected to be about `payload_hint` bytes long.
    pub fn with_capacity(payload_hint: usize) -> Self {
        Self::with_room(MAX_HEADER, payload_hint)
    }

    /// Starts a frame with `room` bytes free in front of the payload.
    fn with_room(room: usize, payload_hint: usize) -> Self {
        let mut buf = BytesMut::with_capacity(room + payload_hint);
        buf.put_bytes(0, room);
        FrameBuf { buf, room }
    }

    /// The payload written so far.
    pub fn payload(&self) -> &[u8] {
        &self.buf[self.room..]
    }

    /// Appends payload bytes.
    #[inline]
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Appends one payload byte.
    #[inline]
    pub fn push(&mut self, byte: u8) {
        self.buf.put_u8(byte);
    }

    /// Mutable access to the underlying buffer for encoders (header room included).
    pub fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Writes the header of a final text frame and freezes header + payload into one `Bytes`.
    pub fn finish(self) -> Bytes {
        self.finish_with(OP_TEXT)
    }

    /// Like [`FrameBuf::finish`] with any opcode.
    pub fn finish_with(self, opcode: u8) -> Bytes {
        self.finish_after(opcode, &[])
    }

    /// Writes `prefix` into the room just in front of the payload, and the header of a final
    /// frame in front of that; freezes header + prefix + payload into one `Bytes`.
    fn finish_after(mut self, opcode: u8, prefix: &[u8]) -> Bytes {
        assert!(
            prefix.len() + MAX_HEADER <= self.room,
            "a frame's prefix fits its room"
        );
        let payload_at = self.room - prefix.len();
        self.buf[payload_at..self.room].copy_from_slice(prefix);
        let len = self.buf.len() - payload_at;
        let mut header = [0u8; MAX_HEADER];
        let hlen = encode_header(&mut header, opcode, len);
        let start = payload_at - hlen;
        self.buf[start..payload_at].copy_from_slice(&header[..hlen]);
        self.buf.freeze().slice(start..)
    }
}

/// Writes an unmasked final-frame header for a payload of `len` bytes; returns its length.
pub fn encode_header(out: &mut [u8; MAX_HEADER], opcode: u8, len: usize) -> usize {
    out[0] = 0x80 | (opcode & 0x0f);
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Builds a complete frame from a payload (control frames, heartbeats, tests).
pub fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut f = FrameBuf::with_capacity(payload.len());
    f.extend(payload);
    f.finish_with(opcode)
}

/// Splits a server frame built here into `(opcode, payload)`. `None` if it is not one.
pub fn parse(frame: &[u8]) -> Option<(u8, &[u8])> {
    let b0 = *frame.first()?;
    let b1 = *frame.get(1)?;
    if b1 & 0x80 != 0 {
        return None; // server frames are never masked
    }
    let (len, hlen): (usize, usize) = match b1 & 0x7f {
        126 => (
            u16::from_be_bytes(frame.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            usize::try_from(u64::from_be_bytes(frame.get(2..10)?.try_into().ok()?)).ok()?,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = frame.get(hlen..hlen.checked_add(len)?)?;
    (hlen + len == frame.len()).then_some((b0 & 0x0f, payload))
}

/// The payload of a frame built here (panics never; empty for a malformed frame).
pub fn payload(frame: &[u8]) -> &[u8] {
    parse(frame).map(|(_, p)| p).unwrap_or_default()
}

/// One certificate, encoded once for each stream.
#[derive(Debug, Clone, Default)]
pub struct Frames {
    /// The certificate's place in the stream: consecutive in publish order, starting at 1;
    /// 0 for frames that were never published ([`Draft::unstamped`]: `decode`).
    pub cursor: u64,
    /// Which log (index into the engine's log table) the certificate came from.
    pub log: u32,
    /// The entry's index in its log.
    pub index: u64,
    /// `/`: `certificate_update` without `as_der`.
    pub lite: Bytes,
    /// `/full-stream`: `certificate_update` with `as_der` on every certificate.
    pub full: Bytes,
    /// `/domains-only`: `dns_entries`.
    pub domains: Bytes,
    /// The certificate's `all_domains`, written once by the encoder, for the server's
    /// filters (so they never parse the JSON).
    pub names: Arc<[Box<str>]>,
    /// Whether the same issuance was published before within the dedup window (another log,
    /// or the precertificate of this certificate): decided once, at publish.
    pub duplicate: bool,
}

impl Frames {
    /// The frame of one stream: 0 lite, 1 full, 2 domains-only.
    #[inline]
    pub fn variant(&self, stream: usize) -> &Bytes {
        match stream {
            0 => &self.lite,
            1 => &self.full,
            _ => &self.domains,
        }
    }

    /// Bytes the three frames hold.
    pub fn len(&self) -> usize {
        self.lite.len() + self.full.len() + self.domains.len()
    }

    /// Whether all three frames are empty (never, for an encoded certificate).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One certificate's three messages, written once, waiting for the cursor the hub stamps
/// on publish. Each body starts at `"data":` and ends with the message's closing brace.
#[derive(Debug)]
pub struct Draft {
    /// Which log the certificate came from.
    pub log: u32,
    /// The entry's index in its log.
    pub index: u64,
    /// The certificate's `all_domains` (see [`Frames::names`]).
    pub names: Arc<[Box<str>]>,
    /// The certificate's issuance key, for dedup ([`crate::encode::issuance`]).
    pub issuance: Option<IssuanceKey>,
    lite: FrameBuf,
    full: FrameBuf,
    domains: FrameBuf,
}

impl Draft {
    /// Starts a draft; `hints` are the expected lite, full and domains body lengths.
    pub fn new(log: u32, index: u64, hints: [usize; 3]) -> Self {
        Draft {
            log,
            index,
            names: Arc::from(Vec::new()),
            issuance: None,
            lite: FrameBuf::with_room(PREFIX_ROOM, hints[0]),
            full: FrameBuf::with_room(PREFIX_ROOM, hints[1]),
            domains: FrameBuf::with_room(PREFIX_ROOM, hints[2]),
        }
    }

    /// The bodies being written: lite, full, domains-only.
    pub fn bodies(&mut self) -> [&mut FrameBuf; 3] {
        [&mut self.lite, &mut self.full, &mut self.domains]
    }

    /// The frames with `cursor` as their second key:
    /// `{"message_type":"certificate_update","cursor":N,"data":…}`.
    pub fn stamp(self, cursor: u64) -> Frames {
        self.finish(Some(cursor))
    }

    /// The frames without a cursor, exactly as the original server writes them (`decode`).
    pub fn unstamped(self) -> Frames {
        self.finish(None)
    }

    fn finish(self, cursor: Option<u64>) -> Frames {
        let prefix = |message_type: &[u8]| {
            let mut p = [0u8; PREFIX_ROOM - MAX_HEADER];
            let mut n = 0;
            let mut put = |b: &[u8]| {
                p[n..n + b.len()].copy_from_slice(b);
                n += b.len();
            };
            put(b"{\"message_type\":\"");
            put(message_type);
            put(b"\",");
            if let Some(c) = cursor {
                put(b"\"cursor\":");
                put(itoa::Buffer::new().format(c).as_bytes());
                put(b",");
            }
            (p, n)
        };
        let (update, un) = prefix(b"certificate_update");
        let (dns, dn) = prefix(b"dns_entries");
        Frames {
            cursor: cursor.unwrap_or(0),
            log: self.log,
            index: self.index,
            lite: self.lite.finish_after(OP_TEXT, &update[..un]),
            full: self.full.finish_after(OP_TEXT, &update[..un]),
            domains: self.domains.finish_after(OP_TEXT, &dns[..dn]),
            names: self.names,
            duplicate: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(len: usize, hlen: usize) {
        let payload = vec![b'x'; len];
        let f = frame(OP_TEXT, &payload);
        assert_eq!(f.len(), len + hlen, "header length for payload {len}");
        assert_eq!(f[0], 0x81);
        let (op, p) = parse(&f).expect("parses");
        assert_eq!(op, OP_TEXT);
        assert_eq!(p, &payload[..]);
    }

    #[test]
    fn header_lengths_at_every_boundary() {
        for (len, hlen) in [
            (0, 2),
            (1, 2),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
            (70000, 10),
        ] {
            roundtrip(len, hlen);
        }
    }

    #[test]
    fn finish_shares_one_allocation() {
        let mut f = FrameBuf::with_capacity(300);
        f.extend(&[b'a'; 300]);
        let a = f.finish();
        let b = a.clone();
        assert_eq!(a.as_ptr(), b.as_ptr());
        assert_eq!(&a[..4], &[0x81, 126, 1, 44]);
    }

    fn draft() -> Draft {
        let mut d = Draft::new(3, 7, [16, 16, 16]);
        let [lite, full, domains] = d.bodies();
        lite.extend(b"\"data\":{\"l\":1}}");
        full.extend(b"\"data\":{\"f\":1}}");
        domains.extend(b"\"data\":[\"a.example\"]}");
        d
    }

    #[test]
    fn a_stamped_draft_carries_its_cursor_second() {
        let f = draft().stamp(u64::MAX);
        assert_eq!(f.cursor, u64::MAX);
        assert_eq!((f.log, f.index), (3, 7));
        assert_eq!(
            payload(&f.lite),
            b"{\"message_type\":\"certificate_update\",\"cursor\":18446744073709551615,\"data\":{\"l\":1}}"
        );
        assert_eq!(
            payload(&f.full),
            b"{\"message_type\":\"certificate_update\",\"cursor\":18446744073709551615,\"data\":{\"f\":1}}"
        );
        assert_eq!(
            payload(&f.domains),
            b"{\"message_type\":\"dns_entries\",\"cursor\":18446744073709551615,\"data\":[\"a.example\"]}"
        );
        let f = draft().stamp(1);
        assert_eq!(
            payload(&f.domains),
            b"{\"message_type\":\"dns_entries\",\"cursor\":1,\"data\":[\"a.example\"]}"
        );
    }

    #[test]
    fn an_unstamped_draft_is_the_original_message() {
        let f = draft().unstamped();
        assert_eq!(f.cursor, 0);
        assert_eq!(
            payload(&f.lite),
            b"{\"message_type\":\"certificate_update\",\"data\":{\"l\":1}}"
        );
        assert_eq!(
            payload(&f.domains),
            b"{\"message_type\":\"dns_entries\",\"data\":[\"a.example\"]}"
        );
    }

    #[test]
    fn stamping_long_bodies_picks_the_right_header() {
        for len in [50, 126 - 60, 200, 70_000] {
            let mut d = Draft::new(0, 0, [len, 0, 0]);
            d.bodies()[0].extend(&vec![b'x'; len]);
            let f = d.stamp(42);
            let (op, p) = parse(&f.lite).expect("a whole frame");
            assert_eq!(op, OP_TEXT);
            assert!(p.starts_with(b"{\"message_type\":\"certificate_update\",\"cursor\":42,"));
            assert_eq!(p.len(), len + 49);
        }
    }

    #[test]
    fn parse_rejects_malformed() {
        assert!(parse(&[]).is_none());
        assert!(parse(&[0x81]).is_none());
        assert!(parse(&[0x81, 5, b'a']).is_none());
        assert!(parse(&[0x81, 0x81, 0, 0, 0, 0, b'a']).is_none());
        assert!(parse(&[0x81, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_none());
    }
}
