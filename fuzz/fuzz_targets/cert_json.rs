//! Certificate → JSON: `x509::parse_cert` (and its lenient walker) through `json::cert_object`
//! and the `json::Encoder` that writes the lite, full and domains-only frames. Every JSON text
//! written must parse (serde_json), whatever the DER.
#![no_main]

use std::cell::RefCell;

use bytes::Bytes;
use certstream_engine::frame::{self, OP_TEXT};
use certstream_engine::json::{self, Encoder, Link, LogSource};
use certstream_engine::leaf::{Entry, EntryKind};
use certstream_engine::x509;
use libfuzzer_sys::fuzz_target;

thread_local! {
    static SOURCE: LogSource =
        LogSource::new(3, "https://ct.example/log/", "Fuzz \"log\"", Some("Fuzz Operator"));
    // A one-entry cache: each chain certificate is parsed, not served from an earlier input.
    static ENCODER: RefCell<Encoder> = RefCell::new(Encoder::new(1));
}

fn valid_json(what: &str, text: &[u8]) -> serde_json::Value {
    serde_json::from_slice(text).unwrap_or_else(|e| {
        panic!(
            "{what} is not valid JSON ({e}): {}",
            String::from_utf8_lossy(text)
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let (obj, err) = json::cert_object(data);
    let v = valid_json("cert_object", &obj);
    // A quarter of the inputs each also go through the lenient walker alone (x509-parser
    // takes most of what it accepts) and through the encoder's chain path (parsing each
    // certificate twice more on every input would halve the executions per second).
    let lenient = data.len() % 4 == 1;
    let with_chain = data.len().is_multiple_of(4);
    if lenient {
        let _ = x509::parse_cert_lenient(data);
    }

    let der = Bytes::copy_from_slice(data);
    let entry = Entry {
        kind: if data.len().is_multiple_of(2) {
            EntryKind::X509
        } else {
            EntryKind::Precert
        },
        timestamp_ms: 1_700_000_000_000,
        leaf: der.clone(),
        chain: if with_chain { vec![der] } else { Vec::new() },
    };
    let encoded = SOURCE.with(|src| {
        ENCODER.with(|enc| {
            enc.borrow_mut()
                .encode(src, 42, Link::GetEntries, &entry, 1_700_000_000.25)
        })
    });
    assert_eq!(encoded.leaf_error.is_none(), err.is_none());
    let f = &encoded.draft.stamp(u64::MAX);
    let mut messages = Vec::with_capacity(3);
    for (name, bytes) in [
        ("lite", &f.lite),
        ("full", &f.full),
        ("domains", &f.domains),
    ] {
        let (op, payload) = frame::parse(bytes).expect("a server frame");
        assert_eq!(op, OP_TEXT);
        messages.push(valid_json(name, payload));
    }
    // The encoder and cert_object print the same certificate the same way.
    let full_leaf = &messages[1]["data"]["leaf_cert"];
    assert_eq!(full_leaf, &v);
    assert_eq!(messages[2]["data"], v["all_domains"]);
    for m in &messages {
        assert_eq!(m["cursor"], u64::MAX);
    }
});
