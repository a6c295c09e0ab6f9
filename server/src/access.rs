//! Who may connect: the real client address behind trusted proxies, an allow list, and
//! bearer tokens.
//!
//! - **Real address.** `X-Forwarded-For` and `Forwarded` are believed only from peers in
//!   `--trusted-proxy` CIDRs; the real address is the rightmost one in the chain that is
//!   not itself a trusted proxy (so a client cannot forge its way past the proxy, which
//!   appends what it saw). From any other peer the headers are ignored. The per-IP limit
//!   counts real addresses: a trusted proxy's connections count against the total at
//!   accept, and against the real address once the request head is read.
//! - **Allow list.** With `--allow` CIDRs, other real addresses get 403.
//! - **Tokens.** With `--auth-token`, a stream (websocket or SSE) needs one, as
//!   `Authorization: Bearer <token>` or `?token=<token>`; without it or with a wrong one, 401
//!   before any upgrade. Compared in constant time (`subtle`). The other endpoints (index,
//!   `/health`, `/stats`, `/metrics`) stay open.

use std::net::IpAddr;

use subtle::ConstantTimeEq as _;

use crate::http::Request;

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0..={max}"))?,
        };
        Ok(Cidr {
            addr: addr.to_canonical(),
            prefix,
        })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Whether any block holds `ip`.
pub fn any_contains(blocks: &[Cidr], ip: IpAddr) -> bool {
    blocks.iter().any(|c| c.contains(ip))
}

/// One `Forwarded` `for=` value or `X-Forwarded-For` element: `1.2.3.4`, `1.2.3.4:80`,
/// `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    s.rsplit_once(':')?.0.parse().ok()
}

/// The addresses a proxy chain claims, leftmost (the client) first: from `Forwarded`
/// when sent, else from `X-Forwarded-For`.
fn chain(req: &Request) -> Vec<Option<IpAddr>> {
    let values = |name: &str| -> Vec<&str> {
        req.headers
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .collect()
    };
    let forwarded = values("forwarded");
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .map(|el| {
                el.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| parse_node(v))?
                })
            })
            .collect();
    }
    values("x-forwarded-for")
        .iter()
        .map(|v| parse_node(v))
        .collect()
}

/// The real client address of a request from `peer`.
pub fn real_ip(peer: IpAddr, req: &Request, trusted: &[Cidr]) -> IpAddr {
    if !any_contains(trusted, peer) {
        return peer;
    }
    let mut real = peer;
    for node in chain(req).into_iter().rev() {
        match node {
            Some(ip) => {
                real = ip;
                if !any_contains(trusted, ip) {
                    break;
                }
            }
            // An element that is no address (`unknown`, garbage): trust nothing before it.
            None => break,
        }
    }
    real
}

/// Whether a request carries one of `tokens` (none configured: every request does).
pub fn authorized(req: &Request, tokens: &[String]) -> bool {
    if tokens.is_empty() {
        return true;
    }
    let bearer = req
        .headers
        .iter()
        .filter(|(k, _)| k == "authorization")
        .find_map(|(_, v)| {
            let (scheme, t) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(t.trim())
        });
    let query = req.path.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or("");
    let param = query.split('&').find_map(|p| p.strip_prefix("token="));
    [bearer, param].into_iter().flatten().any(|given| {
        tokens.iter().fold(false, |ok, t| {
            ok | bool::from(t.as_bytes().ct_eq(given.as_bytes()))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: path.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_blocks() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains(ip("10.1.200.3")));
        assert!(c.contains(ip("::ffff:10.1.0.1")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(!c.contains(ip("::1")));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        for bad in ["10.0.0.0/33", "x", "10.0.0.0/", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_addresses_only_from_trusted_peers() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let xff = req(
            "/",
            &[("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.0.0.2")],
        );
        // From the proxy: the rightmost address that is not a trusted proxy.
        assert_eq!(real_ip(ip("10.0.0.1"), &xff, &trusted), ip("203.0.113.7"));
        // From anyone else: ignored.
        assert_eq!(
            real_ip(ip("198.51.100.1"), &xff, &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(real_ip(ip("10.0.0.1"), &xff, &[]), ip("10.0.0.1"));
        let fwd = req(
            "/",
            &[(
                "Forwarded",
                "for=192.0.2.60;proto=http, for=\"[2001:db8:cafe::17]:4711\"",
            )],
        );
        assert_eq!(
            real_ip(ip("10.0.0.1"), &fwd, &trusted),
            ip("2001:db8:cafe::17")
        );
        let junk = req("/", &[("X-Forwarded-For", "1.2.3.4, unknown")]);
        assert_eq!(real_ip(ip("10.0.0.1"), &junk, &trusted), ip("10.0.0.1"));
        let none = req("/", &[]);
        assert_eq!(real_ip(ip("10.0.0.1"), &none, &trusted), ip("10.0.0.1"));
    }

    #[test]
    fn tokens_from_the_header_or_the_query() {
        let tokens = vec!["s3cret".to_owned(), "other".to_owned()];
        assert!(authorized(&req("/", &[]), &[]));
        assert!(!authorized(&req("/", &[]), &tokens));
        assert!(authorized(
            &req("/", &[("Authorization", "Bearer s3cret")]),
            &tokens
        ));
        assert!(authorized(
            &req("/", &[("Authorization", "bearer other")]),
            &tokens
        ));
        assert!(!authorized(
            &req("/", &[("Authorization", "Bearer s3cre")]),
            &tokens
        ));
        assert!(!authorized(
            &req("/", &[("Authorization", "Basic s3cret")]),
            &tokens
        ));
        assert!(authorized(
            &req("/full-stream?since=1&token=s3cret", &[]),
            &tokens
        ));
        assert!(!authorized(&req("/?token=s3cret2", &[]), &tokens));
        assert!(!authorized(&req("/?xtoken=s3cret", &[]), &tokens));
    }
}
