//! The format contract, checked against the original server's output for real certificates:
//! `cert` output vs `corpus/expected/*.json`, and `decode` output vs
//! `corpus/expected-messages/*.json` (the messages made from `corpus/get-entries/*.json`).
//!
//! The corpus path comes from `CERTSTREAM_CORPUS` (`.ci/run` sets it); without it the tests
//! skip with a message.

use std::collections::BTreeMap;
use std::path::PathBuf;

use certstream_server::tools::{self, DecodeOptions, Stream};
use serde_json::Value;

fn corpus() -> Option<PathBuf> {
    match std::env::var_os("CERTSTREAM_CORPUS") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            eprintln!("skipping: CERTSTREAM_CORPUS is not set (point it at ../shared/corpus)");
            None
        }
    }
}

const FIELDS: [&str; 8] = [
    "subject",
    "extensions",
    "not_before",
    "not_after",
    "serial_number",
    "fingerprint",
    "as_der",
    "all_domains",
];

/// Fields that must match on every certificate the original could parse.
const STRICT: [&str; 6] = [
    "all_domains",
    "subject",
    "not_before",
    "not_after",
    "serial_number",
    "fingerprint",
];

/// Mismatches per field, with a few examples each.
#[derive(Default)]
struct Table {
    total: usize,
    identical: usize,
    by_field: BTreeMap<String, (usize, Vec<String>)>,
}

impl Table {
    fn record(&mut self, id: &str, diffs: Vec<(String, String)>) {
        self.total += 1;
        if diffs.is_empty() {
            self.identical += 1;
        }
        for (field, detail) in diffs {
            let e = self.by_field.entry(field).or_default();
            e.0 += 1;
            if e.1.len() < 3 {
                e.1.push(format!("{id}: {detail}"));
            }
        }
    }

    fn print(&self, title: &str) {
        eprintln!(
            "{title}: {} of {} identical in every field ({:.2} %)",
            self.identical,
            self.total,
            100.0 * self.identical as f64 / self.total.max(1) as f64
        );
        eprintln!("{:<40} {:>10}", "field", "mismatches");
        for (field, (n, examples)) in &self.by_field {
            eprintln!("{field:<40} {n:>10}");
            for e in examples {
                eprintln!("    {}", e.chars().take(400).collect::<String>());
            }
        }
    }

    fn mismatches(&self, field_prefix: &str) -> usize {
        self.by_field
            .iter()
            .filter(|(f, _)| {
                f.as_str() == field_prefix || f.starts_with(&format!("{field_prefix}."))
            })
            .map(|(_, (n, _))| n)
            .sum()
    }
}

/// Compares one certificate object; returns `(field, detail)` per difference.
fn compare_cert(expected: &Value, got: &Value, with_der: bool) -> Vec<(String, String)> {
    let mut diffs = Vec::new();
    for field in FIELDS {
        if field == "as_der" && !with_der {
            if got.get("as_der").is_some() {
                diffs.push(("as_der".into(), "present in the lite stream".into()));
            }
            continue;
        }
        if field == "all_domains" && expected.get(field).is_none() {
            continue; // chain certificates have none
        }
        let (e, g) = (&expected[field], &got[field]);
        if field == "extensions" {
            let (Some(e), Some(g)) = (e.as_object(), g.as_object()) else {
                diffs.push(("extensions".into(), format!("expected {e}, got {g}")));
                continue;
            };
            for k in e.keys().chain(g.keys().filter(|k| !e.contains_key(*k))) {
                let (ev, gv) = (&e.get(k), &g.get(k));
                // pyOpenSSL printed a SAN it could not fully decode as "NULL"; FORMAT.md
                // lets us print the decodable names instead.
                let san_quirk = k == "subjectAltName" && *ev == Some(&Value::from("NULL"));
                if ev != gv && !san_quirk {
                    diffs.push((
                        format!("extensions.{k}"),
                        format!("expected {ev:?}, got {gv:?}"),
                    ));
                }
            }
        } else if e != g {
            diffs.push((field.into(), format!("expected {e}, got {g}")));
        }
    }
    diffs
}

