//! A client of the rooms protocol `wharf.rooms.v1` (docs/protocol.md): one WebSocket,
//! many rooms, every publication of each once and in order, and what was missed during a
//! reconnect recovered from the room's history.
//!
//! [`Rooms::connect`] returns a handle (cheap to clone) to a session task that owns the
//! connection: it matches replies to commands by id, routes pushes to the
//! [`Subscription`] of their room, reconnects with [`backoff`](crate::backoff) and jitter
//! (trying the next of several URLs), and resubscribes each room with the position of the
//! last publication received as `since`. A push at or before the last position of its
//! room is dropped, so no publication reaches the application twice; a loss of history
//! (`recovered: false`, a new epoch) arrives as a [`Notice`] in the stream.
//!
//! ```no_run
//! use wharf_client::rooms::{RoomEvent, Rooms, RoomsConfig};
//!
//! # async fn demo() -> Result<(), wharf_client::ClientError> {
//! let config = RoomsConfig::default().with_token("eyJhbGciOi…");
//! let rooms = Rooms::connect("ws://127.0.0.1:9502/wss/rooms", config).await?;
//! let mut lobby = rooms.subscribe("chat:lobby").await?;
//! let position = rooms.publish("chat:lobby", "hello").await?;
//! while let RoomEvent::Publication(p) = lobby.recv().await? {
//!     println!("{} {:?}", p.position, p.payload.as_text());
//!     if p.position == position {
//!         break;
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! `position` ([`Position`]), `command` (the wire format, without IO, and the replies),
//! `cursor` (the per-room dedupe and recovery rule), `subscription` ([`Subscription`] and
//! its events), `session` (the task that owns the connection), this module ([`Rooms`],
//! [`RoomsConfig`]).

mod command;
mod cursor;
mod position;
mod session;
mod subscription;

pub use command::{History, Member, Presence, Published};
pub use position::Position;
pub use subscription::{Notice, Payload, Publication, RoomEvent, Subscription};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::{ClientConfig, ClientError};
use command::Command;
use session::{Request, Session};

/// The subprotocol of the rooms protocol; [`Rooms::connect`] offers it.
pub const PROTOCOL: &str = "wharf.rooms.v1";

/// Options for [`Rooms::connect`].
///
/// ```
/// use std::time::Duration;
/// use wharf_client::rooms::RoomsConfig;
///
/// let config = RoomsConfig::default()
///     .with_token("t0ken")
///     .with_fallback_url("ws://10.0.0.2:9502/wss/rooms")
///     .with_backoff(Duration::from_millis(50), Duration::from_secs(2));
/// assert_eq!(config.max_attempts, None);
/// assert_eq!(config.client.headers, [("Authorization".into(), "Bearer t0ken".into())]);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RoomsConfig {
    /// The WebSocket options (headers, TLS, timeouts); `wharf.rooms.v1` is added to its
    /// protocols (default [`ClientConfig::default`]).
    pub client: ClientConfig,
    /// More URLs of the same cluster: a failed reconnect tries the next one, in turn
    /// (default none).
    pub fallback_urls: Vec<String>,
    /// The first reconnect waits between half this and this; each failed attempt doubles
    /// it (default 200 ms).
    pub backoff_base: Duration,
    /// The longest wait between reconnect attempts (default 10 s).
    pub backoff_cap: Duration,
    /// After this many failed reconnect attempts in a row the session ends, and every
    /// subscription gets the last error (default `None`: it never gives up, except on a
    /// refused handshake with 400, 401 or 403, which retrying cannot fix).
    pub max_attempts: Option<u32>,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            client: ClientConfig::default(),
            fallback_urls: Vec::new(),
            backoff_base: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(10),
            max_attempts: None,
        }
    }
}

