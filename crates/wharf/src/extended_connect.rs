//! The WebSocket handshake over HTTP/2 (RFC 8441): an extended CONNECT request with the
//! `:protocol` pseudo-header `websocket`, answered 200 instead of 101, without
//! `Sec-WebSocket-Key` or `Sec-WebSocket-Accept`. After the 200 the h2 stream carries
//! ordinary RFC 6455 frames, so everything past this check is shared with HTTP/1.1.
//!
//! Only the mounted door sees such a request: hyper parses HTTP/2 and keeps `:protocol` as
//! the request extension [`hyper::ext::Protocol`], and an HTTP server only receives it after
//! advertising `SETTINGS_ENABLE_CONNECT_PROTOCOL` (which `axum::serve` does when axum's
//! `http2` feature is on, as wharf's dependency turns it on).

use http::{Method, Request, Version, header};

use crate::rejection::Rejection;

/// The `:protocol` value of a WebSocket (RFC 8441 §4, the registered upgrade token).
const WEBSOCKET: &str = "websocket";

/// Whether `request` came over HTTP/2 (or later), where a WebSocket handshake is an extended
/// CONNECT rather than an `Upgrade: websocket` GET.
pub(crate) fn is_http2(request: &Request<()>) -> bool {
    request.version() >= Version::HTTP_2
}

/// Checks an HTTP/2 WebSocket handshake (RFC 8441 §4 and §5): method `CONNECT`, `:protocol`
/// `websocket`, `Sec-WebSocket-Version: 13`. A `Sec-WebSocket-Key` is not used and ignored
/// if present. The refusals are the HTTP/1.1 ones where the meaning is the same (426 for a
/// request that is not a WebSocket handshake at all, 426 `unsupported_version`), and a 400
/// `bad_request` naming the problem for a CONNECT that is malformed as one.
pub(crate) fn validate(request: &Request<()>) -> Result<(), Rejection> {
    if request.method() != Method::CONNECT {
        // A GET (or any other request) over h2 to a WebSocket route: not a handshake.
        return Err(Rejection::upgrade_required());
    }
    match request.extensions().get::<hyper::ext::Protocol>() {
        Some(protocol) if protocol.as_str().eq_ignore_ascii_case(WEBSOCKET) => {}
        Some(protocol) => {
            return Err(Rejection::bad_request(format!(
                "an HTTP/2 WebSocket handshake needs :protocol websocket, not {:?}",
                protocol.as_str()
            )));
        }
        None => {
            return Err(Rejection::bad_request(
                "an HTTP/2 WebSocket handshake is an extended CONNECT with :protocol websocket (RFC 8441)",
            ));
        }
    }
    let mut versions = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_VERSION)
        .iter();
    match (versions.next(), versions.next()) {
        (Some(v), None) if v.as_bytes() == b"13" => Ok(()),
        _ => Err(Rejection::unsupported_version()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(protocol: Option<&'static str>, version: Option<&str>) -> Request<()> {
        let mut request = Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri("https://example.com/chat");
        if let Some(version) = version {
            request = request.header(header::SEC_WEBSOCKET_VERSION, version);
        }
        let mut request = request.body(()).expect("a valid request");
        if let Some(protocol) = protocol {
            request
                .extensions_mut()
                .insert(hyper::ext::Protocol::from_static(protocol));
        }
        request
    }

    #[test]
    fn rfc_8441_request_is_accepted() {
        let request = connect(Some("websocket"), Some("13"));
        assert!(is_http2(&request));
        assert!(validate(&request).is_ok());
    }

    #[test]
    fn malformed_requests_are_refused_with_their_kind() {
        let refused = |request: Request<()>| validate(&request).err().map(|r| r.error());
        assert_eq!(
            refused(connect(Some("webtransport"), Some("13"))),
            Some("bad_request")
        );
        assert_eq!(refused(connect(None, Some("13"))), Some("bad_request"));
        assert_eq!(
            refused(connect(Some("websocket"), None)),
            Some("unsupported_version")
        );
        assert_eq!(
            refused(connect(Some("websocket"), Some("8"))),
            Some("unsupported_version")
        );
        let mut get = connect(Some("websocket"), Some("13"));
        *get.method_mut() = Method::GET;
        assert_eq!(refused(get), Some("upgrade_required"));
    }
}
