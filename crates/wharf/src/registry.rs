//! The connection registry: every open connection by id.
//!
//! Sharded so that thousands of connections opening and closing at once do not contend on
//! one lock; each shard is a `std::sync::Mutex` held only for a map operation (never across
//! an `.await`). Fan-out takes a snapshot of handles under the lock and sends after releasing
//! it, so no global lock is held while bytes move.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::conn::{Conn, ConnId};

const SHARDS: usize = 16;

pub(crate) struct Registry {
    node: u16,
    next_seq: AtomicU64,
    count: AtomicUsize,
    shards: Box<[Mutex<HashMap<ConnId, Conn>>]>,
}

impl Registry {
    pub(crate) fn new(node: u16) -> Registry {
        Registry {
            node,
            next_seq: AtomicU64::new(1),
            count: AtomicUsize::new(0),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, id: ConnId) -> std::sync::MutexGuard<'_, HashMap<ConnId, Conn>> {
        let shard = &self.shards[(id.seq() as usize) % SHARDS];
        // A map operation cannot leave the map inconsistent, so a poisoned lock is usable.
        shard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh id for a connection about to open.
    pub(crate) fn next_id(&self) -> ConnId {
        ConnId::new(self.node, self.next_seq.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn insert(&self, conn: Conn) {
        self.shard(conn.id()).insert(conn.id(), conn);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn remove(&self, id: ConnId) {
        if self.shard(id).remove(&id).is_some() {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
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
