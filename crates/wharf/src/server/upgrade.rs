//! From an accepted TCP connection to an upgraded one: the handshake, its limits, routing,
//! validation, the middleware stack, subprotocol choice, and the 101 (or the rejection).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{Extensions, Response, StatusCode, header};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use tracing::{debug, error};
use wharf_proto::DeflateParams;

use super::ServerShared;
use super::peers::Admission;
use crate::conn::OpenRequest;
use crate::handshake::{RequestHead, read_head, validate_upgrade, write_response, write_switching};
use crate::middleware::{HandshakeRequest, HandshakeService, PeerAddr, RouteParams};
use crate::rejection::{HandshakeResponse, Rejection};
use crate::routing::CompiledRoute;

/// The request parts, carried from the innermost service back out to the server.
#[derive(Clone)]
struct OpenParts(Arc<std::sync::Mutex<Option<OpenRequest>>>);

/// The innermost handshake service: accepts, moving the request's extensions (the data
/// middleware attached) into the 101 response.
pub(crate) fn accept_service() -> HandshakeService {
    tower::util::BoxCloneSyncService::new(tower::service_fn(
        |request: HandshakeRequest| async move {
            let (mut parts, ()) = request.into_parts();
            let mut extensions = std::mem::take(&mut parts.extensions);
            extensions.insert(OpenParts(Arc::new(std::sync::Mutex::new(Some(parts)))));
            let mut response = Response::new(String::new());
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            *response.extensions_mut() = extensions;
            Ok(response)
        },
    ))
}

/// A connection slot of the server's `max_connections`, released on drop.
pub(crate) struct Slot(Arc<ServerShared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) struct Accepted<'r> {
    pub(crate) route: &'r CompiledRoute,
    pub(crate) request: OpenRequest,
    pub(crate) data: Extensions,
    pub(crate) params: Vec<(String, String)>,
    pub(crate) protocol: Option<String>,
    /// permessage-deflate, when enabled and offered.
    pub(crate) deflate: Option<DeflateParams>,
    pub(crate) leftover: Vec<u8>,
    pub(crate) slot: Slot,
    /// The client's address (from a trusted proxy, the one it reported).
    pub(crate) peer: SocketAddr,
    /// Its place under `max_connections_per_ip`, held to the end of the connection.
    pub(crate) admission: Admission,
}

/// Runs the handshake. `None` when the connection was refused or dropped (already answered
/// and logged). `admission`: the client's standing under `max_connections_per_ip`, or `None`
/// when a trusted proxy names the client in the request head (decided once it is read).
pub(crate) async fn handshake<'r, S: AsyncRead + AsyncWrite + Unpin>(
    shared: &'r Arc<ServerShared>,
    stream: &mut S,
    peer: SocketAddr,
    admission: Option<Admission>,
) -> Option<Accepted<'r>> {
    let limits = &shared.limits;
    if admission.as_ref().is_some_and(Admission::is_refused) {
        // Answered at once, without waiting for the request: an address over its cap must
        // not hold more sockets for a whole handshake timeout. `refuse` drains what the
        // client sends meanwhile, so it reads the 429 rather than a reset.
        debug!(%peer, "too many connections from this address");
        let response = shared
            .error_handler
            .rejection(Rejection::too_many_connections_from_ip());
        refuse(stream, response, peer, "").await;
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
            let response = shared.error_handler.rejection(rejection);
            shared.sender.counters().rejected(&reason(&response));
            refuse(stream, response, peer, "").await;
            return None;
        }
        Ok(Ok(Ok(head))) => head,
    };

    let path = head.request.uri().path().to_owned();
    let (peer, admission) = match admission {
        Some(admission) => (peer, admission),
        None => {
            let client = shared.proxy.client_addr(peer, head.request.headers());
            let trusted = shared.proxy.trusts(client.ip());
            let admission = shared.peers.admit(&shared.name, client, limits, trusted);
            if admission.is_refused() {
                debug!(peer = %client, proxy = %peer, "too many connections from this address");
                let response = shared
                    .error_handler
                    .rejection(Rejection::too_many_connections_from_ip());
                shared.sender.counters().rejected(&reason(&response));
                refuse(stream, response, client, &path).await;
                return None;
            }
            (client, admission)
        }
    };
    match decide(shared, head, peer, admission).await {
        Ok(accepted) => {
            let mut out = Vec::with_capacity(256);
            let extensions = accepted.0.deflate.map(|params| params.to_header());
            write_switching(
                &mut out,
                &accepted.1,
                accepted.0.protocol.as_deref(),
                extensions.as_deref(),
                &accepted.2,
            );
            if stream.write_all(&out).await.is_err() {
                return None;
            }
            Some(accepted.0)
        }
        Err(response) => {
            shared.sender.counters().rejected(&reason(&response));
            refuse(stream, response, peer, &path).await;
            None
        }
    }
}

