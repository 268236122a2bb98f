//! What every cluster test needs: the engines' addresses, a fresh key prefix, and a user's
//! WebSocket on a node.

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use wharf_app::tokens::{Subject, TokenConfig, Tokens};

use super::{SECRET, handshake};

/// A client's WebSocket to a node.
pub type Ws = WebSocketStream<TcpStream>;

/// The machine's Redis (`WHARF_TEST_REDIS_URL` overrides it).
pub fn redis_url() -> String {
    std::env::var("WHARF_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The machine's NATS (`WHARF_TEST_NATS_URL` overrides it).
pub fn nats_url() -> String {
    std::env::var("WHARF_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A prefix of channels and keys no other test (or earlier run) uses.
pub fn prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("t{}-{nanos}-{name}", std::process::id())
}

/// A token for user `uid` (account `user<uid>`), signed with the test secret.
pub fn token(uid: i64) -> String {
    let tokens = Tokens::new(&TokenConfig::default(), Some(SECRET)).expect("tokens");
    let subject = Subject {
        uid,
        account: format!("user{uid}"),
        admin: false,
    };
    tokens.issue(subject).expect("token").0
}

/// Opens `path` on `node` as user `uid`.
pub async fn open(node: SocketAddr, path: &str, uid: i64) -> Ws {
    let bearer = format!("Bearer {}", token(uid));
    let (response, ws) = handshake(node, path, &[("Authorization", &bearer)]).await;
    ws.unwrap_or_else(|| panic!("handshake refused: {} {}", response.status, response.body))
}
