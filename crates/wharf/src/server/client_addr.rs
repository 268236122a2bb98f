//! Who the client is: the TCP peer, or, from a trusted proxy, the address the proxy reports
//! (PROXY protocol header or `X-Forwarded-For` / `Forwarded`).
//!
//! One rule, here only: an address is taken from a peer's word only when that peer is in
//! `trusted_proxies`. A chain of headers is read from the right (the hops the trusted proxies
//! appended) and the first address that is not itself a trusted proxy is the client; what a
//! client wrote further left is never reached. The result is the address the per-IP cap,
//! the logs, [`PeerAddr`](crate::PeerAddr) and the listings use.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use super::ServerShared;
use super::proxy_protocol::{self, ProxyHeader, ReadError};
use crate::config::{ForwardedHeader, IpNet, ServerConfig};
use crate::rejection::Rejection;

/// A server's proxy settings (`trusted_proxies`, `proxy_protocol`, `forwarded_header`).
#[derive(Debug, Clone, Default)]
pub(crate) struct ProxySettings {
    trusted: Vec<IpNet>,
    /// Every connection starts with a PROXY protocol header.
    pub(crate) protocol: bool,
    header: ForwardedHeader,
}

impl ProxySettings {
    pub(crate) fn new(server: &ServerConfig) -> ProxySettings {
        ProxySettings {
            trusted: server.trusted_proxies.clone(),
            protocol: server.proxy_protocol,
            header: server.forwarded_header,
        }
    }

    /// Whether `ip` is a trusted proxy.
    pub(crate) fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(ip))
    }

    /// Whether the client address of a connection from `peer` depends on its request
    /// headers (so the per-IP cap must wait for them).
    pub(crate) fn reads_headers_from(&self, peer: SocketAddr) -> bool {
        self.header != ForwardedHeader::None && self.trusts(peer.ip())
    }

    /// The client address of a request that came from `peer` (the TCP peer, or the address
    /// a PROXY header gave): `peer` itself unless it is a trusted proxy, else the rightmost
    /// address in the forwarded header that is not a trusted proxy. A hop that is not an
    /// address (`unknown`, an obfuscated name, garbage) ends the walk at the last address
    /// known. Without a port in the header the port is 0.
    pub(crate) fn client_addr(&self, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
        if !self.reads_headers_from(peer) {
            return peer;
        }
        let name = match self.header {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => http::header::FORWARDED.as_str(),
            ForwardedHeader::None => return peer,
        };
        // Every field line of the header, in order, forms one list (RFC 9110 5.3).
        let mut hops: Vec<&str> = Vec::new();
        for value in headers.get_all(name) {
            let Ok(text) = value.to_str() else {
                // Not text: keep what the hops to its right said (none: the peer).
                hops.clear();
                hops.push("");
                continue;
            };
            hops.extend(text.split(','));
        }
        let mut client = peer;
        for hop in hops.iter().rev() {
            let parsed = match self.header {
                ForwardedHeader::Forwarded => forwarded_for(hop),
                _ => socket_addr(hop.trim()),
            };
            let Some(addr) = parsed else {
                return client;
            };
            client = addr;
            if !self.trusts(addr.ip()) {
                return client;
            }
        }
        client
    }
}

/// The `for=` address of one `Forwarded` element (`for=192.0.2.1;proto=https`,
/// `For="[2001:db8::1]:4711"`).
fn forwarded_for(element: &str) -> Option<SocketAddr> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        socket_addr(value)
    })
}

/// `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`.
fn socket_addr(text: &str) -> Option<SocketAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(|ip| SocketAddr::new(IpAddr::V6(ip), 0))
}

/// On a `proxy_protocol` listener: the client address from the connection's PROXY header,
/// or `None` when the connection was refused (already answered, counted and logged): a
/// peer outside `trusted_proxies` (403 `untrusted_proxy`), no valid header (400
/// `bad_proxy_header`), or no header within `handshake_timeout` (dropped). The answer is
/// plain HTTP, read by a client that connected directly by mistake.
pub(super) async fn from_proxy_protocol<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &ServerShared,
    stream: &mut S,
    tcp_peer: SocketAddr,
) -> Option<SocketAddr> {
    if !shared.proxy.trusts(tcp_peer.ip()) {
        debug!(server = %shared.name, peer = %tcp_peer, "PROXY protocol from a peer not in trusted_proxies; refused");
        refuse(shared, stream, tcp_peer, Rejection::untrusted_proxy()).await;
        return None;
    }
    let timeout = shared.settings.limits.handshake_timeout;
    match tokio::time::timeout(timeout, proxy_protocol::read_header(stream)).await {
        Ok(Ok(ProxyHeader::Proxied(client))) => Some(client),
        Ok(Ok(ProxyHeader::Local)) => Some(tcp_peer),
        Ok(Err(ReadError::Invalid(e))) => {
            debug!(server = %shared.name, peer = %tcp_peer, error = %e, "refused");
            refuse(shared, stream, tcp_peer, Rejection::bad_proxy_header(&e)).await;
            None
        }
        Ok(Err(ReadError::Io(e))) => {
            debug!(peer = %tcp_peer, error = %e, "connection ended before its PROXY header");
            None
        }
        Err(_) => {
            debug!(peer = %tcp_peer, "no PROXY header within the handshake timeout; dropped");
            shared.sender.counters().rejected("timeout");
            None
        }
    }
}

