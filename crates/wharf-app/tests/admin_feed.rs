//! `/wss/admin/feed`, the dashboard's live feed: admin credentials at the handshake (the
//! API key or an admin JWT, as a header or as the browser's `wharf.bearer.` subprotocol),
//! then one JSON snapshot a second.

mod common;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use common::{API_KEY, handshake, login, start};

const FEED: &str = "/wss/admin/feed";

async fn snapshot(ws: &mut WebSocketStream<TcpStream>) -> serde_json::Value {
    let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a snapshot in time")
        .expect("open")
        .expect("no error");
    match message {
        Message::Text(text) => serde_json::from_str(&text).expect("JSON snapshot"),
        other => panic!("expected a text snapshot, got {other:?}"),
    }
}

#[tokio::test]
async fn refuses_without_admin_credentials() {
    let app = start("").await;
    let (response, _) = handshake(app.ws, FEED, &[]).await;
    assert_eq!(response.status, 401, "{}", response.body);
    assert_eq!(response.json()["error"], "credentials_missing");

    let protocol = "wharf, wharf.bearer.not-the-key";
    let (response, _) = handshake(app.ws, FEED, &[("Sec-WebSocket-Protocol", protocol)]).await;
    assert_eq!(response.status, 403, "{}", response.body);
    assert_eq!(response.json()["error"], "bad_credentials");

    // A valid login token is not enough.
    let token = login(&app, "alice", "correct horse battery").await;
    let protocol = format!("wharf, wharf.bearer.{token}");
    let (response, _) = handshake(app.ws, FEED, &[("Sec-WebSocket-Protocol", &protocol)]).await;
    assert_eq!(response.status, 403, "{}", response.body);
    assert_eq!(response.json()["error"], "not_admin");

    // Nor is a query parameter, even with the right key.
    let (response, _) = handshake(app.ws, &format!("{FEED}?token={API_KEY}"), &[]).await;
    assert_eq!(response.status, 401, "{}", response.body);
}

#[tokio::test]
async fn api_key_as_subprotocol_gets_snapshots() {
    let app = start("").await;
    let protocol = format!("wharf, wharf.bearer.{API_KEY}");
    let (response, ws) = handshake(app.ws, FEED, &[("Sec-WebSocket-Protocol", &protocol)]).await;
    assert_eq!(response.status, 101, "{}", response.body);
    // The server selects `wharf` (browsers need one selected) and never echoes the key.
    assert!(
        response
            .head
            .lines()
            .any(|l| l.trim() == "sec-websocket-protocol: wharf"),
        "{}",
        response.head
    );
    assert!(!response.head.contains(&API_KEY.to_ascii_lowercase()));
    let mut ws = ws.expect("open");

    let first = snapshot(&mut ws).await;
    assert_eq!(first["node"], 0);
    assert_eq!(first["count"], 1, "{first}");
    let feed = &first["connections"][0];
    assert_eq!(feed["route"], FEED);
    assert!(feed["age_ms"].is_u64() && feed["peer"].is_string());
    let routes = first["routes"].as_array().expect("routes");
    let open = |route: &str| {
        routes
            .iter()
            .find(|r| r["route"] == route && r["server"] == "ws")
            .unwrap_or_else(|| panic!("{route} not in {routes:?}"))["open"]
            .clone()
    };
    assert_eq!(open("/wss/demo"), 0);
    assert_eq!(open("/echo"), 0);
    assert_eq!(open(FEED), 1);

    // A second connection shows in the next snapshot, with its user and rooms.
    let token = login(&app, "bob", "correct horse battery").await;
    let auth = format!("Bearer {token}");
    let (_, chat) = handshake(app.ws, "/wss/rooms/lobby", &[("Authorization", &auth)]).await;
    let mut chat = chat.expect("chat open");
    let next = snapshot(&mut ws).await;
    assert!(next["at_ms"].as_u64() >= first["at_ms"].as_u64());
    assert_eq!(next["count"], 2, "{next}");
    let member = next["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .find(|c| c["route"] == "/wss/rooms/{room}")
        .expect("the chat connection")
        .clone();
    assert_eq!(member["account"], "bob");
    assert_eq!(member["rooms"], serde_json::json!(["lobby"]));

    // The core's counters ride along: the dashboard's rates come from their deltas.
    let metrics = &next["metrics"];
    assert_eq!(metrics["connections"], 2, "{metrics}");
    assert_eq!(
        metrics["history"]["appends"], 0,
        "history counters ride along: {metrics}"
    );
    assert!(
        metrics["handshakes_accepted"].as_u64() >= Some(2),
        "{metrics}"
    );
    let before = metrics["messages_in"].as_u64().expect("messages_in");
    chat.send(Message::text("hello room")).await.expect("send");
    let mut moved = false;
    for _ in 0..5 {
        let later = snapshot(&mut ws).await;
        if later["metrics"]["messages_in"].as_u64() == Some(before + 1) {
            moved = true;
            break;
        }
    }
    assert!(moved, "messages_in never moved from {before}");
}

#[tokio::test]
async fn admin_token_in_the_authorization_header() {
    let app = start("").await;
    let (admin, _) = app.tokens.issue((1, "root", true)).expect("issue");
    let auth = format!("Bearer {admin}");
    let (response, ws) = handshake(app.ws, FEED, &[("Authorization", &auth)]).await;
    assert_eq!(response.status, 101, "{}", response.body);
    let mut ws = ws.expect("open");
    assert_eq!(snapshot(&mut ws).await["count"], 1);
}
