//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, off by default).
//!
//! Not part of the API: hidden from the docs and compiled only with the feature, so the
//! private handshake parser stays private. Each function runs the server's own code on
//! arbitrary bytes, the way the accept loop does, and panics only where an invariant of that
//! code is broken (the fuzzer reports the panic as a crash).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use http::HeaderMap;

use crate::handshake::{Upgrade, read_head, validate_upgrade, write_response, write_switching};

/// Runs the opening handshake on `data` as if a client had sent it: reads and parses the
/// request head within the limits, validates the upgrade, negotiates permessage-deflate and
/// writes the 101 or the rejection, as `server/upgrade.rs` does (routing, subprotocols and
/// middleware aside).
///
/// The first byte picks the limits: even, the defaults (16 KiB head, 64 headers); odd, small
/// ones (256 bytes, 4 headers), so the 431 paths are reached too. The rest is the stream.
///
/// # Panics
/// When the parser breaks one of its invariants: a 101 with a wrong accept key, a response
/// that is not HTTP/1.1, more leftover bytes than were sent, or an HTTP/1 head taken for
/// an HTTP/2 one.
pub fn handshake(data: &[u8]) {
    let Some((&limits, stream)) = data.split_first() else {
        return;
    };
    let (max_head, max_headers) = if limits % 2 == 0 {
        (16 << 10, 64)
    } else {
        (256, 4)
    };
    let mut reader = stream;
    // A byte slice is always ready, so the future completes on its first poll without a
    // runtime; the no-op waker is never woken.
    let mut read = pin!(read_head(&mut reader, max_head, max_headers));
    let Poll::Ready(result) = read.as_mut().poll(&mut Context::from_waker(Waker::noop())) else {
        panic!("reading a head from a byte slice returned Pending");
    };
    let mut out = Vec::new();
    match result {
        // The stream ended before a complete head: the connection is dropped.
        Err(_) => return,
        Ok(Err(rejection)) => write_response(&mut out, &rejection.into_response()),
        Ok(Ok(head)) => {
            assert!(
                head.leftover.len() < stream.len(),
                "leftover longer than the input"
            );
            match validate_upgrade(&head.request) {
                Ok(Upgrade::ExtendedConnect) => {
                    panic!("an HTTP/1 head was taken for an HTTP/2 extended CONNECT")
                }
                Ok(Upgrade::Http1 { accept_key: accept }) => {
                    let key = head
                        .request
                        .headers()
                        .get(http::header::SEC_WEBSOCKET_KEY)
                        .map(|k| wharf_proto::accept_key(k.as_bytes()));
                    assert_eq!(key.as_deref(), Some(accept.as_str()), "wrong accept key");
                    // The permessage-deflate offer, negotiated as a server with compression
                    // on would (the default parameters).
                    let offers = head
                        .request
                        .headers()
                        .get_all(http::header::SEC_WEBSOCKET_EXTENSIONS)
                        .iter()
                        .filter_map(|v| v.to_str().ok());
                    let deflate = wharf_proto::DeflateParams::negotiate(
                        offers,
                        &wharf_proto::DeflateConfig::default(),
                    )
                    .map(|params| {
                        // What the server answers, a client reads back as the same agreement.
                        let header = params.to_header();
                        let read = wharf_proto::DeflateParams::from_response(&header);
                        assert_eq!(
                            read,
                            Some(params),
                            "the 101's extension does not round-trip"
                        );
                        header
                    });
                    write_switching(
                        &mut out,
                        &accept,
                        None,
                        deflate.as_deref(),
                        &HeaderMap::new(),
                    );
                }
                Err(rejection) => write_response(&mut out, &rejection.into_response()),
            }
        }
    }
    assert!(out.starts_with(b"HTTP/1.1 "), "response is not HTTP/1.1");
    assert!(
        out.windows(4).any(|w| w == b"\r\n\r\n"),
        "response head not terminated"
    );
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
