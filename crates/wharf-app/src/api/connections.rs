//! `GET /api/connections` and `DELETE /api/connections/{id}`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wharf::axum::Json;
use wharf::axum::extract::{Path, Query, State};
use wharf::http::{StatusCode, Uri};
use wharf::{CloseCode, ConnId, ConnInfo, Sender};

use super::ApiState;
use super::admin::Admin;
use super::body::MaybeJson;
use super::error::ApiError;
use super::push::send_error;
use crate::tokens::Claims;
use crate::users::UserStore;

/// Longest close reason, in bytes (RFC 6455: the close payload is at most 125 bytes).
pub const MAX_REASON: usize = 123;

/// One connection in the listing.
#[derive(Debug, Serialize)]
pub struct ConnEntry {
    /// What the core knows.
    #[serde(flatten)]
    pub info: ConnInfo,
    /// The token's user id, when the connection was authenticated.
    pub uid: Option<i64>,
    /// The user's account, where known.
    pub account: Option<String>,
}

/// Lists every open connection: `{"count": N, "connections": [...]}`.
pub(crate) async fn list(
    _admin: Admin,
    State(state): State<Arc<ApiState>>,
) -> Json<serde_json::Value> {
    let entries = entries(&state.sender, &state.store, usize::MAX).await;
    Json(serde_json::json!({ "count": entries.len(), "connections": entries }))
}

/// This node's open connections with their users, at most `limit` of them (the oldest
/// first). Also the dashboard feed's list ([`crate::feed`]).
pub async fn entries(sender: &Sender, store: &UserStore, limit: usize) -> Vec<ConnEntry> {
    let mut infos = sender.list();
    infos.sort_by_key(|info| info.opened_at_ms);
    infos.truncate(limit);
    let mut entries = Vec::with_capacity(infos.len());
    for info in infos {
        let claims = sender
            .conn(info.id)
            .and_then(|conn| conn.get::<Claims>().cloned());
        let (uid, account) = match claims {
            Some(claims) => {
                let account = if claims.account.is_empty() {
                    store.account_by_id(claims.uid).await.ok().flatten()
                } else {
                    Some(claims.account)
                };
                (Some(claims.uid), account)
            }
            None => (None, None),
        };
        entries.push(ConnEntry { info, uid, account });
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
