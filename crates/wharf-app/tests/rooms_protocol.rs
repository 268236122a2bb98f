//! The rooms protocol `wharf.rooms.v1` (docs/protocol.md) over real sockets: the handshake,
//! every command and its reply, recovery with `since`, every error code, the permissions from
//! the token, the limits, and the frames that close the connection.

mod common;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use wharf_app::config::AppConfig;
use wharf_app::tokens::Grants;

use common::{TestApp, api, handshake, login, start};

type Ws = WebSocketStream<TcpStream>;

/// History for `demo:*` and `user:*` rooms only (so `plain` keeps none), a small room
/// `demo:tiny:*`, and small limits to reach.
const CONFIG: &str = r#"
[rooms.history]
[[rooms.history.rule]]
pattern = "demo:tiny:*"
size = 3
[[rooms.history.rule]]
pattern = "demo:*"
size = 100
[[rooms.history.rule]]
pattern = "user:*"
size = 100

[rooms_protocol]
max_subscriptions = 3
publish_rate = 1
publish_burst = 3
"#;

/// A WebSocket server of its own that mounts the protocol from the config file.
const EDGE: &str = r#"
[[server]]
name = "edge"
kind = "websocket"
host = "127.0.0.1"
port = 0
route = [{ path = "/live", handler = "rooms" }]
"#;

/// Opens `/wss/rooms` with `token` as the bearer subprotocol.
async fn connect(app: &TestApp, token: &str) -> Ws {
    let protocols = format!("wharf.rooms.v1, wharf.bearer.{token}");
    let (response, ws) = handshake(
        app.ws,
        "/wss/rooms",
        &[("Sec-WebSocket-Protocol", &protocols)],
    )
    .await;
    assert_eq!(response.status, 101, "{}", response.body);
    assert!(
        response
            .head
            .lines()
            .any(|line| line.trim() == "sec-websocket-protocol: wharf.rooms.v1"),
        "the server selects the protocol: {}",
        response.head
    );
    ws.expect("open")
}

/// A token for a new user with `grants`.
async fn token_with(app: &TestApp, account: &str, grants: Grants, admin: bool) -> (String, i64) {
    let user = app
        .store
        .add(account, "correct horse battery")
        .await
        .expect("add");
    let (token, _) = app
        .tokens
        .issue_with((user.id, account, admin), grants)
        .expect("issue");
    (token, user.id)
}

async fn next(ws: &mut Ws) -> Message {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a frame in time")
        .expect("stream open")
        .expect("no error")
}

