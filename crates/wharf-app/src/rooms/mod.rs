//! `/wss/rooms`: the rooms protocol `wharf.rooms.v1`, written down in docs/protocol.md.
//!
//! One socket follows many rooms. A client sends commands (`subscribe`, `unsubscribe`,
//! `publish`, `history`, `presence`) as JSON text frames with ids and gets one reply per
//! command, in order; publications of the rooms it follows arrive as pushes
//! `{"room","position","text"}` (the server's history envelope,
//! [`crate::api::history::envelope`]). Subscribing with `since` recovers what the client
//! missed through [`wharf::Conn::join_from`], whose seam is closed in the library (no gap,
//! no duplicate).
//!
//! Only rooms that keep history (`[rooms.history]`) have positions; subscribing to another
//! answers `no_history`. Permissions come from the token's `rooms` and `publish` claims
//! ([`grants`]); limits from `[rooms_protocol]`
//! ([`RoomsProtocolConfig`](crate::config::RoomsProtocolConfig)).
//!
//! Layout: [`command`] reads a frame, [`ops`] does it, [`grants`] decides what a token may
//! do, [`session`] checks the subprotocol at the handshake and keeps the publish rate.
//!
//! Its plain-TCP connections move, open, in a live handover (`wharf upgrade`): the handler
//! [carries](wharf::Handler::carry) the session (the publish bucket's level) and the token's
//! claims, and the library moves the subscriptions with the position each had reached, so
//! that a subscriber misses no publication and gets none twice (docs/operations.md).

pub mod command;
pub mod grants;
mod ops;
pub mod session;

use serde_json::{Value, json};
use wharf::{CloseCode, Conn, Handler, HandlerError, Message, ResumeEvent, Route};

use crate::api::error::ApiError;
use crate::config::RoomsProtocolConfig;

/// The path `wharf serve` mounts the protocol on, on the app's WebSocket server.
pub const ROOMS_PATH: &str = "/wss/rooms";

/// The subprotocol a client must offer; the server selects it.
pub const ROOMS_PROTOCOL: &str = "wharf.rooms.v1";

/// The close code of a frame that is not a command (docs/protocol.md, "Protocol
/// violations").
pub const PROTOCOL_VIOLATION: CloseCode = CloseCode::new(4400);

/// The rooms protocol's handler (config: `handler = "rooms"`).
#[derive(Debug, Clone, Default)]
pub struct Rooms {
    config: RoomsProtocolConfig,
}

impl Rooms {
    /// A handler with `config`'s limits.
    pub fn new(config: RoomsProtocolConfig) -> Rooms {
        Rooms { config }
    }

    /// The handler as a route: it selects `wharf.rooms.v1` and refuses handshakes that do
    /// not offer it (400 `protocol_required`). Add the auth guard with `.layer(…)`.
    ///
    /// ```
    /// use wharf_app::rooms::{ROOMS_PATH, Rooms};
    /// let router = wharf::Router::new().route(ROOMS_PATH, Rooms::default().route());
    /// assert_eq!(router.len(), 1);
    /// ```
    pub fn route(self) -> Route {
        let layer = session::layer(self.config.clone());
        Route::new(self).protocols([ROOMS_PROTOCOL]).layer(layer)
    }
}

impl Handler for Rooms {
    async fn on_message(&self, conn: &Conn, message: Message) -> Result<(), HandlerError> {
        let Message::Text(text) = message else {
            conn.close(
                CloseCode::UNSUPPORTED_DATA,
                "binary frames are not commands",
            );
            return Ok(());
        };
        let reply = match command::parse(&text) {
            Err(violation) => {
                conn.close(PROTOCOL_VIOLATION, violation.reason());
                return Ok(());
            }
            Ok(Err((id, error))) => error_reply(id, error),
            Ok(Ok((id, op))) => match ops::run(conn, &self.config, op).await {
                Ok(mut reply) => {
                    reply["id"] = json!(id);
                    reply
                }
                Err(error) => error_reply(id, error),
            },
        };
        conn.send(reply.to_string())?;
        Ok(())
    }

    /// Everything a connection holds is carried (below) or kept by the library.
    fn movable(&self) -> bool {
        true
    }

    /// The session and the claims; a connection without a session (not set up by
    /// [`Rooms::route`]'s layer) cannot move.
    fn carry(&self, conn: &Conn) -> Option<Value> {
        let carried = session::Carried {
            v: session::CARRIED_VERSION,
            session: conn.get::<session::Session>()?.carry(),
            claims: conn.get::<crate::tokens::Claims>().cloned(),
        };
        serde_json::to_value(carried).ok()
    }

    /// Rebuilds the session under this process's `[rooms_protocol]` and attaches the claims.
    fn resume(&self, event: &mut ResumeEvent) -> Result<(), HandlerError> {
        let carried: session::Carried = serde_json::from_value(event.carried.take())?;
        if carried.v != session::CARRIED_VERSION {
            return Err(HandlerError::msg(format!(
                "rooms state v{} is not v{}",
                carried.v,
                session::CARRIED_VERSION
            )));
        }
        event.insert(session::Session::resume(&self.config, &carried.session));
        if let Some(claims) = carried.claims {
            event.insert(claims);
        }
        Ok(())
    }
}

/// `{"id", "code", "error", "msg"}`.
fn error_reply(id: u64, error: ApiError) -> Value {
    let rejection = error.into_rejection();
    json!({
        "id": id,
        "code": rejection.status().as_u16(),
        "error": rejection.error(),
        "msg": rejection.msg(),
    })
}
