//! Network groups: servers in one /16 (IPv4) or /48 (IPv6) are likely one
//! operator, so they count once where independence matters — a tip agreed
//! by servers, the second opinion of a cross-check, the servers a
//! transaction is sent to. Electrum's own wallet connects to at most one
//! server per /16 for the same reason.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The group a server's address belongs to.
///
/// Public IPv4 addresses group by /16 and public IPv6 by /48. Loopback,
/// private, link-local and shared (CGNAT) addresses are a group of their
/// own per address and port: servers an operator runs on a private network
/// are theirs to trust, and a pool on one test machine stays a pool.
///
/// ```
/// use rpc_electrum::NetworkGroup;
/// let a = NetworkGroup::of("203.0.113.5:50002".parse().unwrap());
/// let b = NetworkGroup::of("203.0.200.9:50001".parse().unwrap());
/// let c = NetworkGroup::of("198.51.100.1:50002".parse().unwrap());
/// assert_eq!(a, b); // one /16
/// assert_ne!(a, c);
/// let local1 = NetworkGroup::of("127.0.0.1:50001".parse().unwrap());
/// let local2 = NetworkGroup::of("127.0.0.1:50003".parse().unwrap());
/// assert_ne!(local1, local2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NetworkGroup {
    /// A public IPv4 /16.
    V4([u8; 2]),
    /// A public IPv6 /48.
    V6([u16; 3]),
    /// A local or private address: its own group.
    Local(SocketAddr),
}

impl NetworkGroup {
    /// The group of `addr`.
    pub fn of(addr: SocketAddr) -> NetworkGroup {
        match addr.ip() {
            IpAddr::V4(v4) => Self::of_v4(v4, addr),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::of_v4(v4, addr),
                None if v6_is_local(&v6) => NetworkGroup::Local(addr),
                None => {
                    let s = v6.segments();
                    NetworkGroup::V6([s[0], s[1], s[2]])
                }
            },
        }
    }

    fn of_v4(v4: Ipv4Addr, addr: SocketAddr) -> NetworkGroup {
        let o = v4.octets();
        // 100.64.0.0/10: carrier-grade NAT (shared address space).
        let shared = o[0] == 100 && (o[1] & 0xc0) == 64;
        if v4.is_loopback()
            || v4.is_private()
            || v4.is_link_local()
            || v4.is_unspecified()
            || shared
        {
            NetworkGroup::Local(addr)
        } else {
            NetworkGroup::V4([o[0], o[1]])
        }
    }
}

fn v6_is_local(v6: &Ipv6Addr) -> bool {
    let first = v6.segments()[0];
    v6.is_loopback()
        || v6.is_unspecified()
        // fc00::/7 unique local, fe80::/10 link-local.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
}

/// `items` reordered so that each network group's first item comes before
/// any group's second (order kept otherwise): take a prefix to pick
/// servers from as many networks as possible. Items whose group is not
/// known yet count as groups of their own.
///
/// ```
/// use rpc_electrum::{netgroup::spread, NetworkGroup};
/// let at = |s: &str| Some(NetworkGroup::of(s.parse().unwrap()));
/// let servers = [
///     ("a", at("203.0.113.5:1")),
///     ("b", at("203.0.7.7:1")), // a's /16
///     ("c", at("198.51.100.1:1")),
/// ];
/// let order: Vec<&str> = spread(&servers, |s| s.1).iter().map(|s| s.0).collect();
/// assert_eq!(order, ["a", "c", "b"]);
/// ```
pub fn spread<T: Clone>(items: &[T], group_of: impl Fn(&T) -> Option<NetworkGroup>) -> Vec<T> {
    let mut seen: Vec<NetworkGroup> = Vec::with_capacity(items.len());
    let (mut first, mut later) = (Vec::new(), Vec::new());
    for item in items {
        match group_of(item) {
            Some(g) if seen.contains(&g) => later.push(item.clone()),
            Some(g) => {
                seen.push(g);
                first.push(item.clone());
            }
            None => first.push(item.clone()),
        }
    }
    first.extend(later);
    first
}

/// How many distinct groups `groups` holds (`None`: a group of its own).
pub fn distinct(groups: impl IntoIterator<Item = Option<NetworkGroup>>) -> usize {
    let mut seen: Vec<NetworkGroup> = Vec::new();
    let mut unknown = 0;
    for g in groups {
        match g {
            None => unknown += 1,
            Some(g) if !seen.contains(&g) => seen.push(g),
            Some(_) => {}
        }
    }
    seen.len() + unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> NetworkGroup {
        NetworkGroup::of(s.parse().expect("socket address"))
    }

    #[test]
    fn public_addresses_group_by_16_and_48_local_ones_stand_alone() {
        assert_eq!(g("8.8.4.4:1"), NetworkGroup::V4([8, 8]));
        assert_eq!(g("8.8.200.1:2"), g("8.8.4.4:1"));
        assert_eq!(g("[2001:db8:1:2::5]:1"), g("[2001:db8:1:ffff::9]:2"));
        assert_ne!(g("[2001:db8:1::1]:1"), g("[2001:db8:2::1]:1"));
        // IPv4-mapped IPv6 is IPv4.
        assert_eq!(g("[::ffff:8.8.1.1]:1"), g("8.8.9.9:1"));
        for local in [
            "127.0.0.1:1",
            "10.1.2.3:1",
            "172.16.0.1:1",
            "192.168.1.1:1",
            "169.254.1.1:1",
            "100.64.0.1:1",
            "[::1]:1",
            "[fd00::1]:1",
            "[fe80::1]:1",
        ] {
            assert!(matches!(g(local), NetworkGroup::Local(_)), "{local}");
        }
        assert_ne!(g("10.0.0.1:1"), g("10.0.0.2:1"));
    }

    #[test]
    fn distinct_counts_unknown_groups_apart() {
        let a = Some(g("8.8.1.1:1"));
        let b = Some(g("8.8.2.2:1"));
        let c = Some(g("9.9.9.9:1"));
        assert_eq!(distinct([a, b]), 1);
        assert_eq!(distinct([a, b, c]), 2);
        assert_eq!(distinct([a, None, None]), 3);
    }
}