async fn next_json(ws: &mut Ws) -> Value {
    match next(ws).await {
        Message::Text(text) => serde_json::from_str(text.as_str()).expect("JSON"),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Sends `command` and returns its reply and the pushes that came before it.
async fn call(ws: &mut Ws, command: Value) -> (Value, Vec<Value>) {
    let id = command["id"].clone();
    ws.send(Message::text(command.to_string()))
        .await
        .expect("send");
    let mut pushes = Vec::new();
    loop {
        let frame = next_json(ws).await;
        if frame.get("id") == Some(&id) {
            return (frame, pushes);
        }
        assert!(frame.get("id").is_none(), "a reply to another id: {frame}");
        pushes.push(frame);
    }
}

/// The reply to `command`, which must be an error with `code` and `error`.
async fn call_err(ws: &mut Ws, command: Value, code: u16, error: &str) {
    let (reply, _) = call(ws, command.clone()).await;
    assert_eq!(
        (reply["code"].as_u64(), reply["error"].as_str()),
        (Some(u64::from(code)), Some(error)),
        "{command} → {reply}"
    );
    assert!(
        reply["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{reply}"
    );
}

async fn publish_api(app: &TestApp, room: &str, text: &str) -> String {
    let body = json!({ "room": room, "text": text }).to_string();
    let response = api(app.http, "POST", "/api/publish", &body).await;
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()["position"]
        .as_str()
        .expect("position")
        .to_owned()
}

fn offset(position: &str) -> u64 {
    let (_, offset) = position.split_once(':').expect("EPOCH:OFFSET");
    offset.parse().expect("offset")
}

/// The close frame the server sent: its code and reason.
async fn closed(ws: &mut Ws) -> (u16, String) {
    loop {
        match next(ws).await {
            Message::Close(Some(frame)) => return (frame.code.into(), frame.reason.to_string()),
            Message::Close(None) => panic!("a close frame without a code"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn the_handshake_wants_the_protocol_and_a_token() {
    let app = start(CONFIG).await;
    let token = login(&app, "alice", "correct horse battery").await;

    let bearer = format!("wharf.bearer.{token}");
    let (response, _) =
        handshake(app.ws, "/wss/rooms", &[("Sec-WebSocket-Protocol", &bearer)]).await;
    assert_eq!(response.status, 400, "{}", response.body);
    assert_eq!(response.json()["error"], "protocol_required");

    let (response, _) = handshake(
        app.ws,
        "/wss/rooms",
        &[("Sec-WebSocket-Protocol", "wharf.rooms.v1")],
    )
    .await;
    assert_eq!(response.status, 401, "{}", response.body);
    assert_eq!(response.json()["error"], "token_missing");

    // Login tokens carry the configured grants: `demo:*` and the user's own room.
    let claims = app.tokens.verify(&token).expect("token");
    assert_eq!(claims.rooms, ["demo:*", "user:{uid}"]);
    let mut ws = connect(&app, &token).await;
    let (reply, _) = call(
        &mut ws,
        json!({"id": 1, "op": "subscribe", "room": "demo:a"}),
    )
    .await;
    assert_eq!(reply["recovered"], true, "{reply}");
    let own = format!("user:{}", claims.uid);
    let (reply, _) = call(&mut ws, json!({"id": 2, "op": "subscribe", "room": own})).await;
    assert_eq!(reply["room"], own, "{reply}");
    call_err(
        &mut ws,
        json!({"id": 3, "op": "subscribe", "room": "user:0"}),
        403,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn subscribe_publish_and_pushes_reach_every_subscriber_once() {
    let app = start(CONFIG).await;
    let token = login(&app, "alice", "correct horse battery").await;
    let mut alice = connect(&app, &token).await;
    let mut bob = connect(&app, &token).await;

    let (reply, pushes) = call(
        &mut alice,
        json!({"id": 1, "op": "subscribe", "room": "demo:news"}),
    )
    .await;
    assert!(pushes.is_empty());
    let (epoch, top) = reply["position"]
        .as_str()
        .expect("position")
        .split_once(':')
        .expect(":");
    assert_eq!(
        (
            top,
            reply["recovered"].as_bool(),
            reply["delivered"].as_u64()
        ),
        ("0", Some(true), Some(0))
    );
    let (_, _) = call(
        &mut bob,
        json!({"id": 7, "op": "subscribe", "room": "demo:news"}),
    )
    .await;

    // A publish over the protocol: the publisher's push and reply, in either order.
    alice
        .send(Message::text(
            json!({"id": 2, "op": "publish", "room": "demo:news", "text": "hello"}).to_string(),
        ))
        .await
        .expect("send");
    let (mut reply, mut push) = (Value::Null, Value::Null);
    for _ in 0..2 {
        let frame = next_json(&mut alice).await;
        if frame.get("id").is_some() {
            reply = frame
        } else {
            push = frame
        }
    }
    let first = format!("{epoch}:1");
    assert_eq!(
        reply,
        json!({"id": 2, "room": "demo:news", "position": first, "delivered_local": reply["delivered_local"], "duplicate": false})
    );
    assert_eq!(
        push,
        json!({"room": "demo:news", "position": first, "text": "hello"})
    );
    assert_eq!(
        next_json(&mut bob).await,
        push,
        "the other subscriber gets it too"
    );

    // Over the HTTP API, and binary: both subscribers, in order.
    let second = publish_api(&app, "demo:news", "from the API").await;
    let body = json!({"room": "demo:news", "binary_base64": "AAEC"}).to_string();
    assert_eq!(
        api(app.http, "POST", "/api/publish", &body).await.status,
        200
    );
    for ws in [&mut alice, &mut bob] {
        assert_eq!(
            next_json(ws).await,
            json!({"room": "demo:news", "position": second, "text": "from the API"})
        );
        assert_eq!(
            next_json(ws).await,
            json!({"room": "demo:news", "position": format!("{epoch}:3"), "binary_base64": "AAEC"})
        );
    }

    // Idempotent retries answer the first position and deliver nothing more.
    let command = json!({"id": 3, "op": "publish", "room": "demo:news", "text": "paid", "idempotency_key": "k1"});
    let (once, _) = call(&mut bob, command.clone()).await;
    let pushed = next_json(&mut alice).await;
    assert_eq!(pushed["position"], once["position"]);
    let (twice, _) = call(&mut bob, command).await;
    assert_eq!(
        (twice["position"].clone(), twice["duplicate"].clone()),
        (once["position"].clone(), json!(true))
    );

    // Unsubscribed: no more pushes; a marker published after shows the order.
    let (reply, _) = call(
        &mut alice,
        json!({"id": 4, "op": "unsubscribe", "room": "demo:news"}),
    )
    .await;
    assert_eq!(reply, json!({"id": 4, "room": "demo:news"}));
    publish_api(&app, "demo:news", "not for alice").await;
    call(
        &mut alice,
        json!({"id": 5, "op": "subscribe", "room": "demo:marker"}),
    )
    .await;
    let marker = publish_api(&app, "demo:marker", "marker").await;
    assert_eq!(
        next_json(&mut alice).await["position"],
        marker,
        "nothing of demo:news came first"
    );
}

#[tokio::test]
async fn a_reconnect_with_since_recovers_exactly_what_was_missed() {
    let app = start(CONFIG).await;
    let token = login(&app, "alice", "correct horse battery").await;
    let mut ws = connect(&app, &token).await;
    call(
        &mut ws,
        json!({"id": 1, "op": "subscribe", "room": "demo:feed"}),
    )
    .await;
    let mut last = String::new();
    for n in 1..=3 {
        last = publish_api(&app, "demo:feed", &format!("m{n}")).await;
        assert_eq!(next_json(&mut ws).await["position"], last);
    }
    ws.close(None).await.expect("close");
    drop(ws);
    for n in 4..=5 {
        publish_api(&app, "demo:feed", &format!("m{n}")).await;
    }

    let mut ws = connect(&app, &token).await;
    let (reply, pushes) = call(
        &mut ws,
        json!({"id": 1, "op": "subscribe", "room": "demo:feed", "since": last}),
    )
    .await;
    let texts: Vec<&str> = pushes.iter().filter_map(|p| p["text"].as_str()).collect();
    assert_eq!(texts, ["m4", "m5"], "what was missed, in order: {pushes:?}");
    assert_eq!(
        (reply["recovered"].as_bool(), reply["delivered"].as_u64()),
        (Some(true), Some(2))
    );
    assert_eq!(
        offset(reply["position"].as_str().expect("position")),
        offset(&last) + 2
    );
    // Then live, without a duplicate.
    let live = publish_api(&app, "demo:feed", "m6").await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"room": "demo:feed", "position": live, "text": "m6"})
    );

    // Another epoch, or older than the room keeps: nothing stale, `recovered: false`.
    let (reply, pushes) = call(
        &mut ws,
        json!({"id": 2, "op": "subscribe", "room": "demo:other", "since": "elsewhere:1"}),
    )
    .await;
    assert!(pushes.is_empty(), "{pushes:?}");
    assert_eq!(
        (reply["recovered"].as_bool(), reply["delivered"].as_u64()),
        (Some(false), Some(0))
    );
    let first = publish_api(&app, "demo:tiny:t", "t1").await;
    for n in 2..=6 {
        publish_api(&app, "demo:tiny:t", &format!("t{n}")).await;
    }
    let (reply, pushes) = call(
        &mut ws,
        json!({"id": 3, "op": "subscribe", "room": "demo:tiny:t", "since": first}),
    )
    .await;
    assert!(pushes.is_empty(), "{pushes:?}");
    assert_eq!(reply["recovered"], false, "t2 was trimmed: {reply}");
    // A position from the future is an error, and the connection stays open.
    call(
        &mut ws,
        json!({"id": 4, "op": "unsubscribe", "room": "demo:feed"}),
    )
    .await;
    let (epoch, _) = live.split_once(':').expect(":");
    let ahead =
        json!({"id": 5, "op": "subscribe", "room": "demo:feed", "since": format!("{epoch}:99")});
    call_err(&mut ws, ahead, 400, "bad_position").await;
    let (reply, _) = call(
        &mut ws,
        json!({"id": 6, "op": "presence", "room": "demo:feed"}),
    )
    .await;
    assert_eq!(
        reply["count"], 0,
        "the failed subscribe joined nothing: {reply}"
    );
    let (reply, pushes) = call(
        &mut ws,
        json!({"id": 7, "op": "subscribe", "room": "demo:feed", "since": live}),
    )
    .await;
    assert_eq!(
        (reply["recovered"].as_bool(), pushes.len()),
        (Some(true), 0),
        "{reply}"
    );
}

#[tokio::test]
async fn history_and_presence_answer_like_the_http_api() {
    let app = start(CONFIG).await;
    let token = login(&app, "alice", "correct horse battery").await;
    let mut ws = connect(&app, &token).await;
    let first = publish_api(&app, "demo:h", "one").await;
    let second = publish_api(&app, "demo:h", "two").await;

    let (reply, _) = call(&mut ws, json!({"id": 1, "op": "history", "room": "demo:h"})).await;
    assert_eq!(reply["top"], second);
    assert_eq!(reply["complete"], true);
    assert_eq!(
        reply["publications"],
        json!([{"position": first, "text": "one"}, {"position": second, "text": "two"}])
    );
    let (reply, _) = call(
        &mut ws,
        json!({"id": 2, "op": "history", "room": "demo:h", "since": first, "limit": 5}),
    )
    .await;
    assert_eq!(
        reply["publications"],
        json!([{"position": second, "text": "two"}])
    );
    let http = api(
        app.http,
        "GET",
        &format!("/api/rooms/demo:h/history?since={first}"),
        "",
    )
    .await;
    assert_eq!(
        http.json()["publications"],
        reply["publications"],
        "one shape for both doors"
    );

    call(
        &mut ws,
        json!({"id": 3, "op": "subscribe", "room": "demo:h"}),
    )
    .await;
    let (reply, _) = call(
        &mut ws,
        json!({"id": 4, "op": "presence", "room": "demo:h"}),
    )
    .await;
    assert_eq!(
        (reply["room"].as_str(), reply["count"].as_u64()),
        (Some("demo:h"), Some(1))
    );
    let member = &reply["members"][0];
    assert_eq!(
        member["user"],
        app.tokens.verify(&token).expect("t").uid.to_string()
    );
    assert!(member["conn"].as_str().is_some(), "{member}");
}

#[tokio::test]
async fn permissions_come_from_the_token() {
    let app = start(CONFIG).await;
    let grants = Grants {
        rooms: vec!["demo:news".into(), "user:{uid}".into()],
        publish: vec!["demo:chat:*".into()],
    };
    let (token, uid) = token_with(&app, "reader", grants, false).await;
    let mut ws = connect(&app, &token).await;
    call(
        &mut ws,
        json!({"id": 1, "op": "subscribe", "room": "demo:news"}),
    )
    .await;
    call(
        &mut ws,
        json!({"id": 2, "op": "subscribe", "room": format!("user:{uid}")}),
    )
    .await;
    call_err(
        &mut ws,
        json!({"id": 3, "op": "subscribe", "room": format!("user:{}", uid + 1)}),
        403,
        "forbidden",
    )
    .await;
    call_err(
        &mut ws,
        json!({"id": 4, "op": "subscribe", "room": "demo:other"}),
        403,
        "forbidden",
    )
    .await;
    call_err(
        &mut ws,
        json!({"id": 5, "op": "history", "room": "demo:other"}),
        403,
        "forbidden",
    )
    .await;
    call_err(
        &mut ws,
        json!({"id": 6, "op": "presence", "room": "demo:other"}),
        403,
        "forbidden",
    )
    .await;
    call_err(
        &mut ws,
        json!({"id": 7, "op": "publish", "room": "demo:news", "text": "x"}),
        403,
        "forbidden",
    )
    .await;
    let (reply, _) = call(
        &mut ws,
        json!({"id": 8, "op": "publish", "room": "demo:chat:1", "text": "x"}),
    )
    .await;
    assert!(reply["position"].as_str().is_some(), "{reply}");

    // Nothing without the claims; everything for an admin.
    let (nobody, _) = token_with(&app, "nobody", Grants::default(), false).await;
    let mut ws = connect(&app, &nobody).await;
    call_err(
        &mut ws,
        json!({"id": 1, "op": "subscribe", "room": "demo:news"}),
        403,
        "forbidden",
    )
    .await;
    let (admin, _) = token_with(&app, "root", Grants::default(), true).await;
    let mut ws = connect(&app, &admin).await;
    call(
        &mut ws,
        json!({"id": 1, "op": "subscribe", "room": "demo:news"}),
    )
    .await;
    let (reply, _) = call(
        &mut ws,
        json!({"id": 2, "op": "publish", "room": "user:123", "text": "x"}),
    )
    .await;
    assert!(reply["position"].as_str().is_some(), "{reply}");
}

#[tokio::test]
async fn command_errors_and_limits_leave_the_connection_open() {
    let app = start(CONFIG).await;
    let token = login(&app, "alice", "correct horse battery").await;
    let mut ws = connect(&app, &token).await;
    let long = format!("demo:{}", "x".repeat(60));
    for (command, code, error) in [
        (json!({"id": 1, "op": "subscribe"}), 400, "bad_request"),
        (
            json!({"id": 2, "op": "subscribe", "room": "demo:a", "extra": 1}),
            400,
            "bad_request",
        ),
        (
            json!({"id": 3, "op": "subscribe", "room": "demo: a"}),
            400,
            "bad_room",
        ),
        (
            json!({"id": 4, "op": "subscribe", "room": long}),
            400,
            "bad_room",
        ),
        (
            json!({"id": 5, "op": "subscribe", "room": "demo:a", "since": "nope"}),
            400,
            "bad_position",
        ),
        (
            json!({"id": 6, "op": "history", "room": "demo:a", "limit": 5000}),
            400,
            "bad_limit",
        ),
        (
            json!({"id": 7, "op": "publish", "room": "demo:a"}),
            400,
            "bad_request",
        ),
        (
            json!({"id": 8, "op": "publish", "room": "demo:a", "binary_base64": "%%"}),
            400,
            "bad_base64",
        ),
        (
            json!({"id": 9, "op": "publish", "room": "demo:a", "text": "x", "idempotency_key": ""}),
            400,
            "bad_idempotency_key",
        ),
        (
            json!({"id": 10, "op": "unsubscribe", "room": "demo:a"}),
            404,
            "not_subscribed",
        ),
    ] {
        call_err(&mut ws, command, code, error).await;
    }

    // A room without history has no positions (the admin token may use any room).
    let (admin, _) = token_with(&app, "root", Grants::default(), true).await;
    let mut root = connect(&app, &admin).await;
    call_err(
        &mut root,
        json!({"id": 1, "op": "subscribe", "room": "plain"}),
        404,
        "no_history",
    )
    .await;
    call_err(
        &mut root,
        json!({"id": 2, "op": "publish", "room": "plain", "text": "x"}),
        404,
        "no_history",
    )
    .await;

    // Subscriptions: `max_subscriptions = 3`, and no room twice.
    for (id, room) in [(20, "demo:1"), (21, "demo:2"), (22, "demo:3")] {
        let (reply, _) = call(&mut ws, json!({"id": id, "op": "subscribe", "room": room})).await;
        assert_eq!(reply["recovered"], true, "{reply}");
    }
    call_err(
        &mut ws,
        json!({"id": 23, "op": "subscribe", "room": "demo:1"}),
        409,
        "already_subscribed",
    )
    .await;
    call_err(
        &mut ws,
        json!({"id": 24, "op": "subscribe", "room": "demo:4"}),
        429,
        "too_many_subscriptions",
    )
    .await;
    call(
        &mut ws,
        json!({"id": 25, "op": "unsubscribe", "room": "demo:3"}),
    )
    .await;
    call(
        &mut ws,
        json!({"id": 26, "op": "subscribe", "room": "demo:4"}),
    )
    .await;

    // Publishes: a burst of 3, then 1 a second.
    let mut outcomes = Vec::new();
    for id in 30..34 {
        let (reply, _) = call(
            &mut ws,
            json!({"id": id, "op": "publish", "room": "demo:rate", "text": "x"}),
        )
        .await;
        outcomes.push(reply["error"].as_str().unwrap_or("ok").to_owned());
    }
    assert_eq!(outcomes, ["ok", "ok", "ok", "rate_limited"]);
    let (reply, _) = call(
        &mut ws,
        json!({"id": 40, "op": "presence", "room": "demo:1"}),
    )
    .await;
    assert_eq!(reply["count"], 1, "still open and served: {reply}");
}

#[tokio::test]
async fn frames_that_are_not_commands_close_the_connection() {
    let app = start(CONFIG).await;
    let token = login(&app, "alice", "correct horse battery").await;
    for (frame, code, reason) in [
        (Message::text("not json"), 4400, "not a JSON object"),
        (Message::text("[1]"), 4400, "not a JSON object"),
        (
            Message::text(r#"{"op":"subscribe","room":"demo:a"}"#),
            4400,
            "missing id",
        ),
        (
            Message::text(r#"{"id":"1","op":"subscribe","room":"demo:a"}"#),
            4400,
            "missing id",
        ),
        (
            Message::text(r#"{"id":1,"op":"join","room":"demo:a"}"#),
            4400,
            "unknown op",
        ),
        (
            Message::text(r#"{"id":1,"room":"demo:a"}"#),
            4400,
            "unknown op",
        ),
        (
            Message::binary(vec![1, 2, 3]),
            1003,
            "binary frames are not commands",
        ),
    ] {
        let mut ws = connect(&app, &token).await;
        ws.send(frame.clone()).await.expect("send");
        assert_eq!(
            closed(&mut ws).await,
            (code, reason.to_owned()),
            "{frame:?}"
        );
    }
    // A frame over the server's max_message_size (16 MiB by default): 1009.
    let mut ws = connect(&app, &token).await;
    let huge = format!(
        r#"{{"id":1,"op":"publish","room":"demo:a","text":"{}"}}"#,
        "x".repeat(17 << 20)
    );
    let _ = ws.send(Message::text(huge)).await;
    let (code, _) = closed(&mut ws).await;
    assert_eq!(CloseCode::from(code), CloseCode::Size);
}

#[tokio::test]
async fn a_config_mounts_the_protocol_on_its_own_path_behind_tokens() {
    let app = start(&format!("{CONFIG}\n{EDGE}")).await;
    let (edge, tokens) = (app.addrs["edge"], &app.tokens);

    // Behind the guard (not listed in auth.routes, yet allowed), with the protocol's checks.
    let (response, _) = handshake(
        edge,
        "/live",
        &[("Sec-WebSocket-Protocol", "wharf.rooms.v1")],
    )
    .await;
    assert_eq!(
        (response.status, response.json()["error"].clone()),
        (401, json!("token_missing"))
    );
    let (token, _) = tokens.issue((1, "alice", false)).expect("token");
    let (response, _) = handshake(
        edge,
        "/live",
        &[("Authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(
        (response.status, response.json()["error"].clone()),
        (400, json!("protocol_required"))
    );
    let (response, ws) = handshake(
        edge,
        "/live",
        &[
            ("Sec-WebSocket-Protocol", "wharf.rooms.v1"),
            ("Authorization", &format!("Bearer {token}")),
        ],
    )
    .await;
    assert_eq!(response.status, 101, "{}", response.body);
    let mut ws = ws.expect("open");
    let (reply, _) = call(
        &mut ws,
        json!({"id": 1, "op": "subscribe", "room": "demo:edge"}),
    )
    .await;
    assert_eq!(reply["recovered"], true, "{reply}");

    // Without an app server to keep tokens, a guarded `rooms` route is refused up front.
    let config = AppConfig::from_toml_str(EDGE, None).expect("parses");
    let refused = wharf_app::app::AppParts::of(&config).expect_err("refused");
    assert!(refused.contains("auth.enabled = false"), "{refused}");
    let open = AppConfig::from_toml_str(&format!("{EDGE}[auth]\nenabled = false\n"), None)
        .expect("parses");
    assert!(wharf_app::app::AppParts::of(&open).is_ok());
}
