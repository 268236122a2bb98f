//! Routing: a WebSocket server's paths, each to a handler with its options and middleware.
//!
//! ```
//! use wharf::{Echo, PingPolicy, Route, Router};
//!
//! let router = Router::new()
//!     .route("/echo", Echo)
//!     .route("/rooms/{room}", Route::new(Echo).protocols(["chat.v2", "chat.v1"]))
//!     .route("/raw", Route::new(Echo).ping_policy(PingPolicy::Deliver))
//!     .route("/app", Route::new(Echo).origins(["https://app.example"]));
//! assert_eq!(router.len(), 4);
//! ```

use std::sync::Arc;

use http::HeaderMap;
use tower::{Layer, Service};

use crate::handler::{DynHandler, Handler};
use crate::metrics::RouteCounters;
use crate::middleware::{BoxError, BoxLayer, HandshakeRequest, HandshakeService, box_layer};
use crate::rejection::{HandshakeResponse, Rejection};

/// What happens to pings from the client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PingPolicy {
    /// The server answers every ping with a pong; the handler never sees pings or pongs. Default.
    #[default]
    Auto,
    /// Pings and pongs are handed to `on_message`; the handler answers with
    /// `conn.send(Message::Pong(..))` itself (as the seed's controller does).
    Deliver,
}

/// A handler with its options: subprotocols, allowed origins, ping policy, route middleware.
pub struct Route {
    handler: Arc<dyn DynHandler>,
    protocols: Vec<String>,
    origins: Vec<String>,
    ping: PingPolicy,
    layers: Vec<BoxLayer>,
}

impl Route {
    /// A route to `handler` with default options.
    pub fn new(handler: impl Handler) -> Route {
        Route {
            handler: Arc::new(handler),
            protocols: Vec::new(),
            origins: Vec::new(),
            ping: PingPolicy::Auto,
            layers: Vec::new(),
        }
    }

    pub(crate) fn from_dyn(handler: Arc<dyn DynHandler>) -> Route {
        Route {
            handler,
            protocols: Vec::new(),
            origins: Vec::new(),
            ping: PingPolicy::Auto,
            layers: Vec::new(),
        }
    }

    /// The subprotocols this route speaks, in order of preference. The server picks the first
    /// protocol the client offers that is in this list, and answers with none when there is
    /// no match (it never echoes a protocol it does not speak).
    pub fn protocols<I, S>(mut self, protocols: I) -> Route
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// The browser origins (`scheme://host[:port]`, compared without regard to ASCII case)
    /// allowed to open this route. A handshake whose `Origin` header is not listed is refused
    /// with 403 `origin_forbidden` before any middleware runs: this stops cross-site
    /// WebSocket hijacking, where a page on another site opens a socket that carries the
    /// user's cookies. A handshake without `Origin` is let through: browsers always send it,
    /// so its absence means a non-browser client, which could forge any header anyway.
    /// Default: none listed, which allows every origin.
    pub fn origins<I, S>(mut self, origins: I) -> Route
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the ping policy. Default: [`PingPolicy::Auto`].
    pub fn ping_policy(mut self, policy: PingPolicy) -> Route {
        self.ping = policy;
        self
    }

    /// Adds handshake middleware for this route only; it runs after the server's middleware,
    /// in the order added.
    pub fn layer<L>(mut self, layer: L) -> Route
    where
        L: Layer<HandshakeService> + Send + Sync + 'static,
        L::Service:
            Service<HandshakeRequest, Response = HandshakeResponse> + Clone + Send + Sync + 'static,
        <L::Service as Service<HandshakeRequest>>::Future: Send + 'static,
        <L::Service as Service<HandshakeRequest>>::Error: Into<BoxError>,
    {
        self.layers.push(box_layer(layer));
        self
    }
}

/// Anything a path can be routed to: a [`Handler`] or a [`Route`].
pub trait IntoRoute {
    /// Converts into a route.
    fn into_route(self) -> Route;
}

impl IntoRoute for Route {
    fn into_route(self) -> Route {
        self
    }
}

impl<H: Handler> IntoRoute for H {
    fn into_route(self) -> Route {
        Route::new(self)
    }
}

/// The routes of one WebSocket server, and its server-wide handshake middleware.
#[derive(Default)]
pub struct Router {
    routes: Vec<(String, Route)>,
    layers: Vec<BoxLayer>,
}