impl RoomsConfig {
    /// Sends `token` as `Authorization: Bearer <token>`.
    pub fn with_token(mut self, token: impl AsRef<str>) -> Self {
        self.client = self
            .client
            .with_header("Authorization", format!("Bearer {}", token.as_ref()));
        self
    }

    /// Uses these WebSocket options.
    pub fn with_client(mut self, client: ClientConfig) -> Self {
        self.client = client;
        self
    }

    /// Adds a URL to reconnect to when the current one fails.
    pub fn with_fallback_url(mut self, url: impl Into<String>) -> Self {
        self.fallback_urls.push(url.into());
        self
    }

    /// Sets the reconnect backoff's base and cap.
    pub fn with_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_cap = cap;
        self
    }

    /// Ends the session after `attempts` failed reconnects in a row.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }
}

/// A handle to a rooms session; clones share it. The session ends when
/// [`close`](Rooms::close) is called or the last handle and subscription are dropped.
#[derive(Debug, Clone)]
pub struct Rooms {
    requests: mpsc::UnboundedSender<Request>,
    shared: Arc<Shared>,
}

/// Counters the session and the handles share.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    connects: AtomicU64,
    subscriptions: AtomicU64,
}

impl Rooms {
    /// Connects to `url` (e.g. `ws://127.0.0.1:9502/wss/rooms`) offering `wharf.rooms.v1`,
    /// and starts the session task (on the current Tokio runtime).
    ///
    /// The first connect is not retried: a refused handshake is
    /// [`ClientError::Refused`] (401 with a missing or expired token, 400
    /// `protocol_required`), an unreachable server [`ClientError::Network`]. A server that
    /// does not select `wharf.rooms.v1` is [`ClientError::Protocol`].
    pub async fn connect(url: &str, config: RoomsConfig) -> Result<Rooms, ClientError> {
        let client_config = config.client.clone().with_protocol(PROTOCOL);
        let first = session::open(url, &client_config).await?;
        let (requests, incoming) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        shared.connects.store(1, Ordering::Relaxed);
        let mut urls = vec![url.to_owned()];
        urls.extend(config.fallback_urls.iter().cloned());
        let session = Session::new(urls, client_config, &config, incoming, shared.clone());
        tokio::spawn(session.run(first));
        Ok(Rooms { requests, shared })
    }

    /// How many connections the session opened (1 before any reconnect).
    pub fn connects(&self) -> u64 {
        self.shared.connects.load(Ordering::Relaxed)
    }

