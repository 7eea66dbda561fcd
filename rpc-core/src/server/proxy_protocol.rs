//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a load
//! balancer sends first on a connection to say who the client is. Only the
//! parts a JSON-RPC front needs: the source address of TCP over IPv4/IPv6;
//! `LOCAL` (health checks) and `UNKNOWN` carry no address.
//!
//! A dozen lines of parsing per version rather than a dependency: the format
//! is small, fixed and specified byte by byte.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, CRLF included.
const V1_MAX: usize = 107;
/// The longest v2 header we accept (16 bytes plus addresses and a few TLVs).
pub(crate) const V2_MAX: usize = 16 + 536;

/// A parsed header: the client's address, if it carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) source: Option<SocketAddr>,
    /// Bytes the header takes at the start of the stream.
    pub(crate) len: usize,
}

/// Why bytes are not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// Neither signature.
    NotProxy,
    /// The signature, then something malformed.
    Malformed,
}

/// Parses a header at the start of `buf`: `Ok(None)` when more bytes are
/// needed.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<Header>, Invalid> {
    if buf.len() >= 5 && &buf[..5] == b"PROXY" {
        return parse_v1(buf);
    }
    if buf.len() >= V2_SIGNATURE.len() {
        if buf[..12] == V2_SIGNATURE {
            return parse_v2(buf);
        }
        return Err(Invalid::NotProxy);
    }
    // Too short to tell: is it still a prefix of either signature?
    let prefix_of = |sig: &[u8]| sig.starts_with(buf);
    if prefix_of(b"PROXY") || prefix_of(&V2_SIGNATURE) {
        Ok(None)
    } else {
        Err(Invalid::NotProxy)
    }
}

fn parse_v1(buf: &[u8]) -> Result<Option<Header>, Invalid> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(Invalid::Malformed)
        } else {
            Ok(None)
        };
    };
    if end + 2 > V1_MAX {
        return Err(Invalid::Malformed);
    }
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| Invalid::Malformed)?;
    let mut parts = line.split(' ');
    let (Some("PROXY"), Some(proto)) = (parts.next(), parts.next()) else {
        return Err(Invalid::Malformed);
    };
    let len = end + 2;
    match proto {
        "UNKNOWN" => Ok(Some(Header { source: None, len })),
        "TCP4" | "TCP6" => {
            let fields: Vec<&str> = parts.collect();
            let [src, _dst, sport, _dport] = fields[..] else {
                return Err(Invalid::Malformed);
            };
            let ip: IpAddr = src.parse().map_err(|_| Invalid::Malformed)?;
            if ip.is_ipv4() != (proto == "TCP4") {
                return Err(Invalid::Malformed);
            }
            let port: u16 = sport.parse().map_err(|_| Invalid::Malformed)?;
            Ok(Some(Header {
                source: Some(SocketAddr::new(ip, port)),
                len,
            }))
        }
        _ => Err(Invalid::Malformed),
    }
}

fn parse_v2(buf: &[u8]) -> Result<Option<Header>, Invalid> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let version = buf[12] >> 4;
    let command = buf[12] & 0x0f;
    if version != 2 || command > 1 {
        return Err(Invalid::Malformed);
    }
    let body = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body;
    if len > V2_MAX {
        return Err(Invalid::Malformed);
    }
    if buf.len() < len {
        return Ok(None);
    }
    let addresses = &buf[16..len];
    // LOCAL: the balancer's own connection (a health check).
    if command == 0 {
        return Ok(Some(Header { source: None, len }));
    }
    let source = match buf[13] {
        // TCP over IPv4.
        0x11 => {
            let a: [u8; 12] = addresses
                .get(..12)
                .and_then(|a| a.try_into().ok())
                .ok_or(Invalid::Malformed)?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(
                IpAddr::V4(ip),
                u16::from_be_bytes([a[8], a[9]]),
            ))
        }
        // TCP over IPv6.
        0x21 => {
            let a: [u8; 36] = addresses
                .get(..36)
                .and_then(|a| a.try_into().ok())
                .ok_or(Invalid::Malformed)?;
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&a[..16]);
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(ip)),
                u16::from_be_bytes([a[32], a[33]]),
            ))
        }
        // Unspecified, UDP or Unix sockets: no TCP client address.
        _ => None,
    };
    Ok(Some(Header { source, len }))
}

