//! `GET /api/connections` (the whole cluster, paged) and `DELETE /api/connections/{id}`.

use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use wharf::axum::Json;
use wharf::axum::extract::{Path, Query, State};
use wharf::cluster::{ClusterConn, NodeConns};
use wharf::http::{StatusCode, Uri};
use wharf::{CloseCode, ConnId, Sender};

use super::ApiState;
use super::admin::Admin;
use super::body::MaybeJson;
use super::error::ApiError;
use super::push::send_error;
use crate::tokens::Claims;
use crate::users::UserStore;

/// Longest close reason, in bytes (RFC 6455: the close payload is at most 125 bytes).
pub const MAX_REASON: usize = 123;

/// One connection in the listing, on any node of the cluster.
#[derive(Debug, Serialize)]
pub struct ConnEntry {
    /// The node it is open on.
    pub node: u16,
    /// What its node reports: id, server, route, peer, opened_at_ms, user.
    #[serde(flatten)]
    pub conn: ClusterConn,
    /// How long it has been open, in milliseconds.
    pub age_ms: u64,
    /// What only the node it is on knows (path, queued bytes, rooms); absent for
    /// connections on other nodes.
    #[serde(flatten)]
    pub local: Option<LocalDetails>,
    /// The token's user id, when the connection was authenticated.
    pub uid: Option<i64>,
    /// The user's account, where known.
    pub account: Option<String>,
}

/// What the node a connection is on adds to its entry.
#[derive(Debug, Serialize)]
pub struct LocalDetails {
    /// The request path.
    pub path: String,
    /// Bytes queued to it and not yet written.
    pub queued_bytes: usize,
    /// The rooms it is in.
    pub rooms: Vec<String>,
}

/// One node's part of a listing.
#[derive(Debug, Serialize)]
pub struct NodeCount {
    /// The node's id.
    pub node: u16,
    /// Its open connections.
    pub count: usize,
    /// Whether every one of them can be listed (another node's snapshot carries at most
    /// [`wharf::cluster::MAX_LISTED_PER_NODE`]).
    pub complete: bool,
}

/// Default and largest page of `GET /api/connections`.
pub const DEFAULT_PAGE: usize = 100;
/// The largest `limit` of `GET /api/connections`.
pub const MAX_PAGE: usize = 1000;

/// `?limit=&cursor=&node=` of `GET /api/connections`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Connections per page, 1-1000. Default: 100.
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page: the listing goes on after that id.
    pub cursor: Option<String>,
    /// Only this node's connections.
    pub node: Option<u16>,
}

/// Lists open connections of the whole cluster (or of `?node=N`), ordered by id, a page at
/// a time: `{"count", "connections": [...], "next_cursor", "nodes": [{"node","count",
/// "complete"}]}`. 400 `bad_query`, 404 `node_not_found`, 503 `backplane_unavailable`.
pub(crate) async fn list(
    _admin: Admin,
    State(state): State<Arc<ApiState>>,
    uri: Uri,
) -> Result<Json<serde_json::Value>, ApiError> {
    let params = Query::<ListParams>::try_from_uri(&uri)
        .map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?
        .0;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("limit must be 1-{MAX_PAGE}"),
        ));
    }
    let after: Option<ConnId> = match params.cursor.as_deref() {
        None | Some("") => None,
        Some(cursor) => Some(
            cursor
                .parse()
                .map_err(|e| ApiError::bad_request("bad_query", format!("cursor: {e}")))?,
        ),
    };
    let sender = &state.sender;
    let nodes = if params.node == Some(sender.node()) {
        // This node alone needs no backplane.
        vec![sender.node_connections()]
    } else {
        let mut nodes = sender.cluster_connections().await.map_err(send_error)?;
        if let Some(node) = params.node {
            nodes.retain(|n| n.node == node);
            if nodes.is_empty() {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "node_not_found",
                    format!("no live node {node} in the cluster"),
                ));
            }
        }
        nodes
    };
    let counts: Vec<NodeCount> = nodes
        .iter()
        .map(|n| NodeCount {
            node: n.node,
            count: n.count,
            complete: n.is_complete(),
        })
        .collect();
    let count = counts.iter().map(|n| n.count).sum::<usize>();
    let mut all: Vec<ClusterConn> = nodes.into_iter().flat_map(|n| n.conns).collect();
    all.sort_by_key(|c| c.id);
    let start = after.map_or(0, |after| all.partition_point(|c| c.id <= after));
    let page: Vec<ClusterConn> = all.drain(start..).take(limit + 1).collect();
    let more = page.len() > limit;
    let page: Vec<ClusterConn> = page.into_iter().take(limit).collect();
    let next_cursor = more
        .then(|| page.last().map(|c| c.id.to_string()))
        .flatten();
    let entries = describe(sender, &state.store, page).await;
    Ok(Json(serde_json::json!({
        "count": count,
        "connections": entries,
        "next_cursor": next_cursor,
        "nodes": counts,
    })))
}

