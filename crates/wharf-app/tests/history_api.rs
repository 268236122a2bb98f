//! History rooms through the app over real sockets: `POST /api/publish`,
//! `GET /api/rooms/{room}/history` and every error code, and the room chat delivering
//! `{"room","position","text"}` and recovering with `?since=`.

mod common;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use common::{API_KEY, TestApp, api, handshake, http, login, start};

const HISTORY: &str = "[rooms.history]\n[[rooms.history.rule]]\npattern = \"chat:*\"\nsize = 3\n";

async fn next_json(ws: &mut WebSocketStream<TcpStream>) -> Value {
    let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message in time")
        .expect("stream open")
        .expect("no error");
    match message {
        Message::Text(text) => serde_json::from_str(text.as_str()).expect("JSON"),
        other => panic!("expected text, got {other:?}"),
    }
}

async fn publish(app: &TestApp, body: Value) -> common::Response {
    api(app.http, "POST", "/api/publish", &body.to_string()).await
}

async fn chat(app: &TestApp, account: &str, path: &str) -> WebSocketStream<TcpStream> {
    let token = login(app, account, "correct horse battery").await;
    let auth = format!("Bearer {token}");
    let (response, ws) = handshake(app.ws, path, &[("Authorization", &auth)]).await;
    assert_eq!(response.status, 101, "{}", response.body);
    ws.expect("open")
}

