//! A map from names (rooms, users) to values, sharded so that unrelated names do not contend
//! on one lock. Each lock is held for one map operation, never across an `.await`.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

const SHARDS: usize = 16;

/// One shard: the names that hash to it.
type Shard<V> = HashMap<Arc<str>, V>;

pub(crate) struct Named<V> {
    hasher: RandomState,
    shards: Box<[Mutex<Shard<V>>]>,
}

impl<V> Named<V> {
    pub(crate) fn new() -> Named<V> {
        Named {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// The shard that holds `name`, locked. A map operation cannot leave the map
    /// inconsistent, so a poisoned lock is usable.
    pub(crate) fn shard(&self, name: &str) -> MutexGuard<'_, Shard<V>> {
        let index = (self.hasher.hash_one(name) as usize) % SHARDS;
        self.shards[index].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Visits every entry, one shard at a time.
    pub(crate) fn each(&self, mut visit: impl FnMut(&Arc<str>, &V)) {
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (name, value) in shard.iter() {
                visit(name, value);
            }
        }
    }

    /// Keeps only the entries `keep` accepts, one shard at a time.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&Arc<str>, &mut V) -> bool) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            shard.retain(|name, value| keep(name, value));
        }
    }
}