impl Router {
    /// An empty router.
    pub fn new() -> Router {
        Router::default()
    }

    /// Routes `path` (static, or with `{param}` segments) to a handler or [`Route`].
    pub fn route(mut self, path: &str, route: impl IntoRoute) -> Router {
        self.routes.push((path.to_owned(), route.into_route()));
        self
    }

    /// Adds handshake middleware for every route of this server; server middleware runs
    /// before route middleware, each in the order added.
    pub fn layer<L>(mut self, layer: L) -> Router
    where
        L: Layer<HandshakeService> + Send + Sync + 'static,
        L::Service:
            Service<HandshakeRequest, Response = HandshakeResponse> + Clone + Send + Sync + 'static,
        <L::Service as Service<HandshakeRequest>>::Future: Send + 'static,
        <L::Service as Service<HandshakeRequest>>::Error: Into<BoxError>,
    {
        self.layers.push(box_layer(layer));
        self
    }

    /// How many routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Merges `other`'s routes and middleware into this router.
    pub fn merge(mut self, other: Router) -> Router {
        self.routes.extend(other.routes);
        self.layers.extend(other.layers);
        self
    }

    /// Builds the matcher and each route's service; `counters` gives each route pattern its
    /// metrics, looked up once here rather than on every connection.
    pub(crate) fn compile(
        self,
        endpoint: HandshakeService,
        counters: impl Fn(&str) -> Arc<RouteCounters>,
    ) -> Result<CompiledRouter, String> {
        let mut matcher = matchit::Router::new();
        let mut routes = Vec::with_capacity(self.routes.len());
        for (index, (path, route)) in self.routes.into_iter().enumerate() {
            matcher
                .insert(path.clone(), index)
                .map_err(|e| format!("route `{path}`: {e}"))?;
            let service = route
                .layers
                .iter()
                .rev()
                .chain(self.layers.iter().rev())
                .fold(endpoint.clone(), |inner, layer| layer(inner));
            routes.push(Arc::new(CompiledRoute {
                counters: counters(&path),
                pattern: path.into(),
                handler: route.handler,
                protocols: route.protocols.into(),
                origins: route.origins.into(),
                ping: route.ping,
                service,
            }));
        }
        Ok(CompiledRouter { matcher, routes })
    }
}

pub(crate) struct CompiledRoute {
    pub(crate) pattern: Arc<str>,
    pub(crate) handler: Arc<dyn DynHandler>,
    pub(crate) protocols: Box<[String]>,
    pub(crate) origins: Box<[String]>,
    pub(crate) ping: PingPolicy,
    pub(crate) service: HandshakeService,
    pub(crate) counters: Arc<RouteCounters>,
}

impl CompiledRoute {
    /// Refuses a handshake whose `Origin` this route does not allow (see [`Route::origins`]).
    pub(crate) fn check_origin(&self, headers: &HeaderMap) -> Result<(), Rejection> {
        if self.origins.is_empty() {
            return Ok(());
        }
        for value in headers.get_all(http::header::ORIGIN) {
            let origin = String::from_utf8_lossy(value.as_bytes());
            if !self.origins.iter().any(|o| o.eq_ignore_ascii_case(&origin)) {
                return Err(Rejection::origin_forbidden(&origin));
            }
        }
        Ok(())
    }

    /// The first protocol the client offers (comma-separated header values) that this route speaks.
    pub(crate) fn pick_protocol<'h>(&self, offered: impl Iterator<Item = &'h str>) -> Option<&str> {
        let offered: Vec<&str> = offered.flat_map(|v| v.split(',')).map(str::trim).collect();
        offered
            .iter()
            .find_map(|o| self.protocols.iter().find(|p| p.as_str() == *o))
            .map(String::as_str)
    }
}

/// A matched path's `(name, value)` parameters.
pub(crate) type PathParams = Vec<(String, String)>;

pub(crate) struct CompiledRouter {
    matcher: matchit::Router<usize>,
    /// Shared with the connections of each route (an accepted handshake holds its route).
    routes: Vec<Arc<CompiledRoute>>,
}

impl CompiledRouter {
    pub(crate) fn find(&self, path: &str) -> Option<(&Arc<CompiledRoute>, PathParams)> {
        let matched = self.matcher.at(path).ok()?;
        let params = matched
            .params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some((&self.routes[*matched.value], params))
    }
}
