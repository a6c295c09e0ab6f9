//! Websocket frames that are written once and shared by every client.
//!
//! A message is encoded straight into a buffer whose first [`MAX_HEADER`] bytes are reserved
//! for the RFC 6455 frame header. [`FrameBuf::finish`] writes the real header (2, 4 or 10
//! bytes, depending on the payload length) just in front of the payload and returns a
//! [`Bytes`] that starts at the header: every client is sent a clone of it, a reference-count
//! bump, never a copy.

use bytes::{BufMut, Bytes, BytesMut};

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

/// A buffer that holds room for a frame header followed by the payload being written.
#[derive(Debug)]
pub struct FrameBuf {
    buf: BytesMut,
}

impl FrameBuf {
    /// Starts a frame whose payload is expected to be about `payload_hint` bytes long.
    pub fn with_capacity(payload_hint: usize) -> Self {
        let mut buf = BytesMut::with_capacity(MAX_HEADER + payload_hint);
        buf.put_bytes(0, MAX_HEADER);
        FrameBuf { buf }
    }

    /// The payload written so far.
    pub fn payload(&self) -> &[u8] {
        &self.buf[MAX_HEADER..]
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
    pub fn finish_with(mut self, opcode: u8) -> Bytes {
        let len = self.buf.len() - MAX_HEADER;
        let mut header = [0u8; MAX_HEADER];
        let hlen = encode_header(&mut header, opcode, len);
        let start = MAX_HEADER - hlen;
        self.buf[start..MAX_HEADER].copy_from_slice(&header[..hlen]);
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
#[derive(Debug, Clone)]
pub struct Frames {
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

    #[test]
    fn parse_rejects_malformed() {
        assert!(parse(&[]).is_none());
        assert!(parse(&[0x81]).is_none());
        assert!(parse(&[0x81, 5, b'a']).is_none());
        assert!(parse(&[0x81, 0x81, 0, 0, 0, 0, b'a']).is_none());
        assert!(parse(&[0x81, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_none());
    }
}
