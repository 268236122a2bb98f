//! `/wss/admin/feed`: the dashboard's live feed, an admin-only WebSocket route.
//!
//! The handshake needs the admin credentials of `/api/*` (the API key or a JWT with
//! `admin: true`), as `Authorization: Bearer <credential>` or, from a browser, as the
//! subprotocol `wharf.bearer.<credential>` next to [`APP_PROTOCOL`](crate::APP_PROTOCOL).
//! Refusals are JSON, decided before the upgrade: 401 `credentials_missing`, 403
//! `bad_credentials`, 403 `not_admin`.
//!
//! Once open, the server pushes a [`Snapshot`] (the cluster's connections and open per
//! route, and this node's [`MetricsSnapshot`](wharf::MetricsSnapshot)) as a text message
//! right away and then every
//! [`FEED_INTERVAL`]; what the client sends is ignored. A dashboard that does not read
//! skips snapshots instead of piling them up (its queue is bounded like any other).

use std::collections::BTreeMap;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tracing::debug;
use wharf::http::StatusCode;
use wharf::middleware::FromFnLayer;
use wharf::{
    Conn, Handler, HandlerError, HandshakeRequest, Message, OpenRequest, Rejection, SendError,
    Sender,
};

use crate::api::{self, ConnEntry, NodeCount};
use crate::auth::extract::{Found, find_token};
use crate::tokens::Tokens;
use crate::users::UserStore;

/// The path the feed is mounted on.
pub const FEED_PATH: &str = "/wss/admin/feed";

/// How often a snapshot is pushed.
pub const FEED_INTERVAL: Duration = Duration::from_secs(1);

/// At most this many connections are listed in one snapshot (the oldest first);
/// `count` always has the total.
pub const MAX_LISTED: usize = 1000;

/// One WebSocket route the dashboard lists, even while nothing is open on it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KnownRoute {
    /// The server's name.
    pub server: String,
    /// The route pattern.
    pub route: String,
}

/// What the feed pushes every second.
#[derive(Debug, Serialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// The id of the node that serves the feed.
    pub node: u16,
    /// When it was taken, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Open connections in the cluster (this node's only while `cluster` is false).
    pub count: usize,
    /// Whether the counts and lists cover the whole cluster: false while the backplane is
    /// unreachable (then they are this node's).
    pub cluster: bool,
    /// Each live node and its open connections.
    pub nodes: Vec<NodeCount>,
    /// The connections, as `GET /api/connections` lists them, the oldest first (at most
    /// [`MAX_LISTED`]; another node's are those its presence snapshot carries).
    pub connections: Vec<ConnEntry>,
    /// Open connections per route in the cluster, every known route included.
    pub routes: Vec<RouteOpen>,
    /// This node's counters: totals since start (the page computes rates from deltas),
    /// handshakes refused by reason, closes, drops, and the same per route.
    pub metrics: wharf::MetricsSnapshot,
}

/// Open connections on one route.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct RouteOpen {
    /// The server's name.
    pub server: String,
    /// The route pattern.
    pub route: String,
    /// Open connections.
    pub open: usize,
}

/// The feed handler. Each open feed runs one task that pushes snapshots until it closes.
#[derive(Debug, Clone)]
pub struct Feed {
    store: UserStore,
    routes: Arc<[KnownRoute]>,
}

impl Feed {
    /// A feed naming accounts from `store` and listing `routes` even when empty.
    pub fn new(store: UserStore, routes: Vec<KnownRoute>) -> Feed {
        Feed {
            store,
            routes: routes.into(),
        }
    }

    /// Takes a snapshot of the cluster (of this node while the backplane is down).
    pub async fn snapshot(&self, sender: &Sender) -> Snapshot {
        let (connections, nodes, cluster) = api::entries(sender, &self.store, MAX_LISTED).await;
        let mut open: BTreeMap<(String, String), usize> = self
            .routes
            .iter()
            .map(|r| ((r.server.clone(), r.route.clone()), 0))
            .collect();
        for route in nodes.iter().flat_map(|n| &n.routes) {
            *open
                .entry((route.server.clone(), route.route.clone()))
                .or_default() += route.open;
        }
        Snapshot {
            node: sender.node(),
            at_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            count: nodes.iter().map(|n| n.count).sum(),
            cluster,
            nodes: nodes
                .iter()
                .map(|n| NodeCount {
                    node: n.node,
                    count: n.count,
                    complete: n.is_complete(),
                })
                .collect(),
            connections,
            routes: open
                .into_iter()
                .map(|((server, route), open)| RouteOpen {
                    server,
                    route,
                    open,
                })
                .collect(),
            metrics: sender.metrics(),
        }
    }

    async fn run(self, conn: Conn) {
        let mut tick = tokio::time::interval(FEED_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let snapshot = self.snapshot(conn.sender()).await;
            let text = match serde_json::to_string(&snapshot) {
                Ok(text) => text,
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode a feed snapshot");
                    return;
                }
            };
            match conn.send(text) {
                Ok(()) => {}
                // The slow-consumer limit closes it; until then, skip this beat.
                Err(SendError::QueueFull(_)) => {}
                // Closed or closing: the task ends with the connection.
                Err(_) => return,
            }
        }
    }
}

impl Handler for Feed {
    async fn on_open(&self, conn: &Conn, _request: &OpenRequest) -> Result<(), HandlerError> {
        // The task holds a clone of the handle; `send` fails once the connection has
        // closed, which ends it, so no task outlives its connection by more than a tick.
        tokio::spawn(self.clone().run(conn.clone()));
        Ok(())
    }

    async fn on_message(&self, _conn: &Conn, _message: Message) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// Decides a feed handshake: only admin credentials pass.
#[derive(Debug, Clone)]
pub struct AdminGuard {
    api_key: Option<String>,
    tokens: Arc<Tokens>,
}

impl AdminGuard {
    /// A guard accepting `api_key` and admin JWTs verified by `tokens`.
    pub fn new(api_key: Option<String>, tokens: Arc<Tokens>) -> AdminGuard {
        AdminGuard { api_key, tokens }
    }

    /// Passes `request` on, or refuses it with 401 `credentials_missing`, 403
    /// `bad_credentials` or 403 `not_admin`.
    pub fn check(&self, request: HandshakeRequest) -> Result<HandshakeRequest, Rejection> {
        // Query credentials are never taken: they would end up in access logs.
        let presented = match find_token(&request, false)? {
            Found::Token(token) => token,
            Found::Missing | Found::QueryDisabled => {
                return Err(Rejection::new(
                    StatusCode::UNAUTHORIZED,
                    "credentials_missing",
                    "send the API key or an admin token as the subprotocol wharf.bearer.<credential> or as Authorization: Bearer <credential>",
                ));
            }
        };
        if let Err(e) = api::admin::verify(presented, self.api_key.as_deref(), &self.tokens) {
            debug!(error = e.error(), "feed handshake refused");
            return Err(e.into_rejection());
        }
        Ok(request)
    }
}

/// The checking function's result, as `from_fn` wants it.
pub type CheckFuture = Ready<Result<HandshakeRequest, Rejection>>;

/// The admin guard as a handshake middleware, for `Route::layer`.
pub fn layer(
    guard: AdminGuard,
) -> FromFnLayer<impl Fn(HandshakeRequest) -> CheckFuture + Clone + Send + Sync + 'static> {
    let guard = Arc::new(guard);
    wharf::middleware::from_fn(move |request: HandshakeRequest| ready(guard.check(request)))
}
