//! The history hub: publishing to history rooms, reading their history, and joining them
//! from a position ([`super::recovery`]). [`HistoryHub`] is its handle (from [`Sender::history_hub`]); the
//! `Sender::publish`, `Sender::history` and `Conn::join_from` shortcuts call it.
//!
//! # Publishing
//!
//! `store.append` (which assigns the offset), then the local sequencer (delivery to this
//! node's members), then one `Publication` command to the other nodes, whose sequencers
//! deliver it in order. A publish the store cannot take fails: nothing is delivered.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use super::sequencer::{Ctx, Envelope, GAP_WAIT, Offered, RoomSeq};
use super::{HistoryError, HistoryPage, HistoryPolicy, HistoryStore, MemoryHistory};
use super::{Position, Publication};
use crate::cluster::Command;
use crate::config::HistoryConfig;
use crate::metrics::HistoryCounters;
use crate::registry::named::Named;
use crate::{Conn, ConnId, Message, SendError, Sender};

/// Store reads a gap fill retries before it gives the gap up.
const GAP_RETRIES: u32 = 3;

/// Why a history operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    /// The room keeps no history (no `[rooms.history]` size or rule covers it). Publish
    /// with [`Sender::push_room`] instead, or configure history for it (HTTP 404
    /// `no_history`).
    #[error("room `{0}` keeps no history (see [rooms.history])")]
    NoHistory(String),
    /// The history store failed or refused the request: unavailable (nothing was stored or
    /// delivered; retry later, HTTP 503) or a position ahead of the room (HTTP 400).
    #[error(transparent)]
    Store(#[from] HistoryError),
    /// The connection closed, or its queue filled, while its history was sent; it has left
    /// the room. Nothing to do: it reconnects and recovers again.
    #[error(transparent)]
    Send(#[from] SendError),
}

impl RoomError {
    /// Whether the store could not be reached (retry later).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, RoomError::Store(HistoryError::Unavailable(_)))
    }
}

/// Options of [`HistoryHub::publish_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishOptions {
    /// A key naming this publish: a retry with the same key within the room's
    /// `idempotency_window` returns the first position and delivers nothing. Default: none.
    pub idempotency_key: Option<String>,
}

impl PublishOptions {
    /// Options with an idempotency key.
    ///
    /// ```
    /// let options = wharf::history::PublishOptions::idempotent("order-17");
    /// assert_eq!(options.idempotency_key.as_deref(), Some("order-17"));
    /// ```
    pub fn idempotent(key: impl Into<String>) -> PublishOptions {
        PublishOptions {
            idempotency_key: Some(key.into()),
        }
    }
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// The publication's position (for a duplicate, the first publish's).
    pub position: Position,
    /// Local members it was queued to now; 0 when it waits for an earlier publication still
    /// on its way (it is then delivered as soon as that one arrives) or for a duplicate.
    pub delivered_local: usize,
    /// The idempotency key was seen within the window: nothing was stored or delivered.
    pub duplicate: bool,
}

/// What the sender's hub keeps for history rooms.
pub(crate) struct HistoryState {
    config: HistoryConfig,
    store: OnceLock<Arc<dyn HistoryStore>>,
    /// The store when none was given: one node's memory, kept typed so that a live
    /// handover carries it to the successor.
    memory: OnceLock<Arc<MemoryHistory>>,
    envelope: OnceLock<Envelope>,
    rooms: Named<Arc<Mutex<RoomSeq>>>,
    /// Per room, the latest publication this node stored whose broadcast the backplane
    /// dropped (it was down): sent again once it is back (see
    /// [`HistoryHub::backplane_connected`]).
    unsent: Mutex<std::collections::HashMap<Arc<str>, Publication>>,
    pub(super) counters: Arc<HistoryCounters>,
}

impl HistoryState {
    pub(crate) fn new(config: HistoryConfig, counters: Arc<HistoryCounters>) -> HistoryState {
        HistoryState {
            config,
            store: OnceLock::new(),
            memory: OnceLock::new(),
            envelope: OnceLock::new(),
            rooms: Named::new(),
            unsent: Mutex::default(),
            counters,
        }
    }

