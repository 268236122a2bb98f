//! Users: the local connections of each user id.

use std::sync::Arc;

use super::named::Named;
use crate::conn::{Conn, ConnId};

/// The local connections of every user that has one open, sharded by user id.
pub(crate) struct Users(Named<Vec<Conn>>);

impl Users {
    pub(crate) fn new() -> Users {
        Users(Named::new())
    }

    pub(crate) fn insert(&self, user: &Arc<str>, conn: &Conn) {
        self.0
            .shard(user)
            .entry(user.clone())
            .or_default()
            .push(conn.clone());
    }

    pub(crate) fn remove(&self, user: &str, id: ConnId) {
        let mut shard = self.0.shard(user);
        if let Some(conns) = shard.get_mut(user) {
            conns.retain(|c| c.id() != id);
            if conns.is_empty() {
                shard.remove(user);
            }
        }
    }

    /// The local connections of `user`.
    pub(crate) fn conns(&self, user: &str) -> Vec<Conn> {
        self.0.shard(user).get(user).cloned().unwrap_or_default()
    }

    /// Every user with a local connection and those connections.
    pub(crate) fn each(&self, mut visit: impl FnMut(&Arc<str>, &[Conn])) {
        self.0.each(|user, conns| visit(user, conns));
    }
}
