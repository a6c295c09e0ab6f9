//! Subscriptions end to end: `domain=`, `match=` and `dedup=1` on real websocket clients of
//! the real service, fed by simulated logs of certificates made for known names. Every
//! filtered client is checked against an unfiltered one over the same cursors: every match
//! once, byte for byte, and nothing else.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use certstream_server::shared::CoreConfig;
use certstream_server::Server;
use certstream_sim::{LogConfig, SimConfig, Source};
use common::*;
use regex::Regex;
use serde_json::Value;

/// The last name of every cycle of the names list: every filter below also asks for it,
/// so a client knows the stream's last certificate when it sees it.
const SENTINEL: &str = "zz-end.example";

/// Names of the certificates (one certificate per line, names comma-separated).
fn names() -> Vec<String> {
    [
        "www.example.com",
        "*.example.com",
        "example.com",
        "a.b.example.com",
        "badexample.com",
        "WWW.Upper.Example",
        "xn--bcher-kva.example,www.xn--bcher-kva.example",
        "paypal-login.example",
        "secure-paypal.example.org",
        "shop.example.net,*.shop.example.net",
        "other.org",
        SENTINEL,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Starts the service watching `logs`, all simulated in-process.
fn start_logs(logs: Vec<LogConfig>, serve: CoreConfig) -> Server {
    let mut cfg = config(0.0, serve);
    cfg.demo = Some(SimConfig {
        logs,
        ..SimConfig::default()
    });
    start_config(cfg)
}

/// One log of `cycles` rounds of [`names`], growing by `rate` a second.
fn names_log(cycles: u64, rate: f64) -> LogConfig {
    let n = names().len() as u64;
    LogConfig {
        name: "names".into(),
        source: Source::Names {
            names: names(),
            precerts: false,
        },
        initial_size: 0,
        rate,
        max_size: Some(cycles * n),
        batch_cap: 64,
        ..LogConfig::default()
    }
}

/// What the test expects a filter to pass: written here independently of the server's
/// matcher, from the issue's rules. `domains` are as certificates carry them (punycode).
struct Expect {
    domains: Vec<String>,
    regexes: Vec<Regex>,
}

impl Expect {
    fn new(domains: &[&str], regexes: &[&str]) -> Self {
        Expect {
            domains: domains
                .iter()
                .map(|d| d.trim_end_matches('.').to_lowercase())
                .chain([SENTINEL.to_string()])
                .collect(),
            regexes: regexes.iter().map(|r| Regex::new(r).unwrap()).collect(),
        }
    }

    fn passes(&self, all_domains: &[String]) -> bool {
        all_domains.iter().any(|raw| {
            let n = raw.trim_end_matches('.').to_lowercase();
            self.regexes.iter().any(|r| r.is_match(raw))
                || self.domains.iter().any(|d| match d.strip_prefix('.') {
                    Some(s) => n == s || n.ends_with(&format!(".{s}")),
                    None => {
                        n == *d
                            || n.strip_prefix("*.")
                                .is_some_and(|base| d.split_once('.').map(|x| x.1) == Some(base))
                    }
                })
        })
    }
}

/// A message's cursor and `all_domains` (lite or domains-only).
fn cursor_and_names(v: &Value) -> (u64, Vec<String>) {
    let names = match v["message_type"].as_str() {
        Some("dns_entries") => &v["data"],
        _ => &v["data"]["leaf_cert"]["all_domains"],
    };
    let names = names
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    (v["cursor"].as_u64().unwrap(), names)
}

/// The next certificate message's raw text (heartbeats skipped).
fn next_text(ws: &mut Ws) -> String {
    loop {
        match ws.read().unwrap() {
            tungstenite::Message::Text(t) if !t.as_str().contains("\"heartbeat\"") => {
                return t.as_str().to_owned();
            }
            tungstenite::Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

/// Reads messages until the one with cursor `last`: `cursor → text`, every cursor once.
fn read_until(ws: &mut Ws, last: u64) -> BTreeMap<u64, String> {
    let mut got = BTreeMap::new();
    loop {
        let t = next_text(ws);
        let v: Value = serde_json::from_str(&t).unwrap();
        let c = v["cursor"].as_u64().unwrap();
        assert!(got.insert(c, t).is_none(), "cursor {c} twice");
        if c >= last {
            return got;
        }
    }
}

/// Reads a Server-Sent Events stream of `path` until the event with cursor `last`:
/// `cursor → data`, every cursor once.
fn sse_until(addr: SocketAddr, path: &str, last: u64) -> BTreeMap<u64, String> {
    use std::io::BufRead as _;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut lines = std::io::BufReader::new(s).lines();
    let status = lines.next().unwrap().unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{path}: {status}");
    let mut got = BTreeMap::new();
    for line in lines {
        let line = line.unwrap();
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let v: Value = serde_json::from_str(data).unwrap();
        let c = v["cursor"].as_u64().unwrap();
        assert!(got.insert(c, data.to_owned()).is_none(), "cursor {c} twice");
        if c >= last {
            break;
        }
    }
    got
}

/// The filters of the pattern-kind test: query, what it must pass.
fn cases() -> Vec<(&'static str, Expect)> {
    vec![
        // exact: the name, and a wildcard covering it
        (
            "domain=www.example.com",
            Expect::new(&["www.example.com"], &[]),
        ),
        // suffix: the name and everything under it, wildcards included
        ("domain=.example.com", Expect::new(&[".example.com"], &[])),
        // a wildcard certificate covering the bare name asked for
        (
            "domain=checkout.shop.example.net",
            Expect::new(&["checkout.shop.example.net"], &[]),
        ),
        // regex
        ("match=paypal", Expect::new(&[], &["paypal"])),
        (
            "match=%5Esecure-%5Ba-z%5D%2B%5C.",
            Expect::new(&[], &[r"^secure-[a-z]+\."]),
        ),
        // several at once
        (
            "domain=other.org,example.com&domain=.shop.example.net&match=login",
            Expect::new(
                &["other.org", "example.com", ".shop.example.net"],
                &["login"],
            ),
        ),
        // upper-case input and a trailing dot; a certificate name in upper case
        (
            "domain=WWW.EXAMPLE.COM.&domain=www.upper.example",
            Expect::new(&["www.example.com", "www.upper.example"], &[]),
        ),
        // an IDN, given in Unicode (percent-encoded UTF-8), matched in punycode
        (
            "domain=b%C3%BCcher.example&domain=.B%C3%9Ccher.example",
            Expect::new(&["xn--bcher-kva.example", ".xn--bcher-kva.example"], &[]),
        ),
    ]
}

/// With sentinel: the query plus the sentinel's domain.
fn with_sentinel(q: &str) -> String {
    format!("{q}&domain={SENTINEL}")
}

/// Checks a filtered client's messages against the unfiltered stream: exactly the cursors
/// `want` passes, each byte for byte the unfiltered client's message (same stream kind).
fn check(
    what: &str,
    got: &BTreeMap<u64, String>,
    all: &BTreeMap<u64, String>,
    want: &Expect,
) -> usize {
    let expected: Vec<u64> = all
        .iter()
        .filter(|(_, t)| {
            let v: Value = serde_json::from_str(t).unwrap();
            want.passes(&cursor_and_names(&v).1)
        })
        .map(|(c, _)| *c)
        .collect();
    let got_cursors: Vec<u64> = got.keys().copied().collect();
    assert_eq!(got_cursors, expected, "{what}: the cursors it gets");
    for (c, t) in got {
        assert_eq!(t, &all[c], "{what}: message {c} is the shared one");
    }
    expected.len()
}

#[test]
fn each_pattern_kind_gets_exactly_its_matches_live_and_replayed() {
    let cycles = 4;
    let server = start_logs(vec![names_log(cycles, 40.0)], serve_config());
    let addr = server.addr;
    let last = cycles * names().len() as u64;
    // Everyone resumes from before the first cursor: what was published before it
    // connected is replayed, the rest comes live through the core's matcher.
    let mut all = ws(addr, "/?since=0");
    let mut all_domains = ws(addr, "/domains-only?since=0");
    let mut clients: Vec<(String, Ws)> = cases()
        .iter()
        .map(|(q, _)| {
            let path = format!("/?since=0&{}", with_sentinel(q));
            (path.clone(), ws(addr, &path))
        })
        .collect();
    let domains_path = format!(
        "/domains-only?since=0&{}",
        with_sentinel("domain=.example.com")
    );
    let mut domains_client = ws(addr, &domains_path);
    let everything = read_until(&mut all, last);
    assert_eq!(
        everything.len() as u64,
        last,
        "the unfiltered client gets every cursor"
    );
    let everything_domains = read_until(&mut all_domains, last);
    let stats = get_json(addr, "/stats");
    assert_eq!(
        stats["filters"]["clients"].as_u64(),
        Some(cases().len() as u64 + 1),
        "{}",
        stats["filters"]
    );
    for ((path, c), (_, want)) in clients.iter_mut().zip(cases()) {
        let got = read_until(c, last);
        let n = check(path, &got, &everything, &want);
        assert!(n > cycles as usize, "{path}: matches beyond the sentinel");
    }
    let got = read_until(&mut domains_client, last);
    check(
        &domains_path,
        &got,
        &everything_domains,
        &Expect::new(&[".example.com"], &[]),
    );
    // The core's matcher did the live part: certificates were evaluated once per core.
    let stats = get_json(addr, "/stats");
    let evaluated = stats["filters"]["evaluated"].as_u64().unwrap();
    assert!(
        evaluated > 0 && evaluated <= 2 * last,
        "{}",
        stats["filters"]
    );
    assert!(stats["filters"]["matched"].as_u64().unwrap() > 0);

    // Now everything is published: a filter registered after it all is a pure replay.
    for (q, want) in cases() {
        let path = format!("/?since=0&{}", with_sentinel(q));
        let mut c = ws(addr, &path);
        let got = read_until(&mut c, last);
        check(&format!("replay {path}"), &got, &everything, &want);
    }
    // The same filters on the SSE streams: each event's data is the websocket message.
    let (q, want) = cases().swap_remove(5);
    for path in [
        format!("/?since=0&{}", with_sentinel(q)),
        format!("/sse?stream=lite&since=0&{}", with_sentinel(q)),
    ] {
        let got = sse_until(addr, &path, last);
        check(&format!("SSE {path}"), &got, &everything, &want);
    }
    let metrics = String::from_utf8(get(addr, "/metrics").1).unwrap();
    for m in [
        "certstream_filtered_clients{core=\"0\"}",
        "certstream_filter_patterns{core=\"1\"}",
        "certstream_filter_match_nanoseconds_total{core=\"0\"}",
        "certstream_dedup_hits_total",
    ] {
        assert!(metrics.contains(m), "{m} in /metrics");
    }
}

#[test]
fn each_bad_parameter_gets_400_with_its_reason_and_others_keep_streaming() {
    let server = start(50.0, serve_config());
    let addr = server.addr;
    let mut watcher = ws(addr, "/");
    next_message(&mut watcher);
    let thousand_and_one = vec!["a.b"; 1001].join(",");
    let cases: Vec<(String, &str)> = vec![
        ("/?match=a(b".into(), "match=\"a(b\" does not compile: "),
        (
            "/?match=%5Cw%7B1000%7D%7B1000%7D".into(),
            "match= patterns are over the regex size limit",
        ),
        (
            format!("/?domain={thousand_and_one}"),
            "more than 1000 patterns",
        ),
        ("/?domain=".into(), "empty pattern in domain="),
        ("/?domain=a.example,".into(), "empty pattern in domain="),
        ("/?match=".into(), "empty pattern in match="),
        (
            "/?domain=a..b".into(),
            "domain=\"a..b\" is not a domain name",
        ),
        (
            "/full-stream?colour=blue".into(),
            "unknown query parameter \"colour\"",
        ),
        ("/domains-only?dedup=2".into(), "dedup must be 1 or 0"),
        (
            "/?match=%zz".into(),
            "bad percent-encoding in query parameter match",
        ),
    ];
    for (path, reason) in &cases {
        let (status, body) = upgrade_answer(addr, path);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.starts_with(reason), "{path}: {body:?}");
        assert_eq!(body.lines().count(), 1, "{path}: one line: {body:?}");
    }
    let metrics = String::from_utf8(get(addr, "/metrics").1).unwrap();
    let bad: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("certstream_bad_requests_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(bad >= cases.len() as u64, "{bad}");
    // The client that was streaming all along still is, and new ones are served.
    let before = next_message(&mut watcher)["cursor"].as_u64().unwrap();
    let after = next_message(&mut watcher)["cursor"].as_u64().unwrap();
    assert!(after > before);
    let mut fresh = ws(addr, "/?domain=.example");
    next_message(&mut fresh);
}

#[test]
fn dedup_sends_each_issuance_once_across_logs_and_precertificates() {
    // Five issuances, each as a precertificate and its final certificate, in three logs
    // that carry the very same entries: 30 certificates, 5 issuances.
    let issuances = [
        "d1.example",
        "d2.example,*.d2.example",
        "d3.example",
        "d4.example",
        "d5.example",
    ];
    let entries = certstream_sim::generate_names(
        &issuances.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        true,
    )
    .unwrap();
    assert_eq!(entries.len(), 10);
    let entries = Arc::new(entries);
    let logs = (0..3)
        .map(|i| LogConfig {
            name: format!("dup{i}"),
            source: Source::Entries(entries.clone()),
            initial_size: 10,
            rate: 0.0,
            max_size: Some(10),
            batch_cap: 64,
            ..LogConfig::default()
        })
        .collect();
    let serve = CoreConfig {
        heartbeat: Duration::from_millis(200),
        ..serve_config()
    };
    let server = start_logs(logs, serve);
    let addr = server.addr;
    wait_until("30 certificates published", || {
        get_json(addr, "/stats")["processed_certificates"] == 30
    });
    // Without dedup: all of them.
    let mut all = ws(addr, "/?since=0");
    let everything = read_until(&mut all, 30);
    assert_eq!(everything.len(), 30);
    // With it: each issuance once, the first sighting; then nothing until a heartbeat
    // that was queued after the whole log had been gathered.
    for path in ["/?since=0&dedup=1", "/domains-only?dedup=1&since=0"] {
        let mut c = ws(addr, path);
        let mut got: Vec<(u64, Vec<String>)> = Vec::new();
        loop {
            match c.read().unwrap() {
                tungstenite::Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["message_type"] == "heartbeat" {
                        if got.len() >= issuances.len() {
                            break;
                        }
                        continue;
                    }
                    got.push(cursor_and_names(&v));
                }
                tungstenite::Message::Close(f) => panic!("closed: {f:?}"),
                _ => {}
            }
        }
        let mut seen: Vec<String> = got.iter().map(|(_, n)| n.join(",")).collect();
        seen.sort();
        let mut want: Vec<String> = issuances.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(seen, want, "{path}: each issuance once");
        // The first sighting: the earliest cursor carrying those names.
        for (cursor, names) in &got {
            let first = everything
                .iter()
                .find(|(_, t)| {
                    let v: Value = serde_json::from_str(t).unwrap();
                    cursor_and_names(&v).1 == *names
                })
                .map(|(c, _)| *c);
            assert_eq!(first, Some(*cursor), "{path}: {names:?}");
        }
    }
    let stats = get_json(addr, "/stats");
    assert_eq!(stats["filters"]["dedup_hits"], 25, "{}", stats["filters"]);
    assert_eq!(stats["filters"]["dedup_keys"], 5);
    // Combined with a filter: only the matching issuance, once.
    let mut c = ws(addr, "/?since=0&dedup=1&domain=www.d2.example");
    let v = next_message(&mut c);
    assert_eq!(cursor_and_names(&v).1, ["d2.example", "*.d2.example"]);
    loop {
        if let tungstenite::Message::Text(t) = c.read().unwrap() {
            assert!(t.as_str().contains("\"heartbeat\""), "only one: {t}");
            break;
        }
    }
}

#[test]
fn filtered_clients_coming_and_going_get_exactly_what_they_asked_for() {
    let cycles = 12;
    let server = start_logs(vec![names_log(cycles, 80.0)], serve_config());
    let addr = server.addr;
    let last = cycles * names().len() as u64;
    let mut all = ws(addr, "/?since=0");
    let (q, want) = cases().remove(5);
    let steady_path = format!("/?since=0&{}", with_sentinel(q));
    let mut steady = ws(addr, &steady_path);
    let done = Arc::new(AtomicBool::new(false));
    // Four threads connect filtered clients one after another, each from the current
    // cursor, read two matches and hang up, until the stream is near its end.
    let churners: Vec<_> = (0..4)
        .map(|t| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut runs: Vec<(u64, usize, BTreeMap<u64, String>)> = Vec::new();
                let mut i = t;
                while !done.load(Relaxed) {
                    let next = get_json(addr, "/stats")["cursor"]["next"].as_u64().unwrap();
                    if next + 3 * names().len() as u64 > last {
                        break;
                    }
                    let case = i % cases().len();
                    i += 1;
                    let since = next - 1;
                    let path = format!("/?since={since}&{}", with_sentinel(cases()[case].0));
                    let mut c = ws(addr, &path);
                    let mut got = BTreeMap::new();
                    while got.len() < 2 {
                        let t = next_text(&mut c);
                        let v: Value = serde_json::from_str(&t).unwrap();
                        got.insert(v["cursor"].as_u64().unwrap(), t);
                    }
                    drop(c);
                    runs.push((since, case, got));
                }
                runs
            })
        })
        .collect();
    let everything = read_until(&mut all, last);
    done.store(true, Relaxed);
    let runs: Vec<_> = churners
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(runs.len() >= 4, "clients came and went: {}", runs.len());
    let cases = cases();
    for (since, case, got) in &runs {
        // Exactly the matches after `since`, up to the last one it read.
        let upto = *got.keys().last().unwrap();
        let window: BTreeMap<u64, String> = everything
            .range(since + 1..=upto)
            .map(|(c, t)| (*c, t.clone()))
            .collect();
        check(
            &format!("churn since={since} {}", cases[*case].0),
            got,
            &window,
            &cases[*case].1,
        );
    }
    let got = read_until(&mut steady, last);
    check(&steady_path, &got, &everything, &want);
    // Every churned filter was forgotten by the cores' matchers.
    wait_until("churned clients gone", || {
        get_json(addr, "/stats")["filters"]["clients"] == 1
    });
}
