//! The seed's flow end to end over real sockets: log in over HTTP, open `/wss/demo`
//! with the token, talk, and get disconnected by `nihao`.

mod common;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use common::{handshake, login, start};

async fn next<S>(ws: &mut WebSocketStream<S>) -> Message
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message in time")
        .expect("stream open")
        .expect("no error")
}

async fn text<S>(ws: &mut WebSocketStream<S>) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match next(ws).await {
        Message::Text(text) => text.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// hello → Recv + claims; ping → pong; nihao → close 1000 naming the account.
async fn talk<S>(ws: &mut WebSocketStream<S>, account: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    assert_eq!(text(ws).await, "Authorization Success");
    ws.send(Message::text("hello")).await.expect("send");
    assert_eq!(text(ws).await, "Recv: hello");
    let claims: serde_json::Value = serde_json::from_str(&text(ws).await).expect("claims JSON");
    assert_eq!(claims["account"], account);
    assert_eq!(claims["data"]["uid"], claims["uid"]);
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .expect("ping");
    match next(ws).await {
        Message::Pong(data) => assert_eq!(&data[..], b"are you there"),
        other => panic!("expected pong, got {other:?}"),
    }
    ws.send(Message::text("nihao")).await.expect("send");
    match next(ws).await {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 1000);
            assert_eq!(
                frame.reason.as_str(),
                format!("{account} has been disconnected by the server")
            );
        }
        other => panic!("expected close, got {other:?}"),
    }
}

#[tokio::test]
async fn seed_flow_with_bearer_header() {
    let app = start("").await;
    let token = login(&app, "alice", "correct horse battery").await;
    let mut request = format!("ws://{}/wss/demo", app.ws)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    let (mut ws, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    assert_eq!(response.status(), 101);
    let _: &mut WebSocketStream<MaybeTlsStream<TcpStream>> = &mut ws;
    talk(&mut ws, "alice").await;
}

#[tokio::test]
async fn seed_flow_with_bearer_subprotocol_never_echoes_the_token() {
    let app = start("").await;
    let token = login(&app, "bob", "correct horse battery").await;
    let protocol = format!("wharf.bearer.{token}");
    let (response, ws) = handshake(
        app.ws,
        "/wss/demo",
        &[("Sec-WebSocket-Protocol", &format!("chat, {protocol}"))],
    )
    .await;
    assert_eq!(response.status, 101, "{}", response.body);
    assert!(
        !response.head.contains("sec-websocket-protocol"),
        "the token was echoed: {}",
        response.head
    );
    assert!(!response.head.contains(&token.to_ascii_lowercase()));
    let mut ws = ws.expect("open");
    talk(&mut ws, "bob").await;
}

#[tokio::test]
async fn echo_stays_open_without_a_token() {
    let app = start("").await;
    let (response, ws) = handshake(app.ws, "/echo", &[]).await;
    assert_eq!(response.status, 101, "{}", response.body);
    let mut ws = ws.expect("open");
    ws.send(Message::text("x")).await.expect("send");
    assert_eq!(text(&mut ws).await, "x");
}

#[tokio::test]
async fn auth_off_lets_the_handshake_through_and_on_open_closes() {
    let app = start("[auth]\nenabled = false\n").await;
    let (response, ws) = handshake(app.ws, "/wss/demo", &[]).await;
    assert_eq!(response.status, 101, "{}", response.body);
    let mut ws = ws.expect("open");
    match next(&mut ws).await {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 1000);
            assert_eq!(frame.reason.as_str(), "illegal request");
        }
        other => panic!("expected close, got {other:?}"),
    }
}
