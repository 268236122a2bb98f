//! History in this process's memory: one node, lost on restart (a restart starts new epochs).
//!
//! A live handover carries it: the old process [freezes and snapshots](MemoryHistory::hand_over)
//! it once its moved connections are parked, the successor [restores](MemoryHistory::restore)
//! it before it resumes them, so epochs and offsets continue. From the snapshot on the old
//! process refuses appends (its connections that did not move are leaving), so two
//! processes never give out the same position.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::time::{Duration, Instant};

use super::{
    Appended, HistoryError, HistoryPage, HistoryPolicy, HistoryStore, Position, Publication,
    completeness,
};
use crate::Message;
use crate::cluster::BoxFuture;
use crate::registry::named::Named;

mod handover;

pub(crate) use handover::RoomSnapshot;

/// How often, at most, an append sweeps out every room idle for longer than its ttl.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A [`HistoryStore`] in memory, bounded per room by the policy's size and ttl. An idle room
/// is forgotten `ttl` after its last publish, and its next publish starts a new epoch.
///
/// ```
/// let store = wharf::history::MemoryHistory::new();
/// # let _ = store;
/// ```
pub struct MemoryHistory {
    rooms: Named<Room>,
    /// When the last sweep ran, in milliseconds since `started`.
    last_sweep: AtomicU64,
    started: Instant,
    /// Handed over to a successor: appends are refused.
    frozen: AtomicBool,
}

/// One room's history.
struct Room {
    epoch: String,
    top: u64,
    /// `(offset, stored at, message)`, oldest first.
    messages: VecDeque<(u64, Instant, Message)>,
    last_publish: Instant,
    ttl: Duration,
    /// Idempotency keys and the offset they got, with when they were seen (oldest first).
    keys: HashMap<Box<str>, u64>,
    key_order: VecDeque<(Instant, Box<str>)>,
}

impl Default for MemoryHistory {
    fn default() -> Self {
        MemoryHistory::new()
    }
}

impl std::fmt::Debug for MemoryHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryHistory").finish_non_exhaustive()
    }
}

impl MemoryHistory {
    /// An empty store.
    pub fn new() -> MemoryHistory {
        MemoryHistory {
            rooms: Named::new(),
            last_sweep: AtomicU64::new(0),
            started: Instant::now(),
            frozen: AtomicBool::new(false),
        }
    }

    /// How many messages are kept over all rooms (for tests and metrics).
    pub fn stored(&self) -> usize {
        let mut total = 0;
        self.rooms.each(|_, room| total += room.messages.len());
        total
    }

    fn append_now(
        &self,
        name: &str,
        message: &Message,
        policy: &HistoryPolicy,
        key: Option<&str>,
    ) -> Result<Appended, HistoryError> {
        let now = Instant::now();
        self.sweep(now);
        let mut shard = self.rooms.shard(name);
        // Checked under the shard's lock: `hand_over` sets the flag before it reads any
        // shard, so an append either lands in the snapshot or is refused.
        if self.frozen.load(Ordering::Acquire) {
            return Err(HistoryError::Unavailable(
                "this process handed its history over to its successor".into(),
            ));
        }
        let room = match shard.get_mut(name) {
            Some(room) if !room.expired(now) => room,
            _ => shard
                .entry(Arc::from(name))
                .insert_entry(Room::new(now, policy.ttl))
                .into_mut(),
        };
        room.forget_keys(now, policy.idempotency_window);
        if let Some(offset) = key.and_then(|k| room.keys.get(k)) {
            return Ok(Appended {
                position: Position::new(room.epoch.clone(), *offset),
                duplicate: true,
            });
        }
        room.top += 1;
        room.last_publish = now;
        room.ttl = policy.ttl;
        room.messages.push_back((room.top, now, message.clone()));
        room.trim(now, policy);
        if let Some(key) = key {
            room.keys.insert(key.into(), room.top);
            room.key_order.push_back((now, key.into()));
        }
        Ok(Appended {
            position: Position::new(room.epoch.clone(), room.top),
            duplicate: false,
        })
    }

