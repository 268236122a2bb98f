//! The RFC 6455 opening handshake on a raw TCP connection: read and parse the request head
//! within its limits, validate the upgrade, and write the 101 or the rejection. The check
//! of an upgrade request covers both HTTP versions ([`validate_upgrade`]); the HTTP/2 one
//! lives in [`extended_connect`](crate::extended_connect).

use std::io;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Version};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::rejection::{HandshakeResponse, Rejection};

/// A parsed request head and the bytes the client sent after it (its first frames, if it
/// did not wait for the 101).
pub(crate) struct RequestHead {
    pub(crate) request: Request<()>,
    pub(crate) leftover: Vec<u8>,
}

/// Reads one HTTP/1.1 request head. `Ok(Err(rejection))` when the head is malformed or over
/// the limits; `Err` when the connection ended or failed before a complete head.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    max_head: usize,
    max_headers: usize,
) -> io::Result<Result<RequestHead, Rejection>> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024.min(max_head + 1));
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len().min(max_head + 1 - buf.len()).max(1));
        }
        let n = stream.read_buf(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        match parse_head(&buf, max_headers) {
            Parsed::Complete(_, len) if len > max_head => {
                return Ok(Err(Rejection::headers_too_large()));
            }
            Parsed::Complete(request, len) => {
                let leftover = buf.split_off(len);
                return Ok(Ok(RequestHead { request, leftover }));
            }
            Parsed::Partial if buf.len() > max_head => {
                return Ok(Err(Rejection::headers_too_large()));
            }
            Parsed::Partial => {}
            Parsed::Invalid(rejection) => return Ok(Err(rejection)),
        }
        if buf.len() > max_head {
            return Ok(Err(Rejection::headers_too_large()));
        }
    }
}

enum Parsed {
    Complete(Request<()>, usize),
    Partial,
    Invalid(Rejection),
}

fn parse_head(buf: &[u8], max_headers: usize) -> Parsed {
    let mut headers = vec![httparse::EMPTY_HEADER; max_headers];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Invalid(Rejection::headers_too_large());
        }
        Err(e) => {
            return Parsed::Invalid(Rejection::bad_request(format!("malformed request: {e}")));
        }
    };
    match build_request(&parsed) {
        Ok(request) => Parsed::Complete(request, len),
        Err(rejection) => Parsed::Invalid(rejection),
    }
}

fn build_request(parsed: &httparse::Request<'_, '_>) -> Result<Request<()>, Rejection> {
    let bad = |what: &str| Rejection::bad_request(format!("malformed request: {what}"));
    let method =
        Method::from_bytes(parsed.method.unwrap_or("").as_bytes()).map_err(|_| bad("method"))?;
    let uri: http::Uri = parsed
        .path
        .unwrap_or("")
        .parse()
        .map_err(|_| bad("request target"))?;
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    let headers = request.headers_mut();
    headers.reserve(parsed.headers.len());
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad("header name"))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| bad("header value"))?;
        headers.append(name, value);
    }
    Ok(request)
}

/// Whether a comma-separated header contains `token` (case-insensitive), in any of its lines.
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .to_str()
            .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// How a client asked for its WebSocket, and so how an accepted handshake is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Upgrade {
    /// An HTTP/1.1 `Upgrade: websocket` GET (RFC 6455 §4): answered 101 with this
    /// `Sec-WebSocket-Accept` value, then the connection is the WebSocket.
    Http1 {
        /// The `Sec-WebSocket-Accept` value.
        accept_key: String,
    },
    /// An HTTP/2 extended CONNECT with `:protocol websocket` (RFC 8441): answered 200 with
    /// no key, then the stream is the WebSocket and the connection carries others beside it.
    ExtendedConnect,
}