/// The cluster's open connections with their users, at most `limit` of them (the oldest
/// first), and the total: the dashboard feed's list ([`crate::feed`]). While the backplane
/// is down, this node's only, with `false`.
pub async fn entries(
    sender: &Sender,
    store: &UserStore,
    limit: usize,
) -> (Vec<ConnEntry>, Vec<NodeConns>, bool) {
    let (nodes, whole) = match sender.cluster_connections().await {
        Ok(nodes) => (nodes, true),
        Err(_) => (vec![sender.node_connections()], false),
    };
    let mut all: Vec<ClusterConn> = nodes.iter().flat_map(|n| n.conns.iter().cloned()).collect();
    all.sort_by_key(|c| (c.opened_at_ms, c.id));
    all.truncate(limit);
    (describe(sender, store, all).await, nodes, whole)
}

/// Entries for `conns`: with the local details and the token's user for this node's, and
/// the account of the user id for the others'.
async fn describe(sender: &Sender, store: &UserStore, conns: Vec<ClusterConn>) -> Vec<ConnEntry> {
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut entries = Vec::with_capacity(conns.len());
    for conn in conns {
        let node = conn.id.node();
        let local = sender.conn(conn.id);
        let claims = local.as_ref().and_then(|c| c.get::<Claims>().cloned());
        let (uid, account) = match claims {
            Some(claims) if !claims.account.is_empty() => (Some(claims.uid), Some(claims.account)),
            Some(claims) => (
                Some(claims.uid),
                store.account_by_id(claims.uid).await.ok().flatten(),
            ),
            // Another node's connection: its user is the token's uid (the app's UserId).
            None if local.is_none() => match conn.user.as_deref().and_then(|u| u.parse().ok()) {
                Some(uid) => (Some(uid), store.account_by_id(uid).await.ok().flatten()),
                None => (None, None),
            },
            None => (None, None),
        };
        let details = local.map(|c| {
            let info = c.info();
            LocalDetails {
                path: info.path,
                queued_bytes: info.queued_bytes,
                rooms: info.rooms,
            }
        });
        entries.push(ConnEntry {
            node,
            age_ms: now_ms.saturating_sub(conn.opened_at_ms),
            conn,
            local: details,
            uid,
            account,
        });
    }
    entries
}

/// How to close: code (default 1000) and reason (default empty).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseParams {
    /// The close code (1000-1003, 1007-1014, 3000-4999).
    pub code: Option<u16>,
    /// The close reason, at most 123 bytes.
    pub reason: Option<String>,
}

/// Closes a connection; the JSON body wins over the query string.
pub(crate) async fn close(
    _admin: Admin,
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    uri: Uri,
    MaybeJson(body): MaybeJson<CloseParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id: ConnId = id
        .parse()
        .map_err(|e| ApiError::bad_request("bad_conn_id", format!("{e}")))?;
    let (code, reason) = close_params(&uri, body)?;
    state.sender.close(id, code, &reason).map_err(send_error)?;
    Ok(Json(serde_json::json!({
        "closed": id.to_string(),
        "code": code.as_u16(),
        "reason": reason,
    })))
}

/// The close code and reason of a close request (the JSON body wins over the query string),
/// or 400 `bad_query`, `bad_close_code`, `reason_too_long`.
pub(crate) fn close_params(
    uri: &Uri,
    body: Option<CloseParams>,
) -> Result<(CloseCode, String), ApiError> {
    let params = match body {
        Some(body) => body,
        None => {
            Query::<CloseParams>::try_from_uri(uri)
                .map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?
                .0
        }
    };
    let code = CloseCode::new(params.code.unwrap_or(1000));
    if !code.is_sendable() {
        return Err(ApiError::bad_request(
            "bad_close_code",
            format!("{code} cannot be sent in a close frame"),
        ));
    }
    let reason = params.reason.unwrap_or_default();
    if reason.len() > MAX_REASON {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "reason_too_long",
            format!("the reason is over {MAX_REASON} bytes"),
        ));
    }
    Ok((code, reason))
}
