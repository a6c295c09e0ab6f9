//! Subscriptions: a client's `domain=` and `match=` filters and its `dedup=1`, and the
//! per-core [`Matcher`] that evaluates each certificate once for all of a core's filters.
//!
//! # Patterns
//! - `domain=www.example.com`: a certificate that names it, or a wildcard that covers it
//!   (`*.example.com`; a wildcard covers one label, so not `example.com`).
//! - `domain=.example.com`: `example.com` and every name under it, wildcards included.
//! - `match=<regex>`: a `regex` crate expression searched in each name of `all_domains`,
//!   compiled with a size limit ([`REGEX_SIZE_LIMIT`]).
//!
//! Domains are compared lower-case, without a trailing dot, and internationalised names in
//! their ASCII form (`xn--`, RFC 3492 punycode), as certificates carry them. A certificate
//! passes a filter when any of its names matches any of the filter's patterns.
//!
//! # Once per certificate per core
//! The core's [`Matcher`] holds the union of its connections' filters: exact names in a map
//! (and, for wildcard names in certificates, the same names by parent), suffixes in a map
//! looked up once per label of each name, and every regex in one `RegexSet`. A certificate
//! costs one lookup per label of each of its names and one `RegexSet` search per name,
//! whatever the number of connections; the result is the sorted list of filter ids it
//! matched, kept beside the frames in the core's stream log. A filtered writer only checks
//! its id in that list: it still sends the shared frames, never a copy.

use std::collections::HashMap;

use regex::{RegexSet, RegexSetBuilder};

/// Most patterns (`domain` names and `match` expressions together) one client may give.
pub const MAX_PATTERNS: usize = 1000;
/// Compiled size limit of one client's regexes (the `regex` crate's `size_limit`).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// The longest domain name (RFC 1035).
const MAX_NAME: usize = 253;

/// Why a client's filter is refused (answered with 400 and this line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("empty pattern in {0}=")]
    Empty(&'static str),
    #[error("more than {MAX_PATTERNS} patterns")]
    TooMany,
    #[error("domain={0:?} is not a domain name")]
    BadDomain(String),
    #[error("match={pattern:?} does not compile: {reason}")]
    BadRegex { pattern: String, reason: String },
    #[error("match= patterns are over the regex size limit ({REGEX_SIZE_LIMIT} bytes compiled)")]
    RegexTooBig,
}

/// One client's filter, normalised and compiled.
#[derive(Debug, Clone)]
pub struct Filter {
    /// Bare names: the name itself, or a wildcard certificate name covering it.
    exact: Vec<Box<str>>,
    /// `.example.com` patterns, stored without the dot.
    suffix: Vec<Box<str>>,
    regex: Vec<Box<str>>,
    /// This filter's own regexes (replays of entries older than the filter, validation).
    set: Option<RegexSet>,
}

impl Filter {
    /// Builds a filter from `domain=` values (each a comma-separated list) and `match=`
    /// values; `None` when there are none.
    pub fn parse(domains: &[String], regexes: &[String]) -> Result<Option<Filter>, FilterError> {
        let mut f = Filter {
            exact: Vec::new(),
            suffix: Vec::new(),
            regex: Vec::new(),
            set: None,
        };
        let mut count = 0;
        for list in domains {
            for d in list.split(',') {
                count += 1;
                if count > MAX_PATTERNS {
                    return Err(FilterError::TooMany);
                }
                if d.is_empty() {
                    return Err(FilterError::Empty("domain"));
                }
                match d.strip_prefix('.') {
                    Some(rest) => f.suffix.push(normalize_pattern(rest, d)?.into()),
                    None => f.exact.push(normalize_pattern(d, d)?.into()),
                }
            }
        }
        for r in regexes {
            count += 1;
            if count > MAX_PATTERNS {
                return Err(FilterError::TooMany);
            }
            if r.is_empty() {
                return Err(FilterError::Empty("match"));
            }
            f.regex.push(r.as_str().into());
        }
        if count == 0 {
            return Ok(None);
        }
        f.exact.sort();
        f.exact.dedup();
        f.suffix.sort();
        f.suffix.dedup();
        if !f.regex.is_empty() {
            f.set = Some(compile(&f.regex, REGEX_SIZE_LIMIT)?);
        }
        Ok(Some(f))
    }

