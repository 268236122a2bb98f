//! The sender: push to and close any connection, room or user, from anywhere in the
//! application, on this node or (with a backplane) anywhere in the cluster.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use crate::cluster::{Cluster, ClusterStats, Command, Member, NodePresence, Outcome, Scope};
use crate::compression::Fanout;
use crate::config::HistoryConfig;
use crate::conn::{Conn, ConnId, ConnInfo};
use crate::history::{
    HistoryHub, HistoryPage, HistoryState, Position, Publication, PublishOptions, Published,
    RoomError,
};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::registry::Registry;
use crate::{CloseCode, Message, SendError};

/// Pushes messages to connections, rooms and users and closes them, from any task: a
/// handler, an HTTP handler, a background job. Cheap to clone.
///
/// With a cluster backplane every operation reaches the whole cluster: local connections
/// at once, the others through the backplane (at most once; see `docs/cluster.md`). The
/// counts it returns are local deliveries. Presence queries are `async` because they may
/// ask the backplane.
///
/// ```no_run
/// # async fn demo(sender: wharf::Sender, id: wharf::ConnId) -> Result<(), wharf::SendError> {
/// sender.push(id, "hello")?;
/// sender.join(id, "lobby")?;
/// sender.push_room("lobby", "news for the lobby", None);
/// sender.push_user("alice", "only for alice");
/// let online = sender.user_online("alice").await?;
/// sender.close(id, wharf::CloseCode::NORMAL, "bye")?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Sender {
    hub: Arc<Hub>,
}

/// What every sender of a process shares.
pub(crate) struct Hub {
    registry: Registry,
    presence_events: bool,
    cluster: OnceLock<Arc<Cluster>>,
    metrics: Metrics,
    history: HistoryState,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("node", &self.node())
            .field("open", &self.count())
            .finish()
    }
}

impl Sender {
    pub(crate) fn new(node: u16, presence_events: bool, history: HistoryConfig) -> Sender {
        let metrics = Metrics::default();
        let history = HistoryState::new(history, metrics.history.clone());
        Sender {
            hub: Arc::new(Hub {
                registry: Registry::new(node),
                presence_events,
                cluster: OnceLock::new(),
                metrics,
                history,
            }),
        }
    }

    pub(crate) fn history_state(&self) -> &HistoryState {
        &self.hub.history
    }

    /// The handle for history rooms: publish, read history, join from a position.
    pub fn history_hub(&self) -> HistoryHub {
        HistoryHub::new(self.clone())
    }

    /// Publishes `message` to history room `room` on every node, in position order, and
    /// returns its position and how many local members queued it. Fails (delivering
    /// nothing) when the room keeps no history or the store cannot take it. See
    /// [`HistoryHub::publish`].
    ///
    /// ```no_run
    /// # async fn demo(sender: wharf::Sender) -> Result<(), wharf::history::RoomError> {
    /// let published = sender.publish("chat:lobby", "hello").await?;
    /// println!("stored at {}", published.position);
    /// # Ok(()) }
    /// ```
    pub async fn publish(
        &self,
        room: &str,
        message: impl Into<Message>,
    ) -> Result<Published, RoomError> {
        self.history_hub().publish(room, message).await
    }

    /// As [`publish`](Sender::publish), with options such as an idempotency key.
    pub async fn publish_with(
        &self,
        room: &str,
        message: impl Into<Message>,
        options: PublishOptions,
    ) -> Result<Published, RoomError> {
        self.history_hub()
            .publish_with(room, message, options)
            .await
    }

    /// Reads history room `room`: the publications after `since` (from the oldest kept when
    /// `None`), at most `limit`. See [`HistoryHub::read`].
    pub async fn history(
        &self,
        room: &str,
        since: Option<&Position>,
        limit: usize,
    ) -> Result<HistoryPage, RoomError> {
        self.history_hub().read(room, since, limit).await
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.hub.registry
    }

    pub(crate) fn counters(&self) -> &Metrics {
        &self.hub.metrics
    }

    /// Every counter of this node: connections, handshakes, messages, bytes, closes, drops,
    /// per route. `GET /metrics` on the http servers serves the same in Prometheus' format.
    pub fn metrics(&self) -> MetricsSnapshot {
        let mut snapshot = self.hub.metrics.snapshot();
        snapshot.queued_bytes = self
            .hub
            .registry
            .snapshot(|_| true)
            .iter()
            .map(|c| c.queued_bytes() as u64)
            .sum();
        snapshot
    }

