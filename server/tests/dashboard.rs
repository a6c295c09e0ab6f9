//! The Grafana dashboard (`deploy/grafana-certstream.json`) and the README's metric table
//! name what `/metrics` really serves: every name the dashboard queries exists, and every
//! metric served is in the table.

mod common;

use std::collections::BTreeSet;

use common::*;

/// `certstream_...` names in `text` (a `{` or any other non-name byte ends one).
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("certstream_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn the_dashboard_and_the_readme_name_the_metrics_served() {
    let server = start(50.0, serve_config());
    wait_until("a certificate", || server.shared.hub.next_cursor() > 1);
    let metrics = String::from_utf8(get(server.addr, "/metrics").1).unwrap();
    let served: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();
    assert!(served.len() > 30, "{served:?}");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dashboard = std::fs::read_to_string(root.join("deploy/grafana-certstream.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut queried = BTreeSet::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            queried.extend(names(t["expr"].as_str().unwrap()));
        }
    }
    assert!(queried.len() > 20, "{queried:?}");
    let unknown: Vec<_> = queried.difference(&served).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics not served: {unknown:?}"
    );
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let table = names(&readme);
    let missing: Vec<_> = served.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "metrics served but not in the README table: {missing:?}"
    );
    server.shutdown().unwrap();
}
