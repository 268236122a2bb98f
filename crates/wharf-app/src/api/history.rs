//! History rooms: `POST /api/publish` and `GET /api/rooms/{room}/history`.
//!
//! A publication is written as `{"position": "EPOCH:OFFSET", "text": …}` or, for binary,
//! `{"position", "binary_base64": …}`; the room chat (`/wss/rooms/{room}`) sends the same
//! with `"room"` to its members (see [`envelope`]).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};
use wharf::axum::Json;
use wharf::axum::extract::{Path, RawQuery, State};
use wharf::history::{HistoryError, Position, Publication, PublishOptions, RoomError};
use wharf::http::StatusCode;
use wharf::{Message, SendError};

use super::ApiState;
use super::admin::Admin;
use super::body::JsonBody;
use super::error::ApiError;
use super::push::message_of;
use super::rooms::check_room;

/// The most publications one history request returns; also the default `limit`.
pub const MAX_LIMIT: usize = 1000;

/// The longest idempotency key, in bytes.
pub const MAX_KEY: usize = 128;

/// `POST /api/publish`: a text or binary message for a history room.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The room (it must keep history: `[rooms.history]`).
    pub room: String,
    /// A text message.
    pub text: Option<String>,
    /// A binary message, standard base64.
    pub binary_base64: Option<String>,
    /// A key naming this publish: a retry with the same key within the room's
    /// `idempotency_window` answers the first position and delivers nothing.
    pub idempotency_key: Option<String>,
}

/// Publishes; answers `{"position","delivered_local","duplicate"}`.
pub(crate) async fn publish(
    _admin: Admin,
    State(state): State<Arc<ApiState>>,
    JsonBody(request): JsonBody<PublishRequest>,
) -> Result<Json<Value>, ApiError> {
    check_room(&request.room)?;
    let message = message_of(request.text, request.binary_base64)?;
    let options = publish_options(request.idempotency_key)?;
    publish_to(&state.sender, &request.room, message, options)
        .await
        .map(Json)
}

/// The options of a publish with `idempotency_key`, or 400 `bad_idempotency_key`.
pub(crate) fn publish_options(idempotency_key: Option<String>) -> Result<PublishOptions, ApiError> {
    match idempotency_key {
        Some(key) if key.is_empty() || key.len() > MAX_KEY => Err(ApiError::bad_request(
            "bad_idempotency_key",
            format!("an idempotency key is 1 to {MAX_KEY} bytes"),
        )),
        Some(key) => Ok(PublishOptions::idempotent(key)),
        None => Ok(PublishOptions::default()),
    }
}

/// Publishes `message` to history room `room` (the API's `POST /api/publish` and the rooms
/// protocol's `publish`): `{"position", "delivered_local", "duplicate"}`.
pub(crate) async fn publish_to(
    sender: &wharf::Sender,
    room: &str,
    message: Message,
    options: PublishOptions,
) -> Result<Value, ApiError> {
    let published = sender
        .publish_with(room, message, options)
        .await
        .map_err(room_error)?;
    Ok(json!({
        "position": published.position.to_string(),
        "delivered_local": published.delivered_local,
        "duplicate": published.duplicate,
    }))
}

/// `GET /api/rooms/{room}/history?since=EPOCH:OFFSET&limit=N`: answers
/// `{"room","top","complete","publications":[{"position","text"|"binary_base64"}]}`.
pub(crate) async fn read(
    _admin: Admin,
    State(state): State<Arc<ApiState>>,
    Path(room): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    check_room(&room)?;
    let query = query.unwrap_or_default();
    let since = param(&query, "since");
    let limit = match param(&query, "limit") {
        None => MAX_LIMIT,
        Some(text) => text.parse::<usize>().map_err(|_| bad_limit(&text))?,
    };
    page(&state.sender, &room, since.as_deref(), limit)
        .await
        .map(Json)
}

/// Reads history room `room` after `since` (an `EPOCH:OFFSET`, else from the oldest kept),
/// at most `limit` (0 to [`MAX_LIMIT`]) publications (the API's `GET
/// /api/rooms/{room}/history` and the rooms protocol's `history`):
/// `{"room", "top", "complete", "publications": [{"position", "text" | "binary_base64"}]}`.
pub(crate) async fn page(
    sender: &wharf::Sender,
    room: &str,
    since: Option<&str>,
    limit: usize,
) -> Result<Value, ApiError> {
    if limit > MAX_LIMIT {
        return Err(bad_limit(&limit.to_string()));
    }
    let since = since.map(parse_position).transpose()?;
    let page = sender
        .history(room, since.as_ref(), limit)
        .await
        .map_err(room_error)?;
    let publications: Vec<Value> = page.publications.iter().map(to_json).collect();
    Ok(json!({
        "room": room,
        "top": page.top.to_string(),
        "complete": page.complete,
        "publications": publications,
    }))
}

fn bad_limit(text: &str) -> ApiError {
    ApiError::bad_request(
        "bad_limit",
        format!("limit is a whole number from 0 to {MAX_LIMIT}, not `{text}`"),
    )
}

/// A publication as JSON: `{"position", "text"}` or `{"position", "binary_base64"}`.
pub fn to_json(publication: &Publication) -> Value {
    let position = publication.position.to_string();
    match &publication.message {
        Message::Text(text) => json!({ "position": position, "text": text }),
        other => {
            json!({ "position": position, "binary_base64": STANDARD.encode(other.as_bytes()) })
        }
    }
}

/// What the room chat's members receive for each publication of a history room:
/// `{"room", "position", "text" | "binary_base64"}` as a text message (set with
/// `ServerBuilder::history_envelope`).
pub fn envelope(room: &str, publication: &Publication) -> Message {
    let mut value = to_json(publication);
    value["room"] = Value::String(room.to_owned());
    Message::Text(value.to_string())
}

/// A position from a request, or 400 `bad_position`.
pub fn parse_position(text: &str) -> Result<Position, ApiError> {
    text.parse()
        .map_err(|e| ApiError::bad_request("bad_position", format!("since: {e}")))
}

/// The value of `name` in a query string (`a=1&b=2`), percent-decoded.
pub fn param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| percent_decode(value))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A failed history operation as an API error: 404 `no_history`, 400 `bad_position`
/// (ahead of the room), 503 `backplane_unavailable` (the store cannot be reached).
pub(crate) fn room_error(error: RoomError) -> ApiError {
    match &error {
        RoomError::NoHistory(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "no_history", error.to_string())
        }
        RoomError::Store(HistoryError::PositionAhead { .. }) => {
            ApiError::bad_request("bad_position", error.to_string())
        }
        RoomError::Store(HistoryError::Unavailable(_)) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "backplane_unavailable",
            error.to_string(),
        ),
        RoomError::Send(SendError::Closed(_) | SendError::NotFound(_)) => {
            ApiError::new(StatusCode::CONFLICT, "conn_closing", error.to_string())
        }
        _ => ApiError::internal(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded() {
        assert_eq!(
            param("since=e1%3A5&limit=3", "since").as_deref(),
            Some("e1:5")
        );
        assert_eq!(param("since=e1%3A5&limit=3", "limit").as_deref(), Some("3"));
        assert_eq!(param("limit", "limit").as_deref(), Some(""));
        assert_eq!(param("a=1", "since"), None);
        assert_eq!(param("since=%zz%3", "since").as_deref(), Some("%zz%3"));
    }
}
