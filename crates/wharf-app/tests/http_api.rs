//! The HTTP API over real sockets: push, list, close, and every error code.

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use common::{API_KEY, TestApp, api, handshake, http, login, start};

async fn next(ws: &mut WebSocketStream<TcpStream>) -> Message {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message in time")
        .expect("stream open")
        .expect("no error")
}

/// Opens `/wss/demo` as a new user; returns the socket, its connection id and uid.
async fn connect(app: &TestApp, account: &str) -> (WebSocketStream<TcpStream>, String, i64) {
    let token = login(app, account, "correct horse battery").await;
    let header = format!("Bearer {token}");
    let (response, ws) = handshake(app.ws, "/wss/demo", &[("Authorization", &header)]).await;
    assert_eq!(response.status, 101, "{}", response.body);
    let mut ws = ws.expect("open");
    assert_eq!(next(&mut ws).await, Message::text("Authorization Success"));
    let list = api(app.http, "GET", "/api/connections", "").await;
    assert_eq!(list.status, 200, "{}", list.body);
    let entry = list.json()["connections"]
        .as_array()
        .expect("array")
        .iter()
        .find(|c| c["account"] == account)
        .cloned()
        .expect("listed with its account");
    assert_eq!(entry["route"], "/wss/demo");
    let id = entry["id"].as_str().expect("id").to_owned();
    let uid = entry["uid"].as_i64().expect("uid");
    (ws, id, uid)
}

#[tokio::test]
async fn push_to_a_connection_and_to_a_user() {
    let app = start("").await;
    let (mut ws, id, uid) = connect(&app, "alice").await;
    let body = serde_json::json!({ "conn": id, "text": "to the connection" }).to_string();
    let response = api(app.http, "POST", "/api/push", &body).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.json()["delivered"], 1);
    assert_eq!(next(&mut ws).await, Message::text("to the connection"));

    let body = serde_json::json!({ "user": uid, "binary_base64": "AAEC" }).to_string();
    let response = api(app.http, "POST", "/api/push", &body).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.json()["delivered"], 1);
    assert_eq!(next(&mut ws).await, Message::binary(vec![0u8, 1, 2]));
}

#[tokio::test]
async fn delete_closes_with_code_and_reason() {
    let app = start("").await;
    let (mut ws, id, _) = connect(&app, "alice").await;
    let response = api(
        app.http,
        "DELETE",
        &format!("/api/connections/{id}?code=4001&reason=bye"),
        "",
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    match next(&mut ws).await {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 4001);
            assert_eq!(frame.reason.as_str(), "bye");
        }
        other => panic!("expected close, got {other:?}"),
    }

    let (mut ws, id, _) = connect(&app, "bob").await;
    let body = r#"{"code":4002,"reason":"from the body"}"#;
    let response = api(app.http, "DELETE", &format!("/api/connections/{id}"), body).await;
    assert_eq!(response.status, 200, "{}", response.body);
    match next(&mut ws).await {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 4002);
            assert_eq!(frame.reason.as_str(), "from the body");
        }
        other => panic!("expected close, got {other:?}"),
    }
}

