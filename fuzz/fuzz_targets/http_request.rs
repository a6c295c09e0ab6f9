//! HTTP request heads: `http::parse` (httparse), then the route, the stream query (`since`,
//! `domain`, `match`, `dedup`: `http::stream_query`, `filter::Filter::parse`) and the
//! websocket upgrade (`handshake::accept`) the server derives from them.
#![no_main]

use certstream_server::filter::Filter;
use certstream_server::handshake;
use certstream_server::http::{self, HttpError};
use libfuzzer_sys::fuzz_target;

/// The server's `max_head`.
const MAX_HEAD: usize = 8192;

fuzz_target!(|data: &[u8]| {
    match http::parse(data, MAX_HEAD) {
        Ok(Some((req, n))) => {
            assert!(n <= data.len() && n <= MAX_HEAD);
            // The head alone parses to the same request.
            assert_eq!(
                http::parse(&data[..n], MAX_HEAD),
                Ok(Some((req.clone(), n)))
            );
            assert!(req.headers.len() <= http::MAX_HEADERS);
            for (name, _) in &req.headers {
                assert_eq!(name, &name.to_ascii_lowercase());
            }
            let _ = http::route(&req.path);
            // Query errors are one line each (they are the 400's body).
            match http::stream_query(&req.path) {
                Err(e) => assert!(!e.to_string().contains('\n')),
                Ok(q) => match Filter::parse(&q.domains, &q.regexes) {
                    Ok(Some(f)) => {
                        assert!(f.patterns() >= 1 && f.patterns() <= 1000);
                        let _ = f.matches(&[Box::from(req.path.as_str())]);
                    }
                    Ok(None) => {}
                    Err(e) => assert!(!e.to_string().contains('\n')),
                },
            }
            if handshake::wants_upgrade(&req) {
                if let Ok(resp) = handshake::accept(&req) {
                    // One well-formed head: nothing of the request leaks into it.
                    assert!(resp.starts_with(b"HTTP/1.1 101 "));
                    assert!(resp.ends_with(b"\r\n\r\n"));
                    assert_eq!(resp.windows(2).filter(|w| w == b"\r\n").count(), 5);
                    assert!(!resp.contains(&0));
                }
            }
        }
        Ok(None) => assert!(data.len() < MAX_HEAD),
        Err(HttpError::Malformed | HttpError::TooLarge) => {}
        Err(e) => panic!("a request head fails to parse only as malformed or too large, not {e}"),
    }
});
