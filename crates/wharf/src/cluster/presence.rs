//! Presence snapshots: what one node says about its rooms and users, stored in the backplane.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::listing::{Listed, MAX_LISTED_PER_NODE};
use crate::ConnId;
use crate::registry::Registry;

/// A member of a room: a connection and the user it belongs to.
///
/// ```
/// # async fn demo(sender: wharf::Sender) -> Result<(), wharf::SendError> {
/// for member in sender.room_members("lobby").await? {
///     println!("{} ({:?})", member.conn, member.user);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Member {
    /// The connection.
    pub conn: ConnId,
    /// The user it belongs to, if any.
    pub user: Option<String>,
}

/// One node's presence as stored in the backplane.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct NodePresence {
    pub(crate) node: u16,
    pub(crate) instance: u64,
    /// When it was taken, in milliseconds since the Unix epoch.
    pub(crate) at_ms: u64,
    pub(crate) conns: usize,
    pub(crate) rooms: BTreeMap<String, Vec<Member>>,
    pub(crate) users: BTreeMap<String, Vec<ConnId>>,
    /// Its connections (bounded) and per-route counts, for cluster-wide listings. Absent in
    /// snapshots of older nodes.
    #[serde(default)]
    pub(crate) listed: Listed,
}

impl NodePresence {
    /// The local registry's rooms and users, now.
    pub(crate) fn of(registry: &Registry, instance: u64) -> NodePresence {
        let mut snapshot = NodePresence {
            node: registry.node(),
            instance,
            at_ms: now_ms(),
            conns: registry.count(),
            listed: Listed::of(registry, MAX_LISTED_PER_NODE),
            ..NodePresence::default()
        };
        registry.rooms.each(|room, members| {
            let members = members
                .values()
                .map(|conn| Member {
                    conn: conn.id(),
                    user: conn.user().map(str::to_owned),
                })
                .collect();
            snapshot.rooms.insert(room.to_string(), members);
        });
        registry.users.each(|user, conns| {
            let ids = conns.iter().map(|c| c.id()).collect();
            snapshot.users.insert(user.to_string(), ids);
        });
        snapshot
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
