//! Websocket client frames of a client that negotiated permessage-deflate:
//! `conn::deflate_reader` (the RSV1 strip, fastwebsockets, then inflating compressed
//! messages with the size limit) reading the input as the bytes a client sent after its
//! upgrade, over an in-memory `AsyncRead`, with the server's default frame limit.
#![no_main]

use std::rc::Rc;
use std::time::Instant;

use certstream_server::conn::{self, Conn, ReadEnd};
use certstream_server::http::StreamKind;
use certstream_server::stream_log::Resume;
use certstream_server::wire::Wire;
use libfuzzer_sys::fuzz_target;

/// The server's default `max_client_frame`.
const MAX_FRAME: usize = 64 << 10;

thread_local! {
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
}

fuzz_target!(|data: &[u8]| {
    // fd -1: `Conn::kill` then only fails with EBADF.
    let c = Rc::new(Conn::with_wire(
        StreamKind::Lite,
        Wire::Deflate { bits: 15 },
        "127.0.0.1:9".parse().unwrap(),
        -1,
        Resume {
            seq: 0,
            min_cursor: 0,
            gap: None,
        },
    ));
    let end = RT.with(|rt| {
        rt.block_on(conn::deflate_reader(
            c.clone(),
            std::io::Cursor::new(data),
            MAX_FRAME,
        ))
    });
    if end == ReadEnd::Protocol {
        assert!(
            c.closing_for(Instant::now()).is_some(),
            "a protocol error closes"
        );
    }
    if let Some(code) = c.close_code() {
        assert!(
            conn::sendable_close_code(code),
            "the server never sends close code {code}"
        );
    }
    assert!(!c.is_dead());
    c.kill();
});
