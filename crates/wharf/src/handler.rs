//! Handlers: what the application does when a connection opens, sends a message and closes.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::conn::{Conn, OpenRequest};
use crate::launch::AnyLaunch;
use crate::{CloseCode, HandlerError, Message};

/// The callbacks of a WebSocket route. Every method has a default, so a handler implements
/// only what it needs.
///
/// `on_open` runs after the 101 response is sent; `on_message` for every text or binary
/// message in order (and pings/pongs on [`PingPolicy::Deliver`](crate::PingPolicy::Deliver)
/// routes); `on_close` exactly once for every opened connection, however it ended. A handler
/// that returns an error or panics closes its own connection (1011 by default) and nothing
/// else is disturbed.
///
/// A connection's task keeps the future of the call running in it in place, with no
/// allocation for the call, unless the handler's largest future (of `on_open`, `on_message`
/// and `on_close`) would make every connection of the route more than 256 bytes larger (an
/// `await` on something large, or a large local kept across an `await`): then each of its
/// calls is boxed while it runs.
///
/// ```
/// use wharf::{Conn, Handler, HandlerError, Message};
///
/// struct Shout;
///
/// impl Handler for Shout {
///     async fn on_message(&self, conn: &Conn, message: Message) -> Result<(), HandlerError> {
///         if let Message::Text(text) = message {
///             conn.send(text.to_uppercase())?;
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// A connection opened; `request` is the handshake request.
    fn on_open(
        &self,
        conn: &Conn,
        request: &OpenRequest,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = (conn, request);
        async { Ok(()) }
    }

    /// A message arrived.
    fn on_message(
        &self,
        conn: &Conn,
        message: Message,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = (conn, message);
        async { Ok(()) }
    }

    /// The connection closed; it can no longer be sent to.
    fn on_close(&self, conn: &Conn, event: &CloseEvent) -> impl Future<Output = ()> + Send {
        let _ = (conn, event);
        async {}
    }

    /// Whether this route's plain-TCP connections may move, open, to a successor process in
    /// a live handover ([`crate::handover`]): same id, same rooms and user, no close frame.
    /// Say yes only when whatever the handler keeps per connection outside the [`Conn`] is
    /// carried by [`carry`](Handler::carry) and rebuilt by [`resume`](Handler::resume):
    /// `on_open` does not run again in the successor, and data middleware attached at the
    /// handshake (other than the [`UserId`](crate::UserId)) does not move by itself.
    /// Default: false (such connections are closed with 1012 and the handover's reason).
    fn movable(&self) -> bool {
        false
    }

    /// In the old process, when a connection of a [movable](Handler::movable) handler parks
    /// for the successor (between two messages, no handler call running): what the handler
    /// keeps for it (connection data, its own maps), as JSON, given back to
    /// [`resume`](Handler::resume) in the successor. `None`: this connection cannot move; it
    /// is closed with 1012 and the handover's reason, as a connection of a handler that is
    /// not movable. Keep it quick: every connection parks at once. Its rooms and, in rooms
    /// that keep history, the position each had reached move without it. Default:
    /// `Some(Value::Null)` (nothing to carry).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use wharf::{Conn, Handler, HandlerError, Message, ResumeEvent};
    ///
    /// /// Counts each connection's messages (the count is attached at the handshake by a
    /// /// middleware); the count survives a live handover.
    /// struct Counter;
    /// #[derive(Clone)]
    /// struct Count(Arc<AtomicU64>);
    ///
    /// impl Handler for Counter {
    ///     async fn on_message(&self, conn: &Conn, _: Message) -> Result<(), HandlerError> {
    ///         if let Some(count) = conn.get::<Count>() {
    ///             let n = count.0.fetch_add(1, Ordering::Relaxed) + 1;
    ///             conn.send(n.to_string())?;
    ///         }
    ///         Ok(())
    ///     }
    ///     fn movable(&self) -> bool {
    ///         true
    ///     }
    ///     fn carry(&self, conn: &Conn) -> Option<serde_json::Value> {
    ///         let count = conn.get::<Count>()?; // no count: cannot move, closed with 1012
    ///         Some(serde_json::json!({ "count": count.0.load(Ordering::Relaxed) }))
    ///     }
    ///     fn resume(&self, event: &mut ResumeEvent) -> Result<(), HandlerError> {
    ///         let count = event.carried["count"]
    ///             .as_u64()
    ///             .ok_or_else(|| HandlerError::msg("no count carried"))?;
    ///         event.insert(Count(Arc::new(AtomicU64::new(count))));
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn carry(&self, conn: &Conn) -> Option<serde_json::Value> {
        let _ = conn;
        Some(serde_json::Value::Null)
    }

    /// In the successor, for a connection that moved: rebuilds what
    /// [`carry`](Handler::carry) returned (`event.carried`), attaching connection data with
    /// [`ResumeEvent::insert`]. Runs before the connection is registered and driven on
    /// (nothing is sent to it before), instead of `on_open`; synchronous, so keep it to
    /// decoding (no I/O). An error closes the connection with 1012 and the error as reason
    /// (its client reconnects); `on_close` then runs as for any connection. Default: `Ok`.
    fn resume(&self, event: &mut ResumeEvent) -> Result<(), HandlerError> {
        let _ = event;
        Ok(())
    }
}

