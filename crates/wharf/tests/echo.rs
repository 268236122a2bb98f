//! The built-in echo handler mounted from config, pipelining, and frames that arrive with
//! the handshake request.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wharf::{Config, Conn, Handler, HandlerError, Message, Server};
use wharf_proto::OpCode;

both_doors! {
    config_mounted_echo_and_named_handler,
    pipelined_messages_echo_in_order,
    pipelined_raw_frames_in_one_write,
    frame_in_the_same_packet_as_the_handshake_is_echoed,
    close_after_echo_is_clean,
}

async fn server() -> Running {
    let config = Config::from_toml_str(
        r#"
        [[server]]
        name = "ws"
        kind = "websocket"
        host = "127.0.0.1"
        port = 0
        route = [{ path = "/echo", handler = "echo" }, { path = "/shout", handler = "shout" }]
        "#,
    )
    .expect("valid config");
    start(Server::builder(config).handler("shout", Shout)).await
}

struct Shout;

impl Handler for Shout {
    async fn on_message(&self, conn: &Conn, message: Message) -> Result<(), HandlerError> {
        if let Some(text) = message.as_text() {
            conn.send(text.to_uppercase())?;
        }
        Ok(())
    }
}

async fn config_mounted_echo_and_named_handler() {
    let server = server().await;
    let mut ws = connect(server.addr(), "/echo").await;
    assert_echo(&mut ws, "hello").await;
    within("send", ws.send(WsMessage::Binary(vec![0u8, 255, 7].into())))
        .await
        .expect("send");
    assert_eq!(
        next(&mut ws).await,
        WsMessage::Binary(vec![0u8, 255, 7].into())
    );
    let big = "x".repeat(200_000);
    assert_echo(&mut ws, &big).await;
    let mut shout = connect(server.addr(), "/shout").await;
    send_text(&mut shout, "quiet").await;
    assert_eq!(next_text(&mut shout).await, "QUIET");
    drop((ws, shout));
    server.shutdown().await;
}

async fn pipelined_messages_echo_in_order() {
    let server = server().await;
    let mut ws = connect(server.addr(), "/echo").await;
    within("feed 100", async {
        for i in 0..100 {
            ws.feed(WsMessage::text(format!("message {i}")))
                .await
                .expect("feed");
        }
        ws.flush().await.expect("flush");
    })
    .await;
    for i in 0..100 {
        assert_eq!(next_text(&mut ws).await, format!("message {i}"));
    }
    drop(ws);
    server.shutdown().await;
}

async fn pipelined_raw_frames_in_one_write() {
    let server = server().await;
    let mut ws = RawWs::connect(server.addr(), "/echo").await;
    let mut bytes = Vec::new();
    for i in 0..100u32 {
        wharf_proto::encode_frame(
            &mut bytes,
            OpCode::Text,
            format!("{i}").as_bytes(),
            Some(MASK),
        );
    }
    ws.write(&bytes).await;
    for i in 0..100u32 {
        let frame = ws.read_frame().await;
        assert_eq!(
            String::from_utf8(frame.payload).expect("utf-8"),
            i.to_string()
        );
    }
    drop(ws);
    server.shutdown().await;
}

async fn frame_in_the_same_packet_as_the_handshake_is_echoed() {
    let server = server().await;
    let mut bytes = upgrade_request("/echo", "").into_bytes();
    wharf_proto::encode_frame(&mut bytes, OpCode::Text, b"eager", Some(MASK));
    // And half of a second frame's header, completed later.
    let mut second = Vec::new();
    wharf_proto::encode_frame(&mut second, OpCode::Text, b"split", Some(MASK));
    bytes.extend_from_slice(&second[..3]);
    let mut ws = RawWs::connect_with(server.addr(), &bytes).await;
    let frame = ws.read_frame().await;
    assert_eq!(
        (frame.opcode, frame.payload.as_slice()),
        (0x1, &b"eager"[..])
    );
    ws.write(&second[3..]).await;
    let frame = ws.read_frame().await;
    assert_eq!(frame.payload, b"split");
    drop(ws);
    server.shutdown().await;
}

async fn close_after_echo_is_clean() {
    let server = server().await;
    let mut ws = connect(server.addr(), "/echo").await;
    assert_echo(&mut ws, "one").await;
    within("close", ws.close(None)).await.expect("close");
    // The server answers the close (1005 comes back as an empty close frame) and ends the stream.
    let end = within("end", async {
        let mut saw_close = false;
        while let Some(message) = ws.next().await {
            if matches!(message, Ok(WsMessage::Close(_))) {
                saw_close = true;
            }
        }
        saw_close
    })
    .await;
    assert!(end, "no close reply");
    server.shutdown().await;
}
