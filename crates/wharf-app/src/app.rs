//! Builds the application's servers: the core servers from config, plus `/wss/demo` and
//! the room chat `/wss/rooms/{room}` behind the handshake auth and the dashboard's feed
//! `/wss/admin/feed` behind the admin credentials on the ws server, the HTTP API and the
//! browser pages (`/`, `/dashboard`) on the http server, the rooms protocol `/wss/rooms`
//! (and wherever a config mounts `handler = "rooms"`), and the cluster backplane (and,
//! with `[rooms.history]`, the engine's history store) when `cluster.backplane` is set; one
//! node keeps history in memory.
//!
//! Each half is mounted when its server is in the config ([`AppParts`]): a config with only
//! WebSocket servers serves them without login, API, pages and metrics.
//!
//! Tests use [`bind`] directly with a config, a store and tokens; `wharf serve`
//! ([`crate::serve`]) resolves those from the config file and the environment first.

use std::sync::Arc;

use wharf::config::ServerKind;
use wharf::handover::Inherited;
use wharf::{BoundServer, Route, Router, Server, ServerBuilder};

use crate::api::{self, ApiState};
use crate::auth::{self, Guard};
use crate::chat::{CHAT_PATH, Chat};
use crate::config::AppConfig;
use crate::demo::{DEMO_PATH, Demo};
use crate::feed::{AdminGuard, FEED_PATH, Feed, KnownRoute};
use crate::rooms::{ROOMS_PATH, Rooms};
use crate::tokens::Tokens;
use crate::users::UserStore;
use crate::web::{self, WebState};

/// The named handlers a config file may mount with `wharf serve` (`route = [{ path,
/// handler }]`): the core's `echo`, and the rooms protocol `rooms` (behind the auth guard;
/// its paths are allowed by the guard without being listed in `auth.routes`).
pub const HANDLERS: [&str; 2] = ["echo", ROOMS_HANDLER];

/// The name a config file mounts the rooms protocol by (`handler = "rooms"`).
pub const ROOMS_HANDLER: &str = "rooms";

/// Which halves of the application the config has a server for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppParts {
    /// The `app.http_server` exists: login, the API, the pages and `/metrics` are served.
    pub http: bool,
    /// The `app.ws_server` exists: `/wss/demo`, `/wss/rooms/{room}`, `/wss/admin/feed`.
    pub ws: bool,
}

impl AppParts {
    /// Checks what the app asks of the config beyond the core's own validation, without
    /// touching any file: `app.http_server` and `app.ws_server`, when present, are of the
    /// right kind, and every route mounted from the file names a known handler.
    pub fn of(config: &AppConfig) -> Result<AppParts, String> {
        let mut parts = AppParts {
            http: false,
            ws: false,
        };
        for (setting, name, kinds, on) in [
            (
                "app.http_server",
                &config.app.http_server,
                &[ServerKind::Http][..],
                &mut parts.http,
            ),
            (
                // An `http` server too: the app's WebSocket routes then share its port.
                "app.ws_server",
                &config.app.ws_server,
                &[ServerKind::Websocket, ServerKind::Http][..],
                &mut parts.ws,
            ),
        ] {
            if let Some(server) = config.server.server(name) {
                if !kinds.contains(&server.kind) {
                    return Err(format!(
                        "{setting}: the server `{name}` is not a {} server; set {setting} to \
                         the name of one, or change the server's kind",
                        if kinds.len() == 1 {
                            "`http`"
                        } else {
                            "`websocket` or `http`"
                        }
                    ));
                }
                *on = true;
            }
        }
        for (i, server) in config.server.servers.iter().enumerate() {
            // Read here so that a missing certificate stops the start before the users store
            // and the key are created; whether they are valid PEM is checked at bind.
            for (what, path) in server
                .tls
                .iter()
                .flat_map(|t| [("cert", &t.cert), ("key", &t.key)])
            {
                if let Err(e) = std::fs::File::open(path) {
                    return Err(format!(
                        "server[{i}].tls.{what}: cannot read {}: {e}",
                        path.display()
                    ));
                }
            }
            for (j, route) in server.routes.iter().enumerate() {
                if !HANDLERS.contains(&route.handler.as_str()) {
                    return Err(format!(
                        "server[{i}].route[{j}].handler: no handler called `{}` (wharf serve has: {})",
                        route.handler,
                        HANDLERS.join(", ")
                    ));
                }
            }
        }
        let mounts_rooms = config
            .server
            .servers
            .iter()
            .any(|server| (server.routes.iter()).any(|route| route.handler == ROOMS_HANDLER));
        if mounts_rooms && config.auth.enabled && !(parts.http || parts.ws) {
            return Err(format!(
                "handler `{ROOMS_HANDLER}` checks tokens, and this config has no app server to \
                 keep them: add the `{}` websocket server (app.ws_server), or set \
                 auth.enabled = false",
                config.app.ws_server
            ));
        }
        Ok(parts)
    }

