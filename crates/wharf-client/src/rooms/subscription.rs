//! [`Subscription`]: one followed room, and what it yields ([`RoomEvent`]: a
//! [`Publication`] or a [`Notice`]).

use bytes::Bytes;
use tokio::sync::mpsc;

use super::session::Request;
use super::{Position, Rooms};
use crate::ClientError;

/// The content of a publication.
///
/// ```
/// use wharf_client::rooms::Payload;
///
/// assert_eq!(Payload::from("hi").as_text(), Some("hi"));
/// assert_eq!(Payload::from(vec![1u8, 2]).as_bytes(), &[1, 2]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A text publication (`"text"` on the wire).
    Text(String),
    /// A binary publication (`"binary_base64"` on the wire).
    Binary(Bytes),
}

impl Payload {
    /// The text, for a text publication.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Payload::Text(text) => Some(text),
            Payload::Binary(_) => None,
        }
    }

    /// The bytes (UTF-8 for a text publication).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Payload::Text(text) => text.as_bytes(),
            Payload::Binary(data) => data,
        }
    }
}

impl From<&str> for Payload {
    fn from(text: &str) -> Self {
        Payload::Text(text.to_owned())
    }
}

impl From<String> for Payload {
    fn from(text: String) -> Self {
        Payload::Text(text)
    }
}

impl From<Vec<u8>> for Payload {
    fn from(data: Vec<u8>) -> Self {
        Payload::Binary(data.into())
    }
}

impl From<Bytes> for Payload {
    fn from(data: Bytes) -> Self {
        Payload::Binary(data)
    }
}

/// A publication of a room, at its position.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Publication {
    /// The room.
    pub room: String,
    /// Its position in the room.
    pub position: Position,
    /// Its content.
    pub payload: Payload,
}

/// What happened to a subscription across a reconnect or a loss of the room's history.
/// [`Notice::is_loss`] tells whether the application should reload its state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// The connection came back and the room was subscribed again from `since`; the
    /// `delivered` publications missed meanwhile came first, nothing is missing.
    Recovered {
        /// The last position received before the reconnect.
        since: Position,
        /// How many missed publications the server sent.
        delivered: u64,
    },
    /// The server could not recover what followed `since` (`recovered: false`: the room's
    /// history was lost, or no longer reaches back to `since`). Publications may be
    /// missing: reload the state (for example from your own API); live publications follow
    /// from `position` on.
    Unrecovered {
        /// The position the client asked to resume after.
        since: Position,
        /// The room's top when it was subscribed again.
        position: Position,
    },
    /// A publication came in a new epoch: the room's history was lost meanwhile (a store
    /// restarted or evicted it). Publications may be missing: treat it as
    /// [`Notice::Unrecovered`].
    EpochChanged {
        /// The last position of the old epoch.
        previous: Position,
        /// The first position seen in the new one (its publication follows this notice).
        position: Position,
    },
}

impl Notice {
    /// Whether publications may be missing (the application should reload its state).
    pub fn is_loss(&self) -> bool {
        !matches!(self, Notice::Recovered { .. })
    }
}

/// What a [`Subscription`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoomEvent {
    /// The next publication: each once, in position order.
    Publication(Publication),
    /// A recovery notice, in order with the publications.
    Notice(Notice),
}

/// A room this client follows; see [`Rooms::subscribe`]. Dropping it unsubscribes.
///
/// ```no_run
/// use wharf_client::rooms::{RoomEvent, Rooms, RoomsConfig};
///
/// # async fn demo() -> Result<(), wharf_client::ClientError> {
/// let rooms = Rooms::connect("ws://127.0.0.1:9502/wss/rooms", RoomsConfig::default()).await?;
/// let mut news = rooms.subscribe("demo:news").await?;
/// loop {
///     match news.recv().await? {
///         RoomEvent::Publication(p) => println!("{} {:?}", p.position, p.payload),
///         RoomEvent::Notice(n) if n.is_loss() => println!("reload: {n:?}"),
///         RoomEvent::Notice(_) => {}
///         _ => {}
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Subscription {
    pub(crate) room: String,
    pub(crate) key: u64,
    pub(crate) events: mpsc::UnboundedReceiver<Result<RoomEvent, ClientError>>,
    pub(crate) rooms: Rooms,
    pub(crate) done: bool,
    pub(crate) subscribed_at: Position,
}

impl Subscription {
    /// The room.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// Where the subscription started: the room's top when the first subscribe was
    /// answered (publications after it come through [`recv`](Subscription::recv)).
    pub fn subscribed_at(&self) -> &Position {
        &self.subscribed_at
    }

    /// The next publication or notice. Events wait in an unbounded queue while the
    /// application is busy. Errors: [`ClientError::Command`] when the server refused to
    /// subscribe again after a reconnect (the subscription is over), the error that ended
    /// the session (a refused reconnect, or `max_attempts` failures), then
    /// [`ClientError::Closed`] on every later call.
    ///
    /// Cancel-safe: it can be raced in `select!` without losing events.
    pub async fn recv(&mut self) -> Result<RoomEvent, ClientError> {
        if self.done {
            return Err(ClientError::Closed);
        }
        match self.events.recv().await {
            Some(Ok(event)) => Ok(event),
            Some(Err(e)) => {
                self.done = true;
                Err(e)
            }
            None => {
                self.done = true;
                Err(ClientError::Closed)
            }
        }
    }

    /// The next event if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Result<RoomEvent, ClientError>> {
        self.events.try_recv().ok()
    }

    /// Unsubscribes and waits for the server's reply (`Ok` too when the connection is down:
    /// there is nothing to undo on the server then).
    pub async fn unsubscribe(mut self) -> Result<(), ClientError> {
        self.done = true;
        self.rooms.unsubscribe_key(&self.room, Some(self.key)).await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if !self.done {
            // The session unsubscribes; nobody waits for the reply.
            let _ = self.rooms.requests.send(Request::Dropped {
                room: std::mem::take(&mut self.room),
                key: self.key,
            });
        }
    }
}
