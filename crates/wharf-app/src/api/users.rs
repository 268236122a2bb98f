//! Users: `GET /api/users/{user}` (presence) and `DELETE /api/users/{user}/connections`
//! (close them all), across the cluster.

use std::sync::Arc;

use wharf::CloseCode;
use wharf::axum::Json;
use wharf::axum::extract::{Path, State};
use wharf::http::Uri;

use super::ApiState;
use super::admin::Admin;
use super::body::MaybeJson;
use super::connections::{CloseParams, close_params};
use super::error::ApiError;
use super::push::send_error;

/// `{"user", "online", "connections": ["<id>", …]}` over every node.
pub(crate) async fn show(
    _admin: Admin,
    State(state): State<Arc<ApiState>>,
    Path(user): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let conns = state.sender.user_conns(&user).await.map_err(send_error)?;
    Ok(Json(serde_json::json!({
        "user": user,
        "online": !conns.is_empty(),
        "connections": conns,
    })))
}

/// Closes every connection of the user on every node: `{"user","closed_local","code","reason"}`.
pub(crate) async fn close_all(
    _admin: Admin,
    State(state): State<Arc<ApiState>>,
    Path(user): Path<String>,
    uri: Uri,
    MaybeJson(body): MaybeJson<CloseParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (code, reason): (CloseCode, String) = close_params(&uri, body)?;
    let closed = state.sender.close_user(&user, code, &reason);
    Ok(Json(serde_json::json!({
        "user": user,
        "closed_local": closed,
        "code": code.as_u16(),
        "reason": reason,
    })))
}
