//! The client address per-address limits key on.
//!
//! It is the TCP peer's address, or, behind a trusted proxy (`--trust-forwarded-for`), the
//! address that proxy appended to `X-Forwarded-For`. Heroku's router appends the address
//! it saw to the end of the *first* `X-Forwarded-For` header (after whatever the client
//! wrote there itself), so the first header's last entry is the one a client cannot forge;
//! a proxy that writes a single header (nginx's `$proxy_add_x_forwarded_for`) agrees. The
//! header's first entry is whatever the client claimed, and trusting it would let one
//! client pass for any number of addresses.
//!
//! IPv6 addresses are keyed by their /64 prefix: one subscriber usually holds a whole /64,
//! so keying on single addresses would give them 2^64 quotas.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use actix_web::http::header::HeaderMap;

/// A client address as the limits count it: an IPv4 address, or an IPv6 /64 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddress(IpAddr);

impl ClientAddress {
    /// The key for `ip`: IPv4 (also when written IPv4-mapped) as is, IPv6 cut to its /64.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Self(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }

    /// The address of a request's client: `peer`, or with `trust_forwarded_for` the last
    /// entry of the first `X-Forwarded-For` header when it holds an address. When neither
    /// is known (never over TCP), all such clients share the key `0.0.0.0`.
    pub fn of_request(
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
        trust_forwarded_for: bool,
    ) -> Self {
        let forwarded = trust_forwarded_for
            .then(|| headers.get("x-forwarded-for"))
            .flatten()
            .and_then(|value| value.to_str().ok())
            .and_then(|list| list.rsplit(',').next())
            .and_then(|last| last.trim().parse::<IpAddr>().ok());
        Self::of(
            forwarded
                .or(peer.map(|p| p.ip()))
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
        )
    }
}

impl std::fmt::Display for ClientAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => v4.fmt(f),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        map
    }

    fn peer() -> Option<SocketAddr> {
        Some(SocketAddr::from(([10, 0, 0, 1], 4000)))
    }

    fn ip(s: &str) -> ClientAddress {
        ClientAddress::of(s.parse().expect("ip"))
    }

    #[test]
    fn the_peer_unless_forwarded_for_is_trusted() {
        let h = headers(&["1.2.3.4"]);
        assert_eq!(ClientAddress::of_request(peer(), &h, false), ip("10.0.0.1"));
        assert_eq!(ClientAddress::of_request(peer(), &h, true), ip("1.2.3.4"));
    }

    #[test]
    fn the_hop_the_proxy_appended_not_what_the_client_wrote() {
        // The client wrote 6.6.6.6 (twice, in two headers); the proxy appended 1.2.3.4 to
        // the first header.
        let h = headers(&["6.6.6.6, 1.2.3.4", "6.6.6.6"]);
        assert_eq!(ClientAddress::of_request(peer(), &h, true), ip("1.2.3.4"));
    }

    #[test]
    fn garbage_or_no_header_falls_back_to_the_peer() {
        for h in [headers(&[]), headers(&["not an address"])] {
            assert_eq!(ClientAddress::of_request(peer(), &h, true), ip("10.0.0.1"));
        }
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_prefix_and_mapped_ipv4_as_ipv4() {
        assert_eq!(ip("2001:db8:1:2:aaaa::1"), ip("2001:db8:1:2:bbbb::2"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:1.2.3.4"), ip("1.2.3.4"));
        assert_eq!(ip("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    }
}