/// Reads a header from the start of `stream`, consuming exactly its bytes
/// (the HTTP that follows stays unread). The caller bounds it with a
/// deadline.
pub(crate) async fn read_header<R>(stream: &mut R) -> Result<Header, Invalid>
where
    R: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    // Both versions are at least 12 bytes long (v1's shortest is
    // "PROXY UNKNOWN\r\n").
    let mut buf = Vec::with_capacity(64);
    buf.resize(12, 0);
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|_| Invalid::Malformed)?;
    loop {
        match parse(&buf)? {
            Some(header) => return Ok(header),
            None if buf.starts_with(b"PROXY") => {
                // v1: a byte at a time up to the CRLF (at most 107 bytes).
                let mut byte = [0u8; 1];
                stream
                    .read_exact(&mut byte)
                    .await
                    .map_err(|_| Invalid::Malformed)?;
                buf.push(byte[0]);
            }
            None => {
                // v2: the fixed part tells the length of the rest.
                let want = if buf.len() < 16 {
                    16
                } else {
                    16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]))
                };
                let have = buf.len();
                buf.resize(want.max(have + 1).min(V2_MAX), 0);
                stream
                    .read_exact(&mut buf[have..])
                    .await
                    .map_err(|_| Invalid::Malformed)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1() {
        let h = parse(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 8545\r\nPOST / HTTP/1.1")
            .expect("valid")
            .expect("complete");
        assert_eq!(h.source, Some("203.0.113.7:51234".parse().expect("addr")));
        assert_eq!(h.len, 44);
        let h = parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 8545\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(h.source, Some("[2001:db8::1]:4000".parse().expect("addr")));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n").expect("valid"),
            Some(Header {
                source: None,
                len: 15
            })
        );
        assert_eq!(
            parse(b"PROXY TCP4 203.0.113.7").expect("valid"),
            None,
            "partial"
        );
        assert_eq!(parse(b"PRO").expect("valid"), None, "partial signature");
        for bad in [
            &b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4\r\n",
        ] {
            assert_eq!(parse(bad), Err(Invalid::Malformed), "{bad:?}");
        }
        assert_eq!(parse(b"POST / HTTP/1.1\r\n"), Err(Invalid::NotProxy));
        assert_eq!(parse(&[b'P'; 200][..]), Err(Invalid::NotProxy));
    }

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.push(0x20 | command);
        b.push(family);
        b.extend_from_slice(&u16::try_from(addresses.len()).expect("short").to_be_bytes());
        b.extend_from_slice(addresses);
        b
    }

    #[tokio::test]
    async fn reading_consumes_the_header_and_nothing_more() {
        let mut v1: &[u8] = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 8545\r\nPOST / HTTP/1.1\r\n";
        let h = read_header(&mut v1).await.expect("v1");
        assert_eq!(h.source, Some("203.0.113.7:51234".parse().expect("addr")));
        assert_eq!(v1, b"POST / HTTP/1.1\r\n");

        let mut a = vec![203, 0, 113, 7, 10, 0, 0, 1];
        a.extend_from_slice(&51234u16.to_be_bytes());
        a.extend_from_slice(&8545u16.to_be_bytes());
        let mut bytes = v2(1, 0x11, &a);
        bytes.extend_from_slice(b"PRI * HTTP/2.0");
        let mut rest: &[u8] = &bytes;
        let h = read_header(&mut rest).await.expect("v2");
        assert_eq!(h.source, Some("203.0.113.7:51234".parse().expect("addr")));
        assert_eq!(rest, b"PRI * HTTP/2.0");

        let mut plain: &[u8] = b"POST / HTTP/1.1\r\nhost: x\r\n";
        assert_eq!(read_header(&mut plain).await, Err(Invalid::NotProxy));
        let mut short: &[u8] = b"PROXY TCP4 1";
        assert_eq!(read_header(&mut short).await, Err(Invalid::Malformed));
    }

    #[test]
    fn version_2() {
        let mut a = vec![203, 0, 113, 7, 10, 0, 0, 1];
        a.extend_from_slice(&51234u16.to_be_bytes());
        a.extend_from_slice(&8545u16.to_be_bytes());
        let mut bytes = v2(1, 0x11, &a);
        bytes.extend_from_slice(b"GET /");
        let h = parse(&bytes).expect("valid").expect("complete");
        assert_eq!(h.source, Some("203.0.113.7:51234".parse().expect("addr")));
        assert_eq!(h.len, 28);
        assert_eq!(parse(&bytes[..20]).expect("valid"), None, "partial");

        let mut a6 = vec![0x20, 0x01, 0x0d, 0xb8];
        a6.resize(16, 0);
        a6[15] = 1;
        a6.extend_from_slice(&[0u8; 16]);
        a6.extend_from_slice(&4000u16.to_be_bytes());
        a6.extend_from_slice(&8545u16.to_be_bytes());
        let h = parse(&v2(1, 0x21, &a6)).expect("valid").expect("complete");
        assert_eq!(h.source, Some("[2001:db8::1]:4000".parse().expect("addr")));

        let local = parse(&v2(0, 0x00, &[])).expect("valid").expect("complete");
        assert_eq!(local.source, None);
        assert_eq!(parse(&v2(1, 0x11, &[1, 2, 3])), Err(Invalid::Malformed));
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(parse(&huge), Err(Invalid::Malformed));
    }
}
