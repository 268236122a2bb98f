//! Connections of the whole cluster: what each node's presence snapshot says about its open
//! connections, next to this node's own from memory.
//!
//! A snapshot carries at most [`MAX_LISTED_PER_NODE`] connections (the oldest), so a node's
//! presence write stays bounded (about 150 bytes each, 150 KiB at the bound) however many
//! it holds; the per-route counts and the total are always exact. A listing of another node
//! is as fresh as its last snapshot (at most a third of `presence_ttl` old).
//!
//! ```no_run
//! # async fn demo(sender: wharf::Sender) -> Result<(), wharf::SendError> {
//! for node in sender.cluster_connections().await? {
//!     println!("node {}: {} open, {} listed", node.node, node.count, node.conns.len());
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::registry::Registry;
use crate::{Conn, ConnId, SendError, Sender};

/// At most this many connections of one node are carried in its presence snapshot.
pub const MAX_LISTED_PER_NODE: usize = 1000;

/// One open connection, as any node of the cluster lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClusterConn {
    /// Its id (the node is its first part).
    pub id: ConnId,
    /// The server it came in on.
    pub server: String,
    /// The route pattern it matched.
    pub route: String,
    /// The client's address (from a trusted proxy, the one it reported).
    pub peer: SocketAddr,
    /// When it opened, in milliseconds since the Unix epoch.
    pub opened_at_ms: u64,
    /// The user it belongs to, if any.
    pub user: Option<String>,
}

/// Open connections on one route of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RouteCount {
    /// The server's name.
    pub server: String,
    /// The route pattern.
    pub route: String,
    /// Open connections.
    pub open: usize,
}

/// What one node has open.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeConns {
    /// The node's id.
    pub node: u16,
    /// Its open connections (exact).
    pub count: usize,
    /// Its connections, the oldest first: all of them for this node, at most
    /// [`MAX_LISTED_PER_NODE`] for another.
    pub conns: Vec<ClusterConn>,
    /// Open connections per route (exact).
    pub routes: Vec<RouteCount>,
}

impl NodeConns {
    /// Whether `conns` holds every open connection of the node.
    pub fn is_complete(&self) -> bool {
        self.conns.len() >= self.count
    }
}

/// The part of a presence snapshot that lists connections.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Listed {
    /// At most [`MAX_LISTED_PER_NODE`], the oldest first.
    #[serde(default)]
    pub(crate) conns: Vec<ClusterConn>,
    #[serde(default)]
    pub(crate) routes: Vec<RouteCount>,
}

impl Listed {
    /// The local registry's connections, at most `limit` of them.
    pub(crate) fn of(registry: &Registry, limit: usize) -> Listed {
        let all = registry.snapshot(|_| true);
        let (conns, routes) = summarize(&all, limit);
        Listed { conns, routes }
    }
}

fn summarize(all: &[Conn], limit: usize) -> (Vec<ClusterConn>, Vec<RouteCount>) {
    let mut routes: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for conn in all {
        *routes.entry((conn.server(), conn.route())).or_default() += 1;
    }
    let mut conns: Vec<ClusterConn> = all.iter().map(summary).collect();
    conns.sort_by_key(|c| (c.opened_at_ms, c.id));
    conns.truncate(limit);
    let routes = routes
        .into_iter()
        .map(|((server, route), open)| RouteCount {
            server: server.to_owned(),
            route: route.to_owned(),
            open,
        })
        .collect();
    (conns, routes)
}

fn summary(conn: &Conn) -> ClusterConn {
    ClusterConn {
        id: conn.id(),
        server: conn.server().to_owned(),
        route: conn.route().to_owned(),
        peer: conn.peer(),
        opened_at_ms: conn
            .opened_at()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        user: conn.user().map(str::to_owned),
    }
}

impl Sender {
    /// This node's open connections in the shape of [`cluster_connections`](Self::cluster_connections)
    /// (all of them; needs no backplane).
    pub fn node_connections(&self) -> NodeConns {
        let all = self.registry().snapshot(|_| true);
        let (conns, routes) = summarize(&all, usize::MAX);
        NodeConns {
            node: self.node(),
            count: all.len(),
            conns,
            routes,
        }
    }

    /// The open connections of every live node, this node first (all of its connections,
    /// from memory), then the others by node id (from their presence snapshots: at most
    /// [`MAX_LISTED_PER_NODE`] each, as fresh as their last write). Without a backplane,
    /// this node only.
    ///
    /// # Errors
    /// [`SendError::Backplane`] while the backplane is unreachable.
    pub async fn cluster_connections(&self) -> Result<Vec<NodeConns>, SendError> {
        let mut nodes = vec![self.node_connections()];
        let mut others = self.others().await?;
        others.sort_by_key(|p| p.node);
        for presence in others {
            nodes.push(NodeConns {
                node: presence.node,
                count: presence.conns,
                conns: presence.listed.conns,
                routes: presence.listed.routes,
            });
        }
        Ok(nodes)
    }
}
