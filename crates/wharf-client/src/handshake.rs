//! The client side of the opening handshake (RFC 6455 section 4.1).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use wharf_proto::DeflateParams;

use crate::url::Target;

/// The permessage-deflate offer: any window from the server, ours as it likes.
const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";
use crate::{ClientConfig, ClientError};

/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest refusal body kept.
const MAX_BODY: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

/// The outcome of a successful handshake.
#[derive(Debug)]
pub(crate) struct Handshake {
    pub(crate) protocol: Option<String>,
    /// permessage-deflate, when offered and accepted.
    pub(crate) deflate: Option<DeflateParams>,
    /// Bytes read after the response head (the first frames).
    pub(crate) leftover: Vec<u8>,
}

/// Upgrades a connected stream (TCP or TLS).
pub(crate) async fn open<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    target: &Target,
    config: &ClientConfig,
) -> Result<Handshake, ClientError> {
    let key = wharf_proto::generate_key(crate::random());
    let request = request(target, config, &key)?;
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;

    let mut buf = Vec::with_capacity(1024);
    let (status, head_len, (protocol, deflate), content_length) = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(ClientError::Protocol(
                "connection closed during the handshake".into(),
            ));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = response.code.unwrap_or(0);
                let parsed = check_response(status, response.headers, &key, config)?;
                break (status, len, parsed.0, parsed.1);
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(ClientError::Protocol("response head too large".into()));
            }
            Err(e) => return Err(ClientError::Protocol(format!("bad HTTP response: {e}"))),
        }
    };
    let leftover = buf.split_off(head_len);
    if status != 101 {
        let body = read_body(stream, leftover, content_length).await;
        return Err(ClientError::Refused { status, body });
    }
    Ok(Handshake {
        protocol,
        deflate,
        leftover,
    })
}

fn request(target: &Target, config: &ClientConfig, key: &str) -> Result<String, ClientError> {
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
        target.resource, target.authority
    );
    if !config.protocols.is_empty() {
        req.push_str("Sec-WebSocket-Protocol: ");
        req.push_str(&config.protocols.join(", "));
        req.push_str("\r\n");
    }
    if config.compression {
        req.push_str("Sec-WebSocket-Extensions: ");
        req.push_str(DEFLATE_OFFER);
        req.push_str("\r\n");
    }
    for (name, value) in &config.headers {
        let name_ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        let value_ok = !value.bytes().any(|b| b == b'\r' || b == b'\n');
        if !name_ok || !value_ok {
            return Err(ClientError::InvalidUrl(format!("invalid header {name:?}")));
        }
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    Ok(req)
}

/// The negotiated subprotocol and permessage-deflate parameters.
type Negotiated = (Option<String>, Option<DeflateParams>);

/// Validates a response head; returns what was negotiated and the content length.
fn check_response(
    status: u16,
    headers: &[httparse::Header<'_>],
    key: &str,
    config: &ClientConfig,
) -> Result<(Negotiated, Option<usize>), ClientError> {
    let get = |name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let content_length = get("content-length").and_then(|v| v.parse().ok());
    if status != 101 {
        return Ok(((None, None), content_length));
    }
    let bad = |why: &str| {
        Err(ClientError::Protocol(format!(
            "bad handshake response: {why}"
        )))
    };
    if !get("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return bad("missing Upgrade: websocket");
    }
    if !get("connection").is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    }) {
        return bad("missing Connection: Upgrade");
    }
    if get("sec-websocket-accept") != Some(wharf_proto::accept_key(key.as_bytes()).as_str()) {
        return bad("wrong Sec-WebSocket-Accept");
    }
    let deflate = match get("sec-websocket-extensions") {
        None | Some("") => None,
        Some(value) if config.compression => match DeflateParams::from_response(value) {
            Some(params) => Some(params),
            None => {
                return bad(&format!(
                    "the server answered {value:?} to a permessage-deflate offer"
                ));
            }
        },
        Some(_) => return bad("the server chose an extension that was not offered"),
    };
    let protocol = match get("sec-websocket-protocol") {
        None | Some("") => None,
        Some(p) if config.protocols.iter().any(|o| o == p) => Some(p.to_owned()),
        Some(p) => return bad(&format!("the server chose protocol {p:?}, not offered")),
    };
    Ok(((protocol, deflate), content_length))
}

/// Reads a refusal body: `Content-Length` bytes, or until EOF; bounded in size and time.
async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut body: Vec<u8>,
    len: Option<usize>,
) -> String {
    let want = len.unwrap_or(MAX_BODY).min(MAX_BODY);
    let read = async {
        while body.len() < want {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), read).await;
    body.truncate(want);
    String::from_utf8_lossy(&body).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_has_the_upgrade_headers() -> Result<(), ClientError> {
        let target = Target::parse("ws://h:1/p?q")?;
        let config = ClientConfig::default()
            .with_protocol("a")
            .with_protocol("b")
            .with_header("X-Test", "1");
        let req = request(&target, &config, "KEY")?;
        assert!(req.starts_with("GET /p?q HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(req.contains("Sec-WebSocket-Key: KEY\r\n"));
        assert!(req.contains("Sec-WebSocket-Protocol: a, b\r\n"));
        assert!(req.ends_with("X-Test: 1\r\n\r\n"));
        let bad = ClientConfig::default().with_header("X", "a\r\nEvil: 1");
        assert!(request(&target, &bad, "KEY").is_err());
        Ok(())
    }

    #[test]
    fn response_validation() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let config = ClientConfig::default().with_protocol("chat");
        let ok = [
            httparse::Header {
                name: "Upgrade",
                value: b"websocket",
            },
            httparse::Header {
                name: "Connection",
                value: b"keep-alive, Upgrade",
            },
            httparse::Header {
                name: "Sec-WebSocket-Accept",
                value: b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
            },
            httparse::Header {
                name: "Sec-WebSocket-Protocol",
                value: b"chat",
            },
        ];
        let got = check_response(101, &ok, key, &config);
        assert!(matches!(got, Ok(((Some(ref p), None), None)) if p == "chat"));
        let mut wrong = ok;
        wrong[2].value = b"nope";
        assert!(check_response(101, &wrong, key, &config).is_err());
        let mut other = ok;
        other[3].value = b"other";
        assert!(check_response(101, &other, key, &config).is_err());
    }
}