    /// Whether any part of the app is served (else no users store or keys are needed).
    pub fn any(self) -> bool {
        self.http || self.ws
    }
}

/// A route of the config file that mounts the rooms protocol.
struct RoomsMount {
    server: String,
    path: String,
    origins: Vec<String>,
}

/// The core's config without the config file's `rooms` routes, which the core cannot mount
/// by name (they need the protocol's session layer and the auth guard), and those routes.
fn take_rooms_mounts(config: &wharf::Config) -> (wharf::Config, Vec<RoomsMount>) {
    let mut core = config.clone();
    let mut mounts = Vec::new();
    for server in &mut core.servers {
        server.routes.retain(|route| {
            if route.handler != ROOMS_HANDLER {
                return true;
            }
            mounts.push(RoomsMount {
                server: server.name.clone(),
                path: route.path.clone(),
                origins: route.origins.clone(),
            });
            false
        });
    }
    (core, mounts)
}

/// The core servers from the config with the cluster backplane and the config file's `rooms`
/// routes (behind `guard`, when given), before the app's routes; on the sockets of a
/// predecessor when `inherited` is given.
fn core_builder(
    config: &AppConfig,
    guard: Option<&Guard>,
    inherited: Option<&mut Inherited>,
) -> Result<ServerBuilder, wharf::Error> {
    let (core, mounts) = take_rooms_mounts(&config.server);
    let mut builder = Server::builder(core).history_envelope(crate::api::history::envelope);
    if let Some(inherited) = inherited {
        builder = builder.inherit(inherited);
    }
    for mount in mounts {
        let mut route = Rooms::new(config.rooms_protocol.clone())
            .route()
            .origins(mount.origins);
        if let Some(guard) = guard {
            route = route.layer(auth::layer(guard.allowing(&mount.path)));
        }
        builder = builder.websocket(&mount.server, Router::new().route(&mount.path, route));
    }
    if config.server.cluster.backplane.is_some() {
        let backplane = wharf_cluster::connect(&config.server.cluster)
            .map_err(|e| wharf::Error::Backplane(format!("cluster.backplane: {e}")))?;
        builder = builder.backplane(backplane);
        if config.server.rooms.history.enabled() {
            // Every node must hand out the same positions: the engine keeps the history.
            let store = wharf_cluster::history_store(&config.server.cluster)
                .map_err(|e| wharf::Error::Backplane(format!("cluster.backplane: {e}")))?;
            builder = builder.history_store(store);
        }
    }
    Ok(builder)
}

/// Binds the configured servers with only the routes the config file mounts (no users
/// store, no keys): what `wharf serve` runs when the config has neither the app's http nor
/// its ws server.
pub async fn bind_core(config: &AppConfig) -> Result<BoundServer, wharf::Error> {
    bind_core_with(config, None).await
}

