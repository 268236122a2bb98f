//! Handshake middleware: tower layers that run before the upgrade.
//!
//! A handshake is a tower [`Service`] from [`HandshakeRequest`] to [`HandshakeResponse`]. The
//! innermost service accepts the upgrade (status 101); a middleware can answer with any other
//! response instead (a rejection), insert values into the request's extensions (they become
//! the connection's data, read with [`Conn::get`](crate::Conn::get)), or pass the request on.
//! Because it is plain tower, ready middleware (timeouts, concurrency limits, tracing) plugs in.
//!
//! ```
//! use wharf::{middleware, Rejection, Router, Echo};
//! use http::StatusCode;
//!
//! #[derive(Clone)]
//! struct Tenant(String);
//!
//! let router = Router::new()
//!     .route("/echo", Echo)
//!     .layer(middleware::from_fn(|mut req: wharf::HandshakeRequest| async move {
//!         let tenant = req.headers().get("x-tenant").and_then(|v| v.to_str().ok()).map(str::to_owned);
//!         match tenant {
//!             Some(t) => { req.extensions_mut().insert(Tenant(t)); Ok(req) }
//!             None => Err(Rejection::new(StatusCode::BAD_REQUEST, "no_tenant", "x-tenant is required")),
//!         }
//!     }));
//! ```

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

use crate::handler::BoxFuture;
use crate::rejection::HandshakeResponse;

/// The request a handshake middleware sees: the HTTP request head, no body. Its extensions
/// carry [`PeerAddr`] and [`RouteParams`]; values a middleware inserts become connection data
/// ([`Conn::get`](crate::Conn::get)). The two wharf put there are the connection's own fields:
/// [`Conn::peer`](crate::Conn::peer) (also `conn.get::<PeerAddr>()`) and
/// [`Conn::param`](crate::Conn::param).
pub type HandshakeRequest = http::Request<()>;

/// A boxed error from a middleware; the server's [`ErrorHandler`](crate::ErrorHandler) turns
/// it into a response.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client's address, in every handshake request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// The matched route pattern and its path parameters, in every handshake request's extensions.
#[derive(Debug, Clone)]
pub struct RouteParams {
    /// The route pattern, such as `/rooms/{room}`.
    pub route: Arc<str>,
    /// `(name, value)` pairs.
    pub params: Vec<(String, String)>,
}

pub(crate) type HandshakeService =
    BoxCloneSyncService<HandshakeRequest, HandshakeResponse, BoxError>;

/// A layer kept type-erased until the router is built.
pub(crate) type BoxLayer = Arc<dyn Fn(HandshakeService) -> HandshakeService + Send + Sync>;

pub(crate) fn box_layer<L>(layer: L) -> BoxLayer
where
    L: Layer<HandshakeService> + Send + Sync + 'static,
    L::Service:
        Service<HandshakeRequest, Response = HandshakeResponse> + Clone + Send + Sync + 'static,
    <L::Service as Service<HandshakeRequest>>::Future: Send + 'static,
    <L::Service as Service<HandshakeRequest>>::Error: Into<BoxError>,
{
    Arc::new(move |inner| BoxCloneSyncService::new(layer.layer(inner).map_err(Into::into)))
}

/// A middleware from an async function that returns the request (to pass it on, maybe with
/// extensions added) or a response (to refuse the handshake). See the [module docs](self).
pub fn from_fn<F, Fut, R>(f: F) -> FromFnLayer<F>
where
    F: Fn(HandshakeRequest) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<HandshakeRequest, R>> + Send + 'static,
    R: Into<HandshakeResponse> + Send + 'static,
{
    FromFnLayer { f }
}

/// The layer made by [`from_fn`].
#[derive(Clone)]
pub struct FromFnLayer<F> {
    f: F,
}

impl<F: Clone, S> Layer<S> for FromFnLayer<F> {
    type Service = FromFn<F, S>;

    fn layer(&self, inner: S) -> Self::Service {
        FromFn {
            f: self.f.clone(),
            inner,
        }
    }
}

/// The service made by [`from_fn`].
#[derive(Clone)]
pub struct FromFn<F, S> {
    f: F,
    inner: S,
}

impl<F, Fut, R, S> Service<HandshakeRequest> for FromFn<F, S>
where
    F: Fn(HandshakeRequest) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<HandshakeRequest, R>> + Send + 'static,
    R: Into<HandshakeResponse> + Send + 'static,
    S: Service<HandshakeRequest, Response = HandshakeResponse> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
    type Response = HandshakeResponse;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<HandshakeResponse, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The inner service's readiness is awaited by `oneshot` in `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: HandshakeRequest) -> Self::Future {
        let f = self.f.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            match f(request).await {
                Ok(request) => inner.oneshot(request).await.map_err(Into::into),
                Err(response) => Ok(response.into()),
            }
        })
    }
}
