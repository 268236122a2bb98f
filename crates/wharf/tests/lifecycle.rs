//! Handler lifecycle: `on_open` after the 101, `on_close` exactly once however the
//! connection ends, and handler errors and panics closing only their own connection.

mod common;

use std::time::Duration;

use common::*;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use wharf::{CloseCode, Initiator, Router};
use wharf_proto::OpCode;

both_doors! {
    on_open_runs_after_the_101_and_its_message_comes_first,
    client_close_is_seen_with_code_and_reason,
    client_close_without_code_is_1005,
    server_close_via_conn_close,
    unmasked_frame_is_a_protocol_error_1002,
    tcp_drop_without_close_is_1006_network,
    shutdown_closes_with_1001_and_runs_on_close,
    handler_error_closes_1011_and_others_keep_working,
    handler_panic_closes_1011_and_server_keeps_serving,
    on_close_runs_exactly_once_for_every_opened_connection,
}

async fn server() -> (Running, Events) {
    let (recorder, events) = Recorder::new();
    let server = start_ws(Router::new().route("/rec", recorder)).await;
    (server, events)
}

async fn on_open_runs_after_the_101_and_its_message_comes_first() {
    let (server, mut events) = server().await;
    // The client pipelines a message right behind its handshake request.
    let mut bytes = upgrade_request("/rec", "").into_bytes();
    wharf_proto::encode_frame(&mut bytes, OpCode::Text, b"early", Some(MASK));
    let mut ws = RawWs::connect_with(server.addr(), &bytes).await;
    let id = raw_greeting_id(&mut ws).await;
    let echo = ws.read_frame().await;
    assert_eq!(echo.payload, b"early");
    match events.next().await {
        Event::Open(got) => assert_eq!(got, id),
        other => panic!("expected open first, got {other:?}"),
    }
    match events.next().await {
        Event::Message(got, message) => {
            assert_eq!(got, id);
            assert_eq!(message.as_text(), Some("early"));
        }
        other => panic!("expected the message, got {other:?}"),
    }
    drop(ws);
    server.shutdown().await;
}

async fn client_close_is_seen_with_code_and_reason() {
    let (server, mut events) = server().await;
    let mut ws = connect(server.addr(), "/rec").await;
    let id = greeting_id(&mut ws).await;
    within(
        "client close",
        ws.close(Some(CloseFrame {
            code: 4001u16.into(),
            reason: "bye now".into(),
        })),
    )
    .await
    .expect("close sent");
    // The server answers with the same code.
    assert_eq!(expect_close(&mut ws).await.0, 4001);
    let event = events.close_of(id).await;
    assert_eq!(event.code, CloseCode::new(4001));
    assert_eq!(event.reason, "bye now");
    assert_eq!(event.initiator, Initiator::Client);
    events
        .assert_no_more_closes(id, Duration::from_millis(200))
        .await;
    server.shutdown().await;
}

async fn client_close_without_code_is_1005() {
    let (server, mut events) = server().await;
    let mut ws = RawWs::connect(server.addr(), "/rec").await;
    let id = raw_greeting_id(&mut ws).await;
    ws.send(OpCode::Close, b"").await;
    let frame = ws.read_frame().await;
    assert_eq!((frame.opcode, frame.payload.len()), (0x8, 0));
    let event = events.close_of(id).await;
    assert_eq!(event.code, CloseCode::NO_STATUS);
    assert_eq!(event.initiator, Initiator::Client);
    drop(ws);
    server.shutdown().await;
}

async fn server_close_via_conn_close() {
    let (server, mut events) = server().await;
    let mut ws = connect(server.addr(), "/rec").await;
    let id = greeting_id(&mut ws).await;
    send_text(&mut ws, "close").await;
    assert_eq!(expect_close(&mut ws).await, (1000, "done".to_owned()));
    let event = events.close_of(id).await;
    assert_eq!(event.code, CloseCode::NORMAL);
    assert_eq!(event.reason, "done");
    assert_eq!(event.initiator, Initiator::Server);
    events
        .assert_no_more_closes(id, Duration::from_millis(200))
        .await;
    drop(ws);
    server.shutdown().await;
}

async fn unmasked_frame_is_a_protocol_error_1002() {
    let (server, mut events) = server().await;
    let mut ws = RawWs::connect(server.addr(), "/rec").await;
    let id = raw_greeting_id(&mut ws).await;
    let mut frame = Vec::new();
    wharf_proto::encode_frame(&mut frame, OpCode::Text, b"naked", None);
    ws.write(&frame).await;
    let (code, _) = ws.read_close().await;
    assert_eq!(code, 1002);
    // Every event up to the close, none skipped: the handler never saw the unmasked message.
    let mut seen = Vec::new();
    let event = loop {
        match events.next().await {
            Event::Close(got, event) if got == id => break event,
            other => seen.push(other),
        }
    };
    assert!(
        matches!(&seen[..], [Event::Open(got)] if *got == id),
        "only the open before the close: {seen:?}"
    );
    assert_eq!(event.code, CloseCode::PROTOCOL_ERROR);
    assert_eq!(event.initiator, Initiator::Server);
    drop(ws);
    server.shutdown().await;
}

