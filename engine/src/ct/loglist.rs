//! Google's CT log list v3 → the logs to watch.
//!
//! `operators[].logs[]` are RFC 6962 logs (`url`); `operators[].tiled_logs[]` are
//! static-ct-api logs (`monitoring_url`, `submission_url`). Each has one `state`
//! (`pending`, `qualified`, `usable`, `readonly`, `retired`, `rejected`); by default the
//! states that still publish entries are watched: `usable`, `qualified` and `readonly`.

use std::collections::BTreeSet;

use base64::Engine as _;
use serde::Deserialize;

use crate::error::Error;

/// The public log list.
pub const GOOGLE_LOG_LIST: &str = "https://www.gstatic.com/ct/log_list/v3/log_list.json";

/// Apple's log list: the same v3 layout (`operators[].logs[]`, one `state` object per log),
/// with extra top-level fields (`assetVersion`, `assetVersionV2`) that are ignored.
pub const APPLE_LOG_LIST: &str = "https://valid.apple.com/ct/log_list/current_log_list.json";

/// A log's state in the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogState {
    Pending,
    Qualified,
    Usable,
    Readonly,
    Retired,
    Rejected,
    /// No state, or one this version does not know.
    Unknown,
}

impl LogState {
    /// Parses a state name as the list spells it.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => LogState::Pending,
            "qualified" => LogState::Qualified,
            "usable" => LogState::Usable,
            "readonly" => LogState::Readonly,
            "retired" => LogState::Retired,
            "rejected" => LogState::Rejected,
            _ => return None,
        })
    }

    /// The list's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LogState::Pending => "pending",
            LogState::Qualified => "qualified",
            LogState::Usable => "usable",
            LogState::Readonly => "readonly",
            LogState::Retired => "retired",
            LogState::Rejected => "rejected",
            LogState::Unknown => "unknown",
        }
    }
}

/// The API a log speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogKind {
    /// RFC 6962 `get-sth` / `get-entries`.
    Rfc6962,
    /// static-ct-api checkpoints and tiles.
    StaticCt,
}

/// One log from the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogInfo {
    pub operator: String,
    pub description: String,
    /// RFC 6962 `url`, or static-ct `monitoring_url`; always ends with `/`.
    pub url: String,
    /// static-ct `submission_url` (the checkpoint origin is derived from it).
    pub submission_url: Option<String>,
    /// base64 log ID as in the list.
    pub log_id: String,
    /// The log's public key (DER SubjectPublicKeyInfo).
    pub key: Vec<u8>,
    pub mmd: u64,
    pub state: LogState,
    pub kind: LogKind,
}

/// Which states to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateFilter(pub BTreeSet<LogState>);

impl Default for StateFilter {
    fn default() -> Self {
        StateFilter(
            [LogState::Usable, LogState::Qualified, LogState::Readonly]
                .into_iter()
                .collect(),
        )
    }
}

impl StateFilter {
    /// Parses a comma-separated list of state names (`usable,readonly`, or `all`).
    pub fn parse(s: &str) -> Result<Self, Error> {
        let mut set = BTreeSet::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "all" {
                set.extend([
                    LogState::Pending,
                    LogState::Qualified,
                    LogState::Usable,
                    LogState::Readonly,
                    LogState::Retired,
                    LogState::Rejected,
                    LogState::Unknown,
                ]);
            } else {
                set.insert(
                    LogState::parse(part)
                        .ok_or_else(|| Error::LogList(format!("unknown log state {part:?}")))?,
                );
            }
        }
        Ok(StateFilter(set))
    }

    /// Whether a log in this state is watched.
    pub fn accepts(&self, s: LogState) -> bool {
        self.0.contains(&s)
    }
}

#[derive(Deserialize)]
struct RawList {
    operators: Vec<RawOperator>,
}

#[derive(Deserialize)]
struct RawOperator {
    #[serde(default)]
    name: String,
    #[serde(default)]
    logs: Vec<RawLog>,
    #[serde(default)]
    tiled_logs: Vec<RawLog>,
}

