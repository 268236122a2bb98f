//! Servers: binding the configured listeners, accepting connections, the HTTP server, and
//! graceful shutdown.
//!
//! A server's WebSocket routes have two doors, both feeding one handshake decision
//! (`accept.rs`) and one way to open a connection (`open_connection`, then `launch.rs`):
//! the raw listener (`upgrade.rs`, the head read with httparse) and the tower service
//! ([`WebSocketService`], `service.rs`, the head read by hyper), which an axum app mounts and
//! an `http` server uses for WebSocket routes on its own port. The second door also takes
//! WebSockets over HTTP/2 (RFC 8441 extended CONNECT, `extended_connect.rs`).
//!
//! ```no_run
//! use wharf::{Config, Echo, Router, Server};
//!
//! # async fn run() -> Result<(), wharf::Error> {
//! let server = Server::builder(Config::default())
//!     .websocket("ws", Router::new().route("/chat", Echo))
//!     .bind()
//!     .await?;
//! println!("ws on {:?}", server.local_addr("ws"));
//! server.serve(wharf::shutdown_signal()).await
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsFd as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::serve::ListenerExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::cluster::{Backplane, Cluster};
use crate::compression::SendCompression;
use crate::config::{Compression, Config, ServerConfig, ServerKind};
use crate::conn::UserId;
use crate::conn::{Conn, ConnShared};
use crate::driver::{Driver, DriverSettings, Ended, log_closed};
use crate::error_handler::{DefaultErrorHandler, ErrorHandler};
use crate::handler::{DynHandler, Echo, Handler};
use crate::handover::{Arrivals, HandoverError, Inherited, Mover, Transport, Upgrader};
use crate::launch::Launch;
use crate::routing::{CompiledRouter, Route, Router};
use crate::socket_io::SocketIo;
use crate::{Error, Sender};

mod accept;
mod client_addr;
mod http_server;
mod peers;
mod phase;
pub(crate) mod proxy_protocol;
mod resume;
mod service;
mod tls;
pub(crate) mod upgrade;

pub(crate) use phase::{Phase, StopPhase};
pub(crate) use service::Upgraded;
pub use service::WebSocketService;

/// The entry point: build a [`ServerBuilder`] from a [`Config`].
#[derive(Debug, Clone, Copy)]
pub struct Server;

impl Server {
    /// Starts building the servers `config` declares.
    pub fn builder(config: Config) -> ServerBuilder {
        let sender = Sender::new(
            config.node_id,
            config.rooms.presence_events,
            config.rooms.history.clone(),
        );
        ServerBuilder {
            config,
            websocket: Vec::new(),
            http: Vec::new(),
            named: HashMap::from([("echo".to_owned(), Arc::new(Echo) as Arc<dyn DynHandler>)]),
            error_handlers: HashMap::new(),
            backplane: None,
            sender,
            inherited: Vec::new(),
            takeover: false,
        }
    }
}

/// Why [`BoundServer::serve_until`] stops serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stop {
    /// A shutdown without a successor (SIGTERM): connections close as `[drain]` says.
    Shutdown,
    /// A successor has taken over the listening sockets ([`crate::handover`]): this process
    /// stops accepting and closes its connections with 1012 and `[handover] reason`, spread
    /// over `[drain] spread`.
    HandedOver,
}

/// Registers routes, handlers and error handlers per named server, then binds.
pub struct ServerBuilder {
    config: Config,
    websocket: Vec<(String, Router)>,
    http: Vec<(String, axum::Router)>,
    named: HashMap<String, Arc<dyn DynHandler>>,
    error_handlers: HashMap<String, Arc<dyn ErrorHandler>>,
    backplane: Option<Arc<dyn Backplane>>,
    sender: Sender,
    /// Listening sockets handed over by a predecessor, by server name.
    inherited: Vec<(String, std::net::TcpListener)>,
    /// Whether this process continues a predecessor's node id.
    takeover: bool,
}

impl ServerBuilder {
    /// Joins a cluster through `backplane` (the engine for `cluster.backplane`, such as
    /// `wharf_cluster::connect(url)`): every [`Sender`] operation then reaches every node.
    /// [`bind`](ServerBuilder::bind) connects to it and fails when it is unreachable, unless
    /// `cluster.allow_local_only` is set.
    pub fn backplane(mut self, backplane: impl Backplane) -> Self {
        self.backplane = Some(Arc::new(backplane));
        self
    }

    /// Keeps the history of `[rooms.history]` rooms in `store` (such as the Redis or NATS
    /// store of `wharf_cluster::history_store`). Without it one node keeps history in memory
    /// ([`MemoryHistory`](crate::history::MemoryHistory)); a cluster must give one, since
    /// every node has to share the same positions ([`bind`](ServerBuilder::bind) says so).
    ///
    /// ```
    /// let builder = wharf::Server::builder(wharf::Config::empty())
    ///     .history_store(wharf::history::MemoryHistory::new());
    /// # let _ = builder;
    /// ```
    pub fn history_store(self, store: impl crate::history::HistoryStore) -> Self {
        self.sender.history_state().set_store(Arc::new(store));
        self
    }

