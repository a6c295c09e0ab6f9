//! Every certificate of the shared corpus against what the original Python server printed.
//!
//! `CERTSTREAM_CORPUS=/path/to/shared/corpus cargo test -p certstream-engine --test x509_corpus
//! -- --nocapture` prints a per-field mismatch table and enforces: at least 99.5% of the
//! parseable certificates identical on every field, and 100% on `all_domains`, `subject`,
//! `not_before`, `not_after`, `serial_number` and `fingerprint`. Without the variable the test
//! says so and passes (the corpus is not part of the repository).

use certstream_engine::x509::{parse_cert, parse_cert_lenient, CertFields, X509Error};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// A JSON object with its keys in document order.
struct Ordered(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = m.next_entry::<String, Value>()? {
                    v.push((k, val));
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(serde::Deserialize)]
struct Expected {
    subject: BTreeMap<String, Option<String>>,
    extensions: Ordered,
    not_before: f64,
    not_after: f64,
    serial_number: String,
    fingerprint: String,
    all_domains: Vec<String>,
}

/// Fields that must match on every parseable certificate.
const STRICT: &[&str] = &[
    "all_domains",
    "subject",
    "not_before",
    "not_after",
    "serial_number",
    "fingerprint",
];

#[derive(Default)]
struct Table {
    rows: BTreeMap<String, (usize, Vec<String>)>,
    certs_with_mismatch: usize,
}

impl Table {
    fn add(&mut self, field: &str, id: &str, expected: &str, got: &str) {
        let row = self.rows.entry(field.to_string()).or_default();
        row.0 += 1;
        if row.1.len() < 3 {
            row.1.push(format!(
                "{id}\n        expected: {}\n        got:      {}",
                clip(expected),
                clip(got)
            ));
        }
    }

    fn print(&self, title: &str, parseable: usize) {
        println!(
            "\n== {title}: {} of {parseable} parseable certificates with a mismatch",
            self.certs_with_mismatch
        );
        if self.rows.is_empty() {
            println!("   (no mismatches)");
            return;
        }
        println!("   {:<40} {:>10}", "field", "mismatches");
        for (field, (n, examples)) in &self.rows {
            println!("   {field:<40} {n:>10}");
            for e in examples {
                println!("      {e}");
            }
        }
    }

    fn count(&self, field: &str) -> usize {
        self.rows.get(field).map_or(0, |r| r.0)
    }
}

fn clip(s: &str) -> String {
    let s = format!("{s:?}");
    if s.len() > 400 {
        let mut end = 400;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

fn opt(v: &Option<String>) -> String {
    format!("{v:?}")
}

/// Compares one certificate; returns whether anything differed.
fn compare(id: &str, exp: &Expected, got: &Result<CertFields, X509Error>, t: &mut Table) -> bool {
    let got = match got {
        Ok(g) => g,
        Err(e) => {
            for f in STRICT.iter().chain(&["extensions"]) {
                t.add(f, id, "fields", &format!("error: {e}"));
            }
            return true;
        }
    };
    let mut bad = false;

    let s = &got.subject;
    let subject = [
        ("aggregated", Some(s.aggregated.clone())),
        ("C", s.c.clone()),
        ("ST", s.st.clone()),
        ("L", s.l.clone()),
        ("O", s.o.clone()),
        ("OU", s.ou.clone()),
        ("CN", s.cn.clone()),
    ];
    let mut subject_bad = false;
    for (k, v) in &subject {
        let e = exp.subject.get(*k).cloned().flatten();
        if &e != v {
            t.add(&format!("subject.{k}"), id, &opt(&e), &opt(v));
            subject_bad = true;
        }
    }
    if subject_bad {
        t.add("subject", id, "(see subject.*)", "");
        bad = true;
    }

    // Extensions: same keys in the same order, same texts.
    let exp_keys: Vec<&str> = exp.extensions.0.iter().map(|(k, _)| k.as_str()).collect();
    let got_keys: Vec<&str> = got.extensions.iter().map(|(k, _)| k.as_str()).collect();
    let mut ext_bad = false;
    if exp_keys != got_keys {
        t.add(
            "extensions (keys)",
            id,
            &exp_keys.join(","),
            &got_keys.join(","),
        );
        ext_bad = true;
    }
    for (k, v) in &exp.extensions.0 {
        let e = v.as_str().unwrap_or_default();
        let g = got
            .extensions
            .iter()
            .find(|(gk, _)| gk == k)
            .map(|(_, v)| v);
        let Some(g) = g else { continue };
        let ok = e == g || (k == "subjectAltName" && e == "NULL" && !g.is_empty());
        if !ok {
            t.add(&format!("extensions.{k}"), id, e, g);
            ext_bad = true;
        }
    }
    if ext_bad {
        t.add("extensions", id, "(see extensions.*)", "");
        bad = true;
    }

    if exp.not_before != got.not_before as f64 {
        t.add(
            "not_before",
            id,
            &exp.not_before.to_string(),
            &got.not_before.to_string(),
        );
        bad = true;
    }
    if exp.not_after != got.not_after as f64 {
        t.add(
            "not_after",
            id,
            &exp.not_after.to_string(),
            &got.not_after.to_string(),
        );
        bad = true;
    }
    if exp.serial_number != got.serial_number {
        t.add("serial_number", id, &exp.serial_number, &got.serial_number);
        bad = true;
    }
    if exp.fingerprint != got.fingerprint {
        t.add("fingerprint", id, &exp.fingerprint, &got.fingerprint);
        bad = true;
    }
    if got.fingerprint.len() != 59 {
        t.add("fingerprint length", id, "59", &got.fingerprint);
        bad = true;
    }
    if exp.all_domains != got.all_domains {
        t.add(
            "all_domains",
            id,
            &format!("{:?}", exp.all_domains),
            &format!("{:?}", got.all_domains),
        );
        bad = true;
    }
    if bad {
        t.certs_with_mismatch += 1;
    }
    bad
}

#[test]
fn corpus_matches_original_server() {
    let Ok(root) = std::env::var("CERTSTREAM_CORPUS") else {
        println!("skipping: CERTSTREAM_CORPUS not set");
        return;
    };
    let root = Path::new(&root);
    let mut ids: Vec<String> = std::fs::read_dir(root.join("certs"))
        .expect("corpus certs/ directory")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".der").map(str::to_owned)
        })
        .collect();
    ids.sort();
    assert!(!ids.is_empty(), "no certificates under {}", root.display());

    let mut primary = Table::default();
    let mut lenient = Table::default();
    let mut parseable = 0usize;
    let mut error_expected = 0usize;
    let mut paths_differ = 0usize;
    for id in &ids {
        let der = std::fs::read(root.join("certs").join(format!("{id}.der"))).unwrap();
        let json = std::fs::read_to_string(root.join("expected").join(format!("{id}.json")))
            .unwrap_or_else(|e| panic!("expected/{id}.json: {e}"));
        let got = parse_cert(&der);
        let got_lenient = parse_cert_lenient(&der);
        // Truncated versions must not panic either.
        for cut in [
            0,
            1,
            2,
            der.len() / 3,
            der.len() / 2,
            der.len().saturating_sub(1),
        ] {
            let _ = parse_cert(&der[..cut]);
            let _ = parse_cert_lenient(&der[..cut]);
        }
        let value: Value = serde_json::from_str(&json).unwrap();
        if value.get("error").is_some() {
            error_expected += 1;
            continue;
        }
        parseable += 1;
        let exp: Expected = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("expected/{id}.json does not deserialize: {e}"));
        compare(id, &exp, &got, &mut primary);
        compare(id, &exp, &got_lenient, &mut lenient);
        if got.as_ref().ok() != got_lenient.as_ref().ok() {
            paths_differ += 1;
        }
    }

    println!(
        "\n{} certificates: {parseable} parseable, {error_expected} that the original could not parse",
        ids.len()
    );
    primary.print("parse_cert", parseable);
    lenient.print("parse_cert_lenient (walker only)", parseable);
    println!("\nx509-parser path and walker differ on {paths_differ} certificates");

    for (title, t) in [("parse_cert", &primary), ("parse_cert_lenient", &lenient)] {
        let identical = parseable - t.certs_with_mismatch;
        assert!(
            identical * 1000 >= parseable * 995,
            "{title}: only {identical} of {parseable} certificates identical on every field"
        );
        for f in STRICT {
            assert_eq!(
                t.count(f),
                0,
                "{title}: {f} must match on every certificate"
            );
        }
    }
}
