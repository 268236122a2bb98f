//! `/wss/rooms/{room}`: a room chat on top of wharf's rooms.
//!
//! Opening the route joins the room named in the path; every text message is sent to
//! every member of the room, on every node of the cluster, as
//! `{"room","conn","user","text"}`; closing leaves the room. With `rooms.presence_events`
//! the other members also see `{"event":"join"|"leave",…}`.
//!
//! A room that keeps history (`[rooms.history]`) is published to instead: every message is
//! stored at a position and members receive `{"room","position","text"}` (the `text` being
//! the JSON above). Opening `/wss/rooms/{room}?since=EPOCH:OFFSET` (the last position the
//! client received) first sends everything after it, then live messages, with no gap and
//! no duplicate, then `{"event":"recovery","room","position","recovered","delivered"}`
//! (`recovered: false`: what it missed is gone; reload). Without `since` it joins live.
//! A malformed or future `since` closes with 1008; a publish the store refuses closes the
//! sender with 1011 ("publish failed"; reconnect with your last position).

use std::time::Duration;

use wharf::{CloseCode, Conn, Handler, HandlerError, Message, OpenRequest};

use crate::api::history::{param, parse_position};

/// The path the chat is mounted on.
pub const CHAT_PATH: &str = "/wss/rooms/{room}";

/// Longest room name, in bytes.
pub const MAX_ROOM: usize = 64;

/// How long opening waits for the node's subscription to a room new to it.
const ROOM_READY_WAIT: Duration = Duration::from_secs(2);

/// The room chat handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct Chat;

impl Handler for Chat {
    async fn on_open(&self, conn: &Conn, request: &OpenRequest) -> Result<(), HandlerError> {
        let room = match conn.param("room") {
            Some(room) if room.len() <= MAX_ROOM => room,
            _ => {
                conn.close(CloseCode::POLICY_VIOLATION, "room name too long");
                return Ok(());
            }
        };
        let since = request.uri.query().and_then(|q| param(q, "since"));
        let history = conn.sender().history_hub();
        if history.policy(room).is_none() {
            join_live(conn, room).await;
            return Ok(());
        }
        let joined = match since.as_deref().map(parse_position) {
            Some(Ok(since)) => conn.join_from(room, Some(&since)).await.map(Some),
            Some(Err(_)) => {
                conn.close(CloseCode::POLICY_VIOLATION, "since is not EPOCH:OFFSET");
                return Ok(());
            }
            // Live from now, exactly: nothing still on its way is missed.
            None => conn.join_from_top(room).await.map(|_| None),
        };
        match joined {
            Ok(None) => {}
            Ok(Some(recovery)) => {
                let event = serde_json::json!({
                    "event": "recovery",
                    "room": room,
                    "position": recovery.position.to_string(),
                    "recovered": recovery.recovered,
                    "delivered": recovery.delivered,
                });
                conn.send(event.to_string())?;
            }
            Err(e) if e.is_unavailable() => {
                conn.close(CloseCode::TRY_AGAIN_LATER, "history unavailable");
            }
            Err(wharf::history::RoomError::Store(_)) => {
                conn.close(CloseCode::POLICY_VIOLATION, "since is ahead of the room");
            }
            Err(_) => {} // it closed meanwhile
        }
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, message: Message) -> Result<(), HandlerError> {
        let Some(room) = conn.param("room") else {
            return Ok(());
        };
        let out = match message {
            Message::Text(text) => serde_json::json!({
                "room": room,
                "conn": conn.id(),
                "user": conn.user(),
                "text": text,
            })
            .to_string()
            .into(),
            other => other,
        };
        let sender = conn.sender();
        if sender.history_hub().policy(room).is_some() {
            if let Err(e) = sender.publish(room, out).await {
                tracing::warn!(room, error = %e, "chat publish failed");
                conn.close(CloseCode::INTERNAL_ERROR, "publish failed");
            }
            return Ok(());
        }
        sender.push_room(room, out, None);
        Ok(())
    }
}

/// Joins `room` live; in a cluster, returns once this node receives what the other nodes
/// send to the room (its subscription may be new).
async fn join_live(conn: &Conn, room: &str) {
    conn.join(room);
    conn.sender().room_ready(room, ROOM_READY_WAIT).await;
}
