//! # wharf
//!
//! A WebSocket application server: named servers from config, routes to handlers with
//! open/message/close callbacks, handshake middleware on tower, a registry of every connection
//! and a [`Sender`] that pushes to or closes any of them from anywhere.
//!
//! ```no_run
//! use wharf::{Config, Conn, Handler, HandlerError, Message, Router, Server};
//!
//! struct Greeter;
//!
//! impl Handler for Greeter {
//!     async fn on_open(&self, conn: &Conn, _req: &wharf::OpenRequest) -> Result<(), HandlerError> {
//!         conn.send("welcome")?;
//!         Ok(())
//!     }
//!     async fn on_message(&self, conn: &Conn, message: Message) -> Result<(), HandlerError> {
//!         conn.send(message)?;
//!         Ok(())
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), wharf::Error> {
//!     Server::builder(Config::default())
//!         .websocket("ws", Router::new().route("/greet", Greeter))
//!         .bind()
//!         .await?
//!         .serve(wharf::shutdown_signal())
//!         .await
//! }
//! ```
//!
//! # Layout
//!
//! - [`config`]: servers, limits and heartbeat from defaults, `wharf.toml` and environment.
//! - [`routing`]: [`Router`], [`Route`], [`PingPolicy`].
//! - [`handler`]: the [`Handler`] trait, [`CloseEvent`], the built-in [`Echo`].
//! - [`middleware`]: handshake middleware on tower, [`middleware::from_fn`].
//! - [`rejection`]: every refused handshake as a [`Rejection`] (status + JSON body).
//! - [`error_handler`]: per-server mapping of errors to responses and close codes.
//! - [`Conn`], [`Sender`]: one connection, and all of them: rooms, users, presence.
//! - [`handover`]: a live upgrade: a new process takes over the listening sockets.
//! - [`history`]: positions, history stores and recovery for rooms that keep their messages.
//! - [`confirm`]: pushes that report what every receiving node did with them.
//! - [`cluster`]: several nodes over a backplane (Redis, NATS) acting as one.
//! - [`server`]: binding, accepting, the HTTP server, graceful shutdown, and
//!   [`WebSocketService`]: a server's routes mounted in an axum app (the second door).
//! - the protocol engine (frames, handshake parsing, the connection driver) is private.

pub mod close_code;
pub mod cluster;
mod compression;
pub mod config;
pub mod confirm;
mod conn;
mod driver;
mod error;
pub mod error_handler;
mod extended_connect;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod handler;
pub mod handover;
mod handshake;
pub mod history;
mod launch;
mod message;
pub mod metrics;
pub mod middleware;
mod outbox;
pub mod pattern;
mod per_thread;
pub mod rate_limit;
mod registry;
pub mod rejection;
pub mod routing;
mod sender;
pub mod server;
mod socket_io;
mod write_queue;

pub use close_code::CloseCode;
pub use cluster::{Member, Scope};
pub use config::{
    ClusterConfig, Compression, Config, ConfigError, Heartbeat, Limits, RoomsConfig, RouteConfig,
    ServerConfig, ServerKind, TlsConfig,
};
pub use confirm::{Confirm, Receipt};
pub use conn::{Conn, ConnId, ConnInfo, OpenRequest, ParseConnIdError, UserId};
pub use error::{Error, HandlerError, SendError};
pub use error_handler::{DefaultErrorHandler, ErrorHandler};
pub use handler::{CloseEvent, Echo, Handler, Initiator, ResumeEvent};
pub use message::Message;
pub use metrics::MetricsSnapshot;
pub use middleware::{BoxError, HandshakeRequest, PeerAddr, RouteParams};
pub use rejection::{HandshakeResponse, Rejection};
pub use routing::{IntoRoute, PingPolicy, Route, Router};
pub use sender::Sender;
pub use server::{BoundServer, Server, ServerBuilder, WebSocketService, shutdown_signal};

/// Re-exported so applications name the same versions wharf uses.
pub use {axum, bytes, http, tower};

/// The README's Rust snippets, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
