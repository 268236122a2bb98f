//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, off by default).
//!
//! Not part of the API: hidden from the docs and compiled only with the feature, so the
//! private handshake parser stays private. Each function runs the server's own code on
//! arbitrary bytes, the way the accept loop does, and panics only where an invariant of that
//! code is broken (the fuzzer reports the panic as a crash).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::server::ServerShared;
use crate::server::upgrade;
use crate::{Config, Echo, Route, Router, Server};

/// The servers the handshake target talks to, bound once per process: a `mounted` server
/// (no listener) with the default head limits and one with small ones (256 bytes, 4
/// headers, so the 431 paths are reached too), both with permessage-deflate on, a trusted
/// proxy, and routes with path parameters, subprotocols and an origin list.
struct Doors {
    runtime: tokio::runtime::Runtime,
    /// Kept for the process: its shutdown signal is never sent.
    _bound: crate::BoundServer,
    roomy: Arc<ServerShared>,
    tight: Arc<ServerShared>,
}

const CONFIG: &str = r#"
    [[server]]
    name = "roomy"
    kind = "mounted"
    port = 0
    trusted_proxies = ["127.0.0.0/8"]
    [server.compression]
    enabled = true
    [[server]]
    name = "tight"
    kind = "mounted"
    port = 0
    trusted_proxies = ["127.0.0.0/8"]
    [server.limits]
    max_request_head = 256
    max_headers = 4
    [server.compression]
    enabled = true
"#;

fn doors() -> &'static Doors {
    static DOORS: OnceLock<Doors> = OnceLock::new();
    DOORS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime");
        let routes = || {
            Router::new().route("/echo", Echo).route(
                "/chat/{room}",
                Route::new(Echo)
                    .protocols(["chat.v2", "chat.v1"])
                    .origins(["https://app.example"]),
            )
        };
        let config = Config::from_toml_str(CONFIG).expect("the fuzz config loads");
        let bound = runtime
            .block_on(
                Server::builder(config)
                    .websocket("roomy", routes())
                    .websocket("tight", routes())
                    .bind(),
            )
            .expect("mounted servers bind without a port");
        let shared = |name| bound.shared_state(name).expect("a mounted server's state");
        let (roomy, tight) = (shared("roomy"), shared("tight"));
        Doors {
            runtime,
            _bound: bound,
            roomy,
            tight,
        }
    })
}

/// A connection whose client sent `input` and then closed its side: every read is ready,
/// every write is kept.
struct Scripted<'a> {
    input: &'a [u8],
    output: Vec<u8>,
}

impl AsyncRead for Scripted<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = buf.remaining().min(self.input.len());
        let (now, rest) = self.input.split_at(n);
        buf.put_slice(now);
        self.input = rest;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.output.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Runs the raw door's opening handshake (`server/upgrade.rs`: the head read within the
/// limits, then `server/accept.rs`, the one decision both doors share: the per-address cap
/// behind a trusted proxy, routing, RFC 6455, origins, `max_connections`, subprotocol and
/// permessage-deflate) on `data`, as if a client on 127.0.0.1 had sent it and closed.
///
/// The first byte picks the server: even, the default head limits (16 KiB, 64 headers);
/// odd, small ones (256 bytes, 4 headers). The rest is the stream.
///
/// # Panics
/// When the handshake breaks one of its invariants: a response that is not HTTP/1.1 or not
/// terminated, a 101 whose accept key is not the one for the request's key, whose
/// permessage-deflate answer does not read back, or which names a subprotocol the client did
/// not offer; or a connection slot (`max_connections`) still held once the handshake is over.
pub fn handshake(data: &[u8]) {
    let Some((&limits, input)) = data.split_first() else {
        return;
    };
    let doors = doors();
    let shared = if limits % 2 == 0 {
        &doors.roomy
    } else {
        &doors.tight
    };
    let mut stream = Scripted {
        input,
        output: Vec::new(),
    };
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 40000));
    let accepted = doors
        .runtime
        .block_on(upgrade::handshake(shared, &mut stream, peer, None));
    let out = stream.output;
    match accepted {
        Some((accepted, leftover)) => {
            assert!(
                leftover.len() < input.len(),
                "leftover longer than the input"
            );
            assert!(out.starts_with(b"HTTP/1.1 101 "), "accepted without a 101");
            check_switching(input, &out);
            drop(accepted);
        }
        // Dropped before a complete head (the stream ended): nothing was answered.
        None if out.is_empty() => {}
        None => {
            assert!(out.starts_with(b"HTTP/1.1 "), "response is not HTTP/1.1");
            assert!(!out.starts_with(b"HTTP/1.1 101 "), "a refusal answered 101");
        }
    }
    assert!(
        out.is_empty() || out.windows(4).any(|w| w == b"\r\n\r\n"),
        "response head not terminated"
    );
    assert_eq!(
        shared.open.load(Ordering::Acquire),
        0,
        "a connection slot outlived its handshake"
    );
}

/// A 101's headers against the request it answers.
fn check_switching(request: &[u8], response: &[u8]) {
    let mut request_headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut request_headers);
    assert!(
        matches!(parsed.parse(request), Ok(httparse::Status::Complete(_))),
        "accepted a head httparse does not read"
    );
    let mut response_headers = [httparse::EMPTY_HEADER; 16];
    let mut answer = httparse::Response::new(&mut response_headers);
    assert!(
        matches!(answer.parse(response), Ok(httparse::Status::Complete(_))),
        "a 101 that does not parse"
    );
    let request_header = |name: &'static str| {
        parsed
            .headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let response_header = |name: &'static str| {
        answer
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let key = request_header("sec-websocket-key").next();
    let expected = key.map(wharf_proto::accept_key);
    assert_eq!(
        expected.as_deref().map(str::as_bytes),
        response_header("sec-websocket-accept"),
        "wrong accept key"
    );
    if let Some(extension) = response_header("sec-websocket-extensions") {
        let extension = std::str::from_utf8(extension).expect("an ASCII extension header");
        assert!(
            wharf_proto::DeflateParams::from_response(extension).is_some(),
            "the 101's extension does not read back"
        );
    }
    if let Some(protocol) = response_header("sec-websocket-protocol") {
        let offered = request_header("sec-websocket-protocol")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(',').map(str::trim))
            .any(|p| p.as_bytes() == protocol);
        assert!(offered, "a subprotocol the client did not offer");
    }
}

/// Parses `data` as the start of a connection on a `proxy_protocol` listener
/// (`server/proxy_protocol.rs`), the way the reader does: growing the input to what the
/// parser asks for.
///
/// # Panics
/// When the parser asks for fewer bytes than it has or more than its bound, or says a
/// header is longer than its input.
pub fn proxy_header(data: &[u8]) {
    use crate::server::proxy_protocol::{MAX_HEADER, Parsed, parse};
    let mut have = 0;
    loop {
        match parse(&data[..have]) {
            Err(_) => return,
            Ok(Parsed::Complete { len, .. }) => {
                assert!(len <= have, "a header of {len} bytes from {have}");
                return;
            }
            Ok(Parsed::Incomplete { need }) => {
                assert!(
                    need > have && need <= MAX_HEADER,
                    "asked for {need} with {have}"
                );
                if need > data.len() {
                    return;
                }
                have = need;
            }
        }
    }
}