    /// Follows `room` from now on: the reply's position is the room's top, and every later
    /// publication comes through the [`Subscription`]. Errors: [`ClientError::Command`]
    /// (`forbidden`, `no_history`, `bad_room`, `already_subscribed`, …), or
    /// [`ClientError::Closed`] when the session is over. While the connection is down the
    /// call waits for it to come back; a subscribe answered 503 (`backplane_unavailable`) is retried with
    /// backoff.
    ///
    /// ```no_run
    /// # async fn demo(rooms: wharf_client::rooms::Rooms) -> Result<(), wharf_client::ClientError> {
    /// match rooms.subscribe("secret").await {
    ///     Err(e) if e.error_code() == Some("forbidden") => println!("not for this token"),
    ///     other => drop(other?),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn subscribe(&self, room: &str) -> Result<Subscription, ClientError> {
        self.subscribe_since(room, None).await
    }

    /// Follows `room` after `since`, a position the application kept (say, across a
    /// restart): the publications after it come first, or a [`Notice::Unrecovered`] when
    /// the room no longer has them.
    pub async fn subscribe_since(
        &self,
        room: &str,
        since: Option<Position>,
    ) -> Result<Subscription, ClientError> {
        let key = self.shared.subscriptions.fetch_add(1, Ordering::Relaxed);
        let (events_tx, events) = mpsc::unbounded_channel();
        let (reply, answer) = oneshot::channel();
        self.send(Request::Subscribe {
            room: room.to_owned(),
            since,
            key,
            events: events_tx,
            reply,
        })?;
        // Built before the wait, so that a cancelled call still unsubscribes (on drop).
        let mut subscription = Subscription {
            room: room.to_owned(),
            key,
            events,
            rooms: self.clone(),
            done: false,
            subscribed_at: Position::new("", 0),
        };
        match answer.await {
            Ok(Ok(position)) => {
                subscription.subscribed_at = position;
                Ok(subscription)
            }
            Ok(Err(e)) => {
                subscription.done = true;
                Err(e)
            }
            Err(_) => Err(ClientError::Closed),
        }
    }

    /// Stops following `room` (the [`Subscription`] then ends with
    /// [`ClientError::Closed`]). Errors: `not_subscribed` when it was not followed.
    pub async fn unsubscribe(&self, room: &str) -> Result<(), ClientError> {
        self.unsubscribe_key(room, None).await
    }

    pub(crate) async fn unsubscribe_key(
        &self,
        room: &str,
        key: Option<u64>,
    ) -> Result<(), ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Unsubscribe {
            room: room.to_owned(),
            key,
            reply,
        })?;
        answer.await.unwrap_or(Err(ClientError::Closed))
    }

    /// Publishes `text` to `room` and returns its position. Errors: `forbidden`,
    /// `rate_limited`, `no_history`, …, and [`ClientError::ConnectionLost`] when the
    /// connection dropped before the reply (see [`publish_with`](Rooms::publish_with) for
    /// a retry that cannot publish twice). Sent when the connection is back if it is down.
    pub async fn publish(&self, room: &str, text: &str) -> Result<Position, ClientError> {
        Ok(self
            .publish_with(room, Payload::from(text), None)
            .await?
            .position)
    }

    /// Publishes a text or binary payload, with an optional idempotency key (1 to 128
    /// bytes): a retry with the same key answers the first position with `duplicate`.
    pub async fn publish_with(
        &self,
        room: &str,
        payload: Payload,
        idempotency_key: Option<&str>,
    ) -> Result<Published, ClientError> {
        let body = self
            .command(Command::Publish {
                room: room.to_owned(),
                payload,
                idempotency_key: idempotency_key.map(str::to_owned),
            })
            .await?;
        Published::decode(&body)
    }

    /// Reads up to `limit` (at most 1000, the default) of the publications after `since`
    /// (all the room keeps without it).
    ///
    /// ```no_run
    /// # async fn demo(rooms: wharf_client::rooms::Rooms) -> Result<(), wharf_client::ClientError> {
    /// let history = rooms.history("demo:news", None, Some(10)).await?;
    /// for p in &history.publications {
    ///     println!("{} {:?}", p.position, p.payload.as_text());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn history(
        &self,
        room: &str,
        since: Option<&Position>,
        limit: Option<u32>,
    ) -> Result<History, ClientError> {
        let body = self
            .command(Command::History {
                room: room.to_owned(),
                since: since.cloned(),
                limit,
            })
            .await?;
        History::decode(room, &body)
    }

    /// Who follows `room`, on every node.
    pub async fn presence(&self, room: &str) -> Result<Presence, ClientError> {
        let body = self
            .command(Command::Presence {
                room: room.to_owned(),
            })
            .await?;
        Presence::decode(&body)
    }

    /// Closes the connection (code 1000) and ends the session: subscriptions then end
    /// with [`ClientError::Closed`], later calls fail with it.
    pub async fn close(&self) {
        let (reply, answer) = oneshot::channel();
        if self.send(Request::Close { reply }).is_ok() {
            let _ = answer.await;
        }
    }

    async fn command(&self, command: Command) -> Result<Map<String, Value>, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Command { command, reply })?;
        answer.await.unwrap_or(Err(ClientError::Closed))
    }

    fn send(&self, request: Request) -> Result<(), ClientError> {
        self.requests.send(request).map_err(|_| ClientError::Closed)
    }
}
