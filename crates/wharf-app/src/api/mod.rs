//! The HTTP API on the http server: login, push, connections, rooms, users, presence.
//!
//! | endpoint | auth | answers |
//! |---|---|---|
//! | `POST /auth/login` | none | `{"token","expires_at","token_type":"Bearer"}`; 401 `invalid_credentials` |
//! | `POST /api/push` | admin | `{"delivered": N}`; 404 `conn_not_found` |
//! | `GET /api/connections?limit=&cursor=&node=` | admin | `{"count","connections":[…],"next_cursor","nodes":[{"node","count","complete"}]}` (whole cluster, by id, 100 a page) |
//! | `DELETE /api/connections/{id}` | admin | `{"closed","code","reason"}`; 404 `conn_not_found` |
//! | `GET /api/rooms` | admin | `{"rooms": {"<room>": N}}` (whole cluster) |
//! | `GET /api/rooms/{room}` | admin | `{"room","count","members":[{"conn","user"}]}` (whole cluster) |
//! | `PUT /api/rooms/{room}/members/{id}` | admin | `{"room","conn","joined":true}` |
//! | `DELETE /api/rooms/{room}/members/{id}` | admin | `{"room","conn","joined":false}` |
//! | `GET /api/users/{user}` | admin | `{"user","online","connections":[…]}` (whole cluster) |
//! | `DELETE /api/users/{user}/connections` | admin | `{"user","closed_local","code","reason"}` |
//! | `GET /api/cluster` | admin | `{"node","local_connections","connections","backplane"}` |
//! | `POST /api/publish` | admin | `{"position","delivered_local","duplicate"}`; 404 `no_history`, 503 `backplane_unavailable` |
//! | `GET /api/rooms/{room}/history?since=&limit=` | admin | `{"room","top","complete","publications":[{"position","text"\|"binary_base64"}]}`; 400 `bad_position`/`bad_limit`, 404 `no_history` |
//!
//! Cluster-wide answers need the backplane: while it is down they fail with 503
//! `backplane_unavailable`.
//!
//! Errors are JSON `{"code","error","msg"}`; see [`admin`] for the credentials and
//! [`body`] for body errors (400 `bad_json`, 413 `body_too_large`, …).

pub mod admin;
pub mod body;
mod cluster;
mod connections;
pub mod error;
pub mod history;
mod login;
pub(crate) mod push;
pub(crate) mod rooms;
mod users;

use std::sync::Arc;

use wharf::Sender;
use wharf::axum::Router;
use wharf::axum::extract::DefaultBodyLimit;
use wharf::axum::routing::{delete, get, post, put};

pub use self::connections::{
    CloseParams, ConnEntry, DEFAULT_PAGE, ListParams, LocalDetails, MAX_PAGE, MAX_REASON,
    NodeCount, entries,
};
pub use self::login::{LoginRequest, LoginResponse};
pub use self::push::{PushRequest, UserRef};
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
        .route("/api/rooms", get(rooms::list))
        .route("/api/rooms/{room}", get(rooms::show))
        .route(
            "/api/rooms/{room}/members/{id}",
            put(rooms::join).delete(rooms::leave),
        )
        .route("/api/users/{user}", get(users::show))
        .route("/api/users/{user}/connections", delete(users::close_all))
        .route("/api/cluster", get(cluster::show))
        .route("/api/publish", post(history::publish))
        .route("/api/rooms/{room}/history", get(history::read))
        .layer(DefaultBodyLimit::max(body::MAX_BODY))
        .with_state(Arc::new(state))
}