    /// Patterns in this filter.
    pub fn patterns(&self) -> usize {
        self.exact.len() + self.suffix.len() + self.regex.len()
    }

    /// Whether any of `names` matches (evaluated for this filter alone: replays).
    pub fn matches(&self, names: &[Box<str>]) -> bool {
        names.iter().any(|raw| {
            if self.set.as_ref().is_some_and(|s| s.is_match(raw)) {
                return true;
            }
            let n = normalize_name(raw);
            let n = n.as_ref();
            if self.exact.iter().any(|p| **p == *n) {
                return true;
            }
            if let Some(base) = n.strip_prefix("*.") {
                if self.exact.iter().any(|p| parent(p) == Some(base)) {
                    return true;
                }
            }
            self.suffix.iter().any(|s| under(n, s))
        })
    }
}

/// What a client subscribed to, on its core.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The filter's id in its core's [`Matcher`] (never reused on that core).
    pub id: u32,
    pub filter: Option<Filter>,
    /// Log positions from here on were evaluated with this filter by the core's matcher;
    /// older ones (a replay with `since`) are evaluated by the filter itself.
    pub from_seq: u64,
    /// Skip certificates the hub marked duplicates.
    pub dedup: bool,
}

impl Subscription {
    /// Whether the client wants the certificate at `seq`, given the ids the core matched
    /// for it.
    #[inline]
    pub fn wants(&self, seq: u64, f: &certstream_engine::Frames, matched: &[u32]) -> bool {
        if self.dedup && f.duplicate {
            return false;
        }
        match &self.filter {
            None => true,
            Some(_) if seq >= self.from_seq => matched.binary_search(&self.id).is_ok(),
            Some(filter) => filter.matches(&f.names),
        }
    }

    /// Whether the client wants `f`, a certificate its core never held (an edge's replay
    /// from JetStream): the filter itself decides.
    pub fn wants_unheld(&self, f: &certstream_engine::Frames) -> bool {
        self.wants(0, f, &[])
    }
}

/// The union of one core's filters, evaluated once per certificate.
#[derive(Debug, Default)]
pub struct Matcher {
    exact: HashMap<Box<str>, Vec<u32>>,
    /// Exact patterns by their parent: `www.example.com` under `example.com`, for
    /// certificates naming `*.example.com`.
    by_parent: HashMap<Box<str>, Vec<u32>>,
    suffix: HashMap<Box<str>, Vec<u32>>,
    /// Every filter's regexes with their owner, and one set compiled from them (rebuilt
    /// before the next evaluation after a change).
    regex: Vec<(u32, Box<str>)>,
    set: Option<RegexSet>,
    /// Filters whose regexes are evaluated alone, when the union did not compile.
    fallback: Vec<(u32, RegexSet)>,
    regex_filters: HashMap<u32, RegexSet>,
    dirty: bool,
    filters: usize,
    patterns: usize,
}

fn add_id(map: &mut HashMap<Box<str>, Vec<u32>>, key: &str, id: u32) {
    map.entry(key.into()).or_default().push(id);
}

fn remove_id(map: &mut HashMap<Box<str>, Vec<u32>>, key: &str, id: u32) {
    if let Some(ids) = map.get_mut(key) {
        ids.retain(|&i| i != id);
        if ids.is_empty() {
            map.remove(key);
        }
    }
}

impl Matcher {
    /// Filters registered.
    pub fn filters(&self) -> usize {
        self.filters
    }

    /// Patterns registered, all filters together.
    pub fn patterns(&self) -> usize {
        self.patterns
    }

    /// Registers filter `id`.
    pub fn add(&mut self, id: u32, f: &Filter) {
        for p in &f.exact {
            add_id(&mut self.exact, p, id);
            if let Some(parent) = parent(p) {
                add_id(&mut self.by_parent, parent, id);
            }
        }
        for s in &f.suffix {
            add_id(&mut self.suffix, s, id);
        }
        if let Some(set) = &f.set {
            self.regex.extend(f.regex.iter().map(|r| (id, r.clone())));
            self.regex_filters.insert(id, set.clone());
            self.dirty = true;
        }
        self.filters += 1;
        self.patterns += f.patterns();
    }