type Decision<'r> = Result<(Accepted<'r>, String, http::HeaderMap), HandshakeResponse>;

async fn decide<'r>(
    shared: &'r Arc<ServerShared>,
    head: RequestHead,
    peer: SocketAddr,
    admission: Admission,
) -> Decision<'r> {
    let RequestHead {
        mut request,
        leftover,
    } = head;
    let reject = |rejection: Rejection| shared.error_handler.rejection(rejection);
    let Some((route, params)) = shared.router.find(request.uri().path()) else {
        return Err(reject(Rejection::route_not_found(request.uri().path())));
    };
    let accept = validate_upgrade(&request).map_err(reject)?;
    // Before any middleware: a forbidden origin must not reach authentication (a cookie
    // check would succeed for the hijacking page).
    route.check_origin(request.headers()).map_err(reject)?;
    if *shared.shutdown.borrow() {
        return Err(reject(Rejection::too_many_connections()));
    }
    if shared.open.fetch_add(1, Ordering::AcqRel) >= shared.limits.max_connections {
        shared.open.fetch_sub(1, Ordering::AcqRel);
        return Err(reject(Rejection::too_many_connections()));
    }
    let slot = Slot(shared.clone());
    let extensions = request.extensions_mut();
    extensions.insert(PeerAddr(peer));
    extensions.insert(RouteParams {
        route: route.pattern.clone(),
        params: params.clone(),
    });
    let mut response = match route.service.clone().oneshot(request).await {
        Ok(response) => response,
        Err(error) => {
            error!(%peer, route = %route.pattern, %error, "handshake middleware failed");
            return Err(shared.error_handler.middleware_error(&error));
        }
    };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(response);
    }
    let mut data = std::mem::take(response.extensions_mut());
    let parts = data
        .remove::<OpenParts>()
        .and_then(|p| p.0.lock().ok().and_then(|mut slot| slot.take()));
    let Some(request) = parts else {
        // A middleware answered 101 itself instead of calling the inner service.
        error!(route = %route.pattern, "a middleware answered 101 without passing the request on");
        return Err(reject(Rejection::internal()));
    };
    let offered = request
        .headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let protocol = route.pick_protocol(offered).map(str::to_owned);
    let deflate = shared.compression.enabled.then(|| {
        let offers = request
            .headers
            .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .filter_map(|v| v.to_str().ok());
        DeflateParams::negotiate(offers, &shared.compression.negotiation())
    });
    let headers = std::mem::take(response.headers_mut());
    let accepted = Accepted {
        route,
        request,
        data,
        params,
        protocol,
        deflate: deflate.flatten(),
        leftover,
        slot,
        peer,
        admission,
    };
    Ok((accepted, accept, headers))
}

/// Why a handshake was refused, for the metrics: the `error` of its JSON body, else its status.
pub(super) fn reason(response: &HandshakeResponse) -> String {
    serde_json::from_str::<serde_json::Value>(response.body())
        .ok()
        .and_then(|json| json.get("error")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("status_{}", response.status().as_u16()))
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
