//! The mounted door: a wharf server's WebSocket routes as a tower [`Service`], for an HTTP
//! server that is not wharf's own (an axum application, or hyper with tower).
//!
//! The request head hyper parsed goes to the same decision the raw listener uses
//! (`accept`); a refusal is answered as a normal HTTP response through the server's
//! [`ErrorHandler`](crate::ErrorHandler); on a 101 (HTTP/1.1) or a 200 (an HTTP/2 extended
//! CONNECT, RFC 8441), hyper hands over the connection or the stream
//! (`hyper::upgrade::on`) and the same driver runs it, with the same registry,
//! [`Sender`](crate::Sender), limits, heartbeat, compression and metrics.

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower::Service;
use tracing::debug;

use super::ServerShared;
use super::accept::{Accepted, accept};
use super::peers::Admission;
use crate::handler::BoxFuture;
use crate::handshake::{Upgrade, is_own_header};
use crate::middleware::PeerAddr;

/// The WebSocket routes of one wharf server as a tower [`Service`], to mount in an axum
/// application with `route_service`, `nest_service` or `fallback_service`. Get it from
/// [`BoundServer::service`](crate::BoundServer::service).
///
/// Each request runs the same handshake as on wharf's own listener: routing, RFC 6455
/// checks, origins, limits, the server's and route's middleware; a refusal is answered
/// through the server's [`ErrorHandler`](crate::ErrorHandler) with its JSON body. An
/// accepted handshake is answered 101 and the connection is driven by wharf, under the
/// server's limits, heartbeat and compression, registered with the same
/// [`Sender`](crate::Sender) as every other connection of the process.
///
/// The client address is axum's [`ConnectInfo<SocketAddr>`] when the application is served
/// with `into_make_service_with_connect_info::<SocketAddr>()` (then
/// `max_connections_per_ip` and `trusted_proxies` apply); without it the address is unknown
/// (`0.0.0.0:0`) and not capped. The handshake timeout is the HTTP server's business on
/// this door.
///
/// Over HTTP/2 a handshake is an extended CONNECT (RFC 8441: `:protocol websocket`,
/// answered 200, no `Sec-WebSocket-Key`/`Accept`), and the WebSocket is that one h2 stream:
/// many share a TCP connection. It needs an HTTP server that speaks h2 and advertises
/// `SETTINGS_ENABLE_CONNECT_PROTOCOL`: `axum::serve` does both (wharf turns on axum's
/// `http2` feature); with hyper directly, hyper-util's auto builder with
/// `.http2().enable_connect_protocol()`.
///
/// ```no_run
/// use wharf::{Config, Echo, Router, Server, ServerConfig};
///
/// # async fn run() -> Result<(), wharf::Error> {
/// let wharf = Server::builder(Config::empty().with_server(ServerConfig::mounted("ws")))
///     .websocket("ws", Router::new().route("/echo", Echo))
///     .bind()
///     .await?;
/// let app: axum::Router = axum::Router::new()
///     .route("/", axum::routing::get(|| async { "hello" }))
///     .route_service("/echo", wharf.service("ws")?);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// tokio::spawn(wharf.serve(wharf::shutdown_signal()));
/// axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct WebSocketService {
    shared: Arc<ServerShared>,
}

