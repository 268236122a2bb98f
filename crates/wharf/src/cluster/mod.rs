//! Clustering: several wharf nodes behind one backplane (Redis, NATS) act as one server.
//!
//! Every [`Sender`](crate::Sender) operation that names a connection, room, user or scope goes
//! to the local connections at once and, when a backplane is configured, is published for the
//! other nodes, which deliver it to theirs. Presence (who is in a room, whether a user is
//! online) is kept in the backplane's store as one snapshot per node that expires after
//! `cluster.presence_ttl` unless the node refreshes it, so a node that dies drops out of
//! presence within the TTL. See `docs/cluster.md`.
//!
//! wharf itself holds no client for any engine: an engine implements [`Backplane`] (the
//! `wharf-cluster` crate has Redis and NATS) and is handed to
//! [`ServerBuilder::backplane`](crate::ServerBuilder::backplane).

mod listing;
mod presence;
mod runtime;
mod token;
mod wire;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use listing::{ClusterConn, MAX_LISTED_PER_NODE, NodeConns, RouteCount};
pub use presence::Member;
pub(crate) use presence::NodePresence;
pub(crate) use runtime::{AskTo, Cluster};
pub use runtime::{BackplaneState, ClusterStats};
pub use token::room_token;
pub(crate) use wire::{Command, Outcome};

/// A boxed future, as the [`Backplane`] traits return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A publish/subscribe engine with a small key-value store (with expiry) that carries a
/// cluster's traffic and presence.
///
/// Implementations connect; wharf's runtime reconnects with backoff when a [`Link`] or
/// [`Subscription`] fails, resubscribes, and counts what was dropped meanwhile.
pub trait Backplane: Send + Sync + 'static {
    /// The engine's name for logs (`"redis"`, `"nats"`).
    fn engine(&self) -> &'static str;

    /// Opens a connection for publishing and for the presence store.
    fn connect(&self) -> BoxFuture<'_, Result<Arc<dyn Link>, BackplaneError>>;
}

/// One live connection to the backplane.
pub trait Link: Send + Sync + 'static {
    /// Publishes each `(channel, payload)` in order.
    fn publish(&self, batch: Vec<(Arc<str>, Bytes)>) -> BoxFuture<'_, Result<(), BackplaneError>>;

    /// Subscribes to `channels`; the subscription ends with an error when the connection is lost.
    fn subscribe(
        &self,
        channels: Vec<String>,
    ) -> BoxFuture<'_, Result<Box<dyn Subscription>, BackplaneError>>;

    /// Stores `snapshot` as node `node`'s presence, expiring after `ttl` unless stored again.
    fn put_presence(
        &self,
        node: u16,
        snapshot: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), BackplaneError>>;

    /// Every node's presence snapshot that has not expired.
    fn presence(&self) -> BoxFuture<'_, Result<Vec<Bytes>, BackplaneError>>;

    /// Deletes node `node`'s presence (on a clean shutdown).
    fn remove_presence(&self, node: u16) -> BoxFuture<'_, Result<(), BackplaneError>>;
}

/// Messages arriving on subscribed channels. The set of channels changes while it runs: a
/// node subscribes to a room's channel when the room's first local member joins and drops it
/// after the last one leaves.
pub trait Subscription: Send + 'static {
    /// The next message's payload; an error when the connection is lost.
    fn next(&mut self) -> BoxFuture<'_, Result<Bytes, BackplaneError>>;

    /// Adds `channels`; completes once the engine has registered them, so that every message
    /// published to them afterwards arrives.
    fn add(&mut self, channels: Vec<String>) -> BoxFuture<'_, Result<(), BackplaneError>>;

    /// Drops `channels`; messages already received may still arrive.
    fn remove(&mut self, channels: Vec<String>) -> BoxFuture<'_, Result<(), BackplaneError>>;
}

/// The backplane failed: unreachable, refused, or lost.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct BackplaneError(pub String);

impl BackplaneError {
    /// An error with a message.
    pub fn new(message: impl std::fmt::Display) -> BackplaneError {
        BackplaneError(message.to_string())
    }
}

/// Where a broadcast goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scope {
    /// Every connection.
    All,
    /// Every connection of the server with this name.
    Server(String),
    /// Every connection that matched this route pattern (such as `/chat/{room}`).
    Route(String),
}

impl Scope {
    pub(crate) fn matches(&self, conn: &crate::Conn) -> bool {
        match self {
            Scope::All => true,
            Scope::Server(name) => conn.server() == name,
            Scope::Route(pattern) => conn.route() == pattern,
        }
    }
}
