//! The HTTP API on the http server: login, push, connection listing and closing.
//!
//! | endpoint | auth | answers |
//! |---|---|---|
//! | `POST /auth/login` | none | `{"token","expires_at","token_type":"Bearer"}`; 401 `invalid_credentials` |
//! | `POST /api/push` | admin | `{"delivered": N}`; 404 `conn_not_found` |
//! | `GET /api/connections` | admin | `{"count", "connections": [...]}` |
//! | `DELETE /api/connections/{id}` | admin | `{"closed","code","reason"}`; 404 `conn_not_found` |
//!
//! Errors are JSON `{"code","error","msg"}`; see [`admin`] for the credentials and
//! [`body`] for body errors (400 `bad_json`, 413 `body_too_large`, …).

pub mod admin;
pub mod body;
mod connections;
pub mod error;
mod login;
mod push;

use std::sync::Arc;

use wharf::Sender;
use wharf::axum::Router;
use wharf::axum::extract::DefaultBodyLimit;
use wharf::axum::routing::{delete, get, post};

pub use self::connections::{CloseParams, ConnEntry, MAX_REASON};
pub use self::login::{LoginRequest, LoginResponse};
pub use self::push::PushRequest;
use crate::tokens::Tokens;
use crate::users::UserStore;

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The users store.
    pub store: UserStore,
    /// Issues login tokens and verifies admin tokens.
    pub tokens: Arc<Tokens>,
    /// Pushes to and closes connections.
    pub sender: Sender,
    /// The admin API key, if any.
    pub api_key: Option<String>,
}

/// The API's routes, ready for `ServerBuilder::http`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/auth/login", post(login::login))
        .route("/api/push", post(push::push))
        .route("/api/connections", get(connections::list))
        .route("/api/connections/{id}", delete(connections::close))
        .layer(DefaultBodyLimit::max(body::MAX_BODY))
        .with_state(Arc::new(state))
}
