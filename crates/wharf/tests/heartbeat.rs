//! Pings: automatic pongs, pings delivered to the handler, and the server heartbeat that
//! closes half-open connections.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wharf::{Conn, Echo, Handler, HandlerError, Message, PingPolicy, Route, Router};
use wharf_proto::OpCode;

both_doors! {
    pings_get_an_automatic_pong_with_the_same_payload,
    deliver_policy_hands_pings_to_the_handler,
    heartbeat_pings_an_idle_client_that_answers_and_stays,
    heartbeat_closes_a_client_that_never_answers,
}

/// Reports every message it gets; answers pings with a pong and a text note.
struct PingTaker(mpsc::UnboundedSender<Message>);

impl Handler for PingTaker {
    async fn on_message(&self, conn: &Conn, message: Message) -> Result<(), HandlerError> {
        let _ = self.0.send(message.clone());
        if let Message::Ping(data) = message {
            conn.send(format!("ping seen: {}", String::from_utf8_lossy(&data)))?;
            conn.send(Message::Pong(data))?;
        }
        Ok(())
    }
}

async fn pings_get_an_automatic_pong_with_the_same_payload() {
    let server = start_ws(Router::new().route("/echo", Echo)).await;
    let mut ws = connect(server.addr(), "/echo").await;
    within(
        "ping",
        ws.send(WsMessage::Ping(b"are you there".to_vec().into())),
    )
    .await
    .expect("ping");
    match next(&mut ws).await {
        WsMessage::Pong(data) => assert_eq!(&data[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
    // The handler never saw the ping: the next message is the echo.
    assert_echo(&mut ws, "after").await;
    drop(ws);
    server.shutdown().await;
}

async fn deliver_policy_hands_pings_to_the_handler() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let route = Route::new(PingTaker(tx)).ping_policy(PingPolicy::Deliver);
    let server = start_ws(Router::new().route("/raw", route)).await;
    let mut ws = RawWs::connect(server.addr(), "/raw").await;
    ws.send(OpCode::Ping, b"p1").await;
    let note = ws.read_frame().await;
    assert_eq!(
        (note.opcode, note.payload.as_slice()),
        (0x1, &b"ping seen: p1"[..])
    );
    let pong = ws.read_frame().await;
    assert_eq!((pong.opcode, pong.payload.as_slice()), (0xA, &b"p1"[..]));
    assert_eq!(
        within("handler message", rx.recv()).await,
        Some(Message::Ping(b"p1".to_vec().into()))
    );
    // Pongs are delivered too.
    ws.send(OpCode::Pong, b"unsolicited").await;
    assert_eq!(
        within("handler message", rx.recv()).await,
        Some(Message::Pong(b"unsolicited".to_vec().into()))
    );
    drop(ws);
    server.shutdown().await;
}

/// A ping after `interval` of silence; a pong must come within `timeout`.
fn heartbeat_config(interval: Duration, timeout: Duration) -> wharf::ServerConfig {
    let mut config = ws_server();
    config.heartbeat.interval = interval;
    config.heartbeat.timeout = timeout;
    config.limits.close_timeout = Duration::from_millis(300);
    config
}

async fn heartbeat_pings_an_idle_client_that_answers_and_stays() {
    // A pong timeout as long as the driver allows (it re-arms its timer for the next ping
    // only when the pong deadline passes, so a timeout over the interval would space the
    // pings by the timeout): the client answers as it reads, and a loaded machine may keep
    // this test's task from reading for a while.
    let config = heartbeat_config(Duration::from_millis(300), Duration::from_millis(290));
    let server = start_ws_with(config, Router::new().route("/echo", Echo)).await;
    // Timed from before the connect, so the server's timers (started at the upgrade, later)
    // cannot look early however long the handshake takes on a loaded machine.
    let started = Instant::now();
    let mut ws = connect(server.addr(), "/echo").await;
    match next(&mut ws).await {
        WsMessage::Ping(data) => assert_eq!(&data[..], b"wharf"),
        other => panic!("expected a heartbeat ping, got {other:?}"),
    }
    let first = started.elapsed();
    assert!(
        first >= Duration::from_millis(300),
        "first ping after {first:?}"
    );
    // tungstenite answers each ping while it reads; over 1.5 s the connection stays.
    let mut pings = 1;
    let _ = tokio::time::timeout(Duration::from_millis(1500), async {
        while let Some(message) = ws.next().await {
            match message.expect("no error") {
                WsMessage::Ping(_) => pings += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        panic!("the server ended a connection that answers its pings");
    })
    .await;
    assert!(pings >= 3, "pings: {pings}");
    assert_echo(&mut ws, "alive").await;
    drop(ws);
    server.shutdown().await;
}

async fn heartbeat_closes_a_client_that_never_answers() {
    let config = heartbeat_config(Duration::from_millis(200), Duration::from_millis(200));
    let server = start_ws_with(config, Router::new().route("/echo", Echo)).await;
    let started = Instant::now();
    let mut ws = RawWs::connect(server.addr(), "/echo").await;
    let ping = ws.read_frame().await;
    assert_eq!((ping.opcode, ping.payload.as_slice()), (0x9, &b"wharf"[..]));
    let closed = ws.read_close_no_reply().await;
    assert_eq!(closed, (1001, "ping timeout".to_owned()));
    // At least the interval plus the timeout (200 + 200 ms). The upper bound only says the
    // heartbeat ended it, not the 5 s of `within`; a loaded machine may be late by seconds.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    // No close reply either: the TCP connection ends after the close timeout.
    ws.read_to_end().await;
    server.shutdown().await;
}