/// A connection arriving from a predecessor process in a live handover, given to
/// [`Handler::resume`]: what is known of it, what its handler carried, and the connection
/// data it will have (the [`UserId`](crate::UserId) already, when it has a user).
#[derive(Debug)]
#[non_exhaustive]
pub struct ResumeEvent {
    /// Its id (the same as in the old process).
    pub id: crate::ConnId,
    /// The request path.
    pub path: String,
    /// Its user, when the handshake set one.
    pub user: Option<String>,
    /// The subprotocol agreed at the handshake.
    pub protocol: Option<String>,
    /// The client's address.
    pub peer: std::net::SocketAddr,
    /// What [`Handler::carry`] returned in the old process.
    pub carried: serde_json::Value,
    pub(crate) data: http::Extensions,
}

impl ResumeEvent {
    /// Attaches connection data, as handshake middleware does
    /// (`request.extensions_mut().insert(…)`): the connection's [`Conn::get`] finds it.
    /// Returns the value of that type attached before, if any.
    pub fn insert<T: Clone + Send + Sync + 'static>(&mut self, value: T) -> Option<T> {
        self.data.insert(value)
    }

    /// Connection data attached so far.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.data.get::<T>()
    }
}

/// Who ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Initiator {
    /// The client sent a close frame.
    Client,
    /// The server closed it (a handler, a `Sender`, a limit, a protocol error, shutdown).
    Server,
    /// The TCP connection ended without a close handshake (reset, EOF, write error).
    Network,
}

impl Initiator {
    /// `"client"`, `"server"` or `"network"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Initiator::Client => "client",
            Initiator::Server => "server",
            Initiator::Network => "network",
        }
    }
}

/// How a connection ended, given to [`Handler::on_close`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CloseEvent {
    /// The close code: the one in the close frame, 1005 when the frame had none, 1006 when
    /// there was no close frame at all.
    pub code: CloseCode,
    /// The close reason (may be empty).
    pub reason: String,
    /// Who ended it.
    pub initiator: Initiator,
}

/// The built-in echo handler: sends every text and binary message back unchanged.
/// Mounted by config with `handler = "echo"`; used for conformance runs and benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl Handler for Echo {
    async fn on_message(&self, conn: &Conn, message: Message) -> Result<(), HandlerError> {
        conn.send(message)?;
        Ok(())
    }

    /// Echo keeps no state: its connections move in a live handover.
    fn movable(&self) -> bool {
        true
    }
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Handler`] made object-safe, so routes can hold different handler types. Its callbacks
/// are not here: a connection's driver is spawned by [`spawn`](DynHandler::spawn) with the
/// handler's own type and calls them directly ([`crate::launch`]).
pub(crate) trait DynHandler: Send + Sync + 'static {
    fn movable(&self) -> bool;
    fn resume(&self, event: &mut ResumeEvent) -> Result<(), HandlerError>;
    /// Spawns the task driving `launch`'s connection with this handler.
    fn spawn(self: Arc<Self>, launch: AnyLaunch);
}

impl<H: Handler> DynHandler for H {
    fn movable(&self) -> bool {
        Handler::movable(self)
    }

    fn resume(&self, event: &mut ResumeEvent) -> Result<(), HandlerError> {
        Handler::resume(self, event)
    }

    fn spawn(self: Arc<Self>, launch: AnyLaunch) {
        launch.spawn_for(self);
    }
}

/// Runs a handler future (pinned where the driver keeps it), turning a panic into
/// `Err(message)`.
pub(crate) struct CatchUnwind<'a, F>(pub(crate) Pin<&'a mut F>);

impl<F: Future> Future for CatchUnwind<'_, F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => {
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a handler panicked".to_owned());
                Poll::Ready(Err(text))
            }
        }
    }
}