    /// Whether any room keeps history.
    pub(crate) fn enabled(&self) -> bool {
        self.config.enabled()
    }

    /// Whether `room` keeps history.
    pub(crate) fn covers(&self, room: &str) -> bool {
        self.config.policy(room).is_some()
    }

    /// Sets the store; false when one was set already.
    pub(crate) fn set_store(&self, store: Arc<dyn HistoryStore>) -> bool {
        self.store.set(store).is_ok()
    }

    /// Whether a store was set.
    pub(crate) fn has_store(&self) -> bool {
        self.store.get().is_some()
    }

    /// Sets the envelope; false when one was set already.
    pub(crate) fn set_envelope(&self, envelope: Envelope) -> bool {
        self.envelope.set(envelope).is_ok()
    }

    pub(super) fn store(&self) -> &Arc<dyn HistoryStore> {
        // One node with no store given: memory (bind refuses a cluster without one).
        self.store.get_or_init(|| {
            let memory = self.memory.get_or_init(|| Arc::new(MemoryHistory::new()));
            memory.clone()
        })
    }

    /// For a live handover, in the old process once its moved connections are parked: the
    /// default in-memory store's rooms, after which it refuses appends. Empty with a store
    /// that was given (a shared one outlives the process) or when none was used.
    pub(crate) fn hand_over_memory(&self) -> Vec<super::RoomSnapshot> {
        match self.memory.get() {
            Some(memory) => memory.hand_over(),
            None => Vec::new(),
        }
    }

    /// The successor failed before taking the history: appends are accepted here again
    /// (nothing was appended anywhere since [`hand_over_memory`](Self::hand_over_memory)).
    pub(crate) fn take_back_memory(&self) {
        if let Some(memory) = self.memory.get() {
            memory.take_back();
        }
    }

    /// In the successor, before it resumes the moved connections: takes the predecessor's
    /// in-memory rooms into its own default store. `None` (and nothing taken) when this
    /// process was given a store of its own.
    pub(crate) fn restore_memory(&self, parts: Vec<super::RoomSnapshot>) -> Option<usize> {
        self.store();
        let memory = self.memory.get()?;
        Some(memory.restore(parts))
    }

    pub(super) fn envelope(&self) -> &Envelope {
        self.envelope
            .get_or_init(|| Arc::new(|_room: &str, p: &Publication| p.message.clone()))
    }

    pub(super) fn seq(&self, room: &str) -> Option<Arc<Mutex<RoomSeq>>> {
        self.rooms.shard(room).get(room).cloned()
    }

    fn seq_or_new(&self, room: &str) -> Arc<Mutex<RoomSeq>> {
        self.rooms
            .shard(room)
            .entry(Arc::from(room))
            .or_default()
            .clone()
    }
}

/// The command that carries `publication` to the other nodes.
fn broadcast(room: &str, publication: &Publication) -> Command {
    Command::Publication {
        room: room.to_owned(),
        position: publication.position.clone(),
        message: publication.message.clone(),
    }
}

fn lock_unsent(
    state: &HistoryState,
) -> MutexGuard<'_, std::collections::HashMap<Arc<str>, Publication>> {
    state.unsent.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn lock(seq: &Mutex<RoomSeq>) -> MutexGuard<'_, RoomSeq> {
    // A sequencer step cannot leave the state half-updated in a way that is unsafe to
    // continue from (at worst a member misses a publication), so a poisoned lock is usable.
    seq.lock().unwrap_or_else(|p| p.into_inner())
}

/// Publishing, reading and recovering history rooms: a handle on the [`Sender`]'s hub
/// (`sender.history_hub()`), cheap to clone.
///
/// ```no_run
/// # async fn demo(sender: wharf::Sender) -> Result<(), wharf::history::RoomError> {
/// use wharf::history::PublishOptions;
/// let hub = sender.history_hub();
/// let first = hub.publish("chat:lobby", "hello").await?;
/// let retry = hub
///     .publish_with("chat:lobby", "order 17 paid", PublishOptions::idempotent("o17"))
///     .await?;
/// let page = hub.read("chat:lobby", Some(&first.position), 100).await?;
/// assert_eq!(page.publications.len(), 1);
/// # let _ = retry; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct HistoryHub {
    pub(super) sender: Sender,
}

