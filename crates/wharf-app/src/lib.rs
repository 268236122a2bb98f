//! wharf's application: the seed's app on top of the `wharf` server (JWT auth,
//! the users table, the `/wss/demo` handler, HTTP login and push endpoints) and
//! the pieces the `wharf` command line uses.

pub mod api;
pub mod app;
pub mod auth;
pub mod chat;
pub mod cli;
pub mod config;
pub mod control;
pub mod demo;
pub mod feed;
pub mod logging;
pub mod rooms;
pub mod serve;
pub mod setup;
pub mod tokens;
pub mod upgrade;
pub mod users;
pub mod web;

/// The subprotocol the app's WebSocket routes (`/wss/demo`, `/wss/rooms/{room}`,
/// `/wss/admin/feed`) speak and select.
///
/// Browsers pass their token as the subprotocol `wharf.bearer.<token>`, which the server
/// never selects (that would echo the token). A browser that offers subprotocols fails
/// the handshake when the server selects none, so pages offer this one too:
/// `new WebSocket(url, ["wharf", "wharf.bearer." + token])`.
pub const APP_PROTOCOL: &str = "wharf";