async fn tcp_drop_without_close_is_1006_network() {
    let (server, mut events) = server().await;
    let mut ws = RawWs::connect(server.addr(), "/rec").await;
    let id = raw_greeting_id(&mut ws).await;
    drop(ws);
    let event = events.close_of(id).await;
    assert_eq!(event.code, CloseCode::ABNORMAL);
    assert_eq!(event.initiator, Initiator::Network);
    events
        .assert_no_more_closes(id, Duration::from_millis(200))
        .await;
    assert!(!server.sender.exists(id));
    server.shutdown().await;
}

async fn shutdown_closes_with_1001_and_runs_on_close() {
    let (mut server, mut events) = server().await;
    let mut ws = connect(server.addr(), "/rec").await;
    let id = greeting_id(&mut ws).await;
    server.trigger_shutdown();
    assert_eq!(expect_close(&mut ws).await.0, 1001);
    let event = events.close_of(id).await;
    assert_eq!(event.code, CloseCode::GOING_AWAY);
    assert_eq!(event.initiator, Initiator::Server);
    server.join().await.expect("serve Ok");
}

async fn handler_error_closes_1011_and_others_keep_working() {
    let (server, mut events) = server().await;
    let mut bad = connect(server.addr(), "/rec").await;
    let bad_id = greeting_id(&mut bad).await;
    let mut good = connect(server.addr(), "/rec").await;
    greeting_id(&mut good).await;
    send_text(&mut bad, "fail").await;
    let (code, reason) = expect_close(&mut bad).await;
    assert_eq!(code, 1011);
    assert!(!reason.contains("secret"), "error detail leaked: {reason}");
    let event = events.close_of(bad_id).await;
    assert_eq!(event.code, CloseCode::INTERNAL_ERROR);
    assert_eq!(event.initiator, Initiator::Server);
    assert_echo(&mut good, "still here").await;
    drop((bad, good));
    server.shutdown().await;
}

async fn handler_panic_closes_1011_and_server_keeps_serving() {
    let (server, mut events) = server().await;
    let mut bad = connect(server.addr(), "/rec").await;
    let bad_id = greeting_id(&mut bad).await;
    let mut good = connect(server.addr(), "/rec").await;
    greeting_id(&mut good).await;
    send_text(&mut bad, "panic").await;
    let (code, reason) = expect_close(&mut bad).await;
    assert_eq!(code, 1011);
    assert!(
        !reason.contains("on purpose"),
        "panic text leaked: {reason}"
    );
    let event = events.close_of(bad_id).await;
    assert_eq!(event.code, CloseCode::INTERNAL_ERROR);
    assert_echo(&mut good, "still here").await;
    // New connections are still accepted.
    let mut late = connect(server.addr(), "/rec").await;
    greeting_id(&mut late).await;
    assert_echo(&mut late, "new").await;
    drop((bad, good, late));
    server.shutdown().await;
}

async fn on_close_runs_exactly_once_for_every_opened_connection() {
    let (server, mut events) = server().await;
    let mut ids = Vec::new();
    // Five connections ending five different ways.
    let mut a = connect(server.addr(), "/rec").await;
    ids.push(greeting_id(&mut a).await);
    within("close", a.close(None)).await.expect("close");
    expect_close(&mut a).await;
    let mut b = connect(server.addr(), "/rec").await;
    ids.push(greeting_id(&mut b).await);
    send_text(&mut b, "close").await;
    assert_eq!(expect_close(&mut b).await.0, 1000);
    let mut c = connect(server.addr(), "/rec").await;
    ids.push(greeting_id(&mut c).await);
    drop(c);
    let mut d = connect(server.addr(), "/rec").await;
    ids.push(greeting_id(&mut d).await);
    send_text(&mut d, "fail").await;
    assert_eq!(expect_close(&mut d).await.0, 1011);
    let mut e = RawWs::connect(server.addr(), "/rec").await;
    ids.push(raw_greeting_id(&mut e).await);
    e.write(&[0x83, 0x80, 0, 0, 0, 0]).await; // reserved opcode 3
    assert_eq!(e.read_close().await.0, 1002);
    let mut closes = std::collections::HashMap::new();
    let mut opens = 0;
    within("all closes", async {
        while closes.len() < ids.len() {
            match events.next().await {
                Event::Open(_) => opens += 1,
                Event::Close(id, _) => *closes.entry(id).or_insert(0) += 1,
                Event::Message(..) => {}
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_millis(300), async {
        while let Some(event) = events.0.recv().await {
            if let Event::Close(id, _) = event {
                *closes.entry(id).or_insert(0) += 1;
            }
        }
    })
    .await;
    assert_eq!(opens, 5);
    for id in &ids {
        assert_eq!(closes.get(id), Some(&1), "on_close count of {id}");
    }
    assert_eq!(server.sender.count(), 0);
    drop((a, b, d, e));
    server.shutdown().await;
}
