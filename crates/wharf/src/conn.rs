//! A connection as the application sees it: its id, where it came from, the data attached at
//! the handshake, and how to talk to it.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use http::Extensions;
use serde::{Serialize, Serializer};

use crate::compression::Fanout;
use crate::metrics::RouteCounters;
use crate::outbox::{Outbox, PushError};
use crate::write_queue::SPLICE_FROM;
use crate::{CloseCode, Message, SendError, Sender};

/// A connection id, unique in the process and across a cluster: the node id and a per-node
/// sequence number. Written `"<node>-<seq>"` (a string in JSON, since JavaScript numbers cannot
/// hold 64 bits).
///
/// ```
/// use wharf::ConnId;
/// let id: ConnId = "3-42".parse().unwrap();
/// assert_eq!((id.node(), id.seq()), (3, 42));
/// assert_eq!(id.to_string(), "3-42");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

const SEQ_BITS: u32 = 48;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

impl ConnId {
    /// Builds an id from a node id and a sequence number (the low 48 bits are kept).
    pub const fn new(node: u16, seq: u64) -> ConnId {
        ConnId(((node as u64) << SEQ_BITS) | (seq & SEQ_MASK))
    }

    /// The node that owns the connection.
    pub const fn node(self) -> u16 {
        (self.0 >> SEQ_BITS) as u16
    }

    /// The sequence number on that node.
    pub const fn seq(self) -> u64 {
        self.0 & SEQ_MASK
    }

    /// The id as one number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The id from [`as_u64`](ConnId::as_u64)'s number.
    pub const fn from_u64(id: u64) -> ConnId {
        ConnId(id)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.node(), self.seq())
    }
}

/// The text was not `"<node>-<seq>"`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{0}` is not a connection id (expected <node>-<seq>, such as 0-17)")]
pub struct ParseConnIdError(String);

impl FromStr for ConnId {
    type Err = ParseConnIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseConnIdError(s.chars().take(64).collect());
        let (node, seq) = s.split_once('-').ok_or_else(bad)?;
        let node: u16 = node.parse().map_err(|_| bad())?;
        let seq: u64 = seq.parse().map_err(|_| bad())?;
        if seq > SEQ_MASK {
            return Err(bad());
        }
        Ok(ConnId::new(node, seq))
    }
}

impl Serialize for ConnId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ConnId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The parts of the handshake request, handed to [`Handler::on_open`](crate::Handler::on_open)
/// and dropped after it.
pub type OpenRequest = http::request::Parts;

pub(crate) struct ConnShared {
    pub(crate) id: ConnId,
    pub(crate) server: Arc<str>,
    pub(crate) route: Arc<str>,
    pub(crate) path: Box<str>,
    pub(crate) params: Box<[(Box<str>, Box<str>)]>,
    /// The client's address, as the handshake's [`PeerAddr`](crate::PeerAddr) (so that
    /// [`Conn::get`] finds it without a map entry per connection).
    pub(crate) peer: crate::PeerAddr,
    pub(crate) protocol: Option<Box<str>>,
    pub(crate) opened_at: SystemTime,
    pub(crate) opened: Instant,
    pub(crate) data: Extensions,
    pub(crate) user: Option<Arc<str>>,
    /// The rooms it is in; `None` once it has closed and left them all.
    pub(crate) rooms: Mutex<Option<Vec<Arc<str>>>>,
    pub(crate) outbox: Outbox,
    pub(crate) sender: Sender,
    pub(crate) counters: Arc<RouteCounters>,
}

/// The user a connection belongs to. Handshake middleware that authenticates a request
/// inserts it into the request's extensions; the connection is then indexed by it, so
/// [`Sender::push_user`] reaches every connection of that user and presence can say
/// whether the user is online.
///
/// ```
/// let mut request = wharf::http::Request::new(());
/// request.extensions_mut().insert(wharf::UserId::new("alice"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(pub String);

impl UserId {
    /// A user id.
    pub fn new(id: impl Into<String>) -> UserId {
        UserId(id.into())
    }
}

/// A handle to one open connection. Cheap to clone; it can be kept and used from any task.
///
/// Sending to a connection that has closed fails with [`SendError::Closed`].
#[derive(Clone)]
pub struct Conn(pub(crate) Arc<ConnShared>);

