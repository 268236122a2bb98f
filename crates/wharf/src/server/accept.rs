//! The one handshake decision: from a request head and the client's address to an accepted
//! upgrade or a refusal. Both doors feed it, the raw listener (a head parsed with httparse)
//! and the tower service (a head hyper parsed, HTTP/1.1 or an HTTP/2 extended CONNECT);
//! neither decides anything beside it.
//!
//! In order: the per-address cap (when the address comes from the head), the route, the
//! RFC 6455 checks, the route's origins (before any middleware, so a hijacking page never
//! reaches authentication), shutdown and `max_connections`, then the server's and route's
//! middleware, then the subprotocol and permessage-deflate.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::{Extensions, HeaderMap, Request, Response, StatusCode, header};
use tower::ServiceExt;
use tracing::error;
use wharf_proto::DeflateParams;

use super::ServerShared;
use super::peers::Admission;
use crate::conn::OpenRequest;
use crate::handshake::{Upgrade, validate_upgrade};
use crate::middleware::{HandshakeRequest, HandshakeService, PeerAddr, RouteParams};
use crate::rejection::{HandshakeResponse, Rejection, refusal_reason};
use crate::routing::CompiledRoute;

/// The request parts, carried from the innermost service back out in the 101 response's
/// extensions: a plain value moved along, not a shared cell.
#[derive(Clone)]
struct OpenParts(OpenRequest);

/// The innermost handshake service: accepts, moving the request's extensions (the data
/// middleware attached) and its parts into the 101 response.
pub(crate) fn accept_service() -> HandshakeService {
    tower::util::BoxCloneSyncService::new(tower::service_fn(
        |request: HandshakeRequest| async move {
            let (mut parts, ()) = request.into_parts();
            let mut extensions = std::mem::take(&mut parts.extensions);
            extensions.insert(OpenParts(parts));
            let mut response = Response::new(String::new());
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            *response.extensions_mut() = extensions;
            Ok(response)
        },
    ))
}

/// What of the handshake's extensions the connection keeps: the values the middleware
/// inserted. The address and route parameters wharf put there for the middleware are the
/// connection's own fields (`Conn::peer`, which `Conn::get::<PeerAddr>` also finds, and
/// `Conn::param`); when nothing else is left the map is dropped, so an idle connection
/// without middleware data holds no map (two boxed values and a hash table).
fn connection_data(mut data: Extensions) -> Extensions {
    data.remove::<PeerAddr>();
    data.remove::<RouteParams>();
    if data.is_empty() {
        Extensions::new()
    } else {
        data
    }
}

/// A connection slot of the server's `max_connections`, released on drop.
pub(crate) struct Slot(Arc<ServerShared>);