#[derive(Deserialize)]
struct RawLog {
    #[serde(default)]
    description: String,
    #[serde(default)]
    log_id: String,
    #[serde(default)]
    key: String,
    url: Option<String>,
    submission_url: Option<String>,
    monitoring_url: Option<String>,
    #[serde(default)]
    mmd: u64,
    #[serde(default)]
    state: Option<std::collections::HashMap<String, serde::de::IgnoredAny>>,
}

/// Parses a v3 log list (the buffer is used as simd-json's scratch space) into every log it
/// names, in list order. Logs without a usable URL are skipped with a warning.
pub fn parse(body: &mut [u8]) -> Result<Vec<LogInfo>, Error> {
    let raw: RawList =
        simd_json::serde::from_slice(body).map_err(|e| Error::LogList(e.to_string()))?;
    let mut out = Vec::new();
    for op in raw.operators {
        for (kind, logs) in [
            (LogKind::Rfc6962, op.logs),
            (LogKind::StaticCt, op.tiled_logs),
        ] {
            for l in logs {
                let url = match kind {
                    LogKind::Rfc6962 => l.url.clone(),
                    LogKind::StaticCt => l.monitoring_url.clone(),
                };
                let Some(url) =
                    url.filter(|u| u.starts_with("http://") || u.starts_with("https://"))
                else {
                    tracing::warn!(log = %l.description, "log list entry without a usable URL, skipped");
                    continue;
                };
                let state = l
                    .state
                    .as_ref()
                    .and_then(|m| m.keys().find_map(|k| LogState::parse(k)))
                    .unwrap_or(LogState::Unknown);
                let key = base64::engine::general_purpose::STANDARD
                    .decode(l.key.as_bytes())
                    .unwrap_or_default();
                out.push(LogInfo {
                    operator: op.name.clone(),
                    description: l.description,
                    url: with_slash(url),
                    submission_url: l.submission_url.map(with_slash),
                    log_id: l.log_id,
                    key,
                    mmd: l.mmd,
                    state,
                    kind,
                });
            }
        }
    }
    if out.is_empty() {
        // Never let a broken or truncated list stop every watcher.
        return Err(Error::LogList("the list names no logs".into()));
    }
    Ok(out)
}

fn with_slash(mut u: String) -> String {
    if !u.ends_with('/') {
        u.push('/');
    }
    u
}

/// The logs of `all` that `filter` accepts (and whose kind is supported).
pub fn select(all: &[LogInfo], filter: &StateFilter) -> Vec<LogInfo> {
    all.iter()
        .filter(|l| filter.accepts(l.state))
        .cloned()
        .collect()
}