#[tokio::test]
async fn error_codes() {
    let app = start("").await;
    let check = |response: common::Response, status: u16, error: &str| {
        assert_eq!(response.status, status, "{}", response.body);
        let json = response.json();
        assert_eq!(json["error"], error, "{json}");
        assert_eq!(json["code"], status);
        assert!(json["msg"].is_string());
    };
    check(
        api(app.http, "POST", "/api/push", "{not json").await,
        400,
        "bad_json",
    );
    check(
        api(
            app.http,
            "POST",
            "/api/push",
            r#"{"conn":"0-999999","text":"x"}"#,
        )
        .await,
        404,
        "conn_not_found",
    );
    check(
        api(app.http, "DELETE", "/api/connections/0-999999", "").await,
        404,
        "conn_not_found",
    );
    check(
        api(
            app.http,
            "POST",
            "/api/push",
            r#"{"conn":"nope","text":"x"}"#,
        )
        .await,
        400,
        "bad_conn_id",
    );
    check(
        api(app.http, "POST", "/api/push", r#"{"text":"x"}"#).await,
        400,
        "bad_request",
    );
    check(
        http(app.http, "GET", "/api/connections", &[], b"").await,
        401,
        "credentials_missing",
    );
    check(
        http(
            app.http,
            "GET",
            "/api/connections",
            &[("X-Api-Key", "wrong")],
            b"",
        )
        .await,
        403,
        "bad_credentials",
    );
    check(
        http(
            app.http,
            "GET",
            "/api/connections",
            &[("Authorization", "Bearer wrong")],
            b"",
        )
        .await,
        403,
        "bad_credentials",
    );
    let big = format!(
        r#"{{"conn":"0-1","text":"{}"}}"#,
        "x".repeat((1 << 20) + 10)
    );
    check(
        api(app.http, "POST", "/api/push", &big).await,
        413,
        "body_too_large",
    );
    check(
        http(
            app.http,
            "POST",
            "/auth/login",
            &[],
            br#"{"account":"nobody","password":"whatever-password"}"#,
        )
        .await,
        401,
        "invalid_credentials",
    );
    check(
        http(app.http, "POST", "/auth/login", &[], b"[").await,
        400,
        "bad_json",
    );
}

#[tokio::test]
async fn admin_tokens_and_keys() {
    let app = start("").await;
    let (admin, _) = app.tokens.issue((1, "root", true)).expect("issue");
    let (user, _) = app.tokens.issue((2, "alice", false)).expect("issue");
    let get = |value: String| async move {
        http(
            app.http,
            "GET",
            "/api/connections",
            &[("Authorization", &value)],
            b"",
        )
        .await
    };
    assert_eq!(get(format!("Bearer {admin}")).await.status, 200);
    assert_eq!(get(format!("Bearer {API_KEY}")).await.status, 200);
    let response = get(format!("Bearer {user}")).await;
    assert_eq!(response.status, 403);
    assert_eq!(response.json()["error"], "not_admin");

    // Without a configured key, only admin tokens work.
    let keyless = start("[api]\n").await;
    let (admin, _) = keyless.tokens.issue((1, "root", true)).expect("issue");
    let bearer = format!("Bearer {admin}");
    let response = http(
        keyless.http,
        "GET",
        "/api/connections",
        &[("Authorization", &bearer)],
        b"",
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let response = http(
        keyless.http,
        "GET",
        "/api/connections",
        &[("X-Api-Key", API_KEY)],
        b"",
    )
    .await;
    assert_eq!(response.status, 403);
    assert_eq!(response.json()["error"], "bad_credentials");
}

/// Opens the room chat `/wss/rooms/{room}` as a new user.
async fn chat(app: &TestApp, account: &str, room: &str) -> WebSocketStream<TcpStream> {
    let token = login(app, account, "correct horse battery").await;
    let header = format!("Bearer {token}");
    let path = format!("/wss/rooms/{room}");
    let (response, ws) = handshake(app.ws, &path, &[("Authorization", &header)]).await;
    assert_eq!(response.status, 101, "{}", response.body);
    ws.expect("open")
}

#[tokio::test]
async fn rooms_users_and_presence_on_one_node() {
    let app = start("").await;
    let mut alice = chat(&app, "alice", "lobby").await;
    let mut bob = chat(&app, "bob", "lobby").await;
    let (mut carol, carol_id, carol_uid) = connect(&app, "carol").await;

    let room = api(app.http, "GET", "/api/rooms/lobby", "").await;
    assert_eq!(room.status, 200, "{}", room.body);
    assert_eq!(room.json()["count"], 2);
    let path = format!("/api/rooms/lobby/members/{carol_id}");
    let joined = api(app.http, "PUT", &path, "").await;
    assert_eq!(joined.status, 200, "{}", joined.body);
    assert_eq!(joined.json()["joined"], true);
    let rooms = api(app.http, "GET", "/api/rooms", "").await.json();
    assert_eq!(rooms["rooms"]["lobby"], 3);

    let body = serde_json::json!({ "room": "lobby", "text": "news", "except": carol_id });
    let pushed = api(app.http, "POST", "/api/push", &body.to_string()).await;
    assert_eq!(pushed.json()["delivered"], 2, "{}", pushed.body);
    assert_eq!(pushed.json()["cluster"], false);
    assert_eq!(next(&mut alice).await, Message::text("news"));
    assert_eq!(next(&mut bob).await, Message::text("news"));

    // A chat message goes to every member, the sender and carol (joined by the API) too.
    futures_util::SinkExt::send(&mut alice, Message::text("hi"))
        .await
        .expect("send");
    for ws in [&mut alice, &mut bob, &mut carol] {
        let Message::Text(text) = next(ws).await else {
            panic!("text")
        };
        let json: serde_json::Value = serde_json::from_str(text.as_str()).expect("json");
        assert_eq!(json["text"], "hi");
    }
    let left = api(app.http, "DELETE", &path, "").await;
    assert_eq!(left.json()["joined"], false);

    let user = api(app.http, "GET", &format!("/api/users/{carol_uid}"), "")
        .await
        .json();
    assert_eq!(user["online"], true);
    assert_eq!(user["connections"][0], carol_id);
    let everyone = r#"{"broadcast": true, "text": "all"}"#;
    assert_eq!(
        api(app.http, "POST", "/api/push", everyone).await.json()["delivered"],
        3
    );
    let closed = api(
        app.http,
        "DELETE",
        &format!("/api/users/{carol_uid}/connections?code=4003&reason=kicked"),
        "",
    )
    .await;
    assert_eq!(closed.json()["closed_local"], 1, "{}", closed.body);
    let cluster = api(app.http, "GET", "/api/cluster", "").await.json();
    assert_eq!(cluster["backplane"], serde_json::Value::Null);
    assert_eq!(cluster["node"], 0);

    let long = "x".repeat(65);
    let bad = api(app.http, "GET", &format!("/api/rooms/{long}"), "").await;
    assert_eq!(
        (bad.status, bad.json()["error"].clone()),
        (400, "bad_room".into())
    );
    let two = r#"{"room": "a", "user": 1, "text": "x"}"#;
    assert_eq!(api(app.http, "POST", "/api/push", two).await.status, 400);
    let bad_except = r#"{"room": "a", "except": "nope", "text": "x"}"#;
    assert_eq!(
        api(app.http, "POST", "/api/push", bad_except).await.json()["error"],
        "bad_conn_id"
    );
}

/// Asserts an API error answer: its status, its `error` kind, and the documented shape.
fn assert_error(response: &common::Response, status: u16, error: &str) {
    assert_eq!(response.status, status, "{}", response.body);
    let json = response.json();
    assert_eq!(json["error"], error, "{json}");
    assert_eq!(json["code"], status, "{json}");
    assert!(json["msg"].is_string(), "{json}");
}

#[tokio::test]
async fn bad_payloads_and_close_parameters_are_400_or_422() {
    let app = start("").await;
    let (mut ws, id, _) = connect(&app, "alice").await;
    let push = |body: serde_json::Value| {
        let body = body.to_string();
        async move { api(app.http, "POST", "/api/push", &body).await }
    };
    assert_error(
        &push(serde_json::json!({ "conn": id, "binary_base64": "not base64!" })).await,
        400,
        "bad_base64",
    );
    // JSON, but not the shape of a push: a number where a string goes, an unknown field.
    assert_error(
        &push(serde_json::json!({ "conn": 5, "text": "x" })).await,
        422,
        "invalid_body",
    );
    assert_error(
        &push(serde_json::json!({ "conn": id, "text": "x", "colour": "red" })).await,
        422,
        "invalid_body",
    );
    let close = |query: String| {
        let path = format!("/api/connections/{id}{query}");
        async move { api(app.http, "DELETE", &path, "").await }
    };
    // 1005 and 1006 are reserved for reporting, 999 is no close code at all.
    for code in [1005, 1006, 999] {
        assert_error(&close(format!("?code={code}")).await, 400, "bad_close_code");
    }
    let long = "r".repeat(124);
    assert_error(
        &close(format!("?code=4000&reason={long}")).await,
        400,
        "reason_too_long",
    );
    assert_error(&close("?code=abc".into()).await, 400, "bad_query");
    // None of those touched the connection: it is open and gets the next push.
    let ok = push(serde_json::json!({ "conn": id, "text": "still here" })).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(next(&mut ws).await, Message::text("still here"));
    // At the limit: a 123-byte reason is fine.
    let reason = "r".repeat(123);
    let closed = close(format!("?code=4000&reason={reason}")).await;
    assert_eq!(closed.status, 200, "{}", closed.body);
    match next(&mut ws).await {
        Message::Close(Some(frame)) => assert_eq!(frame.reason.as_str(), reason),
        other => panic!("expected close, got {other:?}"),
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_gets_queue_full_then_conn_closing() {
    let app = start("").await;
    // Opened, then never read again: pushes fill the socket buffers, then the queue (4 MiB).
    let (ws, id, _) = connect(&app, "alice").await;
    let chunk = "q".repeat(512 * 1024);
    let body = serde_json::json!({ "conn": id, "text": chunk }).to_string();
    let mut accepted = 0;
    let full = loop {
        let response = api(app.http, "POST", "/api/push", &body).await;
        if response.status != 200 {
            break response;
        }
        accepted += 1;
        assert!(
            accepted < 200,
            "100 MiB accepted for a client that never reads"
        );
    };
    assert_error(&full, 503, "queue_full");
    assert!(accepted >= 8, "the queue alone takes 4 MiB: {accepted}");
    // It is now being closed as a slow consumer (waiting for a close frame it cannot read):
    // a push is refused as closing, not queued and not lost as `not found`.
    assert_error(
        &api(app.http, "POST", "/api/push", &body).await,
        409,
        "conn_closing",
    );
    let close = api(app.http, "DELETE", &format!("/api/connections/{id}"), "").await;
    assert_error(&close, 409, "conn_closing");
    drop(ws);
}