/// Counts and answers a refusal before the handshake: in plain HTTP on a plain listener (a
/// TLS client would read it as garbage, so it only sees the connection close).
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &ServerShared,
    stream: &mut S,
    tcp_peer: SocketAddr,
    rejection: Rejection,
) {
    let refused = super::accept::Refused::new(shared, rejection, tcp_peer);
    shared.sender.counters().rejected(&refused.reason);
    if shared.tls.is_none() {
        super::upgrade::refuse(stream, refused.response, tcp_peer, "").await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(trusted: &[&str], header: ForwardedHeader) -> ProxySettings {
        ProxySettings {
            trusted: trusted.iter().map(|t| t.parse().expect("net")).collect(),
            protocol: false,
            header,
        }
    }

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        map
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("addr")
    }

    #[test]
    fn rightmost_untrusted_hop_of_x_forwarded_for() {
        let proxies = settings(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let proxy = addr("10.0.0.5:40000");
        let xff = |values: &[&str]| proxies.client_addr(proxy, &headers("x-forwarded-for", values));
        assert_eq!(xff(&["203.0.113.9"]), addr("203.0.113.9:0"));
        // The client wrote 1.1.1.1; the proxy appended the real address.
        assert_eq!(xff(&["1.1.1.1, 203.0.113.9"]), addr("203.0.113.9:0"));
        // Two trusted proxies in a row are skipped.
        assert_eq!(
            xff(&["1.1.1.1, 203.0.113.9, 10.1.1.1"]),
            addr("203.0.113.9:0")
        );
        // Several field lines are one list.
        assert_eq!(
            xff(&["1.1.1.1", "203.0.113.9:5000"]),
            addr("203.0.113.9:5000")
        );
        assert_eq!(xff(&["[2001:db8::1]:80"]), addr("[2001:db8::1]:80"));
        // Garbage to the right of the last trusted hop: the proxy itself.
        assert_eq!(xff(&["203.0.113.9, garbage"]), proxy);
        assert_eq!(xff(&[]), proxy, "no header");
        // All trusted: the leftmost.
        assert_eq!(xff(&["10.9.9.9"]), addr("10.9.9.9:0"));
        // From an untrusted peer, the header is ignored.
        let direct = addr("198.51.100.1:1234");
        assert_eq!(
            proxies.client_addr(direct, &headers("x-forwarded-for", &["1.1.1.1"])),
            direct
        );
    }

    #[test]
    fn only_the_configured_header_is_read() {
        let proxy = addr("127.0.0.1:1");
        let both = {
            let mut map = headers("forwarded", &["for=1.1.1.1"]);
            map.append("x-forwarded-for", "203.0.113.9".parse().expect("value"));
            map
        };
        let xff = settings(&["127.0.0.1"], ForwardedHeader::XForwardedFor);
        assert_eq!(xff.client_addr(proxy, &both), addr("203.0.113.9:0"));
        let fwd = settings(&["127.0.0.1"], ForwardedHeader::Forwarded);
        assert_eq!(fwd.client_addr(proxy, &both), addr("1.1.1.1:0"));
        let none = settings(&["127.0.0.1"], ForwardedHeader::None);
        assert_eq!(none.client_addr(proxy, &both), proxy);
    }

    #[test]
    fn forwarded_elements() {
        let fwd = settings(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        let proxy = addr("10.0.0.1:1");
        let get = |value: &str| fwd.client_addr(proxy, &headers("forwarded", &[value]));
        assert_eq!(
            get("for=192.0.2.60;proto=http;by=203.0.113.43"),
            addr("192.0.2.60:0")
        );
        assert_eq!(
            get("For=\"[2001:db8:cafe::17]:4711\""),
            addr("[2001:db8:cafe::17]:4711")
        );
        assert_eq!(get("for=\"[2001:db8::1]\""), addr("[2001:db8::1]:0"));
        assert_eq!(
            get("for=1.1.1.1, for=192.0.2.60;proto=https"),
            addr("192.0.2.60:0")
        );
        assert_eq!(get("for=1.1.1.1, for=unknown"), proxy);
        assert_eq!(get("for=1.1.1.1, for=_hidden"), proxy);
        assert_eq!(get("proto=https"), proxy);
    }
}
