//! Users: the local connections of each user id.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::conn::{Conn, ConnId};

const SHARDS: usize = 16;

type Shard = HashMap<Arc<str>, Vec<Conn>>;

/// The local connections of every user that has one open, sharded by user id.
pub(crate) struct Users {
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

impl Users {
    pub(crate) fn new() -> Users {
        Users {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, user: &str) -> MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(user) as usize) % SHARDS;
        self.shards[index].lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn insert(&self, user: &Arc<str>, conn: &Conn) {
        self.shard(user)
            .entry(user.clone())
            .or_default()
            .push(conn.clone());
    }

    pub(crate) fn remove(&self, user: &str, id: ConnId) {
        let mut shard = self.shard(user);
        if let Some(conns) = shard.get_mut(user) {
            conns.retain(|c| c.id() != id);
            if conns.is_empty() {
                shard.remove(user);
            }
        }
    }

    /// The local connections of `user`.
    pub(crate) fn conns(&self, user: &str) -> Vec<Conn> {
        self.shard(user).get(user).cloned().unwrap_or_default()
    }

    /// Every user with a local connection and the ids of those connections.
    pub(crate) fn each(&self, mut visit: impl FnMut(&Arc<str>, &[Conn])) {
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (user, conns) in shard.iter() {
                visit(user, conns);
            }
        }
    }
}