impl HistoryHub {
    pub(crate) fn new(sender: Sender) -> HistoryHub {
        HistoryHub { sender }
    }

    pub(super) fn state(&self) -> &HistoryState {
        self.sender.history_state()
    }

    pub(super) fn ctx<'a>(&'a self, room: &'a str) -> Ctx<'a> {
        Ctx {
            room,
            rooms: &self.sender.registry().rooms,
            envelope: self.state().envelope(),
        }
    }

    /// The history policy of `room`, or `None` when it keeps none.
    pub fn policy(&self, room: &str) -> Option<HistoryPolicy> {
        self.state().config.policy(room)
    }

    pub(super) fn policy_or_err(&self, room: &str) -> Result<HistoryPolicy, RoomError> {
        self.policy(room)
            .ok_or_else(|| RoomError::NoHistory(room.to_owned()))
    }

    /// The store's engine (`"memory"`, `"redis"`, `"nats"`).
    pub fn engine(&self) -> &'static str {
        self.state().store().engine()
    }

    /// Publishes `message` to `room`: stores it, delivers it to every member on every node
    /// in position order, and returns its position.
    pub async fn publish(
        &self,
        room: &str,
        message: impl Into<Message>,
    ) -> Result<Published, RoomError> {
        self.publish_with(room, message, PublishOptions::default())
            .await
    }

    /// As [`publish`](HistoryHub::publish), with options (an idempotency key).
    pub async fn publish_with(
        &self,
        room: &str,
        message: impl Into<Message>,
        options: PublishOptions,
    ) -> Result<Published, RoomError> {
        let message = message.into();
        let policy = self.policy_or_err(room)?;
        let state = self.state();
        let counters = &state.counters;
        let appended = state
            .store()
            .append(room, &message, &policy, options.idempotency_key.as_deref())
            .await
            .inspect_err(|_| HistoryCounters::add(&counters.store_errors))?;
        // From here on nothing awaits: a publish whose caller gives up (a dropped HTTP
        // request) is either not stored or stored, delivered and sent to the cluster.
        if appended.duplicate {
            HistoryCounters::add(&counters.duplicates);
            return Ok(Published {
                position: appended.position,
                delivered_local: 0,
                duplicate: true,
            });
        }
        HistoryCounters::add(&counters.appends);
        let publication = Publication::new(appended.position.clone(), message);
        let delivered_local = self.offer(room, publication.clone());
        if let Some(cluster) = self.sender.cluster() {
            let command = Command::Publication {
                room: room.to_owned(),
                position: publication.position,
                message: publication.message,
            };
            if !cluster.publish_room(room, &command) {
                // Stored but not broadcast: the other nodes learn of it when it is re-offered
                // (kept from the command, so the hot path copies the message only once).
                if let Command::Publication {
                    position, message, ..
                } = command
                {
                    lock_unsent(state).insert(room.into(), Publication::new(position, message));
                }
            }
        }
        Ok(Published {
            position: appended.position,
            delivered_local,
            duplicate: false,
        })
    }

    /// The publications of `room` after `since` (from the oldest kept when `None`), at most
    /// `limit`, with the room's top and whether nothing between is missing.
    pub async fn read(
        &self,
        room: &str,
        since: Option<&Position>,
        limit: usize,
    ) -> Result<HistoryPage, RoomError> {
        let policy = self.policy_or_err(room)?;
        let counters = &self.state().counters;
        HistoryCounters::add(&counters.reads);
        let page = self.state().store().read(room, since, limit, &policy).await;
        if matches!(page, Err(HistoryError::Unavailable(_))) {
            HistoryCounters::add(&counters.store_errors);
        }
        Ok(page?)
    }

    pub(super) fn store_failed(&self, error: &HistoryError) {
        if matches!(error, HistoryError::Unavailable(_)) {
            HistoryCounters::add(&self.state().counters.store_errors);
        }
    }

    /// Joins `conn` to history room `room`, under its sequencer's lock (so that no
    /// publication is delivered between the join and the mark), marking it recovering when
    /// asked. Returns whether it joined.
    pub(crate) fn join(
        &self,
        conn: &Conn,
        room: &str,
        recovering: bool,
    ) -> Result<bool, SendError> {
        let state = self.state();
        loop {
            let seq = state.seq_or_new(room);
            let mut guard = lock(&seq);
            if guard.dead {
                continue; // removed between the lookup and the lock: take the new one
            }
            let joined = self.sender.registry().join(conn, room);
            if !joined && !conn.in_room(room) {
                return Err(SendError::Closed(conn.id()));
            }
            if recovering {
                guard.recovering(conn.id());
            } else if !guard.started() && !guard.init_started {
                guard.init_started = true;
                drop(guard);
                self.spawn_start(room);
            }
            return Ok(joined);
        }
    }

    /// `conn` moves to a successor process: `room`'s sequencer delivers nothing more to it,
    /// and the answer is the position of the last publication it was queued (see
    /// `RoomSeq::park`); `None` when unknown.
    pub(crate) fn park_member(&self, room: &str, conn: ConnId) -> Option<Position> {
        let seq = self.state().seq(room)?;
        let mut guard = lock(&seq);
        if guard.dead {
            return None;
        }
        guard.park(conn)
    }

    /// `conn` left history room `room` (or closed): forget it, and drop the sequencer once
    /// the room has no local member.
    pub(crate) fn left(&self, room: &str, conn: ConnId) {
        let state = self.state();
        let Some(seq) = state.seq(room) else { return };
        let mut guard = lock(&seq);
        guard.forget(conn);
        if self.sender.registry().rooms.count(room) == 0 && !guard.has_cursors() {
            guard.dead = true;
            let mut shard = state.rooms.shard(room);
            if shard.get(room).is_some_and(|s| Arc::ptr_eq(s, &seq)) {
                shard.remove(room);
            }
        }
    }

    /// Hands a publication (from this node or another) to `room`'s sequencer; returns how
    /// many local members it was queued to now. Rooms without local members ignore it.
    pub(crate) fn offer(&self, room: &str, publication: Publication) -> usize {
        let Some(seq) = self.state().seq(room) else {
            return 0;
        };
        let (offered, start): (Offered, bool) = {
            let mut guard = lock(&seq);
            if guard.dead {
                return 0;
            }
            let offered = guard.offer(&self.ctx(room), publication);
            // Not started (an earlier attempt could not read the store): try again.
            let start = !guard.started() && !guard.init_started;
            guard.init_started |= start;
            (offered, start)
        };
        if start {
            self.spawn_start(room);
        }
        if offered.arm_gap {
            self.arm_gap(room);
        }
        offered.delivered
    }

    /// The backplane is (re)connected. Publications this node stored while it was down were
    /// not broadcast: the latest of each room is offered again, so the other nodes' sequencers
    /// see the gap and fill it from the store. And what other nodes broadcast meanwhile did
    /// not arrive here: each room with local members re-reads its top once this node's
    /// subscription to it is back, and fills its own gap. Without this a room that goes quiet
    /// right after an outage would leave members waiting for its next publication.
    pub(crate) fn backplane_connected(&self) {
        let Some(cluster) = self.sender.cluster() else {
            return;
        };
        let unsent = std::mem::take(&mut *lock_unsent(self.state()));
        for (room, publication) in unsent {
            if !cluster.publish_room(&room, &broadcast(&room, &publication)) {
                lock_unsent(self.state()).insert(room, publication);
            }
        }
        let mut rooms = Vec::new();
        self.state().rooms.each(|room, _| rooms.push(room.clone()));
        for room in rooms {
            let hub = self.clone();
            spawn(async move { hub.recheck_top(&room).await });
        }
    }

    /// Offers `room`'s latest stored publication to its sequencer (a duplicate is dropped;
    /// one ahead opens a gap, filled from the store). The store may itself still be
    /// reconnecting: a failed read is retried a few times.
    async fn recheck_top(&self, room: &str) {
        let Some(policy) = self.policy(room) else {
            return;
        };
        self.sender.room_ready(room, GAP_WAIT * 8).await;
        let store = self.state().store();
        for attempt in 1..=GAP_RETRIES * 2 {
            let latest = match store.read(room, None, 0, &policy).await {
                Ok(page) if page.top.offset == 0 => return,
                Ok(page) => {
                    let before = Position::new(page.top.epoch.clone(), page.top.offset - 1);
                    store.read(room, Some(&before), 1, &policy).await
                }
                Err(e) => Err(e),
            };
            match latest {
                Ok(page) => {
                    for publication in page.publications {
                        self.offer(room, publication);
                    }
                    return;
                }
                Err(e) => self.store_failed(&e),
            }
            tokio::time::sleep(GAP_WAIT * attempt).await;
        }
    }

    /// Reads the room's top and starts its sequencer there (a member joined with no position).
    fn spawn_start(&self, room: &str) {
        let hub = self.clone();
        let room: Arc<str> = room.into();
        spawn(async move {
            let Some(policy) = hub.policy(&room) else {
                return;
            };
            let top = hub.state().store().read(&room, None, 0, &policy).await;
            let Some(seq) = hub.state().seq(&room) else {
                return;
            };
            let offered = {
                let mut guard = lock(&seq);
                guard.init_started = false;
                match &top {
                    Ok(page) => guard.start_live(&hub.ctx(&room), &page.top),
                    // The store cannot be read: take the first publication seen as the next.
                    Err(_) => guard.start_from_pending(&hub.ctx(&room)),
                }
            };
            if let Err(e) = top {
                hub.store_failed(&e);
            }
            if offered.arm_gap {
                hub.arm_gap(&room);
            }
        });
    }

    /// Starts the task that fills `room`'s gap from the store if it stays open [`GAP_WAIT`].
    pub(super) fn arm_gap(&self, room: &str) {
        let hub = self.clone();
        let room: Arc<str> = room.into();
        spawn(async move { hub.fill_gap(&room).await });
    }

    async fn fill_gap(&self, room: &str) {
        let mut failures = 0;
        loop {
            tokio::time::sleep(GAP_WAIT).await;
            let Some(seq) = self.state().seq(room) else {
                return;
            };
            let gap = {
                let mut guard = lock(&seq);
                match guard.gap() {
                    Some(gap) if !guard.dead => gap,
                    _ => {
                        guard.gap_armed = false;
                        return;
                    }
                }
            };
            let (after, upto) = gap;
            let Some(policy) = self.policy(room) else {
                return;
            };
            let limit = (upto - after.offset) as usize;
            let read = self
                .state()
                .store()
                .read(room, Some(&after), limit, &policy)
                .await;
            let counters = &self.state().counters;
            let mut guard = lock(&seq);
            if guard.dead {
                return;
            }
            if guard.gap().map(|(now, _)| now) != Some(after.clone()) {
                continue; // it moved meanwhile: look again
            }
            let ctx = self.ctx(room);
            match read {
                Ok(page) if page.complete && page.top.epoch == after.epoch => {
                    HistoryCounters::add(&counters.gaps_filled);
                    for publication in page.publications {
                        guard.offer(&ctx, publication);
                    }
                }
                Err(HistoryError::Unavailable(_)) if failures < GAP_RETRIES => {
                    HistoryCounters::add(&counters.store_errors);
                    failures += 1;
                    continue;
                }
                _ => {
                    HistoryCounters::add(&counters.resyncs);
                    guard.resync(&ctx);
                }
            }
            if !guard.stuck() {
                guard.gap_armed = false;
                return;
            }
        }
    }
}

/// Spawns on the current runtime (every caller runs in one: a handler, a publish, the
/// cluster's receive loop).
fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(task);
    }
}
