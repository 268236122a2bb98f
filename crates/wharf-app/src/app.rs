//! Builds the application's servers: the core servers from config, plus `/wss/demo` and
//! the room chat `/wss/rooms/{room}` behind the handshake auth and the dashboard's feed
//! `/wss/admin/feed` behind the admin credentials on the ws server, the HTTP API and the
//! browser pages (`/`, `/dashboard`) on the http server, and the cluster backplane (and,
//! with `[rooms.history]`, the engine's history store) when `cluster.backplane` is set; one
//! node keeps history in memory.
//!
//! Tests use [`bind`] directly with a config, a store and tokens; `wharf serve`
//! ([`crate::serve`]) resolves those from the config file and the environment first.

use std::sync::Arc;

use wharf::config::ServerKind;
use wharf::{BoundServer, Route, Router, Server};

use crate::api::{self, ApiState};
use crate::auth::{self, Guard};
use crate::chat::{CHAT_PATH, Chat};
use crate::config::AppConfig;
use crate::demo::{DEMO_PATH, Demo};
use crate::feed::{AdminGuard, FEED_PATH, Feed, KnownRoute};
use crate::tokens::Tokens;
use crate::users::UserStore;
use crate::web::{self, WebState};

/// Binds every configured server with the app's routes; serve it with
/// [`BoundServer::serve`].
///
/// The auth middleware is a route layer on the app's WebSocket routes only, so the
/// built-in `/echo` (conformance, benchmarks) stays open.
pub async fn bind(
    config: &AppConfig,
    store: UserStore,
    tokens: Arc<Tokens>,
) -> Result<BoundServer, wharf::Error> {
    let mut builder =
        Server::builder(config.server.clone()).history_envelope(crate::api::history::envelope);
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
    let sender = builder.sender();
    let guard = Guard::new(tokens.clone(), config.auth.clone());
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
                .layer(auth::layer(guard)),
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
    let bound = builder
        .websocket(&config.app.ws_server, ws)
        .http(&config.app.http_server, http)
        .bind()
        .await?;
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
        if !matches!(server.kind, ServerKind::Websocket) {
            continue;
        }
        for route in &server.routes {
            routes.push(KnownRoute {
                server: server.name.clone(),
                route: route.path.clone(),
            });
        }
        if server.name == config.app.ws_server {
            for path in [DEMO_PATH, CHAT_PATH, FEED_PATH] {
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