impl Slot {
    /// The slot of a connection a predecessor handed over: counted even over the limit (it
    /// was admitted there), so that new connections see the server as full as it is.
    pub(crate) fn moved(shared: &Arc<ServerShared>) -> Slot {
        shared.open.fetch_add(1, Ordering::AcqRel);
        Slot(shared.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An accepted handshake: what the 101 (or, over HTTP/2, the 200) says and what the
/// connection starts with.
pub(crate) struct Accepted {
    pub(crate) route: Arc<CompiledRoute>,
    pub(crate) request: OpenRequest,
    /// The request's extensions after the middleware: the connection's data.
    pub(crate) data: Extensions,
    pub(crate) params: Vec<(String, String)>,
    pub(crate) protocol: Option<String>,
    /// permessage-deflate, when enabled and offered.
    pub(crate) deflate: Option<DeflateParams>,
    /// How the client asked: an HTTP/1.1 upgrade (answered 101 with its
    /// `Sec-WebSocket-Accept` value) or an HTTP/2 extended CONNECT (answered 200).
    pub(crate) upgrade: Upgrade,
    /// Headers the middleware put on its 101, to send beside wharf's own.
    pub(crate) headers: HeaderMap,
    pub(crate) slot: Slot,
    /// The client's address (from a trusted proxy, the one it reported).
    pub(crate) peer: SocketAddr,
    /// Its place under `max_connections_per_ip`, held to the end of the connection.
    pub(crate) admission: Admission,
}

/// A refused handshake: the response to send, and why, as data for the metrics.
pub(crate) struct Refused {
    /// The rejection's kind (`route_not_found`, ...), or `status_<code>` for a response a
    /// middleware built itself.
    pub(crate) reason: Cow<'static, str>,
    pub(crate) response: HandshakeResponse,
    /// The client's address as far as it is known.
    pub(crate) peer: SocketAddr,
}

impl Refused {
    /// A refusal wharf decided: answered through the server's error handler, counted under
    /// the rejection's own kind whatever response the handler makes of it.
    pub(crate) fn new(shared: &ServerShared, rejection: Rejection, peer: SocketAddr) -> Refused {
        Refused {
            reason: Cow::Borrowed(rejection.error()),
            response: shared.settings.error_handler.rejection(rejection),
            peer,
        }
    }
}

/// Decides a handshake. `admission`: the client's standing under `max_connections_per_ip`
/// when the transport already knows it, or `None` when a trusted proxy names the client in
/// the head (decided here, once the head is read).
pub(crate) async fn accept(
    shared: &Arc<ServerShared>,
    mut request: Request<()>,
    peer: SocketAddr,
    admission: Option<Admission>,
) -> Result<Accepted, Refused> {
    let refuse = |rejection: Rejection, peer: SocketAddr| {
        let refused = Refused::new(shared, rejection, peer);
        shared.sender.counters().rejected(&refused.reason);
        refused
    };
    let (peer, admission) = match admission {
        Some(admission) => (peer, admission),
        None => {
            let client = shared.proxy.client_addr(peer, request.headers());
            let trusted = shared.proxy.trusts(client.ip());
            let admission =
                shared
                    .peers
                    .admit(&shared.name, client, &shared.settings.limits, trusted);
            (client, admission)
        }
    };
    if admission.is_refused() {
        return Err(refuse(Rejection::too_many_connections_from_ip(), peer));
    }
    let Some((route, params)) = shared.router.find(request.uri().path()) else {
        return Err(refuse(
            Rejection::route_not_found(request.uri().path()),
            peer,
        ));
    };
    let upgrade = validate_upgrade(&request).map_err(|r| refuse(r, peer))?;
    // Before any middleware: a forbidden origin must not reach authentication (a cookie
    // check would succeed for the hijacking page).
    route
        .check_origin(request.headers())
        .map_err(|r| refuse(r, peer))?;
    if *shared.shutdown.borrow() {
        return Err(refuse(Rejection::too_many_connections(), peer));
    }
    if shared.open.fetch_add(1, Ordering::AcqRel) >= shared.settings.limits.max_connections {
        shared.open.fetch_sub(1, Ordering::AcqRel);
        return Err(refuse(Rejection::too_many_connections(), peer));
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
            let refused = Refused {
                reason: Cow::Borrowed(Rejection::internal().error()),
                response: shared.settings.error_handler.middleware_error(&error),
                peer,
            };
            shared.sender.counters().rejected(&refused.reason);
            return Err(refused);
        }
    };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let refused = Refused {
            reason: refusal_reason(&response),
            response,
            peer,
        };
        shared.sender.counters().rejected(&refused.reason);
        return Err(refused);
    }
    let mut data = std::mem::take(response.extensions_mut());
    let Some(OpenParts(request)) = data.remove::<OpenParts>() else {
        // A middleware answered 101 itself instead of calling the inner service.
        error!(route = %route.pattern, "a middleware answered 101 without passing the request on");
        return Err(refuse(Rejection::internal(), peer));
    };
    let data = connection_data(data);
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
    Ok(Accepted {
        route: route.clone(),
        request,
        data,
        params,
        protocol,
        deflate: deflate.flatten(),
        upgrade,
        headers: std::mem::take(response.headers_mut()),
        slot,
        peer,
        admission,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_keeps_only_what_the_middleware_inserted() {
        let mut handshake = Extensions::new();
        handshake.insert(PeerAddr(SocketAddr::from(([127, 0, 0, 1], 1))));
        handshake.insert(RouteParams {
            route: "/chat/{room}".into(),
            params: vec![("room".into(), "lobby".into())],
        });
        assert!(connection_data(handshake.clone()).is_empty());
        handshake.insert(String::from("claims"));
        let kept = connection_data(handshake);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept.get::<String>().map(String::as_str), Some("claims"));
    }
}
