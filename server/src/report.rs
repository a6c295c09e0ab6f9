//! `/latest.json`, `/example.json`, `/stats` and `/metrics`, rendered on request from the
//! hub's recent frames and the counters (never on the per-message path).

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use certstream_engine::frame;
use certstream_engine::json::write_str;

use crate::http::StreamKind;
use crate::shared::Shared;

/// `{"messages":[...]}`: the most recent lite messages, newest last.
pub fn latest(shared: &Shared) -> Vec<u8> {
    let latest = shared.hub.latest();
    let mut out = b"{\"messages\":[".to_vec();
    for (i, f) in latest.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(frame::payload(&f.lite));
    }
    out.extend_from_slice(b"]}");
    out
}

/// The most recent lite message.
pub fn example(shared: &Shared) -> Option<Vec<u8>> {
    shared
        .hub
        .latest()
        .last()
        .map(|f| frame::payload(&f.lite).to_vec())
}

/// Processed certificates, clients per stream, per-log counts and positions.
pub fn stats(shared: &Shared) -> Vec<u8> {
    let e = &shared.engine;
    let clients = shared.clients();
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "{{\"processed_certificates\":{},\"uptime_seconds\":{},\"clients\":{{\"lite\":{},\"full\":{},\"domains\":{},\"total\":{}}},\"messages_sent\":{},\"bytes_sent\":{},\"cursor\":{{\"first\":{},\"next\":{}}},\"resumed\":{},\"resume_gaps\":{},\"dropped\":{{\"core_rings\":{},\"client_lag\":{}}},\"slow_clients_closed\":{},\"filters\":{},\"cores\":[",
        shared.hub.published.load(Relaxed),
        shared.started.elapsed().as_secs(),
        clients[0],
        clients[1],
        clients[2],
        clients.iter().sum::<u64>(),
        shared.sum(|c| &c.messages_sent),
        shared.sum(|c| &c.bytes_sent),
        shared.hub.first_cursor,
        shared.hub.next_cursor(),
        shared.sum(|c| &c.resumed),
        shared.sum(|c| &c.resume_gaps),
        shared.hub.rings.iter().map(|r| r.dropped.load(Relaxed)).sum::<u64>(),
        shared.sum(|c| &c.client_drops),
        shared.sum(|c| &c.slow_closed),
        filters_json(shared),
    );
    for (i, c) in shared.cores.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"core\":{i},\"driver\":\"{}\",\"clients\":{},\"ring_dropped\":{},\"stream_log\":{{\"certificates\":{},\"bytes\":{},\"tail_cursor\":{},\"next_cursor\":{},\"evicted\":{}}},\"filters\":{{\"clients\":{},\"patterns\":{},\"evaluated\":{},\"matched\":{},\"match_ns_per_certificate\":{}}}}}",
            match c.driver.load(Relaxed) {
                0 => "starting",
                1 => "io_uring",
                _ => "legacy",
            },
            c.clients.iter().map(|v| v.load(Relaxed)).sum::<u64>(),
            shared.hub.rings[i].dropped.load(Relaxed),
            c.log_frames.load(Relaxed),
            c.log_bytes.load(Relaxed),
            c.log_tail_cursor.load(Relaxed),
            c.log_next_cursor.load(Relaxed),
            c.log_evicted.load(Relaxed),
            c.filtered_clients.load(Relaxed),
            c.filter_patterns.load(Relaxed),
            c.filter_evaluated.load(Relaxed),
            c.filter_matched.load(Relaxed),
            c.filter_nanos.load(Relaxed) / c.filter_evaluated.load(Relaxed).max(1),
        );
    }
    out.push_str("],\"ingest\":{");
    for (i, (name, v)) in e.counters().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{name}\":{v}");
    }
    out.push_str("},\"upstream\":");
    crate::upstream::write_stats(&mut out, &shared.upstream);
    out.push_str(",\"logs\":[");
    let mut bytes = out.into_bytes();
    for (i, l) in e.logs().iter().enumerate() {
        if i > 0 {
            bytes.push(b',');
        }
        bytes.extend_from_slice(b"{\"url\":");
        write_str(&mut bytes, &l.url);
        bytes.extend_from_slice(b",\"name\":");
        write_str(&mut bytes, &l.name);
        bytes.extend_from_slice(b",\"operator\":");
        write_str(&mut bytes, &l.operator);
        bytes.extend_from_slice(
            format!(
                ",\"type\":\"{}\",\"active\":{},\"position\":{},\"tree_size\":{},\"processed\":{},\"errors\":{},\"batch_cap\":{}}}",
                l.kind,
                l.active.load(Relaxed) == 1,
                l.position.load(Relaxed),
                l.tree_size.load(Relaxed),
                l.entries.load(Relaxed),
                l.errors.load(Relaxed),
                l.batch_cap.load(Relaxed),
            )
            .as_bytes(),
        );
    }
    bytes.extend_from_slice(b"]}");
    bytes
}