    /// Sets how a history room's publication reaches its members: by default the message
    /// as published; an application that wants members to see positions wraps it (the app
    /// sends `{"room","position","text"}`). Called once per publication and node, not per
    /// member.
    ///
    /// ```
    /// let builder = wharf::Server::builder(wharf::Config::empty())
    ///     .history_envelope(|room, publication| {
    ///         wharf::Message::text(format!("{room} {} {:?}", publication.position, publication.message))
    ///     });
    /// # let _ = builder;
    /// ```
    pub fn history_envelope(
        self,
        envelope: impl Fn(&str, &crate::history::Publication) -> crate::Message + Send + Sync + 'static,
    ) -> Self {
        self.sender.history_state().set_envelope(Arc::new(envelope));
        self
    }

    /// Adds WebSocket routes to the server called `name`: a `websocket` server (on its own
    /// listener), an `http` server (on the same port as its HTTP routes) or a `mounted` one
    /// (served by the application's HTTP server through [`BoundServer::service`]).
    pub fn websocket(mut self, name: &str, router: Router) -> Self {
        self.websocket.push((name.to_owned(), router));
        self
    }

    /// Adds axum routes to the `http` server called `name`, beside the built-in `/health`.
    pub fn http(mut self, name: &str, router: axum::Router) -> Self {
        self.http.push((name.to_owned(), router));
        self
    }

    /// Names a handler so config files can mount it (`route = [{ path = "/x", handler = "name" }]`).
    /// `echo` is built in.
    pub fn handler(mut self, name: &str, handler: impl Handler) -> Self {
        self.named.insert(name.to_owned(), Arc::new(handler));
        self
    }

    /// Sets the error handler of the server called `name`.
    pub fn error_handler(mut self, name: &str, handler: impl ErrorHandler) -> Self {
        self.error_handlers
            .insert(name.to_owned(), Arc::new(handler));
        self
    }

    /// Continues a predecessor ([`crate::handover`]): every server whose name and address
    /// match a socket in `inherited` serves on it instead of binding (so there is no moment
    /// when the port is closed), the cluster node id and the connection sequence carry on.
    /// A server the predecessor did not have is bound as usual; a socket no server takes is
    /// closed.
    pub fn inherit(mut self, inherited: &mut Inherited) -> Self {
        self.inherited.append(&mut inherited.tcp);
        self.config.node_id = inherited.node;
        self.takeover = true;
        let registry = self.sender.registry();
        registry.set_node(inherited.node);
        registry.set_next_seq(inherited.next_seq);
        self
    }