#[tokio::test]
async fn publish_and_read_history_with_their_errors() {
    let app = start(HISTORY).await;
    let first = publish(&app, json!({ "room": "chat:a", "text": "one" })).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let position = first.json()["position"]
        .as_str()
        .expect("position")
        .to_owned();
    let (epoch, offset) = position.split_once(':').expect("EPOCH:OFFSET");
    assert_eq!(offset, "1");
    assert_eq!(first.json()["delivered_local"], 0);
    let binary = publish(&app, json!({ "room": "chat:a", "binary_base64": "AAEC" })).await;
    assert_eq!(binary.json()["position"], format!("{epoch}:2"));

    // Idempotent: the retry answers the first position and stores nothing.
    let body = json!({ "room": "chat:a", "text": "paid", "idempotency_key": "k1" });
    let once = publish(&app, body.clone()).await.json();
    let again = publish(&app, body).await.json();
    assert_eq!(once["position"], again["position"]);
    assert_eq!(
        (once["duplicate"].clone(), again["duplicate"].clone()),
        (json!(false), json!(true))
    );

    let page = api(
        app.http,
        "GET",
        &format!("/api/rooms/chat:a/history?since={epoch}:1"),
        "",
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let page = page.json();
    assert_eq!(page["top"], format!("{epoch}:3"));
    assert_eq!(page["complete"], true);
    assert_eq!(
        page["publications"],
        json!([
            { "position": format!("{epoch}:2"), "binary_base64": "AAEC" },
            { "position": format!("{epoch}:3"), "text": "paid" },
        ])
    );
    // Size 3: after a fourth, the first is trimmed and reading from the start is incomplete.
    publish(&app, json!({ "room": "chat:a", "text": "four" })).await;
    let all = api(app.http, "GET", "/api/rooms/chat:a/history?limit=2", "")
        .await
        .json();
    assert_eq!(all["complete"], false);
    assert_eq!(all["publications"].as_array().map(Vec::len), Some(2));
    let other = api(
        app.http,
        "GET",
        "/api/rooms/chat:a/history?since=older:1",
        "",
    )
    .await
    .json();
    assert_eq!(
        (other["complete"].clone(), other["publications"].clone()),
        (json!(false), json!([]))
    );

    for (path, status, error) in [
        ("/api/rooms/chat:a/history?since=nope", 400, "bad_position"),
        (
            "/api/rooms/chat:a/history?since=e%20x:1",
            400,
            "bad_position",
        ),
        ("/api/rooms/chat:a/history?limit=-1", 400, "bad_limit"),
        ("/api/rooms/chat:a/history?limit=1001", 400, "bad_limit"),
        ("/api/rooms/chat:a/history?limit=x", 400, "bad_limit"),
        ("/api/rooms/lobby/history", 404, "no_history"),
    ] {
        let response = api(app.http, "GET", path, "").await;
        assert_eq!(response.status, status, "{path}: {}", response.body);
        let json = response.json();
        assert_eq!(
            (json["code"].clone(), json["error"].clone()),
            (json!(status), json!(error)),
            "{path}"
        );
        assert!(json["msg"].is_string());
    }
    let ahead = api(
        app.http,
        "GET",
        &format!("/api/rooms/chat:a/history?since={epoch}:99"),
        "",
    )
    .await;
    assert_eq!(
        (ahead.status, ahead.json()["error"].clone()),
        (400, json!("bad_position"))
    );
    for (body, status, error) in [
        (json!({ "room": "lobby", "text": "x" }), 404, "no_history"),
        (json!({ "room": "chat:a" }), 400, "bad_request"),
        (
            json!({ "room": "chat:a", "text": "x", "idempotency_key": "" }),
            400,
            "bad_idempotency_key",
        ),
        (json!({ "room": "", "text": "x" }), 400, "bad_room"),
    ] {
        let response = publish(&app, body.clone()).await;
        assert_eq!(
            (response.status, response.json()["error"].clone()),
            (status, json!(error)),
            "{body}"
        );
    }
    // Without credentials: 401, as every admin endpoint.
    let anonymous = http(app.http, "POST", "/api/publish", &[], b"{}").await;
    assert_eq!(anonymous.status, 401);
    let metrics = http(app.http, "GET", "/metrics", &[("X-Api-Key", API_KEY)], b"").await;
    assert!(
        metrics.body.contains("wharf_history_appends_total 4"),
        "{}",
        metrics.body
    );
    assert!(
        metrics.body.contains("wharf_history_duplicates_total 1"),
        "{}",
        metrics.body
    );
}

#[tokio::test]
async fn the_chat_delivers_positions_and_recovers_with_since() {
    let app = start(HISTORY).await;
    let mut alice = chat(&app, "alice", "/wss/rooms/chat:lobby").await;
    alice.send(Message::text("hello")).await.expect("send");
    let first = next_json(&mut alice).await;
    assert_eq!(first["room"], "chat:lobby");
    let inner: Value =
        serde_json::from_str(first["text"].as_str().expect("text")).expect("chat JSON");
    assert_eq!(inner["text"], "hello");
    let position = first["position"].as_str().expect("position").to_owned();

    // bob is away while two messages are published; he comes back from `position`.
    for text in ["a", "b"] {
        publish(&app, json!({ "room": "chat:lobby", "text": text })).await;
        next_json(&mut alice).await;
    }
    let mut bob = chat(
        &app,
        "bob",
        &format!("/wss/rooms/chat:lobby?since={position}"),
    )
    .await;
    assert_eq!(next_json(&mut bob).await["text"], "a");
    assert_eq!(next_json(&mut bob).await["text"], "b");
    let recovery = next_json(&mut bob).await;
    assert_eq!(recovery["event"], "recovery");
    assert_eq!(
        (recovery["recovered"].clone(), recovery["delivered"].clone()),
        (json!(true), json!(2))
    );

    // A position of another epoch: nothing stale, `recovered: false`, then live.
    let mut carol = chat(&app, "carol", "/wss/rooms/chat:lobby?since=gone:7").await;
    let recovery = next_json(&mut carol).await;
    assert_eq!(
        (recovery["event"].clone(), recovery["recovered"].clone()),
        (json!("recovery"), json!(false))
    );
    publish(&app, json!({ "room": "chat:lobby", "text": "live" })).await;
    for ws in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(next_json(ws).await["text"], "live");
    }
    // A malformed `since` closes with 1008.
    let mut bad = chat(&app, "dave", "/wss/rooms/chat:lobby?since=bad").await;
    let closed = tokio::time::timeout(Duration::from_secs(10), bad.next())
        .await
        .expect("in time");
    match closed {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1008),
        other => panic!("expected a close, got {other:?}"),
    }
}