/// The `filters` object of `/stats`: filtered and dedup clients, patterns, matching cost,
/// dedup hits and the dedup set.
fn filters_json(shared: &Shared) -> String {
    let evaluated = shared.sum(|c| &c.filter_evaluated);
    let hub = &shared.hub;
    format!(
        "{{\"clients\":{},\"patterns\":{},\"evaluated\":{},\"matched\":{},\"match_ns_per_certificate\":{},\"dedup_clients\":{},\"dedup_hits\":{},\"dedup_keys\":{},\"dedup_capacity\":{}}}",
        shared.sum(|c| &c.filtered_clients),
        shared.sum(|c| &c.filter_patterns),
        evaluated,
        shared.sum(|c| &c.filter_matched),
        shared.sum(|c| &c.filter_nanos) / evaluated.max(1),
        shared.sum(|c| &c.dedup_clients),
        hub.dedup_hits.load(Relaxed),
        hub.dedup_keys.load(Relaxed),
        hub.dedup_capacity.load(Relaxed),
    )
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text exposition format 0.0.4.
pub fn metrics(shared: &Shared) -> String {
    let mut o = String::with_capacity(8192);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(o, "# HELP certstream_{name} {help}");
        let _ = writeln!(o, "# TYPE certstream_{name} {kind}");
        for (labels, v) in samples {
            if labels.is_empty() {
                let _ = writeln!(o, "certstream_{name} {v}");
            } else {
                let _ = writeln!(o, "certstream_{name}{{{labels}}} {v}");
            }
        }
    };
    let clients = shared.clients();
    metric(
        "clients",
        "gauge",
        "Connected websocket clients per stream.",
        &StreamKind::ALL
            .iter()
            .map(|k| (format!("stream=\"{}\"", k.name()), clients[k.index()]))
            .collect::<Vec<_>>(),
    );
    metric(
        "sse_clients",
        "gauge",
        "Connected Server-Sent Events clients (also counted in certstream_clients).",
        &[(String::new(), shared.sum(|c| &c.sse_clients))],
    );
    metric(
        "deflate_clients",
        "gauge",
        "Connected websocket clients that negotiated permessage-deflate.",
        &[(String::new(), shared.sum(|c| &c.deflate_clients))],
    );
    metric(
        "access_denied_total",
        "counter",
        "Requests refused by the --allow list.",
        &[(String::new(), shared.sum(|c| &c.access_denied))],
    );
    metric(
        "unauthorized_total",
        "counter",
        "Stream requests refused for a missing or wrong token (401).",
        &[(String::new(), shared.sum(|c| &c.unauthorized))],
    );
    metric(
        "certificates_processed_total",
        "counter",
        "Certificates parsed and published.",
        &[(String::new(), shared.hub.published.load(Relaxed))],
    );
    metric(
        "messages_sent_total",
        "counter",
        "Websocket frames written to clients.",
        &[(String::new(), shared.sum(|c| &c.messages_sent))],
    );
    metric(
        "bytes_sent_total",
        "counter",
        "Bytes written to websocket clients.",
        &[(String::new(), shared.sum(|c| &c.bytes_sent))],
    );
    metric(
        "ring_dropped_total",
        "counter",
        "Certificates dropped for a core because its ring was full.",
        &shared
            .hub
            .rings
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("core=\"{i}\""), r.dropped.load(Relaxed)))
            .collect::<Vec<_>>(),
    );
    metric(
        "client_dropped_total",
        "counter",
        "Frames clients skipped because their cursor fell off their core's stream log (oldest first).",
        &[(String::new(), shared.sum(|c| &c.client_drops))],
    );
    metric(
        "cursor_next",
        "gauge",
        "The cursor the next certificate gets.",
        &[(String::new(), shared.hub.next_cursor())],
    );
    let per_core = |f: &dyn Fn(&crate::shared::CoreCounters) -> u64| {
        shared
            .cores
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("core=\"{i}\""), f(c)))
            .collect::<Vec<_>>()
    };
    metric(
        "filtered_clients",
        "gauge",
        "Connections with a domain or match filter, per core.",
        &per_core(&|c| c.filtered_clients.load(Relaxed)),
    );
    metric(
        "filter_patterns",
        "gauge",
        "Patterns in each core's matcher (all its connections' filters).",
        &per_core(&|c| c.filter_patterns.load(Relaxed)),
    );
    metric(
        "filter_evaluated_total",
        "counter",
        "Certificates each core evaluated against its filters (once per certificate).",
        &per_core(&|c| c.filter_evaluated.load(Relaxed)),
    );
    metric(
        "filter_matched_total",
        "counter",
        "Certificates that matched at least one filter, per core.",
        &per_core(&|c| c.filter_matched.load(Relaxed)),
    );
    metric(
        "filter_match_nanoseconds_total",
        "counter",
        "Nanoseconds each core spent matching certificates against its filters.",
        &per_core(&|c| c.filter_nanos.load(Relaxed)),
    );
    metric(
        "dedup_clients",
        "gauge",
        "Connections that asked for dedup=1.",
        &[(String::new(), shared.sum(|c| &c.dedup_clients))],
    );
    metric(
        "dedup_hits_total",
        "counter",
        "Certificates marked duplicates (same issuance within the window).",
        &[(String::new(), shared.hub.dedup_hits.load(Relaxed))],
    );
    metric(
        "dedup_keys",
        "gauge",
        "Issuance keys the dedup set holds.",
        &[(String::new(), shared.hub.dedup_keys.load(Relaxed))],
    );
    metric(
        "dedup_capacity",
        "gauge",
        "Most issuance keys the dedup set holds.",
        &[(String::new(), shared.hub.dedup_capacity.load(Relaxed))],
    );
    metric(
        "stream_log_certificates",
        "gauge",
        "Certificates each core's stream log holds.",
        &per_core(&|c| c.log_frames.load(Relaxed)),
    );
    metric(
        "stream_log_bytes",
        "gauge",
        "Bytes of frames each core's stream log holds (shared between cores).",
        &per_core(&|c| c.log_bytes.load(Relaxed)),
    );
    metric(
        "stream_log_tail_cursor",
        "gauge",
        "The oldest cursor each core's stream log holds (the oldest a client can resume after).",
        &per_core(&|c| c.log_tail_cursor.load(Relaxed)),
    );
    metric(
        "stream_log_evicted_total",
        "counter",
        "Certificates evicted from each core's stream log by its budget.",
        &per_core(&|c| c.log_evicted.load(Relaxed)),
    );
    metric(
        "resumed_total",
        "counter",
        "Connections that asked to resume with since.",
        &[(String::new(), shared.sum(|c| &c.resumed))],
    );
    metric(
        "resume_gaps_total",
        "counter",
        "Resumed connections told of a gap (since older than the stream log).",
        &[(String::new(), shared.sum(|c| &c.resume_gaps))],
    );
    metric(
        "slow_clients_closed_total",
        "counter",
        "Clients closed with 1008 for staying behind.",
        &[(String::new(), shared.sum(|c| &c.slow_closed))],
    );
    metric(
        "protocol_closed_total",
        "counter",
        "Clients closed for breaking the websocket protocol.",
        &[(String::new(), shared.sum(|c| &c.protocol_closed))],
    );
    metric(
        "connections_accepted_total",
        "counter",
        "TCP connections accepted.",
        &[(String::new(), shared.sum(|c| &c.accepted))],
    );
    metric(
        "connections_rejected_total",
        "counter",
        "Connections refused by the connection limits.",
        &[(String::new(), shared.sum(|c| &c.rejected))],
    );
    metric(
        "http_requests_total",
        "counter",
        "HTTP request heads parsed.",
        &[(String::new(), shared.sum(|c| &c.http_requests))],
    );
    metric(
        "bad_requests_total",
        "counter",
        "Malformed or refused HTTP requests and upgrades.",
        &[(String::new(), shared.sum(|c| &c.bad_requests))],
    );
    metric(
        "handshake_timeouts_total",
        "counter",
        "Connections that sent no request head in time.",
        &[(String::new(), shared.sum(|c| &c.handshake_timeouts))],
    );
    for (name, v) in shared.engine.counters() {
        metric(
            &format!("ingest_{name}_total"),
            "counter",
            &format!("Ingest counter {name}."),
            &[(String::new(), v)],
        );
    }
    let logs = shared.engine.logs();
    let per_log = |f: &dyn Fn(&certstream_engine::stats::LogStats) -> u64| {
        logs.iter()
            .map(|l| (format!("log=\"{}\"", label(&l.url)), f(l)))
            .collect::<Vec<_>>()
    };
    metric(
        "log_position",
        "gauge",
        "Next index fetched, per log.",
        &per_log(&|l| l.position.load(Relaxed)),
    );
    metric(
        "log_tree_size",
        "gauge",
        "Latest tree size seen, per log.",
        &per_log(&|l| l.tree_size.load(Relaxed)),
    );
    metric(
        "log_lag",
        "gauge",
        "Entries behind the tree head, per log.",
        &per_log(&|l| {
            l.tree_size
                .load(Relaxed)
                .saturating_sub(l.position.load(Relaxed))
        }),
    );
    metric(
        "log_certificates_total",
        "counter",
        "Certificates published, per log.",
        &per_log(&|l| l.entries.load(Relaxed)),
    );
    metric(
        "log_errors_total",
        "counter",
        "Failed requests, per log.",
        &per_log(&|l| l.errors.load(Relaxed)),
    );
    for (name, kind, help, v) in crate::upstream::metrics(&shared.upstream) {
        metric(name, kind, help, &[(String::new(), v)]);
    }
    metric(
        "log_behind",
        "gauge",
        "1 while a log's tree is smaller than the position it is to continue from.",
        &per_log(&|l| l.behind.load(Relaxed)),
    );
    metric(
        "uptime_seconds",
        "gauge",
        "Seconds since start.",
        &[(String::new(), shared.started.elapsed().as_secs())],
    );
    o
}
