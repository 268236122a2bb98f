//! `/wss/rooms/{room}`: a room chat on top of wharf's rooms.
//!
//! Opening the route joins the room named in the path; every text message is sent to
//! every member of the room, on every node of the cluster, as
//! `{"room","conn","user","text"}`; closing leaves the room. With `rooms.presence_events`
//! the other members also see `{"event":"join"|"leave",…}`.

use std::time::Duration;

use wharf::{CloseCode, Conn, Handler, HandlerError, Message, OpenRequest};

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
    async fn on_open(&self, conn: &Conn, _request: &OpenRequest) -> Result<(), HandlerError> {
        match conn.param("room") {
            Some(room) if room.len() <= MAX_ROOM => {
                conn.join(room);
                // In a cluster, the member's node may only now subscribe to the room's
                // channel: open once it receives what the other nodes send to the room.
                conn.sender().room_ready(room, ROOM_READY_WAIT).await;
            }
            _ => {
                conn.close(CloseCode::POLICY_VIOLATION, "room name too long");
            }
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
        conn.sender().push_room(room, out, None);
        Ok(())
    }
}
