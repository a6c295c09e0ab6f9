//! The wire form a client gets a certificate in: the hub's websocket frame, a deflated
//! websocket frame (RFC 7692, see [`crate::deflate`]), or a Server-Sent Event (see
//! [`crate::sse`]).
//!
//! Every form but the first is made by the core from the certificate's websocket frame the
//! first time one of its clients wants it, kept beside the frames in the core's
//! [`StreamLog`] ([`StreamLog::form`]) and shared as `Bytes` by every client of that form:
//! never encoded per client.

use bytes::{BufMut as _, Bytes, BytesMut};
use certstream_engine::frame;
use certstream_engine::Frames;

use crate::deflate;
use crate::http::StreamKind;
use crate::stream_log::StreamLog;

/// How a connection's messages are put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Websocket text frames, as the hub made them.
    Ws,
    /// permessage-deflate frames compressed with a window of `2^bits` bytes (9..=15), each
    /// message on its own (`server_no_context_takeover`).
    Deflate { bits: u8 },
    /// `text/event-stream` events: `id: <cursor>` and `data: <message>`.
    Sse,
}

impl Wire {
    /// The key of this form of stream `kind` in the stream log (`None` for the hub's frame).
    fn key(self, kind: StreamKind) -> Option<u8> {
        let k = kind.index() as u8;
        match self {
            Wire::Ws => None,
            Wire::Sse => Some(k),
            Wire::Deflate { bits } => Some(3 + (bits.clamp(9, 15) - 9) * 3 + k),
        }
    }

    /// This form of stream `kind` of one certificate.
    pub fn make(self, f: &Frames, kind: StreamKind) -> Bytes {
        let ws = f.variant(kind.index());
        match self {
            Wire::Ws => ws.clone(),
            Wire::Sse => sse_event(Some(f.cursor), frame::payload(ws)),
            Wire::Deflate { bits } => deflate::frame(frame::payload(ws), bits),
        }
    }

    /// The form of stream `kind` of the certificate at `seq` in `log` (made once, shared).
    #[inline]
    pub fn get(self, log: &StreamLog, seq: u64, kind: StreamKind) -> Option<Bytes> {
        match self.key(kind) {
            None => log.get(seq).map(|f| f.variant(kind.index()).clone()),
            Some(key) => log.form(seq, key, |f| self.make(f, kind)),
        }
    }

    /// A message that is not a certificate (a gap notice), in this form: uncompressed for
    /// deflate clients (RFC 7692 lets each message choose).
    pub fn message(self, json: &[u8]) -> Bytes {
        match self {
            Wire::Sse => sse_event(None, json),
            _ => frame::frame(frame::OP_TEXT, json),
        }
    }
}

/// `id: <cursor>\ndata: <json>\n\n` (no `id` line without a cursor). The messages are
/// single-line JSON, so one `data` line carries each.
pub fn sse_event(cursor: Option<u64>, json: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(json.len() + 32);
    if let Some(c) = cursor {
        out.put_slice(b"id: ");
        out.put_slice(itoa::Buffer::new().format(c).as_bytes());
        out.put_u8(b'\n');
    }
    out.put_slice(b"data: ");
    out.put_slice(json);
    out.put_slice(b"\n\n");
    out.freeze()
}

/// An SSE comment line (keep-alives, the reason a stream ends).
pub fn sse_comment(text: &str) -> Bytes {
    Bytes::from(format!(": {}\n\n", text.replace(['\r', '\n'], " ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Frames {
        Frames {
            cursor: 42,
            log: 0,
            index: 7,
            lite: frame::frame(
                frame::OP_TEXT,
                br#"{"message_type":"certificate_update","cursor":42}"#,
            ),
            full: frame::frame(frame::OP_TEXT, b"{\"full\":1}"),
            domains: frame::frame(frame::OP_TEXT, b"{\"d\":[]}"),
            ..Frames::default()
        }
    }

    #[test]
    fn an_sse_event_carries_the_cursor_and_the_message() {
        let got = Wire::Sse.make(&frames(), StreamKind::Lite);
        assert_eq!(
            &got[..],
            b"id: 42\ndata: {\"message_type\":\"certificate_update\",\"cursor\":42}\n\n"
        );
        assert_eq!(&Wire::Sse.message(b"{}")[..], b"data: {}\n\n");
        assert_eq!(&sse_comment("a\nb")[..], b": a b\n\n");
    }

    #[test]
    fn forms_of_each_stream_and_window_have_their_own_key() {
        let mut keys = std::collections::HashSet::new();
        for kind in StreamKind::ALL {
            assert_eq!(Wire::Ws.key(kind), None);
            assert!(keys.insert(Wire::Sse.key(kind)));
            for bits in 9..=15 {
                assert!(keys.insert(Wire::Deflate { bits }.key(kind)));
            }
        }
    }

    #[test]
    fn the_log_makes_each_form_once_and_shares_it() {
        let mut log = StreamLog::new(usize::MAX, 10, 42);
        log.push(frames());
        let a = Wire::Sse.get(&log, 0, StreamKind::Full).unwrap();
        let b = Wire::Sse.get(&log, 0, StreamKind::Full).unwrap();
        assert_eq!(a.as_ptr(), b.as_ptr());
        assert_eq!(&a[..], b"id: 42\ndata: {\"full\":1}\n\n");
        let ws = Wire::Ws.get(&log, 0, StreamKind::Lite).unwrap();
        assert_eq!(ws.as_ptr(), log.get(0).unwrap().lite.as_ptr());
    }
}
