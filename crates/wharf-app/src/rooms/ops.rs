//! Doing a command: each answers its reply's fields, or an error (docs/protocol.md).

use serde_json::{Value, json};
use wharf::Conn;
use wharf::http::StatusCode;

use super::command::{History, Op, Publish, RoomOnly, Subscribe};
use super::grants::{self, Access};
use super::session::Session;
use crate::api::error::ApiError;
use crate::api::history::{
    MAX_LIMIT, page, parse_position, publish_options, publish_to, room_error,
};
use crate::api::push::message_of;
use crate::api::rooms::presence;
use crate::config::RoomsProtocolConfig;
use crate::tokens::Claims;

/// Runs `op` for `conn`.
pub(super) async fn run(
    conn: &Conn,
    config: &RoomsProtocolConfig,
    op: Op,
) -> Result<Value, ApiError> {
    match op {
        Op::Subscribe(args) => subscribe(conn, config, args).await,
        Op::Unsubscribe(RoomOnly { room }) => {
            grants::check_name(&room)?;
            if !conn.leave(&room) {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_subscribed",
                    format!("this connection does not follow `{room}`"),
                ));
            }
            Ok(json!({ "room": room }))
        }
        Op::Publish(args) => publish(conn, config, args).await,
        Op::History(History { room, since, limit }) => {
            allowed(conn, Access::Follow, &room)?;
            page(
                conn.sender(),
                &room,
                since.as_deref(),
                limit.unwrap_or(MAX_LIMIT),
            )
            .await
        }
        Op::Presence(RoomOnly { room }) => {
            allowed(conn, Access::Follow, &room)?;
            presence(conn.sender(), &room).await
        }
    }
}

/// A well-formed room name the token allows `access` to.
fn allowed(conn: &Conn, access: Access, room: &str) -> Result<(), ApiError> {
    grants::check_name(room)?;
    grants::check(conn.get::<Claims>(), access, room)
}

async fn subscribe(
    conn: &Conn,
    config: &RoomsProtocolConfig,
    Subscribe { room, since }: Subscribe,
) -> Result<Value, ApiError> {
    allowed(conn, Access::Follow, &room)?;
    let rooms = conn.rooms();
    if rooms.contains(&room) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_subscribed",
            format!("this connection follows `{room}` already"),
        ));
    }
    if rooms.len() >= config.max_subscriptions {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_subscriptions",
            format!(
                "a connection follows at most {} rooms (rooms_protocol.max_subscriptions)",
                config.max_subscriptions
            ),
        ));
    }
    let since = since.as_deref().map(parse_position).transpose()?;
    let recovery = match &since {
        Some(since) => conn.join_from(&room, Some(since)).await,
        None => conn.join_from_top(&room).await,
    }
    .map_err(room_error)?;
    Ok(json!({
        "room": room,
        "position": recovery.position.to_string(),
        "recovered": recovery.recovered,
        "delivered": recovery.delivered,
    }))
}

async fn publish(
    conn: &Conn,
    config: &RoomsProtocolConfig,
    Publish {
        room,
        text,
        binary_base64,
        idempotency_key,
    }: Publish,
) -> Result<Value, ApiError> {
    allowed(conn, Access::Publish, &room)?;
    let message = message_of(text, binary_base64)?;
    let options = publish_options(idempotency_key)?;
    // Last, so that only a publish that would be tried counts against the rate.
    if let Some(session) = conn.get::<Session>() {
        session.take_publish(config)?;
    }
    let mut reply = publish_to(conn.sender(), &room, message, options).await?;
    reply["room"] = Value::String(room);
    Ok(reply)
}