/// The logs several lists select, each list filtered by its own states, merged by log ID
/// (and URL): a log in more than one list is watched once, as the first list names it.
pub fn merge<'a>(
    lists: impl IntoIterator<Item = &'a [LogInfo]>,
    filter: &StateFilter,
) -> Vec<LogInfo> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for list in lists {
        for l in select(list, filter) {
            let id_new = l.log_id.is_empty() || !seen.contains(&format!("id:{}", l.log_id));
            if id_new && !seen.contains(&format!("url:{}", l.url)) {
                seen.insert(format!("id:{}", l.log_id));
                seen.insert(format!("url:{}", l.url));
                out.push(l);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_merge_by_log_id_each_filtered_by_its_states() {
        let log = |id: &str, url: &str, state| LogInfo {
            operator: "op".into(),
            description: id.into(),
            url: url.into(),
            submission_url: None,
            log_id: id.into(),
            key: vec![],
            mmd: 0,
            state,
            kind: LogKind::Rfc6962,
        };
        let google = [
            log("A", "https://a/", LogState::Usable),
            log("B", "https://b/", LogState::Retired),
            log("C", "https://c/", LogState::Readonly),
        ];
        let apple = [
            log("A", "https://a-mirror/", LogState::Usable), // same log ID: once
            log("B", "https://b/", LogState::Usable),        // retired in Google's, usable here
            log("D", "https://c/", LogState::Usable),        // same URL: once
            log("E", "https://e/", LogState::Rejected),
            log("F", "https://f/", LogState::Qualified),
        ];
        let got = merge([&google[..], &apple[..]], &StateFilter::default());
        let names: Vec<_> = got
            .iter()
            .map(|l| (l.log_id.as_str(), l.url.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("A", "https://a/"),
                ("C", "https://c/"),
                ("B", "https://b/"),
                ("F", "https://f/")
            ]
        );
    }

    const LIST: &str = r#"{"version":"1","operators":[
      {"name":"Op A","email":[],"logs":[
         {"description":"A1","log_id":"AAAA","key":"AAAA","url":"https://a.example/1","mmd":86400,"state":{"usable":{"timestamp":"x"}}},
         {"description":"A2","log_id":"BBBB","key":"AAAA","url":"http://a.example/2/","mmd":86400,"state":{"retired":{"timestamp":"x"}}},
         {"description":"A3","log_id":"CCCC","key":"AAAA","url":"https://a.example/3/","mmd":86400,"state":{"readonly":{"timestamp":"x","final_tree_head":{}}}}],
       "tiled_logs":[
         {"description":"T1","log_id":"DDDD","key":"AAAA","submission_url":"https://t.example/s","monitoring_url":"https://t.example/m/","mmd":60,"state":{"qualified":{"timestamp":"x"}}}]},
      {"name":"Op B","logs":[{"description":"B1","url":"ftp://nope/","state":{"usable":{}}},
                             {"description":"B2","url":"https://b.example/","state":{"pending":{}}}]}]}"#;

    #[test]
    fn parses_both_kinds_and_states() {
        let logs = parse(&mut LIST.as_bytes().to_vec()).unwrap();
        let names: Vec<_> = logs.iter().map(|l| l.description.as_str()).collect();
        assert_eq!(names, ["A1", "A2", "A3", "T1", "B2"]);
        assert_eq!(logs[0].url, "https://a.example/1/");
        assert_eq!(logs[3].kind, LogKind::StaticCt);
        assert_eq!(logs[3].url, "https://t.example/m/");
        assert_eq!(
            logs[3].submission_url.as_deref(),
            Some("https://t.example/s/")
        );
        let sel = select(&logs, &StateFilter::default());
        let names: Vec<_> = sel.iter().map(|l| l.description.as_str()).collect();
        assert_eq!(names, ["A1", "A3", "T1"]);
        let sel = select(&logs, &StateFilter::parse("pending,retired").unwrap());
        assert_eq!(sel.len(), 2);
        assert!(StateFilter::parse("bogus").is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        for body in [
            "",
            "[]",
            "{}",
            "{\"operators\":5}",
            "{\"operators\":[]}",
            "nul",
        ] {
            assert!(parse(&mut body.as_bytes().to_vec()).is_err(), "{body}");
        }
    }

    #[test]
    fn real_google_list() {
        let Some(dir) = std::env::var_os("CERTSTREAM_CORPUS") else {
            eprintln!("skipping: CERTSTREAM_CORPUS not set");
            return;
        };
        let path = std::path::Path::new(&dir).join("loglist/google_v3_log_list_2026-05-29.json");
        let mut body = std::fs::read(path).unwrap();
        let logs = parse(&mut body).unwrap();
        let rfc = logs.iter().filter(|l| l.kind == LogKind::Rfc6962).count();
        let tiled = logs.iter().filter(|l| l.kind == LogKind::StaticCt).count();
        assert_eq!((rfc, tiled), (35, 21));
        assert!(logs
            .iter()
            .all(|l| l.key.len() > 50 && l.url.ends_with('/')));
        let sel = select(&logs, &StateFilter::default());
        assert_eq!(sel.len(), 52);
    }
}
