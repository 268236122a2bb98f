//! Builds the application's servers: the core servers from config, plus `/wss/demo` and
//! the room chat `/wss/rooms/{room}` behind the handshake auth on the ws server, the HTTP
//! API on the http server, and the cluster backplane when `cluster.backplane` is set.
//!
//! Tests use [`bind`] directly with a config, a store and tokens; `wharf serve`
//! ([`crate::serve`]) resolves those from the config file and the environment first.

use std::sync::Arc;

use wharf::{BoundServer, Route, Router, Server};

use crate::api::{self, ApiState};
use crate::auth::{self, Guard};
use crate::chat::{CHAT_PATH, Chat};
use crate::config::AppConfig;
use crate::demo::{DEMO_PATH, Demo};
use crate::tokens::Tokens;
use crate::users::UserStore;

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
    let mut builder = Server::builder(config.server.clone());
    if config.server.cluster.backplane.is_some() {
        let backplane = wharf_cluster::connect(&config.server.cluster)
            .map_err(|e| wharf::Error::Backplane(format!("cluster.backplane: {e}")))?;
        builder = builder.backplane(backplane);
    }
    let sender = builder.sender();
    let guard = Guard::new(tokens.clone(), config.auth.clone());
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
                .origins(config.app.origins.clone())
                .layer(auth::layer(guard)),
        );
    let http = api::router(ApiState {
        store,
        tokens,
        sender,
        api_key: config.api.key.clone(),
    });
    builder
        .websocket(&config.app.ws_server, ws)
        .http(&config.app.http_server, http)
        .bind()
        .await
}