#[test]
fn cert_output_matches_the_original_on_real_certificates() {
    let Some(dir) = corpus() else { return };
    let mut ids: Vec<String> = std::fs::read_dir(dir.join("expected"))
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            n.strip_suffix(".json").map(str::to_owned)
        })
        .collect();
    ids.sort();
    assert!(ids.len() >= 1400, "corpus has {} certificates", ids.len());
    let mut table = Table::default();
    let mut unparsed_by_original = 0;
    for id in &ids {
        let expected: Value = serde_json::from_slice(
            &std::fs::read(dir.join(format!("expected/{id}.json"))).unwrap(),
        )
        .unwrap();
        let der = std::fs::read(dir.join(format!("certs/{id}.der"))).unwrap();
        let mut out = Vec::new();
        tools::cert(&der, &mut out).unwrap();
        let got: Value = serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{id}: cert printed invalid JSON: {e}"));
        if expected.get("error").is_some() {
            unparsed_by_original += 1;
            continue; // anything goes, as long as it did not panic and is JSON
        }
        table.record(id, compare_cert(&expected, &got, true));
    }
    table.print("cert vs corpus/expected");
    eprintln!(
        "({unparsed_by_original} certificates the original could not parse were not compared)"
    );
    for f in STRICT {
        assert_eq!(
            table.mismatches(f),
            0,
            "{f} must match on every certificate"
        );
    }
    let share = table.identical as f64 / table.total as f64;
    assert!(share >= 0.995, "only {:.2} % identical", 100.0 * share);
}

/// Compares whole messages (the `update_type` spelling rule and extra fields per FORMAT.md).
fn compare_message(expected: &Value, got: &Value, with_der: bool) -> Vec<(String, String)> {
    let mut diffs = Vec::new();
    if expected["message_type"] != got["message_type"] {
        diffs.push(("message_type".into(), format!("{}", got["message_type"])));
    }
    let (e, g) = (&expected["data"], &got["data"]);
    let want_type = match e["update_type"].as_str() {
        Some("PreCertEntry") => "PrecertLogEntry",
        Some(t) => t,
        None => "",
    };
    if g["update_type"] != want_type {
        diffs.push(("update_type".into(), format!("{}", g["update_type"])));
    }
    for k in ["cert_index", "source"] {
        if e[k] != g[k] {
            diffs.push((k.into(), format!("expected {}, got {}", e[k], g[k])));
        }
    }
    if !g["seen"].is_f64() {
        diffs.push(("seen".into(), format!("not a float: {}", g["seen"])));
    }
    for (f, d) in compare_cert(&e["leaf_cert"], &g["leaf_cert"], with_der) {
        diffs.push((format!("leaf_cert.{f}"), d));
    }
    let (ec, gc) = (e["chain"].as_array(), g["chain"].as_array());
    match (ec, gc) {
        (Some(ec), Some(gc)) if ec.len() == gc.len() => {
            for (a, b) in ec.iter().zip(gc) {
                for (f, d) in compare_cert(a, b, with_der) {
                    diffs.push((format!("chain.{f}"), d));
                }
            }
        }
        _ => diffs.push(("chain".into(), "length differs".into())),
    }
    diffs
}

#[test]
fn decode_output_matches_the_original_messages() {
    let Some(dir) = corpus() else { return };
    let mut names: Vec<String> = std::fs::read_dir(dir.join("expected-messages"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(!names.is_empty());
    let mut table = Table::default();
    let mut lite_table = Table::default();
    for name in &names {
        let expected: Vec<Value> = serde_json::from_slice(
            &std::fs::read(dir.join("expected-messages").join(name)).unwrap(),
        )
        .unwrap();
        let body = std::fs::read(dir.join("get-entries").join(name)).unwrap();
        for (stream, table, with_der) in [
            (Stream::Full, &mut table, true),
            (Stream::Lite, &mut lite_table, false),
        ] {
            let opts = DecodeOptions {
                stream,
                // The messages were made with cert_index = start + position.
                index: expected[0]["data"]["cert_index"].as_u64().unwrap(),
                source_url: "ct.example/log".into(),
                source_name: "Example log".into(),
                seen: Some(0.0),
            };
            let mut out = Vec::new();
            let report = tools::decode(body.clone(), &opts, &mut out).unwrap();
            assert_eq!(report.skipped, 0, "{name}");
            let lines: Vec<Value> = out
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).expect("one JSON message per line"))
                .collect();
            assert_eq!(lines.len(), expected.len(), "{name}: message count");
            for (i, (e, g)) in expected.iter().zip(&lines).enumerate() {
                let idx = e["data"]["cert_index"].as_u64().unwrap();
                assert_eq!(
                    g["data"]["cert_link"],
                    format!("ct.example/log/ct/v1/get-entries?start={idx}&end={idx}")
                );
                table.record(&format!("{name}#{i}"), compare_message(e, g, with_der));
            }
        }
    }
    table.print("decode --stream full vs corpus/expected-messages");
    lite_table.print("decode --stream lite vs corpus/expected-messages");
    for t in [&table, &lite_table] {
        for f in STRICT {
            assert_eq!(t.mismatches(&format!("leaf_cert.{f}")), 0, "leaf_cert.{f}");
            assert_eq!(t.mismatches(&format!("chain.{f}")), 0, "chain.{f}");
        }
        for f in [
            "message_type",
            "update_type",
            "cert_index",
            "source",
            "seen",
            "chain",
        ] {
            assert_eq!(t.mismatches(f), 0, "{f}");
        }
        let share = t.identical as f64 / t.total as f64;
        assert!(share >= 0.995, "only {:.2} % identical", 100.0 * share);
    }
}

