//! `POST /api/push`: a text or binary message to one connection, every connection of a
//! user, every member of a room, or everyone, across the cluster.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use wharf::axum::Json;
use wharf::axum::extract::State;
use wharf::http::StatusCode;
use wharf::{ConnId, Message, Scope, SendError};

use super::ApiState;
use super::admin::Admin;
use super::body::JsonBody;
use super::error::ApiError;

/// The push request: one target (`conn`, `user`, `room` or `broadcast`) and one payload
/// (`text` or `binary_base64`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// A connection id such as `"0-5"`, on any node.
    pub conn: Option<String>,
    /// A user id (the token's `uid`, as a number or a string): every connection of that
    /// user on every node.
    pub user: Option<UserRef>,
    /// A room: every member on every node.
    pub room: Option<String>,
    /// With `room`: a connection id to leave out (usually the sender).
    pub except: Option<String>,
    /// `true`: every connection on every node.
    #[serde(default)]
    pub broadcast: bool,
    /// A text message.
    pub text: Option<String>,
    /// A binary message, standard base64.
    pub binary_base64: Option<String>,
}

/// A user id as JSON gives it: `7` or `"7"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum UserRef {
    /// A numeric id.
    Number(i64),
    /// A string id.
    Text(String),
}

impl std::fmt::Display for UserRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserRef::Number(n) => write!(f, "{n}"),
            UserRef::Text(s) => f.write_str(s),
        }
    }
}

/// Pushes and answers with what the cluster did with it.
///
/// To one connection: `{"delivered": 1, "node": N, "cluster": bool}` once its node (this one
/// or another, asked over the backplane) queued it; otherwise that node's answer as an error
/// (404 `conn_not_found`, 409 `conn_closing`, 503 `queue_full`), or 504 `no_answer` when it
/// did not answer within a second. To a user, a room or everyone:
/// `{"delivered": N, "cluster": bool, "nodes": {"<node>": N, …}, "missing": [<node>, …]}`:
/// `delivered` counts this node's connections, `nodes` every other node that acknowledged
/// and its count, `missing` the nodes presence lists for the target that did not answer.
pub(crate) async fn push(
    _admin: Admin,
    State(state): State<Arc<ApiState>>,
    JsonBody(request): JsonBody<PushRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let message = message_of(request.text, request.binary_base64)?;
    let sender = &state.sender;
    let except = request.except.as_deref().map(parse_conn).transpose()?;
    let confirm = sender.confirm();
    let receipt = match (request.conn, request.user, request.room, request.broadcast) {
        (Some(conn), None, None, false) => {
            let id = parse_conn(&conn)?;
            confirm.push(id, message).await.map_err(send_error)?;
            return Ok(Json(serde_json::json!({
                "delivered": 1,
                "node": id.node(),
                "cluster": sender.cluster_stats().is_some(),
            })));
        }
        (None, Some(user), None, false) => confirm.push_user(&user.to_string(), message).await,
        (None, None, Some(room), false) => {
            super::rooms::check_room(&room)?;
            confirm.push_room(&room, message, except).await
        }
        (None, None, None, true) => confirm.broadcast(message, Scope::All).await,
        _ => {
            return Err(ApiError::bad_request(
                "bad_request",
                "give exactly one of `conn`, `user`, `room` and `broadcast: true`",
            ));
        }
    };
    Ok(Json(serde_json::json!({
        "delivered": receipt.local,
        "cluster": sender.cluster_stats().is_some(),
        "nodes": receipt.nodes,
        "missing": receipt.missing,
    })))
}

/// The message a request body gives as exactly one of `text` and `binary_base64`, or 400
/// (`bad_base64`, `bad_request`).
pub(crate) fn message_of(
    text: Option<String>,
    binary_base64: Option<String>,
) -> Result<Message, ApiError> {
    match (text, binary_base64) {
        (Some(text), None) => Ok(Message::Text(text)),
        (None, Some(data)) => Ok(Message::binary(STANDARD.decode(data.trim()).map_err(
            |e| ApiError::bad_request("bad_base64", format!("binary_base64: {e}")),
        )?)),
        _ => Err(ApiError::bad_request(
            "bad_request",
            "give exactly one of `text` and `binary_base64`",
        )),
    }
}

/// A connection id from the request, or 400 `bad_conn_id`.
pub(crate) fn parse_conn(text: &str) -> Result<ConnId, ApiError> {
    text.parse()
        .map_err(|e| ApiError::bad_request("bad_conn_id", format!("{e}")))
}

/// A failed send as an API error: 404 `conn_not_found`, 409 `conn_closing`, 503
/// `queue_full` or `backplane_unavailable`, 504 `no_answer`.
pub(crate) fn send_error(error: SendError) -> ApiError {
    match error {
        SendError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "conn_not_found", error.to_string())
        }
        SendError::Closed(_) => {
            ApiError::new(StatusCode::CONFLICT, "conn_closing", error.to_string())
        }
        SendError::QueueFull(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_full",
            error.to_string(),
        ),
        SendError::NoAnswer(_) => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "no_answer", error.to_string())
        }
        SendError::Backplane(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "backplane_unavailable",
            error.to_string(),
        ),
        other => ApiError::internal(&other),
    }
}
