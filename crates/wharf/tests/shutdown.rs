//! Graceful shutdown: every connection gets 1001, every `on_close` runs, `serve` returns.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wharf::{CloseCode, Config, Initiator, Router, Server};

#[tokio::test]
async fn shutdown_closes_every_connection_with_1001_and_serve_returns() {
    let (recorder, mut events) = Recorder::new();
    let mut server = start_ws(Router::new().route("/rec", recorder)).await;
    let addr = server.addr();
    let mut a = connect(addr, "/rec").await;
    let a_id = greeting_id(&mut a).await;
    let mut b = connect(addr, "/rec").await;
    let b_id = greeting_id(&mut b).await;
    server.trigger_shutdown();
    let (ca, cb) = tokio::join!(expect_close(&mut a), expect_close(&mut b));
    assert_eq!(ca.0, 1001);
    assert_eq!(cb.0, 1001);
    server.join().await.expect("serve returns Ok");
    let mut closed = std::collections::HashMap::new();
    while closed.len() < 2 {
        if let Event::Close(id, event) = events.next().await {
            assert!(
                closed.insert(id, event).is_none(),
                "on_close twice for {id}"
            );
        }
    }
    for id in [a_id, b_id] {
        let event = &closed[&id];
        assert_eq!(event.code, CloseCode::GOING_AWAY);
        assert_eq!(event.reason, "server shutting down");
        assert_eq!(event.initiator, Initiator::Server);
    }
    // Nothing more: the recorder is gone with the server.
    assert!(events.0.recv().await.is_none());
    assert_eq!(server.sender.count(), 0);
    // The listener is gone.
    let refused = within(
        "connect after shutdown",
        tokio::net::TcpStream::connect(addr),
    )
    .await;
    assert!(refused.is_err(), "still accepting after shutdown");
}

#[tokio::test]
async fn drain_timeout_bounds_a_client_that_never_answers() {
    let (recorder, _events) = Recorder::new();
    let mut config = Config::empty().with_server(ws_server());
    config.drain_timeout = Duration::from_millis(300);
    let builder = Server::builder(config).websocket("ws", Router::new().route("/rec", recorder));
    let mut server = start(builder).await;
    // A raw client that never reads or answers the close (close_timeout is 5 s).
    let mut ws = RawWs::connect(server.addr(), "/rec").await;
    raw_greeting_id(&mut ws).await;
    let started = Instant::now();
    server.trigger_shutdown();
    server.join().await.expect("serve returns Ok");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    assert_eq!(ws.read_close_no_reply().await.0, 1001);
}

#[tokio::test]
async fn shutdown_with_no_connections_is_immediate() {
    let server = start_ws(Router::new().route("/echo", wharf::Echo)).await;
    let started = Instant::now();
    server.shutdown().await;
    // Immediate: nothing to drain (bounded loosely; a wait for a drain timeout would be 10 s).
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// `[drain] spread`: each connection is closed at its own point within the window, with the
/// configured code and reason, and is served normally until then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_spreads_the_closes_over_its_window_and_serves_until_then() {
    const CLIENTS: usize = 20;
    let mut config = Config::empty().with_server(ws_server());
    config.drain_timeout = Duration::from_secs(5);
    config.drain.spread = Duration::from_millis(1500);
    config.drain.close_code = 1012;
    config.drain.reason = "restarting; reconnect to ws://elsewhere".into();
    let builder =
        Server::builder(config).websocket("ws", Router::new().route("/echo", wharf::Echo));
    let mut server = start(builder).await;
    let addr = server.addr();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(connect(addr, "/echo").await);
    }
    let started = Instant::now();
    server.trigger_shutdown();
    // Every client echoes until its close arrives; each notes when that was.
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut echoed_while_draining = 0;
                loop {
                    if ws.send(WsMessage::text("still here")).await.is_err() {
                        break;
                    }
                    match next(&mut ws).await {
                        WsMessage::Text(text) if text == "still here" => echoed_while_draining += 1,
                        WsMessage::Close(Some(frame)) => {
                            return (
                                started.elapsed(),
                                frame.code.into(),
                                frame.reason.to_string(),
                                echoed_while_draining,
                            );
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                panic!("the connection ended without a close frame");
            })
        })
        .collect();
    let mut closes = Vec::new();
    for task in tasks {
        closes.push(within("a drained close", task).await.expect("client task"));
    }
    server.join().await.expect("serve returns Ok");
    for (_, code, reason, _) in &closes {
        assert_eq!(
            (*code, reason.as_str()),
            (1012u16, "restarting; reconnect to ws://elsewhere")
        );
    }
    let first = closes.iter().map(|c| c.0).min().expect("closes");
    let last = closes.iter().map(|c| c.0).max().expect("closes");
    // 20 random points in 1.5 s: spread out, and all within the window (plus slack).
    assert!(
        last - first >= Duration::from_millis(400),
        "all at once: {first:?}..{last:?}"
    );
    assert!(last < Duration::from_millis(1500) + T, "{last:?}");
    assert!(
        closes.iter().any(|c| c.3 >= 3),
        "the late ones were served while the drain went on: {closes:?}"
    );
}