    /// The sender for every connection of this process; usable before binding (to hand to
    /// HTTP handlers and background tasks).
    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }

    /// The configuration being built.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Binds every configured server. Fails on a bad setup or a port that cannot be bound,
    /// naming the server and the address.
    pub async fn bind(mut self) -> Result<BoundServer, Error> {
        self.config.validate()?;
        let history = self.sender.history_state();
        if self.config.cluster.backplane.is_some() && history.enabled() && !history.has_store() {
            return Err(Error::Setup(
                "[rooms.history] with a cluster backplane needs a shared store: give one to                  ServerBuilder::history_store (such as wharf_cluster::history_store)"
                    .into(),
            ));
        }
        match (&self.backplane, &self.config.cluster.backplane) {
            (Some(backplane), _) => {
                let cluster = Cluster::start(
                    backplane.clone(),
                    &self.config.cluster,
                    self.config.node_id,
                    self.takeover,
                    self.sender.clone(),
                )
                .await?;
                self.sender.set_cluster(cluster);
            }
            (None, Some(url)) => {
                return Err(Error::Setup(format!(
                    "cluster.backplane is `{url}` but no backplane engine was given to \
                     ServerBuilder::backplane"
                )));
            }
            (None, None) => {}
        }
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (accept_tx, _) = watch::channel(false);
        let stop = Arc::new(StopPhase::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let mover = Arc::new(Mover::default());
        let tasks = Arc::new(TaskCounter::default());
        let started = Instant::now();
        for (name, _) in &self.websocket {
            self.expect_kind(
                name,
                &[ServerKind::Websocket, ServerKind::Http, ServerKind::Mounted],
            )?;
        }
        for (name, _) in &self.http {
            self.expect_kind(name, &[ServerKind::Http])?;
        }
        let mut listeners = Vec::new();
        let mut services = Vec::new();
        let servers = self.config.servers.clone();
        for server in &servers {
            let carries_websocket = server.kind != ServerKind::Http
                || !server.routes.is_empty()
                || self.websocket.iter().any(|(name, _)| *name == server.name);
            let shared = if carries_websocket {
                let shared = Arc::new(ServerShared {
                    tls: match (&server.tls, server.kind) {
                        (Some(config), ServerKind::Websocket) => {
                            Some(tls::acceptor(&server.name, config, tls::ALPN_HTTP1)?)
                        }
                        _ => None,
                    },
                    name: server.name.as_str().into(),
                    settings: Arc::new(DriverSettings {
                        limits: server.limits.clone(),
                        heartbeat: server.heartbeat.clone(),
                        error_handler: self.error_handler_for(&server.name),
                        drain: self.config.drain.clone(),
                        handover_reason: self.config.handover.reason.clone(),
                        stop: stop.clone(),
                        stopping: stopping.clone(),
                    }),
                    compression: server.compression.clone(),
                    sender: self.sender.clone(),
                    router: self.take_router(server)?,
                    open: AtomicUsize::new(0),
                    peers: Arc::default(),
                    proxy: client_addr::ProxySettings::new(server),
                    tasks: tasks.clone(),
                    shutdown: shutdown_rx.clone(),
                    mover: mover.clone(),
                    handshaking: AtomicUsize::new(0),
                });
                services.push((server.name.clone(), shared.clone()));
                Some(shared)
            } else {
                None
            };
            if server.kind == ServerKind::Mounted {
                continue;
            }
            let listener = self.listener(server).await?;
            let local = listener.local_addr()?;
            let kind = match (server.kind, shared) {
                (ServerKind::Http, websocket) => {
                    let routes = self.take_http(&server.name);
                    let sender = self.sender.clone();
                    let tls = match &server.tls {
                        Some(config) => Some((
                            tls::acceptor(&server.name, config, tls::ALPN_H2_HTTP1)?,
                            server.limits.handshake_timeout,
                        )),
                        None => None,
                    };
                    let websocket = websocket.map(WebSocketService::new);
                    Listener::Http(http_server::router(routes, websocket, sender, started), tls)
                }
                (_, Some(shared)) => Listener::Websocket(shared),
                (_, None) => unreachable!("every websocket server has its shared state"),
            };
            listeners.push((server.name.clone(), local, listener, kind));
        }
        if !self.inherited.is_empty() {
            let names: Vec<&str> = self.inherited.iter().map(|(n, _)| n.as_str()).collect();
            info!(servers = ?names, "closing the predecessor's sockets no server takes");
        }
        let mut handed = Vec::new();
        for (name, _, listener, _) in &listeners {
            handed.push((name.clone(), listener.as_fd().try_clone_to_owned()?));
        }
        let upgrader = Upgrader::new(handed, self.sender.clone(), self.config.handover.timeout);
        Ok(BoundServer {
            listeners,
            services,
            upgrader,
            stop,
            stopping,
            drain_timeout: self.config.drain_timeout,
            sender: self.sender,
            shutdown_tx,
            accept_tx,
            tasks,
        })
    }

    /// The predecessor's socket for `server` when there is one at its address, else a
    /// fresh bind.
    async fn listener(&mut self, server: &ServerConfig) -> Result<TcpListener, Error> {
        let addr = format!("{}:{}", server.host, server.port);
        let bind_error = |source| Error::Bind {
            server: server.name.clone(),
            addr: addr.clone(),
            source,
        };
        let matching = self.inherited.iter().position(|(name, listener)| {
            *name == server.name
                && listener
                    .local_addr()
                    .is_ok_and(|local| same_address(server, local))
        });
        if let Some(at) = matching {
            let (_, listener) = self.inherited.remove(at);
            listener.set_nonblocking(true).map_err(bind_error)?;
            let listener = TcpListener::from_std(listener).map_err(bind_error)?;
            info!(server = %server.name, addr = %listener.local_addr()?, "serving on the predecessor's socket");
            return Ok(listener);
        }
        TcpListener::bind(&addr).await.map_err(bind_error)
    }

    fn expect_kind(&self, name: &str, kinds: &[ServerKind]) -> Result<(), Error> {
        match self.config.server(name) {
            Some(server) if kinds.contains(&server.kind) => Ok(()),
            Some(server) => Err(Error::Setup(format!(
                "server `{name}` is a {:?} server, which cannot carry these routes",
                server.kind
            ))),
            None => Err(Error::Setup(format!(
                "no server called `{name}` in the config"
            ))),
        }
    }

    fn error_handler_for(&self, name: &str) -> Arc<dyn ErrorHandler> {
        self.error_handlers
            .get(name)
            .cloned()
            .unwrap_or_else(|| Arc::new(DefaultErrorHandler))
    }

    fn take_router(&mut self, server: &ServerConfig) -> Result<CompiledRouter, Error> {
        let mut router = Router::new();
        for route in &server.routes {
            let handler = self.named.get(&route.handler).cloned().ok_or_else(|| {
                Error::Setup(format!(
                    "server `{}` route `{}`: no handler called `{}`",
                    server.name, route.path, route.handler
                ))
            })?;
            let mounted = Route::from_dyn(handler)
                .protocols(route.protocols.clone())
                .origins(route.origins.clone());
            router = router.route(&route.path, mounted);
        }
        let (mine, others) = std::mem::take(&mut self.websocket)
            .into_iter()
            .partition(|(name, _)| *name == server.name);
        self.websocket = others;
        for (_, extra) in mine {
            router = router.merge(extra);
        }
        let metrics = self.sender.clone();
        router
            .compile(accept::accept_service(), |pattern| {
                metrics.counters().route(&server.name, pattern)
            })
            .map_err(|e| Error::Setup(format!("server `{}`: {e}", server.name)))
    }

    fn take_http(&mut self, name: &str) -> axum::Router {
        let (mine, others) = std::mem::take(&mut self.http)
            .into_iter()
            .partition::<Vec<_>, _>(|(n, _)| n == name);
        self.http = others;
        mine.into_iter()
            .fold(axum::Router::new(), |all, (_, router)| all.merge(router))
    }
}

