//! A [`MemoryHistory`] handed over to a successor process: frozen and snapshotted in the
//! old one, restored in the new one, so that epochs and offsets continue (docs/operations.md).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use tokio::time::{Duration, Instant};

use super::{MemoryHistory, Room};
use crate::Message;

/// Messages of one part of a room's snapshot, at most about this many bytes.
const PART_BYTES: usize = 2 << 20;

impl MemoryHistory {
    /// Accepts appends again after a [`hand_over`](MemoryHistory::hand_over) whose
    /// successor failed before it took the snapshot over: the rooms here are as they were.
    pub(crate) fn take_back(&self) {
        self.frozen.store(false, Ordering::Release);
    }

    /// Freezes the store (every later append fails with
    /// [`HistoryError::Unavailable`](crate::history::HistoryError::Unavailable)) and returns its rooms as they are now, large rooms in
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
                    let next = part.clone_head();
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
    /// The same room's head (epoch, top, ages), with no messages and no keys: the next part.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{HistoryError, HistoryPolicy, HistoryStore, Position};

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
