//! Parsing `ws://` and `wss://` URLs into what the connection and the handshake need.

use crate::ClientError;

/// Where to connect and what to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Host to resolve, without IPv6 brackets.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The `Host` header value.
    pub(crate) authority: String,
    /// Path and query, at least `/`.
    pub(crate) resource: String,
    /// `wss://`: TLS over the TCP connection.
    pub(crate) tls: bool,
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Target, ClientError> {
        let bad = |why: &str| ClientError::InvalidUrl(format!("{url}: {why}"));
        let uri: http::Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
        let (default_port, tls) = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("ws") => (80, false),
            Some(s) if s.eq_ignore_ascii_case("wss") => (443, true),
            Some(_) => return Err(bad("the scheme must be ws:// or wss://")),
            None => return Err(bad("missing ws:// or wss:// scheme")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        if url.contains('#') {
            return Err(bad("fragments are not allowed"));
        }
        let port = uri.port_u16().unwrap_or(default_port);
        let authority = if port == default_port {
            host.to_owned()
        } else {
            format!("{host}:{port}")
        };
        let resource = uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("/");
        let resource = if resource.starts_with('/') {
            resource.to_owned()
        } else {
            format!("/{resource}")
        };
        Ok(Target {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            authority,
            resource,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ws_urls() -> Result<(), ClientError> {
        let t = Target::parse("ws://127.0.0.1:9502/echo?x=1")?;
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.port, 9502);
        assert_eq!(t.authority, "127.0.0.1:9502");
        assert_eq!(t.resource, "/echo?x=1");
        assert!(!t.tls);
        let t = Target::parse("wss://example.com/s")?;
        assert_eq!(
            (t.port, t.tls, t.authority.as_str()),
            (443, true, "example.com")
        );
        let t = Target::parse("WSS://example.com:8443")?;
        assert_eq!((t.port, t.authority.as_str()), (8443, "example.com:8443"));
        let t = Target::parse("ws://example.com")?;
        assert_eq!((t.port, t.resource.as_str()), (80, "/"));
        assert_eq!(t.authority, "example.com");
        let t = Target::parse("ws://[::1]:8080/a")?;
        assert_eq!(
            (t.host.as_str(), t.authority.as_str()),
            ("::1", "[::1]:8080")
        );
        Ok(())
    }

    #[test]
    fn rejects_bad_urls() {
        for url in ["http://x/", "https://x/", "x/y", "ws://", "ws://x/#f", ""] {
            assert!(
                matches!(Target::parse(url), Err(ClientError::InvalidUrl(_))),
                "{url}"
            );
        }
    }
}