/// Whether a socket bound at `local` serves `server`'s `host` and `port` (port 0: any).
fn same_address(server: &ServerConfig, local: SocketAddr) -> bool {
    let port = server.port == 0 || server.port == local.port();
    let host = (server.host.parse::<std::net::IpAddr>().ok()).is_none_or(|ip| ip == local.ip());
    port && host
}

#[derive(Clone)]
enum Listener {
    Websocket(Arc<ServerShared>),
    Http(axum::Router, Option<(TlsAcceptor, Duration)>),
}

/// Servers bound to their ports, ready to [`serve`](BoundServer::serve).
pub struct BoundServer {
    listeners: Vec<(String, SocketAddr, TcpListener, Listener)>,
    /// The state of every server that carries WebSocket routes, for [`BoundServer::service`].
    services: Vec<(String, Arc<ServerShared>)>,
    upgrader: Upgrader,
    /// Where serving is in stopping, read by every connection's driver when told to stop.
    stop: Arc<StopPhase>,
    drain_timeout: Duration,
    sender: Sender,
    /// Tells the handshakes in progress to refuse.
    shutdown_tx: watch::Sender<bool>,
    /// Set when the connections are told to close (or park, after a handover).
    stopping: Arc<AtomicBool>,
    /// Tells the listeners to stop accepting.
    accept_tx: watch::Sender<bool>,
    tasks: Arc<TaskCounter>,
}