    pub(crate) fn set_cluster(&self, cluster: Arc<Cluster>) {
        let _ = self.hub.cluster.set(cluster);
    }

    pub(crate) fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.hub.cluster.get()
    }

    fn is_local(&self, id: ConnId) -> bool {
        id.node() == self.node()
    }

    /// This node's id (the high bits of its connection ids).
    pub fn node(&self) -> u16 {
        self.hub.registry.node()
    }

    /// Queues a text or binary message to connection `id`. A connection on another node is
    /// reached through the backplane; `Ok` then means "published", not "delivered".
    pub fn push(&self, id: ConnId, message: impl Into<Message>) -> Result<(), SendError> {
        if self.is_local(id) {
            return self.conn(id).ok_or(SendError::NotFound(id))?.send(message);
        }
        self.remote(
            id,
            Command::Push {
                conn: id,
                message: message.into(),
            },
        )
    }

    /// Closes connection `id` with a close handshake, after what is already queued.
    /// The reason is cut to 123 bytes on a character boundary. Returns
    /// [`SendError::NotFound`] when no such connection is open on this node (or, for another
    /// node's connection, when there is no cluster).
    pub fn close(&self, id: ConnId, code: CloseCode, reason: &str) -> Result<(), SendError> {
        if self.is_local(id) {
            let conn = self.conn(id).ok_or(SendError::NotFound(id))?;
            return if conn.close(code, reason) {
                Ok(())
            } else {
                Err(SendError::Closed(id))
            };
        }
        let command = Command::Close {
            conn: id,
            code: code.as_u16(),
            reason: reason.to_owned(),
        };
        self.remote(id, command)
    }

    /// Adds connection `id` (on any node) to `room`.
    pub fn join(&self, id: ConnId, room: &str) -> Result<(), SendError> {
        if self.is_local(id) {
            let conn = self.conn(id).ok_or(SendError::NotFound(id))?;
            self.join_local(&conn, room);
            return Ok(());
        }
        self.remote(
            id,
            Command::Join {
                conn: id,
                room: room.to_owned(),
            },
        )
    }

    /// Removes connection `id` (on any node) from `room`.
    pub fn leave(&self, id: ConnId, room: &str) -> Result<(), SendError> {
        if self.is_local(id) {
            let conn = self.conn(id).ok_or(SendError::NotFound(id))?;
            self.leave_local(&conn, room);
            return Ok(());
        }
        self.remote(
            id,
            Command::Leave {
                conn: id,
                room: room.to_owned(),
            },
        )
    }

    /// Waits until this node receives what other nodes send to `room`, for at most `wait`.
    ///
    /// A node subscribes to a room's backplane channel when the room's first local member
    /// joins, which takes one round trip to the engine; until then, messages other nodes
    /// send to the room do not reach the new member. A handler that must not miss them awaits
    /// this after [`join`](Sender::join). True at once without a cluster, or when the room
    /// already had local members; false when the backplane did not confirm within `wait`
    /// (it is down, or the room has no local member).
    ///
    /// ```no_run
    /// # async fn demo(sender: wharf::Sender, id: wharf::ConnId) -> Result<(), wharf::SendError> {
    /// sender.join(id, "lobby")?;
    /// if !sender.room_ready("lobby", std::time::Duration::from_secs(2)).await {
    ///     tracing::warn!("lobby: other nodes' messages may be missed for now");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn room_ready(&self, room: &str, wait: std::time::Duration) -> bool {
        match self.cluster() {
            Some(cluster) => cluster.room_ready(room, wait).await,
            None => true,
        }
    }

    fn remote(&self, id: ConnId, command: Command) -> Result<(), SendError> {
        let cluster = self.cluster().ok_or(SendError::NotFound(id))?;
        cluster.publish_to(id.node(), &command);
        Ok(())
    }

    /// Sends `message` to every member of `room` on every node, except `except` (usually the
    /// sender). The frame is encoded once. Returns the number of local members reached.
    pub fn push_room(
        &self,
        room: &str,
        message: impl Into<Message>,
        except: Option<ConnId>,
    ) -> usize {
        let message = message.into();
        let local = self.room_local(room, &message, except);
        if let Some(cluster) = self.cluster() {
            cluster.publish_room(
                room,
                &Command::Room {
                    room: room.to_owned(),
                    message,
                    except,
                },
            );
        }
        local
    }

    /// Sends `message` to every connection of `user` on every node. Returns the number of
    /// local connections reached.
    pub fn push_user(&self, user: &str, message: impl Into<Message>) -> usize {
        let message = message.into();
        let local = self.user_local(user, &message);
        if let Some(cluster) = self.cluster() {
            cluster.publish_all(&Command::User {
                user: user.to_owned(),
                message,
            });
        }
        local
    }

    /// Closes every connection of `user` on every node. Returns the number of local ones.
    pub fn close_user(&self, user: &str, code: CloseCode, reason: &str) -> usize {
        let local = self.close_user_local(user, code, reason);
        if let Some(cluster) = self.cluster() {
            let command = Command::CloseUser {
                user: user.to_owned(),
                code: code.as_u16(),
                reason: reason.to_owned(),
            };
            cluster.publish_all(&command);
        }
        local
    }

    /// Sends `message` to every connection in `scope` on every node, encoding the frame once.
    /// Returns how many local connections queued it.
    pub fn broadcast(&self, message: impl Into<Message>, scope: Scope) -> usize {
        let message = message.into();
        let local = self.scope_local(&scope, &message);
        if let Some(cluster) = self.cluster() {
            cluster.publish_all(&Command::Broadcast { scope, message });
        }
        local
    }

    /// Sends `message` to every local connection `filter` accepts, encoding the frame once.
    /// This node only: a closure cannot travel to other nodes. Returns how many queued it.
    pub fn broadcast_where(
        &self,
        message: impl Into<Message>,
        filter: impl FnMut(&Conn) -> bool,
    ) -> usize {
        let message = message.into();
        deliver(&self.hub.registry.snapshot(filter), &message, None)
    }

    /// Whether connection `id` is open on this node.
    pub fn exists(&self, id: ConnId) -> bool {
        self.hub.registry.get(id).is_some()
    }

    /// The handle of connection `id`, if open on this node.
    pub fn conn(&self, id: ConnId) -> Option<Conn> {
        self.hub.registry.get(id)
    }

    /// How many connections are open on this node.
    pub fn count(&self) -> usize {
        self.hub.registry.count()
    }

    /// Every open connection on this node, oldest first.
    pub fn list(&self) -> Vec<ConnInfo> {
        let mut all: Vec<ConnInfo> = self
            .hub
            .registry
            .snapshot(|_| true)
            .iter()
            .map(Conn::info)
            .collect();
        all.sort_by_key(|c| c.id);
        all
    }

    /// The members of `room` on every node, ordered by connection id.
    pub async fn room_members(&self, room: &str) -> Result<Vec<Member>, SendError> {
        let mut members = local_members(&self.hub.registry.rooms.members(room));
        for node in self.others().await? {
            members.extend(node.rooms.get(room).into_iter().flatten().cloned());
        }
        members.sort();
        Ok(members)
    }

    /// How many connections are in `room` on every node.
    pub async fn room_count(&self, room: &str) -> Result<usize, SendError> {
        let mut count = self.hub.registry.rooms.count(room);
        for node in self.others().await? {
            count += node.rooms.get(room).map_or(0, Vec::len);
        }
        Ok(count)
    }

    /// Every room with members anywhere in the cluster, and its member count.
    pub async fn rooms(&self) -> Result<BTreeMap<String, usize>, SendError> {
        let mut rooms: BTreeMap<String, usize> = self
            .hub
            .registry
            .rooms
            .list()
            .into_iter()
            .map(|(name, count)| (name.to_string(), count))
            .collect();
        for node in self.others().await? {
            for (name, members) in node.rooms {
                *rooms.entry(name).or_default() += members.len();
            }
        }
        Ok(rooms)
    }

    /// The connections of `user` on every node, ordered by id; empty when the user is offline.
    pub async fn user_conns(&self, user: &str) -> Result<Vec<ConnId>, SendError> {
        let mut ids: Vec<ConnId> = self
            .hub
            .registry
            .users
            .conns(user)
            .iter()
            .map(Conn::id)
            .collect();
        for node in self.others().await? {
            ids.extend(node.users.get(user).into_iter().flatten());
        }
        ids.sort();
        Ok(ids)
    }

    /// Whether `user` has a connection open anywhere in the cluster.
    pub async fn user_online(&self, user: &str) -> Result<bool, SendError> {
        Ok(!self.user_conns(user).await?.is_empty())
    }

    /// Open connections on every node.
    pub async fn count_all(&self) -> Result<usize, SendError> {
        let mut count = self.count();
        for node in self.others().await? {
            count += node.conns;
        }
        Ok(count)
    }

    /// The cluster runtime's counters, when a backplane is configured.
    pub fn cluster_stats(&self) -> Option<ClusterStats> {
        self.cluster().map(|c| c.stats(self.node()))
    }

    pub(crate) async fn others(&self) -> Result<Vec<NodePresence>, SendError> {
        match self.cluster() {
            Some(cluster) => cluster
                .others(self.node())
                .await
                .map_err(|e| SendError::Backplane(e.to_string())),
            None => Ok(Vec::new()),
        }
    }

    pub(crate) fn join_local(&self, conn: &Conn, room: &str) -> bool {
        let joined = if self.hub.history.covers(room) {
            // Through the room's sequencer, which must know its members.
            self.history_hub().join(conn, room, false).unwrap_or(false)
        } else {
            self.hub.registry.join(conn, room)
        };
        if joined {
            self.presence_changed(conn, room, "join");
        }
        joined
    }

    pub(crate) fn leave_local(&self, conn: &Conn, room: &str) -> bool {
        let left = self.hub.registry.leave(conn, room);
        if left {
            self.history_left(room, conn.id());
            self.presence_changed(conn, room, "leave");
        }
        left
    }

    /// A connection closed: forget it everywhere and tell its rooms.
    pub(crate) fn closed(&self, conn: &Conn) {
        conn.0.counters.closed();
        let rooms = self.hub.registry.remove(conn);
        for room in &rooms {
            self.history_left(room, conn.id());
            self.presence_changed(conn, room, "leave");
        }
        if conn.user().is_some() && rooms.is_empty() {
            self.mark_dirty();
        }
    }

    /// A connection parked for a successor that failed: forgotten here with no presence
    /// event (it is registered again, as it was, when this process takes it back).
    pub(crate) fn forget_parked(&self, id: ConnId) {
        let Some(conn) = self.hub.registry.get(id) else {
            return;
        };
        conn.0.counters.closed();
        for room in self.hub.registry.remove(&conn) {
            self.history_left(&room, id);
        }
    }

    /// A connection a predecessor handed over: registered as it was, not counted as a new
    /// handshake.
    pub(crate) fn resumed(&self, conn: Conn) {
        let has_user = conn.user().is_some();
        conn.0.counters.opened();
        self.hub.registry.insert(conn);
        if has_user {
            self.mark_dirty();
        }
    }

    /// Puts a moved connection back in history room `room` marked recovering, with no
    /// presence event; [`HistoryHub::resume_member`] then sends what it missed.
    pub(crate) fn rejoin_recovering(&self, conn: &Conn, room: &str) -> bool {
        let joined = self.history_hub().rejoin_recovering(conn, room);
        self.mark_dirty();
        joined
    }

    /// Puts a moved connection back in `room`, with no presence event: to the room's
    /// other members it never left.
    pub(crate) fn rejoin(&self, conn: &Conn, room: &str) {
        if self.hub.history.covers(room) {
            let _ = self.history_hub().join(conn, room, false);
        } else {
            self.hub.registry.join(conn, room);
        }
        self.mark_dirty();
    }

    /// A connection opened.
    pub(crate) fn opened(&self, conn: Conn) {
        let has_user = conn.user().is_some();
        conn.0.counters.opened();
        self.hub.metrics.accepted();
        self.hub.registry.insert(conn);
        if has_user {
            self.mark_dirty();
        }
    }

    fn mark_dirty(&self) {
        if let Some(cluster) = self.cluster() {
            cluster.mark_dirty();
        }
    }

    fn history_left(&self, room: &str, conn: ConnId) {
        if self.hub.history.covers(room) {
            self.history_hub().left(room, conn);
        }
    }

    pub(crate) fn presence_changed(&self, conn: &Conn, room: &str, event: &str) {
        self.mark_dirty();
        if self.hub.presence_events {
            let event = serde_json::json!({
                "event": event,
                "room": room,
                "conn": conn.id(),
                "user": conn.user(),
            });
            self.push_room(room, event.to_string(), Some(conn.id()));
        }
    }

    pub(crate) fn room_local(
        &self,
        room: &str,
        message: &Message,
        except: Option<ConnId>,
    ) -> usize {
        deliver(&self.hub.registry.rooms.members(room), message, except)
    }

    pub(crate) fn scope_local(&self, scope: &Scope, message: &Message) -> usize {
        deliver(
            &self.hub.registry.snapshot(|conn| scope.matches(conn)),
            message,
            None,
        )
    }

    pub(crate) fn user_local(&self, user: &str, message: &Message) -> usize {
        deliver(&self.hub.registry.users.conns(user), message, None)
    }

    fn close_user_local(&self, user: &str, code: CloseCode, reason: &str) -> usize {
        let conns = self.hub.registry.users.conns(user);
        conns.iter().filter(|c| c.close(code, reason)).count()
    }

    /// Applies an asked-for command to local connections and says what happened: for one
    /// connection, whether it was queued (or why not); for a room, user or scope, how many
    /// local connections queued it.
    pub(crate) fn apply_counted(&self, command: Command) -> (Outcome, usize) {
        let outcome = |result: Result<(), SendError>| match result {
            Ok(()) => (Outcome::Delivered, 1),
            Err(SendError::Closed(_)) => (Outcome::Closing, 0),
            Err(SendError::QueueFull(_)) => (Outcome::QueueFull, 0),
            Err(_) => (Outcome::NotFound, 0),
        };
        match command {
            Command::Push { conn, message } if self.is_local(conn) => {
                outcome(self.push(conn, message))
            }
            Command::Close { conn, code, reason } if self.is_local(conn) => {
                outcome(self.close(conn, CloseCode::new(code), &reason))
            }
            Command::Push { .. } | Command::Close { .. } => (Outcome::NotFound, 0),
            Command::Room {
                room,
                message,
                except,
            } => (Outcome::Delivered, self.room_local(&room, &message, except)),
            Command::User { user, message } => {
                (Outcome::Delivered, self.user_local(&user, &message))
            }
            Command::Broadcast { scope, message } => {
                (Outcome::Delivered, self.scope_local(&scope, &message))
            }
            other => {
                self.apply(other);
                (Outcome::Delivered, 0)
            }
        }
    }

    /// Applies a command another node published, to local connections only.
    pub(crate) fn apply(&self, command: Command) {
        match command {
            Command::Push { conn, message } => {
                if let Some(conn) = self.conn(conn) {
                    let _ = conn.send(message);
                }
            }
            Command::Close { conn, code, reason } => {
                if let Some(conn) = self.conn(conn) {
                    conn.close(CloseCode::new(code), &reason);
                }
            }
            Command::Join { conn, room } => {
                if let Some(conn) = self.conn(conn) {
                    self.join_local(&conn, &room);
                }
            }
            Command::Leave { conn, room } => {
                if let Some(conn) = self.conn(conn) {
                    self.leave_local(&conn, &room);
                }
            }
            Command::Room {
                room,
                message,
                except,
            } => {
                self.room_local(&room, &message, except);
            }
            Command::User { user, message } => {
                self.user_local(&user, &message);
            }
            Command::CloseUser { user, code, reason } => {
                self.close_user_local(&user, CloseCode::new(code), &reason);
            }
            Command::Broadcast { scope, message } => {
                self.scope_local(&scope, &message);
            }
            Command::Publication {
                room,
                position,
                message,
            } => {
                if self.hub.history.covers(&room) {
                    self.history_hub()
                        .offer(&room, Publication::new(position, message));
                }
            }
            // The runtime handles asks and answers before they reach the sender.
            Command::Ask { .. } | Command::Answer { .. } => {}
        }
    }
}

fn local_members(conns: &[Conn]) -> Vec<Member> {
    conns
        .iter()
        .map(|conn| Member {
            conn: conn.id(),
            user: conn.user().map(str::to_owned),
        })
        .collect()
}

/// Encodes `message` once and queues the bytes to each of `conns` (but `except`); the caller
/// took `conns` under a lock it has released. Returns how many queued it.
fn deliver(conns: &[Conn], message: &Message, except: Option<ConnId>) -> usize {
    if conns.is_empty() {
        return 0;
    }
    let frame = Fanout::new(message.opcode(), message.as_bytes());
    conns
        .iter()
        .filter(|conn| Some(conn.id()) != except)
        .filter(|conn| conn.queue_fanout(&frame))
        .count()
}