/// As [`bind_core`], on a predecessor's sockets when `inherited` is given (a live upgrade).
pub async fn bind_core_with(
    config: &AppConfig,
    inherited: Option<&mut Inherited>,
) -> Result<BoundServer, wharf::Error> {
    // `AppParts::of` refused `rooms` routes with auth on: no guard is needed here.
    core_builder(config, None, inherited)?.bind().await
}

/// Binds every configured server with the app's routes; serve it with
/// [`BoundServer::serve`]. The app's WebSocket routes go on `app.ws_server` and its HTTP
/// routes on `app.http_server`, each only when that server is in the config.
///
/// The auth middleware is a route layer on the app's WebSocket routes only, so the
/// built-in `/echo` (conformance, benchmarks) stays open.
pub async fn bind(
    config: &AppConfig,
    store: UserStore,
    tokens: Arc<Tokens>,
) -> Result<BoundServer, wharf::Error> {
    bind_with(config, store, tokens, None).await
}

/// As [`bind`], on a predecessor's sockets when `inherited` is given (a live upgrade:
/// [`wharf::handover`]).
pub async fn bind_with(
    config: &AppConfig,
    store: UserStore,
    tokens: Arc<Tokens>,
    inherited: Option<&mut Inherited>,
) -> Result<BoundServer, wharf::Error> {
    let parts = AppParts::of(config).map_err(wharf::Error::Setup)?;
    let guard = Guard::new(tokens.clone(), config.auth.clone());
    let mut builder = core_builder(config, Some(&guard), inherited)?;
    let sender = builder.sender();
    let admin = AdminGuard::new(config.api.key.clone(), tokens.clone());
    let feed = Feed::new(store.clone(), known_routes(config));
    let ws = Router::new()
        .route(
            DEMO_PATH,
            Demo::new(store.clone())
                .route()
                .origins(config.app.origins.clone())
                .layer(auth::layer(guard.clone())),
        )
        .route(
            CHAT_PATH,
            Route::new(Chat)
                .protocols([crate::APP_PROTOCOL])
                .origins(config.app.origins.clone())
                .layer(auth::layer(guard.clone())),
        )
        .route(
            ROOMS_PATH,
            Rooms::new(config.rooms_protocol.clone())
                .route()
                .origins(config.app.origins.clone())
                .layer(auth::layer(guard.allowing(ROOMS_PATH))),
        )
        .route(
            FEED_PATH,
            Route::new(feed)
                .protocols([crate::APP_PROTOCOL])
                .layer(crate::feed::layer(admin)),
        );
    let pages = WebState {
        ws_port: Default::default(),
        ws_url: config.app.ws_url.clone(),
    };
    let ws_port = pages.ws_port.clone();
    let http = api::router(ApiState {
        store,
        tokens,
        sender,
        api_key: config.api.key.clone(),
    })
    .merge(web::router(pages));
    if parts.ws {
        builder = builder.websocket(&config.app.ws_server, ws);
    }
    if parts.http {
        builder = builder.http(&config.app.http_server, http);
    }
    let bound = builder.bind().await?;
    if let Some(addr) = bound.local_addr(&config.app.ws_server) {
        // Set before `serve`, so no page ever sees the port missing.
        let _ = ws_port.set(addr.port());
    }
    Ok(bound)
}

/// Every WebSocket route the config and the app mount, for the dashboard's table.
fn known_routes(config: &AppConfig) -> Vec<KnownRoute> {
    let mut routes = Vec::new();
    for server in &config.server.servers {
        if server.routes.is_empty() && server.name != config.app.ws_server {
            continue;
        }
        for route in &server.routes {
            routes.push(KnownRoute {
                server: server.name.clone(),
                route: route.path.clone(),
            });
        }
        if server.name == config.app.ws_server {
            for path in [DEMO_PATH, CHAT_PATH, ROOMS_PATH, FEED_PATH] {
                routes.push(KnownRoute {
                    server: server.name.clone(),
                    route: path.to_owned(),
                });
            }
        }
    }
    routes.sort();
    routes.dedup();
    routes
}