#[test]
fn domains_only_lists_all_domains() {
    let Some(dir) = corpus() else { return };
    let body = std::fs::read(dir.join("get-entries/navigli2025h2_0000-0255.json")).unwrap();
    let expected: Vec<Value> = serde_json::from_slice(
        &std::fs::read(dir.join("expected-messages/navigli2025h2_0000-0255.json")).unwrap(),
    )
    .unwrap();
    let opts = DecodeOptions {
        stream: Stream::Domains,
        index: 0,
        source_url: "ct.example/log/".into(),
        source_name: "x".into(),
        seen: None,
    };
    let mut out = Vec::new();
    tools::decode(body, &opts, &mut out).unwrap();
    let lines: Vec<Value> = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 256);
    for (e, g) in expected.iter().zip(&lines) {
        assert_eq!(g["message_type"], "dns_entries");
        assert_eq!(g["data"], e["data"]["leaf_cert"]["all_domains"]);
    }
}

/// The real binary, end to end, on one body: the CLI path the README documents.
#[test]
fn decode_and_cert_subcommands_run() {
    let Some(dir) = corpus() else { return };
    let bin = env!("CARGO_BIN_EXE_certstream-server");
    let out = std::process::Command::new(bin)
        .args(["decode", "--stream", "lite", "--index", "100"])
        .arg(dir.join("get-entries/ctgo_scanner_FourEntries.json"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[3]["data"]["cert_index"], 103);
    assert!(lines[0]["data"]["leaf_cert"].get("as_der").is_none());
    assert!(lines[0]["data"]["chain"][0].get("as_der").is_none());

    let id = "ct-cpp-testdata__03dec61f353e7581";
    let out = std::process::Command::new(bin)
        .arg("cert")
        .arg(dir.join(format!("certs/{id}.der")))
        .output()
        .unwrap();
    assert!(out.status.success());
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected: Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("expected/{id}.json"))).unwrap())
            .unwrap();
    assert_eq!(got["fingerprint"], expected["fingerprint"]);
    assert_eq!(got["as_der"], expected["as_der"]);
}

/// Garbage in: a clear error or a partial result, never a panic.
#[test]
fn hostile_inputs() {
    let opts = DecodeOptions {
        stream: Stream::Full,
        index: 0,
        source_url: "u/".into(),
        source_name: "n".into(),
        seen: Some(0.0),
    };
    for body in [
        &b""[..],
        b"{",
        b"{\"entries\":5}",
        b"{\"entries\":[{\"leaf_input\":\"AA==\"}]}",
        b"\x00\xff\xfe",
    ] {
        assert!(tools::decode(body.to_vec(), &opts, &mut Vec::new()).is_err());
    }
    let mut out = Vec::new();
    let report = tools::decode(
        br#"{"entries":[{"leaf_input":"%%%","extra_data":""},{"leaf_input":"AAAAAAAAAAAAAAAAAAAAAA==","extra_data":"AAAA"}]}"#.to_vec(),
        &opts,
        &mut out,
    )
    .unwrap();
    assert_eq!(report.printed, 0);
    assert_eq!(report.skipped, 2);
    // A certificate that is not DER still yields a JSON object with its fingerprint.
    let mut out = Vec::new();
    tools::cert(b"\x30\x03abc", &mut out).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["fingerprint"].as_str().unwrap().len(), 59);
    assert!(tools::cert(
        b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
        &mut Vec::new()
    )
    .is_err());
}
