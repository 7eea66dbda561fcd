//! The client's address behind trusted proxies: `Forwarded` (RFC 7239) or
//! `X-Forwarded-For`, believed only from configured proxy addresses.
//!
//! CIDR matching is the dozen lines below rather than a dependency: only
//! parsing and `contains` are needed.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;

/// An address range, `10.0.0.0/8` or a single address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// A range that is not `ADDRESS[/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an address or an address range like 10.0.0.0/8")]
pub struct CidrError(String);

impl std::str::FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let bad = || CidrError(s.chars().take(64).collect());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is in the range (an IPv4 address also matches as an
    /// IPv4-mapped IPv6 address, and the other way round).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (canonical(self.addr), ip) {
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

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Proxies whose forwarding headers are believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    ranges: Vec<Cidr>,
}

impl TrustedProxies {
    /// Trusts these ranges (`"10.0.0.0/8"`, `"127.0.0.1"`, `"fd00::/8"`).
    pub fn new<I, T>(ranges: I) -> Result<Self, CidrError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let ranges = ranges
            .into_iter()
            .map(|r| r.as_ref().parse())
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { ranges })
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The client's address for a connection from `peer` with `headers`:
    /// the peer itself unless it is trusted; then, walking the forwarding
    /// chain from the nearest hop, the first address that is not a trusted
    /// proxy (`Forwarded` if present, else `X-Forwarded-For`). Unparsable
    /// entries stop the walk at the last good address.
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
        if self.ranges.is_empty() || !self.contains(peer.ip()) {
            return peer;
        }
        let mut hops: Vec<IpAddr> = Vec::new();
        let forwarded: Vec<_> = headers.get_all(http::header::FORWARDED).iter().collect();
        if !forwarded.is_empty() {
            for value in forwarded {
                let Ok(value) = value.to_str() else { break };
                for element in value.split(',') {
                    hops.push(match forwarded_for(element) {
                        Some(ip) => ip,
                        None => return last_good(peer, &hops),
                    });
                }
            }
        } else {
            for value in headers.get_all("x-forwarded-for") {
                let Ok(value) = value.to_str() else { break };
                for entry in value.split(',') {
                    hops.push(match parse_ip(entry.trim()) {
                        Some(ip) => ip,
                        None => return last_good(peer, &hops),
                    });
                }
            }
        }
        // Nearest hop last: walk back while the hops are our own proxies.
        let mut client = peer.ip();
        for ip in hops.iter().rev() {
            client = *ip;
            if !self.contains(*ip) {
                break;
            }
        }
        SocketAddr::new(client, 0)
    }
}

/// With a garbled entry the chain cannot be followed past it: the nearest
/// parsed hop that is not garbled is the best answer, else the peer.
fn last_good(peer: SocketAddr, hops: &[IpAddr]) -> SocketAddr {
    hops.last().map_or(peer, |ip| SocketAddr::new(*ip, 0))
}

/// The `for=` address of one `Forwarded` element.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        parse_ip(v.trim().trim_matches('"'))
    })
}

/// `1.2.3.4`, `1.2.3.4:567`, `2001:db8::1`, `[2001:db8::1]:567`.
fn parse_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    let inner = s.strip_prefix('[')?.split(']').next()?;
    inner.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    fn peer(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn ranges() {
        let c: Cidr = "10.0.0.0/8".parse().expect("cidr");
        assert!(c.contains("10.1.2.3".parse().expect("ip")));
        assert!(!c.contains("11.0.0.1".parse().expect("ip")));
        assert!(c.contains("::ffff:10.0.0.1".parse().expect("ip")), "mapped");
        let one: Cidr = "fd00::1".parse().expect("cidr");
        assert!(one.contains("fd00::1".parse().expect("ip")));
        assert!(!one.contains("fd00::2".parse().expect("ip")));
        let all: Cidr = "0.0.0.0/0".parse().expect("cidr");
        assert!(all.contains("8.8.8.8".parse().expect("ip")));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/", "/8", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_are_believed_only_from_trusted_peers() {
        let t = TrustedProxies::new(["10.0.0.0/8"]).expect("valid");
        let h = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(
            t.client(peer("10.0.0.5:4000"), &h).ip().to_string(),
            "203.0.113.7"
        );
        assert_eq!(
            t.client(peer("198.51.100.1:4000"), &h),
            peer("198.51.100.1:4000"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            TrustedProxies::default().client(peer("10.0.0.5:1"), &h),
            peer("10.0.0.5:1")
        );
    }

    #[test]
    fn the_chain_is_walked_from_the_nearest_hop() {
        let t = TrustedProxies::new(["10.0.0.0/8"]).expect("valid");
        // A client spoofing a first entry: the nearest untrusted hop wins.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.7, 10.0.0.9")]);
        assert_eq!(
            t.client(peer("10.0.0.5:1"), &h).ip().to_string(),
            "203.0.113.7"
        );
        // Several header lines are one list.
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "203.0.113.8"),
        ]);
        assert_eq!(
            t.client(peer("10.0.0.5:1"), &h).ip().to_string(),
            "203.0.113.8"
        );
        // All trusted: the farthest.
        let h = headers(&[("x-forwarded-for", "10.1.1.1, 10.2.2.2")]);
        assert_eq!(
            t.client(peer("10.0.0.5:1"), &h).ip().to_string(),
            "10.1.1.1"
        );
        // Garbage stops the walk.
        let h = headers(&[("x-forwarded-for", "203.0.113.9, junk")]);
        assert_eq!(
            t.client(peer("10.0.0.5:1"), &h).ip().to_string(),
            "203.0.113.9"
        );
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for() {
        let t = TrustedProxies::new(["127.0.0.1"]).expect("valid");
        let h = headers(&[
            (
                "forwarded",
                r#"for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711""#,
            ),
            ("x-forwarded-for", "198.51.100.2"),
        ]);
        assert_eq!(
            t.client(peer("127.0.0.1:9"), &h).ip().to_string(),
            "2001:db8:cafe::17"
        );
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(t.client(peer("127.0.0.1:9"), &h), peer("127.0.0.1:9"));
    }
}