/// Checks the WebSocket handshake request: RFC 6455 §4.2.1 over HTTP/1.1, RFC 8441 over
/// HTTP/2 (see [`extended_connect`](crate::extended_connect)).
pub(crate) fn validate_upgrade(request: &Request<()>) -> Result<Upgrade, Rejection> {
    if crate::extended_connect::is_http2(request) {
        return crate::extended_connect::validate(request).map(|()| Upgrade::ExtendedConnect);
    }
    let headers = request.headers();
    let is_upgrade = has_token(headers, header::UPGRADE, "websocket")
        && has_token(headers, header::CONNECTION, "upgrade");
    if !is_upgrade {
        return Err(Rejection::upgrade_required());
    }
    if request.method() != Method::GET {
        return Err(Rejection::method_not_allowed());
    }
    if request.version() != Version::HTTP_11 {
        return Err(Rejection::bad_request(
            "a WebSocket handshake needs HTTP/1.1",
        ));
    }
    let mut versions = headers.get_all(header::SEC_WEBSOCKET_VERSION).iter();
    match (versions.next(), versions.next()) {
        (Some(v), None) if v.as_bytes() == b"13" => {}
        _ => return Err(Rejection::unsupported_version()),
    }
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    match (keys.next(), keys.next()) {
        (Some(key), None) if wharf_proto::is_valid_key(key.as_bytes()) => Ok(Upgrade::Http1 {
            accept_key: wharf_proto::accept_key(key.as_bytes()),
        }),
        _ => Err(Rejection::invalid_key()),
    }
}

/// Headers wharf writes itself on a 101; a middleware's copies of them are not repeated.
pub(crate) fn is_own_header(name: &HeaderName) -> bool {
    [
        header::UPGRADE,
        header::CONNECTION,
        header::SEC_WEBSOCKET_ACCEPT,
        header::SEC_WEBSOCKET_PROTOCOL,
        header::SEC_WEBSOCKET_EXTENSIONS,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
    ]
    .contains(name)
}

/// Appends the 101 response, with the headers a middleware added to its response.
pub(crate) fn write_switching(
    out: &mut Vec<u8>,
    accept: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
    extra: &HeaderMap,
) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept.as_bytes());
    if let Some(protocol) = protocol {
        out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
        out.extend_from_slice(protocol.as_bytes());
    }
    if let Some(extensions) = extensions {
        out.extend_from_slice(b"\r\nSec-WebSocket-Extensions: ");
        out.extend_from_slice(extensions.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    write_headers(out, extra.iter().filter(|(name, _)| !is_own_header(name)));
    out.extend_from_slice(b"\r\n");
}

fn write_headers<'a>(
    out: &mut Vec<u8>,
    headers: impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)>,
) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends a complete non-101 response; the connection is closed after it.
pub(crate) fn write_response(out: &mut Vec<u8>, response: &HandshakeResponse) {
    let status = response.status();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    let skip = [
        header::CONTENT_LENGTH,
        header::CONNECTION,
        header::TRANSFER_ENCODING,
    ];
    write_headers(
        out,
        response.headers().iter().filter(|(n, _)| !skip.contains(n)),
    );
    out.extend_from_slice(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            response.body().len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(response.body().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Parsed {
        parse_head(text.as_bytes(), 64)
    }

    fn upgrade(extra: &str) -> Request<()> {
        let text = format!("GET /x HTTP/1.1\r\nHost: a\r\n{extra}\r\n");
        match head(&text) {
            Parsed::Complete(request, _) => request,
            _ => panic!("complete head expected"),
        }
    }

    #[test]
    fn rfc_example_is_accepted() {
        let request = upgrade(
            "Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        );
        assert_eq!(
            validate_upgrade(&request).ok(),
            Some(Upgrade::Http1 {
                accept_key: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_owned()
            })
        );
    }

    #[test]
    fn bad_version_and_key_are_refused() {
        let base = "Upgrade: websocket\r\nConnection: upgrade\r\n";
        let v8 = upgrade(&format!(
            "{base}Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        ));
        assert_eq!(
            validate_upgrade(&v8).err().map(|r| r.status().as_u16()),
            Some(426)
        );
        let short = upgrade(&format!(
            "{base}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: abc\r\n"
        ));
        assert_eq!(
            validate_upgrade(&short).err().map(|r| r.status().as_u16()),
            Some(400)
        );
        let plain = upgrade("");
        assert_eq!(
            validate_upgrade(&plain).err().map(|r| r.error()),
            Some("upgrade_required")
        );
    }

    #[test]
    fn partial_and_garbage_heads() {
        assert!(matches!(head("GET / HTTP/1.1\r\nHost"), Parsed::Partial));
        assert!(matches!(
            head("\x01\x02 nonsense\r\n\r\n"),
            Parsed::Invalid(_)
        ));
    }
}
