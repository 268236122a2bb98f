//! `/wss/demo`: the seed's `WebSocketController`.
//!
//! - open: `Authorization Success`, or close 1000 `illegal request` without claims;
//! - `nihao`: close 1000 with `<account> has been disconnected by the server`;
//! - any other message: `Recv: <text>`, then the claims as JSON;
//! - ping: pong with the same payload (the route delivers pings, as the seed's
//!   coroutine server did);
//! - close: logs `<account> disconnected` with the code and reason.

use tracing::{info, warn};
use wharf::{
    CloseCode, CloseEvent, Conn, Handler, HandlerError, Message, OpenRequest, PingPolicy, Route,
};

use crate::tokens::Claims;
use crate::users::UserStore;

/// The path the demo handler is mounted on.
pub const DEMO_PATH: &str = "/wss/demo";

/// The seed's demo controller.
#[derive(Debug, Clone)]
pub struct Demo {
    store: UserStore,
}

impl Demo {
    /// A demo handler that reads account names from `store`.
    pub fn new(store: UserStore) -> Demo {
        Demo { store }
    }

    /// The handler as a route that answers pings itself and speaks
    /// [`APP_PROTOCOL`](crate::APP_PROTOCOL).
    pub fn route(self) -> Route {
        Route::new(self)
            .ping_policy(PingPolicy::Deliver)
            .protocols([crate::APP_PROTOCOL])
    }

    /// The account of the connection's user: from the users table by uid (as the
    /// seed does), else the token's `account` claim, else empty.
    async fn account(&self, claims: &Claims) -> String {
        match self.store.account_by_id(claims.uid).await {
            Ok(Some(account)) => account,
            Ok(None) => claims.account.clone(),
            Err(e) => {
                warn!(uid = claims.uid, error = %e, "cannot look up the account");
                claims.account.clone()
            }
        }
    }
}

impl Handler for Demo {
    async fn on_open(&self, conn: &Conn, _request: &OpenRequest) -> Result<(), HandlerError> {
        if conn.get::<Claims>().is_some() {
            conn.send("Authorization Success")?;
            info!(conn = %conn.id(), "authorized");
        } else {
            conn.close(CloseCode::NORMAL, "illegal request");
        }
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, message: Message) -> Result<(), HandlerError> {
        let text = match message {
            Message::Ping(data) => {
                conn.send(Message::Pong(data))?;
                return Ok(());
            }
            Message::Pong(_) => return Ok(()),
            Message::Text(text) => text,
            Message::Binary(data) => String::from_utf8_lossy(&data).into_owned(),
        };
        let Some(claims) = conn.get::<Claims>() else {
            conn.close(CloseCode::NORMAL, "illegal request");
            return Ok(());
        };
        if text == "nihao" {
            let account = self.account(claims).await;
            conn.close(
                CloseCode::NORMAL,
                &format!("{account} has been disconnected by the server"),
            );
            return Ok(());
        }
        conn.send(format!("Recv: {text}"))?;
        conn.send(serde_json::to_string(claims)?)?;
        Ok(())
    }

    async fn on_close(&self, conn: &Conn, event: &CloseEvent) {
        let account = match conn.get::<Claims>() {
            Some(claims) => self.account(claims).await,
            None => String::new(),
        };
        info!(
            conn = %conn.id(),
            code = event.code.as_u16(),
            reason = %event.reason,
            "{account} disconnected"
        );
    }
}