    /// Forgets filter `id` (registered with `f`).
    pub fn remove(&mut self, id: u32, f: &Filter) {
        for p in &f.exact {
            remove_id(&mut self.exact, p, id);
            if let Some(parent) = parent(p) {
                remove_id(&mut self.by_parent, parent, id);
            }
        }
        for s in &f.suffix {
            remove_id(&mut self.suffix, s, id);
        }
        if f.set.is_some() {
            self.regex.retain(|(i, _)| *i != id);
            self.regex_filters.remove(&id);
            self.dirty = true;
        }
        self.filters -= 1;
        self.patterns -= f.patterns();
    }

    fn rebuild(&mut self) {
        self.dirty = false;
        self.set = None;
        self.fallback.clear();
        if self.regex.is_empty() {
            return;
        }
        // Each filter's regexes compiled within the limit; their union gets room for all.
        let limit = REGEX_SIZE_LIMIT.saturating_mul(self.regex_filters.len());
        let patterns: Vec<&str> = self.regex.iter().map(|(_, r)| &**r).collect();
        match compile(&patterns, limit) {
            Ok(set) => self.set = Some(set),
            Err(e) => {
                tracing::warn!(error = %e, "a core's regex union did not compile; evaluating each filter's regexes alone");
                self.fallback = self
                    .regex_filters
                    .iter()
                    .map(|(id, s)| (*id, s.clone()))
                    .collect();
            }
        }
    }

    /// The ids of the filters any of `names` matches, sorted, into `out` (cleared first).
    pub fn eval(&mut self, names: &[Box<str>], out: &mut Vec<u32>) {
        out.clear();
        if self.filters == 0 {
            return;
        }
        if self.dirty {
            self.rebuild();
        }
        for raw in names {
            if let Some(set) = &self.set {
                out.extend(set.matches(raw).iter().map(|i| self.regex[i].0));
            }
            for (id, set) in &self.fallback {
                if set.is_match(raw) {
                    out.push(*id);
                }
            }
            let n = normalize_name(raw);
            let n = n.as_ref();
            if let Some(ids) = self.exact.get(n) {
                out.extend_from_slice(ids);
            }
            if let Some(base) = n.strip_prefix("*.") {
                if let Some(ids) = self.by_parent.get(base) {
                    out.extend_from_slice(ids);
                }
            }
            if !self.suffix.is_empty() {
                let mut rest = n;
                loop {
                    if let Some(ids) = self.suffix.get(rest) {
                        out.extend_from_slice(ids);
                    }
                    match rest.split_once('.') {
                        Some((_, r)) => rest = r,
                        None => break,
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
    }
}

fn compile<S: AsRef<str>>(patterns: &[S], limit: usize) -> Result<RegexSet, FilterError> {
    RegexSetBuilder::new(patterns)
        .size_limit(limit)
        .dfa_size_limit(limit)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => FilterError::RegexTooBig,
            e => {
                // The syntax error's last line says what is wrong; the pattern is quoted.
                let text = e.to_string();
                let reason = text
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("invalid")
                    .trim()
                    .trim_start_matches("error: ")
                    .to_owned();
                let pattern = patterns
                    .iter()
                    .map(AsRef::as_ref)
                    .find(|p| regex::Regex::new(p).is_err())
                    .unwrap_or_default()
                    .to_owned();
                FilterError::BadRegex { pattern, reason }
            }
        })
}

/// The name without its first label (`None` for a single label).
fn parent(name: &str) -> Option<&str> {
    name.split_once('.').map(|(_, p)| p)
}

/// Whether `name` is `suffix` or under it.
fn under(name: &str, suffix: &str) -> bool {
    name.len() >= suffix.len()
        && name.ends_with(suffix)
        && (name.len() == suffix.len() || name.as_bytes()[name.len() - suffix.len() - 1] == b'.')
}

/// A certificate's name as patterns are kept: lower-case, no trailing dot (no copy for the
/// usual name).
fn normalize_name(name: &str) -> std::borrow::Cow<'_, str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        name.to_ascii_lowercase().into()
    } else {
        name.into()
    }
}

