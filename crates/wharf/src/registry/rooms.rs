//! Rooms: named sets of local connections, freed when their last member leaves.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::conn::{Conn, ConnId};

const SHARDS: usize = 16;

type Shard = HashMap<Arc<str>, HashMap<ConnId, Conn>>;

/// Every room of this node and its local members, sharded by room name.
pub(crate) struct Rooms {
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

impl Rooms {
    pub(crate) fn new() -> Rooms {
        Rooms {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, room: &str) -> MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(room) as usize) % SHARDS;
        // A map operation cannot leave the map inconsistent, so a poisoned lock is usable.
        self.shards[index].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `conn` to `room`; false when it was already a member.
    pub(crate) fn join(&self, room: &Arc<str>, conn: &Conn) -> bool {
        self.shard(room)
            .entry(room.clone())
            .or_default()
            .insert(conn.id(), conn.clone())
            .is_none()
    }

    /// Removes `id` from `room`, freeing the room when it empties; false when it was not a member.
    pub(crate) fn leave(&self, room: &str, id: ConnId) -> bool {
        let mut shard = self.shard(room);
        let Some(members) = shard.get_mut(room) else {
            return false;
        };
        let removed = members.remove(&id).is_some();
        if members.is_empty() {
            shard.remove(room);
        }
        removed
    }

    /// The local members of `room`, taken under the shard lock and returned so that sending
    /// happens after it is released.
    pub(crate) fn members(&self, room: &str) -> Vec<Conn> {
        self.shard(room)
            .get(room)
            .map(|members| members.values().cloned().collect())
            .unwrap_or_default()
    }

    /// How many local connections are in `room`.
    pub(crate) fn count(&self, room: &str) -> usize {
        self.shard(room).get(room).map_or(0, HashMap::len)
    }

    /// Every room with local members, and its local member count.
    pub(crate) fn list(&self) -> Vec<(Arc<str>, usize)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            out.extend(shard.iter().map(|(name, m)| (name.clone(), m.len())));
        }
        out
    }

    /// Every room with local members and the members' ids and users (for presence snapshots).
    pub(crate) fn each(&self, mut visit: impl FnMut(&Arc<str>, &HashMap<ConnId, Conn>)) {
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (name, members) in shard.iter() {
                visit(name, members);
            }
        }
    }
}
