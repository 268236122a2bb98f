//! `POST /api/push`: a text or binary message to one connection or to every
//! connection of a user.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use wharf::axum::Json;
use wharf::axum::extract::State;
use wharf::http::StatusCode;
use wharf::{ConnId, Message, SendError};

use super::ApiState;
use super::admin::Admin;
use super::body::JsonBody;
use super::error::ApiError;
use crate::tokens::Claims;

/// The push request: one target (`conn` or `user`) and one payload (`text` or
/// `binary_base64`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// A connection id such as `"0-5"`.
    pub conn: Option<String>,
    /// A user id: every connection whose token has this `uid`.
    pub user: Option<i64>,
    /// A text message.
    pub text: Option<String>,
    /// A binary message, standard base64.
    pub binary_base64: Option<String>,
}

/// Pushes and answers `{"delivered": N}`.
pub(crate) async fn push(
    _admin: Admin,
    State(state): State<Arc<ApiState>>,
    JsonBody(request): JsonBody<PushRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let message = match (request.text, request.binary_base64) {
        (Some(text), None) => Message::Text(text),
        (None, Some(data)) => Message::binary(
            STANDARD
                .decode(data.trim())
                .map_err(|e| ApiError::bad_request("bad_base64", format!("binary_base64: {e}")))?,
        ),
        _ => {
            return Err(ApiError::bad_request(
                "bad_request",
                "give exactly one of `text` and `binary_base64`",
            ));
        }
    };
    let delivered = match (request.conn, request.user) {
        (Some(conn), None) => {
            let id: ConnId = conn
                .parse()
                .map_err(|e| ApiError::bad_request("bad_conn_id", format!("{e}")))?;
            state.sender.push(id, message).map_err(send_error)?;
            1
        }
        (None, Some(uid)) => state.sender.broadcast(message, |conn| {
            conn.get::<Claims>().is_some_and(|claims| claims.uid == uid)
        }),
        _ => {
            return Err(ApiError::bad_request(
                "bad_request",
                "give exactly one of `conn` and `user`",
            ));
        }
    };
    Ok(Json(serde_json::json!({ "delivered": delivered })))
}

/// A failed send as an API error: 404 `conn_not_found`, 409 `conn_closing`, 503 `queue_full`.
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
        other => ApiError::internal(&other),
    }
}
