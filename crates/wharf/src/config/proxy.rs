//! Settings for a server behind a reverse proxy or load balancer: which peers are trusted
//! to say who the client is, and how they say it (`trusted_proxies`, `proxy_protocol`,
//! `forwarded_header`).
//!
//! ```
//! let config = wharf::Config::from_toml_str(r#"
//!     [[server]]
//!     name = "ws"
//!     kind = "websocket"
//!     port = 9502
//!     trusted_proxies = ["10.0.0.0/8", "192.0.2.7"]
//!     forwarded_header = "forwarded"
//! "#).unwrap();
//! let ws = &config.servers[0];
//! assert!(ws.trusted_proxies[0].contains("10.1.2.3".parse().unwrap()));
//! assert_eq!(ws.forwarded_header, wharf::config::ForwardedHeader::Forwarded);
//! ```

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, de};

/// An address or a network in CIDR notation: `"192.0.2.7"`, `"10.0.0.0/8"`, `"fd00::/8"`.
///
/// An IPv4 address mapped into IPv6 (`::ffff:10.0.0.1`, as a dual-stack socket reports it)
/// matches as the IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
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

/// The IPv4 address inside an IPv4-mapped IPv6 address, else `ip` as is.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<IpNet, String> {
        let bad = || format!("`{text}` is not an address or a network such as \"10.0.0.0/8\"");
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.trim(), None),
        };
        let addr = canonical(addr.parse::<IpAddr>().map_err(|_| bad())?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?
            }
            Some(_) => return Err(bad()),
        };
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// Parses a comma-separated list of [`IpNet`]s (the `WHARF_<SERVER>_TRUSTED_PROXIES`
/// variable); empty items are skipped.
pub(crate) fn parse_list(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::parse)
        .collect()
}

/// Which request header a trusted proxy writes the client's address into.
///
/// Only one is read: a proxy appends to the header it knows and passes the other through as
/// the client wrote it, so reading both would let a client choose its own address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, most cloud load
    /// balancers). The default.
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
    /// Neither: the client address comes only from the PROXY protocol (or is the TCP peer).
    None,
}

impl FromStr for ForwardedHeader {
    type Err = String;

    fn from_str(text: &str) -> Result<ForwardedHeader, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(ForwardedHeader::XForwardedFor),
            "forwarded" => Ok(ForwardedHeader::Forwarded),
            "none" => Ok(ForwardedHeader::None),
            _ => Err(format!(
                "`{text}` is not one of \"x-forwarded-for\", \"forwarded\", \"none\""
            )),
        }
    }
}

/// Whether `ip` is a loopback, private (RFC 1918, IPv6 unique local) or link-local address:
/// one a reverse proxy in the same network connects from, which no host on the internet can
/// claim over TCP.
pub(crate) fn is_private(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || (u128::from(v6) >> 121) == (0xfc00 >> 9) // fc00::/7
                || (u128::from(v6) >> 118) == (0xfe80 >> 6) // fe80::/10
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn networks_parse_and_match() {
        let net: IpNet = "10.0.0.0/8".parse().expect("net");
        assert!(net.contains(ip("10.255.0.1")));
        assert!(net.contains(ip("::ffff:10.0.0.1")), "mapped IPv4");
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::1")));
        let host: IpNet = "192.0.2.7".parse().expect("host");
        assert!(host.contains(ip("192.0.2.7")) && !host.contains(ip("192.0.2.8")));
        let v6: IpNet = "2001:db8::/32".parse().expect("v6");
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        let all: IpNet = "0.0.0.0/0".parse().expect("all");
        assert!(all.contains(ip("203.0.113.9")));
        assert_eq!(v6.to_string(), "2001:db8::/32");
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "::/129",
            "example.com",
            "10.0.0.0/8/8",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?}");
        }
        assert_eq!(parse_list(" 10.0.0.1, ,::1 ").expect("list").len(), 2);
        assert!(parse_list("10.0.0.1,x").is_err());
    }

    #[test]
    fn private_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.1.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.0.1",
        ] {
            assert!(is_private(ip(private)), "{private}");
        }
        for public in [
            "8.8.8.8",
            "100.64.0.1",
            "172.32.0.1",
            "2001:db8::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_private(ip(public)), "{public}");
        }
    }

    #[test]
    fn forwarded_header_names() {
        assert_eq!(
            "X-Forwarded-For".parse(),
            Ok(ForwardedHeader::XForwardedFor)
        );
        assert_eq!("forwarded".parse(), Ok(ForwardedHeader::Forwarded));
        assert_eq!("none".parse(), Ok(ForwardedHeader::None));
        assert!("x-real-ip".parse::<ForwardedHeader>().is_err());
    }
}
