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

use serde::{Deserialize, Serialize};

use tokio::time::{Duration, Instant};

use super::{
    Appended, HistoryError, HistoryPage, HistoryPolicy, HistoryStore, Position, Publication,
    completeness,
};
use crate::Message;
use crate::cluster::BoxFuture;
use crate::registry::named::Named;

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

/// Messages of one part of a room's snapshot, at most about this many bytes.
const PART_BYTES: usize = 2 << 20;

impl MemoryHistory {
    /// Freezes the store (every later append fails with
    /// [`HistoryError::Unavailable`]) and returns its rooms as they are now, large rooms in
    /// several parts, for a successor's [`restore`](MemoryHistory::restore).
    pub(crate) fn hand_over(&self) -> Vec<RoomSnapshot> {
        self.frozen.store(true, Ordering::Release);
        let now = Instant::now();
        let ms = |d: Duration| d.as_millis() as u64;
        let mut parts = Vec::new();
        self.rooms.each(|name, room| {
            if room.expired(now) {
                return;
            }
            let keys: Vec<KeySnapshot> = room
                .key_order
                .iter()
                .filter_map(|(at, key)| {
                    room.keys.get(key).map(|offset| KeySnapshot {
                        key: key.to_string(),
                        offset: *offset,
                        age_ms: ms(now.duration_since(*at)),
                    })
                })
                .collect();
            let mut part = RoomSnapshot {
                room: name.to_string(),
                epoch: room.epoch.clone(),
                top: room.top,
                idle_ms: ms(now.duration_since(room.last_publish)),
                ttl_ms: ms(room.ttl),
                messages: Vec::new(),
                keys,
            };
            let mut bytes = 0;
            for (offset, at, message) in &room.messages {
                if bytes >= PART_BYTES {
                    let next = RoomSnapshot {
                        messages: Vec::new(),
                        keys: Vec::new(),
                        ..part.clone_head()
                    };
                    parts.push(std::mem::replace(&mut part, next));
                    bytes = 0;
                }
                let stored = StoredSnapshot::new(*offset, ms(now.duration_since(*at)), message);
                bytes += stored.weight();
                part.messages.push(stored);
            }
            parts.push(part);
        });
        parts
    }

    /// Takes a predecessor's rooms ([`hand_over`](MemoryHistory::hand_over)'s parts, in
    /// order): each keeps its epoch, top, publications, idempotency keys and ages.
    pub(crate) fn restore(&self, parts: Vec<RoomSnapshot>) -> usize {
        let now = Instant::now();
        let ago = |ms: u64| now.checked_sub(Duration::from_millis(ms)).unwrap_or(now);
        let mut publications = 0;
        for part in parts {
            let mut shard = self.rooms.shard(&part.room);
            let continues = shard
                .get(part.room.as_str())
                .is_some_and(|room| room.epoch == part.epoch && room.top == part.top);
            if !continues {
                let mut room = Room::new(ago(part.idle_ms), Duration::from_millis(part.ttl_ms));
                room.epoch = part.epoch.clone();
                room.top = part.top;
                shard.insert(Arc::from(part.room.as_str()), room);
            }
            let Some(room) = shard.get_mut(part.room.as_str()) else {
                continue;
            };
            for stored in part.messages {
                let Some(message) = stored.message() else {
                    continue;
                };
                if stored.offset > room.top
                    || room.messages.back().is_some_and(|m| m.0 >= stored.offset)
                {
                    continue; // not a publication of this history, or out of order
                }
                room.messages
                    .push_back((stored.offset, ago(stored.age_ms), message));
                publications += 1;
            }
            for key in part.keys {
                let key_text: Box<str> = key.key.into();
                room.keys.insert(key_text.clone(), key.offset);
                room.key_order.push_back((ago(key.age_ms), key_text));
            }
        }
        publications
    }
}

/// One room (or one part of a large room) of a [`MemoryHistory`] handed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoomSnapshot {
    room: String,
    epoch: String,
    top: u64,
    /// Milliseconds since its last publish.
    idle_ms: u64,
    ttl_ms: u64,
    /// Its kept publications of this part, oldest first.
    messages: Vec<StoredSnapshot>,
    /// Its idempotency keys (in the first part), oldest first.
    keys: Vec<KeySnapshot>,
}

