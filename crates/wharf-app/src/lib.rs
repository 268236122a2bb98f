//! wharf's application: the seed's app on top of the `wharf` server (JWT auth,
//! the users table, the `/wss/demo` handler, HTTP login and push endpoints) and
//! the pieces the `wharf` command line uses.

pub mod api;
pub mod app;
pub mod auth;
pub mod chat;
pub mod cli;
pub mod config;
pub mod demo;
pub mod logging;
pub mod serve;
pub mod setup;
pub mod tokens;
pub mod users;