impl fmt::Debug for WebSocketService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketService")
            .field("server", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl WebSocketService {
    pub(super) fn new(shared: Arc<ServerShared>) -> WebSocketService {
        WebSocketService { shared }
    }
}

impl<B> Service<Request<B>> for WebSocketService
where
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let shared = self.shared.clone();
        // Taken before the request is taken apart: hyper's handle to the connection, which
        // resolves once the 101 has been written.
        let on_upgrade = hyper::upgrade::on(&mut request);
        let (parts, _body) = request.into_parts();
        let head = Request::from_parts(parts, ());
        let http1 = head.version() < Version::HTTP_2;
        Box::pin(async move {
            let known = head
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0)
                .or_else(|| head.extensions().get::<PeerAddr>().map(|peer| peer.0));
            let (peer, admission) = match known {
                // Decided from the head: a trusted proxy may name the client there.
                Some(peer) => (peer, None),
                // An unknown address cannot be counted against anyone's cap.
                None => (
                    SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                    Some(Admission::Exempt),
                ),
            };
            let path = head.uri().path().to_owned();
            match accept(&shared, head, peer, admission).await {
                Ok(accepted) => {
                    let response = accepted_response(&accepted);
                    let guard = shared.tasks.enter();
                    tokio::spawn(async move {
                        match on_upgrade.await {
                            Ok(upgraded) => {
                                let stream = Upgraded(Mutex::new(TokioIo::new(upgraded)));
                                // Its driver runs in a task of its own; this one ends.
                                super::open_connection(shared, stream, accepted, Vec::new(), guard)
                                    .spawn();
                            }
                            Err(error) => {
                                debug!(%error, path, "the HTTP server did not hand over the upgraded connection");
                                drop(guard);
                            }
                        }
                    });
                    Ok(response)
                }
                Err(refused) => {
                    debug!(peer = %refused.peer, path, status = refused.response.status().as_u16(), reason = %refused.reason, "handshake refused");
                    let mut response = refused.response;
                    if http1 {
                        // As on the raw door, the connection ends after a refusal: a client
                        // that was refused starts over (and a proxy's `Connection: Upgrade` on
                        // a 426 must not leave the connection half-upgraded). Over HTTP/2 only
                        // the stream ends; the connection carries other requests.
                        response
                            .headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    Ok(response.map(Body::from))
                }
            }
        })
    }
}

/// The answer to an accepted handshake, with the headers a middleware added: over HTTP/1.1
/// a 101 with `Sec-WebSocket-Accept`; over HTTP/2 a 200 without it, and without the
/// connection-level `Upgrade` and `Connection` (RFC 8441 §5). An empty body: hyper then
/// hands the stream over rather than sending one.
fn accepted_response(accepted: &Accepted) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    for (name, value) in accepted.headers.iter() {
        if !is_own_header(name) {
            headers.append(name, value.clone());
        }
    }
    let accept_key = match &accepted.upgrade {
        Upgrade::Http1 { accept_key } => {
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            Some(accept_key.clone())
        }
        Upgrade::ExtendedConnect => None,
    };
    let headers = response.headers_mut();
    let values = [
        (header::SEC_WEBSOCKET_ACCEPT, accept_key),
        (header::SEC_WEBSOCKET_PROTOCOL, accepted.protocol.clone()),
        (
            header::SEC_WEBSOCKET_EXTENSIONS,
            accepted.deflate.as_ref().map(|params| params.to_header()),
        ),
    ];
    for (name, value) in values {
        // Each value is wharf's own or one the client sent: always a valid header value.
        if let Some(Ok(value)) = value.map(HeaderValue::try_from) {
            headers.insert(name, value);
        }
    }
    response
}

/// hyper's upgraded connection (HTTP/1.1) or stream (HTTP/2) as the driver's stream. Over
/// h2, hyper copies each write into a channel to a task of its own that sends DATA frames
/// within the stream's flow-control window. It is `Send` but not `Sync`, and the
/// driver's future holds `&self` across awaits, so it needs a `Sync` stream. The mutex is
/// never locked: every use goes through `get_mut`, which the exclusive `Pin<&mut Self>`
/// allows, so it costs no synchronisation (the `SyncWrapper` idea).
pub(crate) struct Upgraded(Mutex<TokioIo<hyper::upgrade::Upgraded>>);

impl crate::handover::Transport for Upgraded {
    /// hyper owns the socket (and may have buffered bytes): it stays in this process.
    const MOVABLE: bool = false;
    fn into_fd(self) -> Option<std::os::fd::OwnedFd> {
        None
    }
}

impl crate::socket_io::SocketIo for Upgraded {
    fn erase(launch: crate::launch::Launch<Self>) -> crate::launch::AnyLaunch {
        crate::launch::AnyLaunch::Mounted(launch)
    }
}

impl Upgraded {
    fn io(self: Pin<&mut Self>) -> Pin<&mut TokioIo<hyper::upgrade::Upgraded>> {
        Pin::new(
            self.get_mut()
                .0
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.io().poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.io().poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.io().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        // Not reachable through `get_mut` from `&self`; answering false is always correct.
        false
    }
}
