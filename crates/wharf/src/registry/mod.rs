//! The connection registry: every open connection by id.
//!
//! Sharded so that thousands of connections opening and closing at once do not contend on
//! one lock; each shard is a `std::sync::Mutex` held only for a map operation (never across
//! an `.await`). Fan-out takes a snapshot of handles under the lock and sends after releasing
//! it, so no global lock is held while bytes move. Rooms and users are indexed beside it.

pub(crate) mod named;
mod rooms;
mod users;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::conn::{Conn, ConnId};

pub(crate) use rooms::Rooms;
pub(crate) use users::Users;

const SHARDS: usize = 16;

pub(crate) struct Registry {
    node: AtomicU16,
    next_seq: AtomicU64,
    count: AtomicUsize,
    shards: Box<[Mutex<HashMap<ConnId, Conn>>]>,
    pub(crate) rooms: Rooms,
    pub(crate) users: Users,
}

impl Registry {
    pub(crate) fn new(node: u16) -> Registry {
        Registry {
            node: AtomicU16::new(node),
            next_seq: AtomicU64::new(1),
            count: AtomicUsize::new(0),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            rooms: Rooms::new(),
            users: Users::new(),
        }
    }

    /// This node's id, the high bits of every connection id it hands out.
    pub(crate) fn node(&self) -> u16 {
        self.node.load(Ordering::Relaxed)
    }

    /// Sets the node id; only before the first connection opens (a cluster picks it at bind).
    pub(crate) fn set_node(&self, node: u16) {
        self.node.store(node, Ordering::Relaxed);
    }

    fn shard(&self, id: ConnId) -> std::sync::MutexGuard<'_, HashMap<ConnId, Conn>> {
        let shard = &self.shards[(id.seq() as usize) % SHARDS];
        // A map operation cannot leave the map inconsistent, so a poisoned lock is usable.
        shard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sequence number the next connection will get (a handover starts its successor
    /// past it).
    pub(crate) fn peek_seq(&self) -> u64 {
        self.next_seq.load(Ordering::Relaxed)
    }

    /// Continues a predecessor's sequence; only before the first connection opens.
    pub(crate) fn set_next_seq(&self, seq: u64) {
        self.next_seq.store(seq.max(1), Ordering::Relaxed);
    }

    /// A fresh id for a connection about to open.
    pub(crate) fn next_id(&self) -> ConnId {
        ConnId::new(self.node(), self.next_seq.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn insert(&self, conn: Conn) {
        if let Some(user) = &conn.0.user {
            self.users.insert(user, &conn);
        }
        self.shard(conn.id()).insert(conn.id(), conn);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes a closed connection from the registry, its user's index and every room it was
    /// in; returns those rooms.
    pub(crate) fn remove(&self, conn: &Conn) -> Vec<Arc<str>> {
        let id = conn.id();
        if self.shard(id).remove(&id).is_some() {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(user) = &conn.0.user {
            self.users.remove(user, id);
        }
        let rooms = conn.take_rooms();
        for room in &rooms {
            self.rooms.leave(room, id);
        }
        rooms
    }

    /// Adds `conn` to `room` (and the room to the connection's own list); false when it was
    /// already a member.
    pub(crate) fn join(&self, conn: &Conn, room: &str) -> bool {
        let room: Arc<str> = room.into();
        if !self.rooms.join(&room, conn) {
            return false;
        }
        if !conn.add_room(room.clone()) {
            // The connection closed meanwhile and has already left its rooms: undo.
            self.rooms.leave(&room, conn.id());
            return false;
        }
        true
    }

    /// Removes `conn` from `room`; false when it was not a member.
    pub(crate) fn leave(&self, conn: &Conn, room: &str) -> bool {
        let left = self.rooms.leave(room, conn.id());
        if left {
            conn.remove_room(room);
        }
        left
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<Conn> {
        self.shard(id).get(&id).cloned()
    }

    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Handles to every connection that `keep` accepts, taken shard by shard.
    pub(crate) fn snapshot(&self, mut keep: impl FnMut(&Conn) -> bool) -> Vec<Conn> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            out.extend(shard.values().filter(|c| keep(c)).cloned());
        }
        out
    }
}