    fn read_now(
        &self,
        name: &str,
        since: Option<&Position>,
        limit: usize,
        policy: &HistoryPolicy,
    ) -> Result<HistoryPage, HistoryError> {
        let now = Instant::now();
        let mut shard = self.rooms.shard(name);
        if shard.get(name).is_some_and(|room| room.expired(now)) {
            shard.remove(name);
        }
        // A room never published to (or forgotten) gets its epoch now, so that a reader
        // holds a position the next publish continues.
        let room = shard
            .entry(Arc::from(name))
            .or_insert_with(|| Room::new(now, policy.ttl));
        room.trim(now, policy);
        let top = Position::new(room.epoch.clone(), room.top);
        let oldest = room.messages.front().map_or(room.top + 1, |m| m.0);
        let complete = completeness(since, &top, oldest)?;
        let after = match since {
            Some(since) if since.epoch == room.epoch => since.offset,
            Some(_) => return Ok(page(top, Vec::new(), false)),
            None => 0,
        };
        let publications = room
            .messages
            .iter()
            .filter(|(offset, ..)| *offset > after)
            .take(limit)
            .map(|(offset, _, message)| {
                Publication::new(Position::new(room.epoch.clone(), *offset), message.clone())
            })
            .collect();
        Ok(page(top, publications, complete))
    }

    /// Forgets every room idle for longer than its ttl, at most once per [`SWEEP_EVERY`].
    fn sweep(&self, now: Instant) {
        let elapsed = now.duration_since(self.started).as_millis() as u64;
        let last = self.last_sweep.load(Ordering::Relaxed);
        if elapsed.saturating_sub(last) < SWEEP_EVERY.as_millis() as u64
            || self
                .last_sweep
                .compare_exchange(last, elapsed, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.rooms.retain(|_, room| !room.expired(now));
    }
}

fn page(top: Position, publications: Vec<Publication>, complete: bool) -> HistoryPage {
    HistoryPage {
        top,
        publications,
        complete,
    }
}

impl Room {
    fn new(now: Instant, ttl: Duration) -> Room {
        Room {
            epoch: Position::new_epoch(),
            top: 0,
            messages: VecDeque::new(),
            last_publish: now,
            ttl,
            keys: HashMap::new(),
            key_order: VecDeque::new(),
        }
    }

    /// Whether the room was idle for longer than its ttl (its history, epoch included, is gone).
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.last_publish) > self.ttl
    }

    /// Drops messages beyond the size or older than the ttl.
    fn trim(&mut self, now: Instant, policy: &HistoryPolicy) {
        while self.messages.len() > policy.size {
            self.messages.pop_front();
        }
        while self
            .messages
            .front()
            .is_some_and(|(_, at, _)| now.duration_since(*at) > policy.ttl)
        {
            self.messages.pop_front();
        }
    }

    fn forget_keys(&mut self, now: Instant, window: Duration) {
        while let Some((at, key)) = self.key_order.front() {
            if now.duration_since(*at) <= window {
                break;
            }
            self.keys.remove(key);
            self.key_order.pop_front();
        }
    }
}

impl HistoryStore for MemoryHistory {
    fn engine(&self) -> &'static str {
        "memory"
    }

    fn append<'a>(
        &'a self,
        room: &'a str,
        message: &'a Message,
        policy: &'a HistoryPolicy,
        idempotency_key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Appended, HistoryError>> {
        let appended = self.append_now(room, message, policy, idempotency_key);
        Box::pin(async move { appended })
    }

    fn read<'a>(
        &'a self,
        room: &'a str,
        since: Option<&'a Position>,
        limit: usize,
        policy: &'a HistoryPolicy,
    ) -> BoxFuture<'a, Result<HistoryPage, HistoryError>> {
        let page = self.read_now(room, since, limit, policy);
        Box::pin(async move { page })
    }
}
