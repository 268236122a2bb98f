//! The raw door: from an accepted TCP (or TLS) connection to an upgraded one. It reads the
//! request head off the stream within its limits, hands it to [`accept`] (the one decision
//! both doors share) and writes the 101 or the refusal itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::debug;

use super::ServerShared;
use super::accept::{Accepted, Refused, accept};
use super::peers::Admission;
use crate::handshake::{Upgrade, read_head, write_response, write_switching};
use crate::rejection::{HandshakeResponse, Rejection};

/// Runs the handshake on a raw connection: reads the head within the limits, lets
/// [`accept`] decide, and writes the 101 or the refusal. `None` when the connection was
/// refused or dropped (already answered and logged); else the accepted handshake and the
/// bytes the client sent after its head. `admission`: the client's standing under
/// `max_connections_per_ip`, or `None` when a trusted proxy names the client in the request
/// head (decided once it is read).
pub(crate) async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Arc<ServerShared>,
    stream: &mut S,
    peer: SocketAddr,
    admission: Option<Admission>,
) -> Option<(Accepted, Vec<u8>)> {
    let limits = &shared.settings.limits;
    if admission.as_ref().is_some_and(Admission::is_refused) {
        // Answered at once, without waiting for the request: an address over its cap must
        // not hold more sockets for a whole handshake timeout. `refuse` drains what the
        // client sends meanwhile, so it reads the 429 rather than a reset.
        debug!(%peer, "too many connections from this address");
        let refused = Refused::new(shared, Rejection::too_many_connections_from_ip(), peer);
        shared.sender.counters().rejected(&refused.reason);
        refuse(stream, refused.response, peer, "").await;
        return None;
    }
    let read = read_head(stream, limits.max_request_head, limits.max_headers);
    let head = match tokio::time::timeout(limits.handshake_timeout, read).await {
        Err(_) => {
            debug!(%peer, "handshake timed out; dropping the connection");
            shared.sender.counters().rejected("timeout");
            return None;
        }
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "connection ended during the handshake");
            return None;
        }
        Ok(Ok(Err(rejection))) => {
            let refused = Refused::new(shared, rejection, peer);
            shared.sender.counters().rejected(&refused.reason);
            refuse(stream, refused.response, peer, "").await;
            return None;
        }
        Ok(Ok(Ok(head))) => head,
    };
    let path = head.request.uri().path().to_owned();
    match accept(shared, head.request, peer, admission).await {
        Ok(accepted) => {
            let Upgrade::Http1 { accept_key } = &accepted.upgrade else {
                // httparse reads HTTP/1.x only, which is never taken for an extended CONNECT.
                let rejection = Rejection::bad_request("HTTP/2 is not spoken on this port");
                refuse(stream, rejection.into_response(), peer, &path).await;
                return None;
            };
            let mut out = Vec::with_capacity(256);
            let extensions = accepted.deflate.map(|params| params.to_header());
            write_switching(
                &mut out,
                accept_key,
                accepted.protocol.as_deref(),
                extensions.as_deref(),
                &accepted.headers,
            );
            if stream.write_all(&out).await.is_err() {
                return None;
            }
            Some((accepted, head.leftover))
        }
        Err(refused) => {
            refuse(stream, refused.response, refused.peer, &path).await;
            None
        }
    }
}

/// Sends a refusal and closes. The read side is drained briefly after the write side is
/// shut, so the client reads the response instead of a TCP reset.
pub(super) async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    response: HandshakeResponse,
    peer: SocketAddr,
    path: &str,
) {
    debug!(%peer, path, status = response.status().as_u16(), "handshake refused");
    let mut out = Vec::with_capacity(256 + response.body().len());
    write_response(&mut out, &response);
    if stream.write_all(&out).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 1024];
    let drain = async {
        let mut total = 0usize;
        while let Ok(n) = stream.read(&mut sink).await {
            total += n;
            if n == 0 || total > 64 * 1024 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
}
