//! Rooms: named sets of local connections, freed when their last member leaves.

use std::collections::HashMap;
use std::sync::Arc;

use super::named::Named;
use crate::conn::{Conn, ConnId};

/// Every room of this node and its local members, sharded by room name.
pub(crate) struct Rooms(Named<HashMap<ConnId, Conn>>);

impl Rooms {
    pub(crate) fn new() -> Rooms {
        Rooms(Named::new())
    }

    /// Adds `conn` to `room`; false when it was already a member.
    pub(crate) fn join(&self, room: &Arc<str>, conn: &Conn) -> bool {
        self.0
            .shard(room)
            .entry(room.clone())
            .or_default()
            .insert(conn.id(), conn.clone())
            .is_none()
    }

    /// Removes `id` from `room`, freeing the room when it empties; false when it was not a member.
    pub(crate) fn leave(&self, room: &str, id: ConnId) -> bool {
        let mut shard = self.0.shard(room);
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
        self.0
            .shard(room)
            .get(room)
            .map(|members| members.values().cloned().collect())
            .unwrap_or_default()
    }

    /// How many local connections are in `room`.
    pub(crate) fn count(&self, room: &str) -> usize {
        self.0.shard(room).get(room).map_or(0, HashMap::len)
    }

    /// Every room with local members, and its local member count.
    pub(crate) fn list(&self) -> Vec<(Arc<str>, usize)> {
        let mut out = Vec::new();
        self.0
            .each(|name, members| out.push((name.clone(), members.len())));
        out
    }

    /// Every room with local members and the members (for presence snapshots).
    pub(crate) fn each(&self, visit: impl FnMut(&Arc<str>, &HashMap<ConnId, Conn>)) {
        self.0.each(visit);
    }
}