impl Conn {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.0.id
    }

    /// The name of the server it came in on.
    pub fn server(&self) -> &str {
        &self.0.server
    }

    /// The route pattern it matched, such as `/rooms/{room}`.
    pub fn route(&self) -> &str {
        &self.0.route
    }

    /// The request path, such as `/rooms/lobby`.
    pub fn path(&self) -> &str {
        &self.0.path
    }

    /// A path parameter of the route, such as `room` in `/rooms/{room}`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.0
            .params
            .iter()
            .find(|(key, _)| &**key == name)
            .map(|(_, value)| &**value)
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.0.peer.0
    }

    /// The subprotocol agreed at the handshake, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.0.protocol.as_deref()
    }

    /// When the connection opened.
    pub fn opened_at(&self) -> SystemTime {
        self.0.opened_at
    }

    /// A value attached during the handshake (by middleware, through the request's extensions).
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        // The client's address is a field of its own rather than an entry of the map.
        if let Some(peer) = (&self.0.peer as &dyn std::any::Any).downcast_ref::<T>() {
            return Some(peer);
        }
        self.0.data.get::<T>()
    }

    /// The user it belongs to, when the handshake set a [`UserId`].
    pub fn user(&self) -> Option<&str> {
        self.0.user.as_deref()
    }

    /// Joins `room` (cluster-wide presence follows). Returns false when it was already in it
    /// or has closed.
    ///
    /// ```
    /// # async fn on_open(conn: &wharf::Conn) {
    /// conn.join("lobby");
    /// conn.sender().push_room("lobby", "someone joined", Some(conn.id()));
    /// # }
    /// ```
    pub fn join(&self, room: &str) -> bool {
        self.0.sender.join_local(self, room)
    }

    /// Joins history room `room` and sends this connection every publication after `since`
    /// (what the room keeps when `None`), then live ones, with no gap and no duplicate in
    /// between (see [`HistoryHub::join_from`](crate::history::HistoryHub::join_from)).
    ///
    /// ```no_run
    /// # async fn on_open(conn: &wharf::Conn, since: Option<wharf::history::Position>) -> Result<(), wharf::history::RoomError> {
    /// let recovery = conn.join_from("chat:lobby", since.as_ref()).await?;
    /// if !recovery.recovered {
    ///     conn.send(r#"{"event":"resync"}"#)?; // what it missed is gone: reload
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn join_from(
        &self,
        room: &str,
        since: Option<&crate::history::Position>,
    ) -> Result<crate::history::Recovery, crate::history::RoomError> {
        self.0
            .sender
            .history_hub()
            .join_from(self, room, since)
            .await
    }

    /// Joins history room `room` live from now, exactly: every publication after the room's
    /// current top, once and in order (see
    /// [`HistoryHub::join_from_top`](crate::history::HistoryHub::join_from_top)). `position`
    /// in the answer is where the member starts.
    ///
    /// ```no_run
    /// # async fn on_open(conn: &wharf::Conn) -> Result<(), wharf::history::RoomError> {
    /// let joined = conn.join_from_top("chat:lobby").await?;
    /// println!("following chat:lobby from {}", joined.position);
    /// # Ok(()) }
    /// ```
    pub async fn join_from_top(
        &self,
        room: &str,
    ) -> Result<crate::history::Recovery, crate::history::RoomError> {
        self.0.sender.history_hub().join_from_top(self, room).await
    }

    /// Whether it is in `room`.
    pub(crate) fn in_room(&self, room: &str) -> bool {
        self.lock_rooms()
            .as_ref()
            .is_some_and(|rooms| rooms.iter().any(|r| &**r == room))
    }

    /// Leaves `room`. Returns false when it was not in it.
    pub fn leave(&self, room: &str) -> bool {
        self.0.sender.leave_local(self, room)
    }

    /// The rooms it is in, in the order it joined them.
    pub fn rooms(&self) -> Vec<String> {
        self.lock_rooms()
            .as_ref()
            .map(|rooms| rooms.iter().map(|r| r.to_string()).collect())
            .unwrap_or_default()
    }

    /// The sender of the process it belongs to: push to other connections, rooms and users.
    pub fn sender(&self) -> &Sender {
        &self.0.sender
    }

    fn lock_rooms(&self) -> std::sync::MutexGuard<'_, Option<Vec<Arc<str>>>> {
        self.0.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that it joined `room`; false once it has closed.
    pub(crate) fn add_room(&self, room: Arc<str>) -> bool {
        match &mut *self.lock_rooms() {
            Some(rooms) => {
                rooms.push(room);
                true
            }
            None => false,
        }
    }

    pub(crate) fn remove_room(&self, room: &str) {
        if let Some(rooms) = &mut *self.lock_rooms() {
            rooms.retain(|r| &**r != room);
        }
    }

    /// Marks it closed and returns the rooms it was in.
    pub(crate) fn take_rooms(&self) -> Vec<Arc<str>> {
        self.lock_rooms().take().unwrap_or_default()
    }

    /// Queues a message to this connection.
    pub fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        let message = message.into();
        let opcode = message.opcode();
        let result = if message.len() >= SPLICE_FROM {
            // Large: handed to the queue as it is, and written from where it lies.
            self.0.outbox.push_owned(opcode, message.into_payload())
        } else {
            self.0.outbox.push_frame(opcode, message.as_bytes())
        };
        self.count_push(&result);
        result.map(drop).map_err(|e| match e {
            PushError::Closed => SendError::Closed(self.0.id),
            PushError::Full => SendError::QueueFull(self.0.id),
        })
    }

    /// Queues a fan-out message (encoded once for all its recipients); false when it was
    /// dropped.
    pub(crate) fn queue_fanout(&self, frame: &Fanout<'_>) -> bool {
        let result = self.0.outbox.push_fanout(frame);
        self.count_push(&result);
        result.is_ok()
    }

    fn count_push(&self, result: &Result<usize, PushError>) {
        match result {
            Ok(len) => self.0.counters.queued(*len),
            Err(PushError::Full) => self.0.sender.counters().dropped("queue_full"),
            Err(PushError::Closed) => self.0.sender.counters().dropped("closed"),
        }
    }

    /// Starts a close handshake with `code` and `reason` (cut to 123 bytes on a character
    /// boundary) once everything queued before has been written. Returns false when the
    /// connection was already closing.
    pub fn close(&self, code: CloseCode, reason: &str) -> bool {
        self.0.outbox.request_close(code, reason)
    }

    /// Bytes queued for this connection that its driver has not yet taken to write (bounded
    /// by `max_queue_size`). What the driver has taken and the socket not yet accepted
    /// (replies to the connection's own messages go there directly; at most as much again)
    /// is not counted.
    pub fn queued_bytes(&self) -> usize {
        self.0.outbox.queued()
    }

    /// A snapshot for listings.
    pub fn info(&self) -> ConnInfo {
        ConnInfo {
            id: self.0.id,
            server: self.0.server.to_string(),
            route: self.0.route.to_string(),
            path: self.0.path.to_string(),
            peer: self.0.peer.0,
            opened_at_ms: self
                .0
                .opened_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            age_ms: self.0.opened.elapsed().as_millis() as u64,
            queued_bytes: self.queued_bytes(),
            user: self.0.user.as_deref().map(str::to_owned),
            rooms: self.rooms(),
        }
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.0.id)
            .field("route", &self.0.route)
            .field("peer", &self.0.peer.0)
            .finish()
    }
}

/// What a listing says about a connection.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ConnInfo {
    /// Its id.
    pub id: ConnId,
    /// The server it came in on.
    pub server: String,
    /// The route pattern it matched.
    pub route: String,
    /// The request path.
    pub path: String,
    /// The client's address.
    pub peer: SocketAddr,
    /// When it opened, in milliseconds since the Unix epoch.
    pub opened_at_ms: u64,
    /// How long it has been open, in milliseconds.
    pub age_ms: u64,
    /// Bytes queued to it and not yet written.
    pub queued_bytes: usize,
    /// The user it belongs to, if any.
    pub user: Option<String>,
    /// The rooms it is in.
    pub rooms: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_id_round_trips() {
        let id = ConnId::new(65535, 123_456);
        assert_eq!(id.to_string().parse::<ConnId>().ok(), Some(id));
        assert!("12".parse::<ConnId>().is_err());
        assert!("a-1".parse::<ConnId>().is_err());
        assert!("70000-1".parse::<ConnId>().is_err());
    }
}