impl BoundServer {
    /// The address the server called `name` listens on (useful with port 0).
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, ..)| n == name)
            .map(|(_, addr, ..)| *addr)
    }

    /// The sender for every connection of this process.
    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }

    /// The WebSocket routes of the server called `name` as a tower service, to mount in an
    /// application's own HTTP server (see [`WebSocketService`]). Its connections share
    /// everything with the server's other connections: the registry, the [`Sender`], the
    /// limits (`max_connections` counts both doors), the metrics, and the shutdown of
    /// [`serve`](BoundServer::serve), which must be running for them to drain. A `mounted`
    /// server has no listener of its own; a `websocket` or `http` one keeps its port too.
    ///
    /// Fails when no server of that name carries WebSocket routes.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), wharf::Error> {
    /// use wharf::{Config, Echo, Router, Server, ServerConfig};
    /// let wharf = Server::builder(Config::empty().with_server(ServerConfig::mounted("ws")))
    ///     .websocket("ws", Router::new().route("/echo", Echo))
    ///     .bind()
    ///     .await?;
    /// let app: axum::Router = axum::Router::new().route_service("/echo", wharf.service("ws")?);
    /// # let _ = app;
    /// # Ok(())
    /// # }
    /// ```
    pub fn service(&self, name: &str) -> Result<WebSocketService, Error> {
        self.services
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, shared)| WebSocketService::new(shared.clone()))
            .ok_or_else(|| {
                Error::Setup(format!(
                    "no server called `{name}` carries WebSocket routes"
                ))
            })
    }

    /// Takes over the open connections a predecessor handed over (see
    /// [`Inherited::confirm`]): registers them all (same ids, users and rooms), tells the
    /// predecessor, and once it lets go of them drives each on from where it stopped, with
    /// no `on_open`. Call it before [`serve_until`](BoundServer::serve_until). Returns how
    /// many were resumed.
    ///
    /// On an error the predecessor keeps the connections (it kills this process, which must
    /// exit without serving).
    pub async fn resume(&self, arrivals: Arrivals) -> Result<usize, HandoverError> {
        let Arrivals(conns, history, release) = arrivals;
        resume::restore_history(&self.services, history);
        let ready = resume::prepare(&self.services, conns);
        if let Some(release) = release {
            release.wait(ready.len()).await?;
        }
        let resumed = resume::start_moved(&self.services, ready);
        info!(resumed, "resumed the predecessor's open connections");
        Ok(resumed)
    }

    /// Hands this process's listening sockets to a successor process on request (see
    /// [`crate::handover`]). Take it before [`serve_until`](BoundServer::serve_until) and
    /// stop with [`Stop::HandedOver`] once [`Upgrader::handed_over`] completes.
    pub fn upgrader(&self) -> Upgrader {
        self.upgrader.clone()
    }

    /// The state `accept` decides with, for the fuzz targets (`wharf::fuzzing`).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn shared_state(&self, name: &str) -> Option<Arc<ServerShared>> {
        self.services
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, shared)| shared.clone())
    }

    /// Serves until `shutdown` completes, then stops accepting, closes every connection (with
    /// 1001, or as `[drain]` says: spread over a window, with its code and reason), runs every
    /// `on_close`, and returns once all are done or the drain timeout passed.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
        self.serve_until(async {
            shutdown.await;
            Stop::Shutdown
        })
        .await
    }

    /// Serves until `stop` completes, then stops as [`serve`](BoundServer::serve) does; with
    /// [`Stop::HandedOver`] the connections close with 1012 and `[handover] reason` (over
    /// `[drain] spread`), and a cluster node leaves its presence to the successor.
    ///
    /// It also carries out the handovers of its [`upgrader`](BoundServer::upgrader): once a
    /// successor is healthy it stops accepting, parks the connections that can move and
    /// hands them over; once the successor has taken them it closes the others with 1012 and
    /// returns. If the successor fails before that, it takes the connections back, accepts
    /// again and serves on.
    pub async fn serve_until(
        mut self,
        stop: impl Future<Output = Stop> + Send,
    ) -> Result<(), Error> {
        let mut stop = std::pin::pin!(stop);
        let mut sockets: Vec<TcpListener> = Vec::new();
        let mut kinds = Vec::new();
        for (name, addr, listener, kind) in std::mem::take(&mut self.listeners) {
            info!(server = %name, %addr, "listening");
            sockets.push(listener);
            kinds.push((name, kind));
        }
        let (why, servers) = loop {
            let servers = self.start_servers(&kinds, sockets);
            let go = tokio::select! {
                why = &mut stop => break (why, servers),
                () = self.upgrader.going() => servers,
            };
            match self.hand_over(go).await {
                Ok(()) => break (Stop::HandedOver, Vec::new()),
                Err(conns) => {
                    self.take_back(conns);
                    sockets = self.reopen(&kinds)?;
                }
            }
        };
        // A successor told `Go` whose connections this process will not send.
        self.upgrader.cancel();
        let phase = match why {
            Stop::HandedOver => Phase::HandedOver,
            Stop::Shutdown => Phase::Shutdown,
        };
        // Set before the drivers hear of the stop: they read it to pick their close.
        self.stop.set(phase);
        if why == Stop::HandedOver {
            info!(
                open = self.sender.count(),
                "handed over: closing this process's remaining connections with 1012"
            );
            if let Some(cluster) = self.sender.cluster() {
                cluster.hand_over();
            }
        } else {
            info!(open = self.sender.count(), "shutting down");
        }
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        self.accept_tx.send_replace(true);
        self.shutdown_tx.send_replace(true);
        announce_stop(&self.stopping, &self.services, &self.sender);
        let drained = tokio::time::timeout_at(deadline, async {
            for server in servers {
                let _ = server.await;
            }
            self.tasks.wait_idle().await;
        })
        .await;
        match drained {
            Ok(()) => info!("shutdown complete"),
            Err(_) => warn!(
                open = self.sender.count(),
                "drain timeout passed; abandoning the connections still open"
            ),
        }
        if let Some(cluster) = self.sender.cluster() {
            cluster.stop(self.sender.node()).await;
        }
        Ok(())
    }

    /// Accepts on `sockets` (in the order of `kinds`): one task per server.
    fn start_servers(
        &self,
        kinds: &[(String, Listener)],
        sockets: Vec<TcpListener>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut servers = Vec::new();
        for ((_, kind), listener) in kinds.iter().zip(sockets) {
            let stop = self.accept_tx.subscribe();
            let task = match kind.clone() {
                Listener::Websocket(shared) => tokio::spawn(accept_loop(listener, shared, stop)),
                Listener::Http(router, None) => {
                    // No Nagle delay: the WebSocket connections this port may carry write
                    // small frames.
                    let listener = listener.tap_io(|tcp| {
                        let _ = tcp.set_nodelay(true);
                    });
                    tokio::spawn(http_server::serve(listener, router, stop))
                }
                Listener::Http(router, Some((acceptor, timeout))) => {
                    let listener = tls::TlsListener::new(listener, acceptor, timeout);
                    tokio::spawn(http_server::serve(listener.tap_io(|_| {}), router, stop))
                }
            };
            servers.push(task);
        }
        servers
    }

    /// A healthy successor waits: stop accepting, let the requests and handshakes in flight
    /// finish, park every movable connection and hand them over with the in-memory history.
    /// The connections back when the successor failed before taking them.
    async fn hand_over(
        &self,
        servers: Vec<tokio::task::JoinHandle<()>>,
    ) -> Result<(), crate::handover::TakenBack> {
        self.stop.set(Phase::HandingOver);
        let mover = self
            .services
            .first()
            .map(|(_, shared)| shared.mover.clone());
        if let Some(mover) = &mover {
            mover.open();
        }
        info!(
            open = self.sender.count(),
            "handing over: parking the connections that can move"
        );
        self.accept_tx.send_replace(true);
        // The HTTP requests in flight (pushes, say) finish before the connections park,
        // so nothing pushed here is lost for a connection that moves.
        let services = &self.services;
        let _ = tokio::time::timeout(PARK_WAIT, async {
            for server in servers {
                let _ = server.await;
            }
            // The accept loops have ended: every connection they took is counted.
            while (services.iter()).any(|(_, s)| s.handshaking.load(Ordering::Acquire) > 0) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        self.shutdown_tx.send_replace(true);
        announce_stop(&self.stopping, &self.services, &self.sender);
        let conns = match mover {
            Some(mover) => mover.collect(PARK_WAIT).await,
            None => Vec::new(),
        };
        // After the connections parked (their positions are read): from here this
        // process's in-memory history refuses appends, and the successor continues it.
        let history = self.sender.history_state().hand_over_memory();
        if !history.is_empty() {
            info!(
                parts = history.len(),
                "handing the in-memory history to the successor"
            );
        }
        let moved = self.upgrader.send_connections(conns, history).await?;
        info!(moved, "open connections handed to the successor");
        Ok(())
    }

    /// The successor failed before it took the connections (it was killed): serve on as
    /// before the handover, and drive the parked connections again from where they stopped.
    fn take_back(&self, conns: crate::handover::TakenBack) {
        self.stop.set(Phase::Serving);
        if let Some((_, shared)) = self.services.first() {
            shared.mover.close();
        }
        self.stopping.store(false, Ordering::SeqCst);
        self.shutdown_tx.send_replace(false);
        self.accept_tx.send_replace(false);
        self.sender.history_state().take_back_memory();
        for (moved, _) in &conns {
            self.sender.forget_parked(crate::ConnId::from_u64(moved.id));
        }
        let ready = resume::prepare(&self.services, conns);
        let taken = ready.len();
        let pause_max_ms = resume::pauses(&ready).last().copied();
        self.sender.counters().handover_taken_back(taken);
        resume::start(ready);
        warn!(
            taken,
            pause_max_ms,
            "the handover failed: this process took its connections back and serves on"
        );
    }

    /// The listening sockets again, for the servers of `kinds`.
    fn reopen(&self, kinds: &[(String, Listener)]) -> Result<Vec<TcpListener>, Error> {
        let mut reopened = self.upgrader.reopen()?;
        let mut sockets = Vec::new();
        for (name, _) in kinds {
            let at = reopened
                .iter()
                .position(|(n, _)| n == name)
                .ok_or_else(|| Error::Setup(format!("no listening socket for `{name}`")))?;
            let (_, socket) = reopened.remove(at);
            socket.set_nonblocking(true)?;
            sockets.push(TcpListener::from_std(socket)?);
        }
        Ok(sockets)
    }
}

/// How long a handover waits for HTTP requests in flight, then for the connections to park.
const PARK_WAIT: Duration = Duration::from_secs(2);

/// What every connection of one WebSocket server shares.
pub(crate) struct ServerShared {
    /// The TLS acceptor when the server serves `wss`.
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) name: Arc<str>,
    /// Limits, heartbeat and error handler: all a running connection's driver sees.
    pub(crate) settings: Arc<DriverSettings>,
    /// permessage-deflate, negotiated at each handshake when enabled.
    pub(crate) compression: Compression,
    pub(crate) sender: Sender,
    pub(crate) router: CompiledRouter,
    /// Open connections of this server (for `max_connections`).
    pub(crate) open: AtomicUsize,
    /// Connections per client address (for `max_connections_per_ip`).
    pub(crate) peers: Arc<peers::PeerCounts>,
    /// Who may report the client's address, and how.
    pub(crate) proxy: client_addr::ProxySettings,
    pub(crate) tasks: Arc<TaskCounter>,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Connections parked for a successor (one for all servers of the process).
    pub(crate) mover: Arc<Mover>,
    /// Connections accepted on the listener whose handshake is not done: a handover lets
    /// them finish (and register) before the connections park, so none is refused with 503.
    pub(crate) handshaking: AtomicUsize,
}

