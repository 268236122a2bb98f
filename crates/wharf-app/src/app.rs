//! Builds the application's servers: the core servers from config, plus `/wss/demo`
//! behind the handshake auth on the ws server and the HTTP API on the http server.
//!
//! Tests use [`bind`] directly with a config, a store and tokens; `wharf serve`
//! ([`crate::serve`]) resolves those from the config file and the environment first.

use std::sync::Arc;

use wharf::{BoundServer, Router, Server};

use crate::api::{self, ApiState};
use crate::auth::{self, Guard};
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
    let builder = Server::builder(config.server.clone());
    let sender = builder.sender();
    let guard = Guard::new(tokens.clone(), config.auth.clone());
    let ws = Router::new().route(
        DEMO_PATH,
        Demo::new(store.clone()).route().layer(auth::layer(guard)),
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