/// A `domain=` pattern (without its leading dot, for suffixes) in the form certificates
/// carry: lower-case, no trailing dot, `xn--` labels for internationalised ones.
fn normalize_pattern(p: &str, given: &str) -> Result<String, FilterError> {
    let bad = || FilterError::BadDomain(given.to_owned());
    let p = p.strip_suffix('.').unwrap_or(p);
    if p.is_empty() {
        return Err(bad());
    }
    let mut out = String::with_capacity(p.len());
    for (i, label) in p.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        if label.is_empty() {
            return Err(bad());
        }
        if label.is_ascii() {
            let label = label.to_ascii_lowercase();
            let ok = label == "*" && i == 0
                || label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(bad());
            }
            out.push_str(&label);
        } else {
            let lower = label.to_lowercase();
            if lower
                .chars()
                .any(|c| c.is_ascii() && !(c.is_ascii_alphanumeric() || c == '-'))
            {
                return Err(bad());
            }
            out.push_str("xn--");
            out.push_str(&punycode(&lower).ok_or_else(bad)?);
        }
    }
    if out.len() > MAX_NAME {
        return Err(bad());
    }
    Ok(out)
}

/// RFC 3492 punycode of one label (without the `xn--` prefix).
fn punycode(input: &str) -> Option<String> {
    const BASE: u32 = 36;
    const TMIN: u32 = 1;
    const TMAX: u32 = 26;
    const SKEW: u32 = 38;
    const DAMP: u32 = 700;
    fn adapt(mut delta: u32, points: u32, first: bool) -> u32 {
        delta /= if first { DAMP } else { 2 };
        delta += delta / points;
        let mut k = 0;
        while delta > ((BASE - TMIN) * TMAX) / 2 {
            delta /= BASE - TMIN;
            k += BASE;
        }
        k + (BASE - TMIN + 1) * delta / (delta + SKEW)
    }
    fn digit(d: u32) -> char {
        (if d < 26 {
            b'a' + d as u8
        } else {
            b'0' + (d - 26) as u8
        }) as char
    }
    let cps: Vec<u32> = input.chars().map(|c| c as u32).collect();
    let mut out: String = input.chars().filter(char::is_ascii).collect();
    let basic = out.len() as u32;
    let mut h = basic;
    if basic > 0 {
        out.push('-');
    }
    let (mut n, mut delta, mut bias) = (128u32, 0u32, 72u32);
    while (h as usize) < cps.len() {
        let m = *cps.iter().filter(|&&c| c >= n).min()?;
        delta = delta.checked_add((m - n).checked_mul(h + 1)?)?;
        n = m;
        for &c in &cps {
            if c < n {
                delta = delta.checked_add(1)?;
            }
            if c == n {
                let mut q = delta;
                let mut k = BASE;
                loop {
                    let t = if k <= bias {
                        TMIN
                    } else if k >= bias + TMAX {
                        TMAX
                    } else {
                        k - bias
                    };
                    if q < t {
                        break;
                    }
                    out.push(digit(t + (q - t) % (BASE - t)));
                    q = (q - t) / (BASE - t);
                    k += BASE;
                }
                out.push(digit(q));
                bias = adapt(delta, h + 1, h == basic);
                delta = 0;
                h += 1;
            }
        }
        delta += 1;
        n += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<Box<str>> {
        n.iter().map(|s| Box::from(*s)).collect()
    }

    fn filter(domains: &[&str], regexes: &[&str]) -> Filter {
        let d: Vec<String> = domains.iter().map(|s| s.to_string()).collect();
        let r: Vec<String> = regexes.iter().map(|s| s.to_string()).collect();
        Filter::parse(&d, &r).unwrap().unwrap()
    }

    #[test]
    fn punycode_matches_rfc_3492() {
        assert_eq!(punycode("bücher").as_deref(), Some("bcher-kva"));
        assert_eq!(punycode("münchen").as_deref(), Some("mnchen-3ya"));
        assert_eq!(punycode("例え").as_deref(), Some("r8jz45g"));
        assert_eq!(
            normalize_pattern("BÜCHER.Example.", "x").unwrap(),
            "xn--bcher-kva.example"
        );
    }

    /// Each pattern kind, checked alone and through a core's matcher: the two agree.
    #[test]
    fn each_pattern_kind_matches_what_it_says() {
        /// domain values, match values, a certificate's names, whether it passes.
        type Case = (
            &'static [&'static str],
            &'static [&'static str],
            &'static [&'static str],
            bool,
        );
        let cases: &[Case] = &[
            (&["www.example.com"], &[], &["www.example.com"], true),
            (&["WWW.Example.COM."], &[], &["www.example.com"], true),
            (&["www.example.com"], &[], &["WWW.EXAMPLE.COM"], true),
            (&["www.example.com"], &[], &["*.example.com"], true),
            (&["example.com"], &[], &["*.example.com"], false),
            (&["a.b.example.com"], &[], &["*.example.com"], false),
            (
                &["www.example.com"],
                &[],
                &["example.com", "wwwexample.com"],
                false,
            ),
            (&[".example.com"], &[], &["example.com"], true),
            (&[".example.com"], &[], &["a.b.example.com"], true),
            (&[".example.com"], &[], &["*.example.com"], true),
            (&[".example.com"], &[], &["badexample.com"], false),
            (&["bücher.example"], &[], &["xn--bcher-kva.example"], true),
            (
                &[".xn--bcher-kva.example"],
                &[],
                &["www.xn--bcher-kva.example"],
                true,
            ),
            (&[], &["^paypal"], &["paypal-login.example"], true),
            (&[], &["^paypal"], &["www.paypal.com"], false),
            (&[], &["(?i)PAYPAL"], &["www.paypal.com"], true),
            (
                &["a.example,b.example", ".c.example"],
                &["^z"],
                &["x.c.example"],
                true,
            ),
            (
                &["a.example,b.example", ".c.example"],
                &["^z"],
                &["b.example"],
                true,
            ),
            (
                &["a.example,b.example", ".c.example"],
                &["^z"],
                &["zz.org"],
                true,
            ),
            (
                &["a.example,b.example", ".c.example"],
                &["^z"],
                &["c.example.org"],
                false,
            ),
        ];
        for (i, (d, r, n, want)) in cases.iter().enumerate() {
            let f = filter(d, r);
            let n = names(n);
            assert_eq!(f.matches(&n), *want, "alone: case {i}");
            let mut m = Matcher::default();
            m.add(7, &filter(&["unrelated.example"], &[]));
            m.add(9, &f);
            let mut out = Vec::new();
            m.eval(&n, &mut out);
            assert_eq!(out.contains(&9), *want, "matcher: case {i}");
            assert!(!out.contains(&7));
        }
    }

    #[test]
    fn the_matcher_follows_filters_that_come_and_go() {
        let mut m = Matcher::default();
        let a = filter(&["a.example"], &["^r"]);
        let b = filter(&["a.example", ".example"], &["^r", "q"]);
        m.add(1, &a);
        m.add(2, &b);
        assert_eq!((m.filters(), m.patterns()), (2, 6));
        let mut out = Vec::new();
        m.eval(&names(&["a.example"]), &mut out);
        assert_eq!(out, [1, 2]);
        m.eval(&names(&["rq.org"]), &mut out);
        assert_eq!(out, [1, 2]);
        m.remove(1, &a);
        m.eval(&names(&["a.example", "r.org"]), &mut out);
        assert_eq!(out, [2]);
        m.remove(2, &b);
        assert_eq!((m.filters(), m.patterns()), (0, 0));
        m.eval(&names(&["a.example"]), &mut out);
        assert!(out.is_empty());
        assert!(m.exact.is_empty() && m.suffix.is_empty() && m.by_parent.is_empty());
    }

    #[test]
    fn bad_filters_are_refused_with_a_reason() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let err = |d: &[&str], r: &[&str]| Filter::parse(&s(d), &s(r)).unwrap_err();
        assert_eq!(err(&[""], &[]), FilterError::Empty("domain"));
        assert_eq!(err(&["a.example,"], &[]), FilterError::Empty("domain"));
        assert_eq!(err(&[], &[""]), FilterError::Empty("match"));
        assert!(matches!(err(&["a..b"], &[]), FilterError::BadDomain(_)));
        assert!(matches!(err(&["a b"], &[]), FilterError::BadDomain(_)));
        assert!(matches!(err(&["."], &[]), FilterError::BadDomain(_)));
        let e = err(&[], &["a(b"]);
        assert!(matches!(&e, FilterError::BadRegex { pattern, .. } if pattern == "a(b"));
        assert!(!e.to_string().contains('\n'), "{e}");
        assert_eq!(err(&[], &["\\w{1000}{1000}"]), FilterError::RegexTooBig);
        let many = vec!["a.example"; 1001].join(",");
        assert_eq!(err(&[&many], &[]), FilterError::TooMany);
        let ok = vec!["a.example"; 1000].join(",");
        assert!(Filter::parse(&s(&[&ok]), &[]).unwrap().is_some());
        assert!(Filter::parse(&[], &[]).unwrap().is_none());
    }
}