impl ServerShared {
    /// The driver of `conn`, accepted (or resumed) on `route`. It may move to a successor in
    /// a handover when `may_move` (a plain TCP stream without permessage-deflate: neither a
    /// TLS session nor a compression context can move) and the route's handler says so.
    pub(crate) fn driver<S>(
        &self,
        route: &crate::routing::CompiledRoute,
        conn: Conn,
        stream: S,
        deflate: Option<&wharf_proto::DeflateParams>,
        may_move: bool,
    ) -> Driver<S>
    where
        S: SocketIo,
    {
        let movable =
            (may_move && deflate.is_none() && route.handler.movable()).then(|| self.mover.enter());
        Driver::new(stream, conn, self.settings.clone(), route.ping, deflate).movable(movable)
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<ServerShared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let guard = shared.tasks.enter();
                    // Counted before the task runs: a handover waits for it (see
                    // `ServerShared::handshaking`).
                    shared.handshaking.fetch_add(1, Ordering::AcqRel);
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        handle_connection(shared, stream, peer).await;
                        drop(guard);
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning on the error.
                    warn!(server = %shared.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn handle_connection(shared: Arc<ServerShared>, mut stream: TcpStream, tcp_peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    // The PROXY header comes before anything else, TLS included.
    let peer = if shared.proxy.protocol {
        let header = client_addr::from_proxy_protocol(&shared, &mut stream, tcp_peer);
        match Box::pin(header).await {
            Some(client) => client,
            None => {
                shared.handshaking.fetch_sub(1, Ordering::AcqRel);
                return;
            }
        }
    } else {
        tcp_peer
    };
    // Taken before the handshake is read and held to the end, so an address can hold no
    // more half-open handshakes than its cap; over it the client gets a 429 at once. From a
    // trusted proxy that forwards the client's address in a header, it is taken once the
    // head is read (the proxy's own connections are never capped).
    let admission = if shared.proxy.reads_headers_from(peer) {
        None
    } else {
        let trusted = shared.proxy.trusts(peer.ip());
        Some(
            shared
                .peers
                .admit(&shared.name, peer, &shared.settings.limits, trusted),
        )
    };
    match &shared.tls {
        None => serve_connection(shared, stream, peer, admission).await,
        // Boxed: a TLS stream and its handshake are kilobytes, and the task of every plain
        // connection would otherwise be sized for them.
        Some(acceptor) => {
            Box::pin(serve_tls(acceptor.clone(), shared, stream, peer, admission)).await
        }
    }
}

/// The TLS handshake, then the connection over TLS.
async fn serve_tls(
    acceptor: TlsAcceptor,
    shared: Arc<ServerShared>,
    stream: TcpStream,
    peer: SocketAddr,
    admission: Option<peers::Admission>,
) {
    let timeout = shared.settings.limits.handshake_timeout;
    match tls::handshake(&acceptor, stream, peer, timeout).await {
        Some(tls) => serve_connection(shared, tls, peer, admission).await,
        None => {
            shared.handshaking.fetch_sub(1, Ordering::AcqRel);
            shared.sender.counters().rejected("tls_handshake");
        }
    }
}

/// Runs the WebSocket handshake and then the connection, over plain TCP or TLS. `peer` is
/// the client address known so far; `admission` its standing under
/// `max_connections_per_ip` (`None`: decided once the request head names the client).
async fn serve_connection<S>(
    shared: Arc<ServerShared>,
    mut stream: S,
    peer: SocketAddr,
    admission: Option<peers::Admission>,
) where
    S: Send + Sync + Transport + SocketIo + 'static,
{
    // Not boxed: the connection runs in a task of its own (below), so this task ends with
    // the handshake and nothing long-lived is sized by the handshake's state.
    let handshake = upgrade::handshake(&shared, &mut stream, peer, admission);
    let Some((accepted, leftover)) = handshake.await else {
        shared.handshaking.fetch_sub(1, Ordering::AcqRel);
        return;
    };
    // Registered (and counted as movable) before the handshake stops being counted, so a
    // handover that waited for the handshakes finds it among its connections. Counted as a
    // task of its own before this one (and its count) ends, so a shutdown never sees zero.
    let handshaking = shared.clone();
    let guard = shared.tasks.enter();
    let launch = open_connection(shared, stream, accepted, leftover, guard);
    handshaking.handshaking.fetch_sub(1, Ordering::AcqRel);
    drop(handshaking);
    // A task of its own: its future is the driver's alone, not nested three deep in the
    // accept's (handshake, TLS, PROXY header), so a wake-up passes no outer state machines
    // and an idle connection keeps none of their state (docs/decisions.md, "One task a
    // connection, nothing around it").
    launch.spawn();
}

/// An accepted connection, from either door: registers it (at once) and returns it ready
/// to be driven to its end (its task spawned by [`Launch::spawn`]), its close then counted.
/// `leftover`: bytes the client sent after its request head.
///
/// Takes the `Accepted` apart here: the connection's task captures only what the driver
/// needs (an `Accepted` is hundreds of bytes, which every idle connection would pay).
fn open_connection<S>(
    shared: Arc<ServerShared>,
    stream: S,
    accepted: accept::Accepted,
    leftover: Vec<u8>,
    guard: TaskGuard,
) -> Launch<S>
where
    // Sync too: the driver holds `&self` across its awaits.
    S: Send + Sync + Transport + SocketIo + 'static,
{
    let accept::Accepted {
        route,
        request,
        data,
        params,
        protocol,
        deflate,
        slot,
        peer,
        admission,
        ..
    } = accepted;
    let send_compression = deflate
        .as_ref()
        .and_then(|params| SendCompression::new(params, &shared.compression));
    let user = data.get::<UserId>().map(|u| Arc::<str>::from(u.0.as_str()));
    let conn = Conn(Arc::new(ConnShared {
        id: shared.sender.registry().next_id(),
        server: shared.name.clone(),
        route: route.pattern.clone(),
        path: request.uri.path().into(),
        params: params
            .into_iter()
            .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
            .collect(),
        peer: crate::PeerAddr(peer),
        protocol: protocol.map(Into::into),
        opened_at: SystemTime::now(),
        opened: Instant::now(),
        data,
        user,
        rooms: std::sync::Mutex::new(Some(Vec::new())),
        outbox: crate::outbox::Outbox::new(shared.settings.limits.max_queue_size, send_compression),
        sender: shared.sender.clone(),
        counters: route.counters.clone(),
    }));
    shared.sender.opened(conn.clone());
    info!(conn = %conn.id(), server = %shared.name, route = conn.route(), peer = %peer, "connection opened");
    let driver = shared.driver(&route, conn, stream, deflate.as_ref(), S::MOVABLE);
    Launch {
        handler: route.handler.clone(),
        driver,
        leftover,
        request: Some(request),
        ended: Box::new(move |conn, ended| {
            ended_as(&shared, conn, ended);
            drop(slot);
            drop(admission);
            drop(guard);
        }),
    }
}

/// Logs and counts a closed connection, or keeps a parked one for the successor.
fn ended_as<S: Transport>(shared: &ServerShared, conn: &Conn, ended: Ended<S>) {
    match ended {
        Ended::Closed(event) => {
            log_closed(conn, &event);
            shared
                .sender
                .counters()
                .closed(event.code.as_u16(), event.initiator);
        }
        Ended::Moved(parked) => {
            debug!(conn = %conn.id(), "connection parked for the successor");
            shared.mover.park(conn, parked);
        }
    }
}

/// Tells every connection of `services` to close (or park, after a handover): the flag
/// first, for a connection registered but not yet driven (its driver reads it when it
/// starts), then each registered connection's outbox.
fn announce_stop(stopping: &AtomicBool, services: &[(String, Arc<ServerShared>)], sender: &Sender) {
    stopping.store(true, Ordering::SeqCst);
    let ours = |conn: &Conn| services.iter().any(|(name, _)| name == conn.server());
    for conn in sender.registry().snapshot(ours) {
        conn.0.outbox.stop();
    }
}

/// Counts connection tasks so shutdown can wait for all of them.
#[derive(Default)]
pub(crate) struct TaskCounter {
    count: AtomicUsize,
    idle: Notify,
}

pub(crate) struct TaskGuard(Arc<TaskCounter>);

impl TaskCounter {
    fn enter(self: &Arc<Self>) -> TaskGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        TaskGuard(self.clone())
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
///
/// Called inside a Tokio runtime, it listens from the call on, not from the first poll: a
/// SIGTERM that a supervisor sends the moment the server logs `listening` is not lost to
/// the signal's default action (the process ending by the signal, with no drain).
///
/// ```no_run
/// # async fn run(server: wharf::BoundServer) -> Result<(), wharf::Error> {
/// let shutdown = wharf::shutdown_signal(); // listening from here on
/// server.serve(shutdown).await
/// # }
/// ```
#[cfg(unix)]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::SignalKind;
    let now = tokio::runtime::Handle::try_current().is_ok();
    let interrupt = now.then(|| listen_for(SignalKind::interrupt()));
    let terminate = now.then(|| listen_for(SignalKind::terminate()));
    async move {
        let interrupt = interrupt.unwrap_or_else(|| listen_for(SignalKind::interrupt()));
        let terminate = terminate.unwrap_or_else(|| listen_for(SignalKind::terminate()));
        tokio::select! {
            () = received(interrupt) => {},
            () = received(terminate) => {},
        }
    }
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(unix)]
fn listen_for(kind: tokio::signal::unix::SignalKind) -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind)
        .inspect_err(|e| debug!(error = %e, ?kind, "cannot listen for the signal"))
        .ok()
}

#[cfg(unix)]
async fn received(signal: Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(mut signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_size<A, B, C, F: Future>(_: impl FnOnce(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    fn future_size<A, B, C, D, F: Future>(_: impl FnOnce(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    fn connection_size<A, B, C, D, E, F: Future>(_: impl FnOnce(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A handshake's task is sized by `handle_connection`'s future: the TLS path must stay
    /// boxed, or plain handshakes pay kilobytes each for a TLS stream they never use.
    #[test]
    fn plain_handshake_tasks_are_not_sized_for_tls() {
        let task = task_size(handle_connection);
        let plain = future_size(serve_connection::<TcpStream>);
        let tls = future_size(serve_connection::<tokio_rustls::server::TlsStream<TcpStream>>);
        assert!(
            tls > plain + 1024,
            "a TLS connection is the bigger one ({tls} vs {plain})"
        );
        assert!(
            task <= plain + 256,
            "task {task} bytes vs plain connection {plain}"
        );
    }

    /// An open connection is a task of its own, the driver's future and nothing around it.
    #[test]
    fn an_open_connection_task_is_the_driver_alone() {
        let task = connection_size(Driver::<TcpStream>::run::<Echo>);
        // Every idle connection pays this (about 1.2 KiB on Rust 1.95, echo's message future
        // in place included; 1,632 bytes in a test build while it ran inside its handshake's
        // task). A local kept beside the driver's future once cost 424 more, and the
        // driver's arguments stored twice (an `async fn` and a wrapping future) 1,392 more
        // (docs/decisions.md).
        assert!(task <= 1536, "a connection task is {task} bytes");
    }
}