impl RoomSnapshot {
    fn clone_head(&self) -> RoomSnapshot {
        RoomSnapshot {
            room: self.room.clone(),
            epoch: self.epoch.clone(),
            top: self.top,
            idle_ms: self.idle_ms,
            ttl_ms: self.ttl_ms,
            messages: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// About how many bytes it takes in a frame (for batching).
    pub(crate) fn weight(&self) -> usize {
        128 + self.room.len()
            + self
                .messages
                .iter()
                .map(StoredSnapshot::weight)
                .sum::<usize>()
            + self.keys.iter().map(|k| k.key.len() + 48).sum::<usize>()
    }
}

/// A kept publication: text, or binary as hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredSnapshot {
    offset: u64,
    age_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    binary_hex: Option<String>,
}

impl StoredSnapshot {
    fn new(offset: u64, age_ms: u64, message: &Message) -> StoredSnapshot {
        let (text, binary_hex) = match message {
            Message::Text(text) => (Some(text.clone()), None),
            other => (None, Some(crate::handover::hex_encode(other.as_bytes()))),
        };
        StoredSnapshot {
            offset,
            age_ms,
            text,
            binary_hex,
        }
    }

    fn message(&self) -> Option<Message> {
        match (&self.text, &self.binary_hex) {
            (Some(text), None) => Some(Message::Text(text.clone())),
            (None, Some(hex)) => {
                crate::handover::hex_decode(hex).map(|b| Message::Binary(b.into()))
            }
            _ => None,
        }
    }

    fn weight(&self) -> usize {
        48 + self.text.as_ref().map_or(0, |t| t.len() + t.len() / 8)
            + self.binary_hex.as_ref().map_or(0, String::len)
    }
}

/// An idempotency key and the offset it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySnapshot {
    key: String,
    offset: u64,
    age_ms: u64,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_handed_over_store_refuses_appends_and_its_successor_continues_it() {
        let policy = HistoryPolicy::new(100, Duration::from_secs(300));
        let old = MemoryHistory::new();
        for i in 0..5 {
            let key = format!("k{i}");
            old.append("news", &Message::text(format!("m{i}")), &policy, Some(&key))
                .await
                .expect("append");
        }
        old.append("bin", &Message::Binary(vec![0, 255].into()), &policy, None)
            .await
            .expect("append");
        let parts = old.hand_over();
        let refused = old
            .append("news", &Message::text("late"), &policy, None)
            .await;
        assert!(
            matches!(refused, Err(HistoryError::Unavailable(_))),
            "{refused:?}"
        );
        let json = serde_json::to_string(&parts).expect("serialise");
        let parts: Vec<RoomSnapshot> = serde_json::from_str(&json).expect("parse");

        let new = MemoryHistory::new();
        assert_eq!(new.restore(parts), 6);
        let before = old.read("news", None, 100, &policy).await.expect("read");
        let after = new.read("news", None, 100, &policy).await.expect("read");
        assert_eq!(before, after, "same epoch, top and publications");
        let next = new
            .append("news", &Message::text("m5"), &policy, None)
            .await
            .expect("append");
        assert_eq!(next.position, Position::new(before.top.epoch.clone(), 6));
        let retried = new
            .append("news", &Message::text("again"), &policy, Some("k3"))
            .await
            .expect("append");
        assert!(retried.duplicate, "idempotency keys move too");
        assert_eq!(retried.position.offset, 4);
        let bin = new.read("bin", None, 10, &policy).await.expect("read");
        assert_eq!(
            bin.publications[0].message,
            Message::Binary(vec![0, 255].into())
        );
    }

    #[test]
    fn a_large_room_is_handed_over_in_parts() {
        let policy = HistoryPolicy::new(10_000, Duration::from_secs(300));
        let old = MemoryHistory::new();
        let big = "x".repeat(64 * 1024);
        for _ in 0..100 {
            old.append_now("big", &Message::text(big.clone()), &policy, None)
                .expect("append");
        }
        let parts = old.hand_over();
        assert!(parts.len() > 1, "{} parts", parts.len());
        assert!(parts.iter().all(|p| p.weight() < 2 * PART_BYTES));
        let new = MemoryHistory::new();
        assert_eq!(new.restore(parts), 100);
        assert_eq!(new.stored(), 100);
    }
}
