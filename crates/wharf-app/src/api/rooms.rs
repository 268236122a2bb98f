//! Rooms and presence: `GET /api/rooms`, `GET /api/rooms/{room}`,
//! `PUT`/`DELETE /api/rooms/{room}/members/{conn}`; answered for the whole cluster.

use std::sync::Arc;

use wharf::axum::Json;
use wharf::axum::extract::{Path, State};

use super::ApiState;
use super::admin::Admin;
use super::error::ApiError;
use super::push::{parse_conn, send_error};
use crate::chat::MAX_ROOM;

/// 400 `bad_room` for an empty or over-long room name.
pub(crate) fn check_room(room: &str) -> Result<(), ApiError> {
    if room.is_empty() || room.len() > MAX_ROOM {
        return Err(ApiError::bad_request(
            "bad_room",
            format!("a room name is 1 to {MAX_ROOM} bytes"),
        ));
    }
    Ok(())
}

/// `{"rooms": {"<name>": <members>, …}}` over every node.
pub(crate) async fn list(
    _admin: Admin,
    State(state): State<Arc<ApiState>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rooms = state.sender.rooms().await.map_err(send_error)?;
    Ok(Json(serde_json::json!({ "rooms": rooms })))
}

/// `{"room", "count", "members": [{"conn","user"}, …]}` over every node.
pub(crate) async fn show(
    _admin: Admin,
    State(state): State<Arc<ApiState>>,
    Path(room): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_room(&room)?;
    presence(&state.sender, &room).await.map(Json)
}

/// The members of `room` over every node: `{"room", "count", "members": [{"conn","user"}]}`
/// (the API's `GET /api/rooms/{room}` and the rooms protocol's `presence`).
pub(crate) async fn presence(
    sender: &wharf::Sender,
    room: &str,
) -> Result<serde_json::Value, ApiError> {
    let members = sender.room_members(room).await.map_err(send_error)?;
    Ok(serde_json::json!({
        "room": room,
        "count": members.len(),
        "members": members,
    }))
}

/// Adds a connection (on any node) to a room: `{"room","conn","joined":true}`.
pub(crate) async fn join(
    _admin: Admin,
    State(state): State<Arc<ApiState>>,
    Path((room, conn)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    membership(&state, &room, &conn, true)
}

/// Removes a connection (on any node) from a room: `{"room","conn","joined":false}`.
pub(crate) async fn leave(
    _admin: Admin,
    State(state): State<Arc<ApiState>>,
    Path((room, conn)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    membership(&state, &room, &conn, false)
}

fn membership(
    state: &ApiState,
    room: &str,
    conn: &str,
    joined: bool,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_room(room)?;
    let id = parse_conn(conn)?;
    let result = if joined {
        state.sender.join(id, room)
    } else {
        state.sender.leave(id, room)
    };
    result.map_err(send_error)?;
    Ok(Json(
        serde_json::json!({ "room": room, "conn": id, "joined": joined }),
    ))
}
