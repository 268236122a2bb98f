//! Limits and their outcomes: message and frame size (1009), bad UTF-8 (1007), reserved
//! opcodes (1002), handshake timeout, idle timeout, max connections (503), slow consumers.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wharf::{Echo, Route, Router, SendError, ServerConfig};
use wharf_proto::OpCode;

both_doors! {
    frame_over_max_frame_size_is_1009,
    message_over_max_message_size_is_1009,
    invalid_utf8_text_is_1007,
    reserved_opcode_and_reserved_bits_are_1002,
    idle_timeout_closes_1001,
    idle_timeout_counts_a_slow_handler_call_as_activity,
    third_connection_over_max_connections_gets_503,
    slow_consumer_is_refused_and_sees_1008_when_it_reads(flavor = "multi_thread", worker_threads = 2),
    slow_consumer_code_1013_is_what_the_client_reads(flavor = "multi_thread", worker_threads = 2),
    slow_consumer_that_never_reads_is_closed(flavor = "multi_thread", worker_threads = 2),
}

fn router() -> Router {
    let (recorder, _events) = Recorder::new();
    Router::new()
        .route("/echo", Echo)
        .route("/rec", Route::new(recorder))
}

fn small_limits() -> ServerConfig {
    let mut config = ws_server();
    config.limits.max_message_size = 1000;
    config.limits.max_frame_size = 600;
    config.limits.close_timeout = Duration::from_millis(500);
    config
}

async fn frame_over_max_frame_size_is_1009() {
    let server = start_ws_with(small_limits(), router()).await;
    let mut ws = RawWs::connect(server.addr(), "/echo").await;
    ws.send(OpCode::Binary, &[7u8; 600]).await;
    assert_eq!(
        ws.read_frame().await.payload.len(),
        600,
        "at the limit is fine"
    );
    ws.send(OpCode::Binary, &[7u8; 601]).await;
    assert_eq!(ws.read_close().await.0, 1009);
    drop(ws);
    server.shutdown().await;
}

async fn message_over_max_message_size_is_1009() {
    let server = start_ws_with(small_limits(), router()).await;
    let mut ws = RawWs::connect(server.addr(), "/echo").await;
    // 500 + 500 = 1000: at the limit, echoed whole.
    let mut bytes = masked_frame(false, OpCode::Text, &[b'a'; 500]);
    bytes.extend(masked_frame(true, OpCode::Continuation, &[b'b'; 500]));
    ws.write(&bytes).await;
    let frame = ws.read_frame().await;
    assert_eq!((frame.opcode, frame.payload.len()), (0x1, 1000));
    // 500 + 501 fragments, each under the frame limit: the message is too big.
    let mut bytes = masked_frame(false, OpCode::Text, &[b'a'; 500]);
    bytes.extend(masked_frame(true, OpCode::Continuation, &[b'b'; 501]));
    ws.write(&bytes).await;
    assert_eq!(ws.read_close().await.0, 1009);
    drop(ws);
    server.shutdown().await;
}

async fn invalid_utf8_text_is_1007() {
    let server = start_ws(router()).await;
    let mut ws = RawWs::connect(server.addr(), "/echo").await;
    ws.send(OpCode::Text, &[b'o', b'k', 0xff, 0xfe]).await;
    assert_eq!(ws.read_close().await.0, 1007);
    // Split across fragments, with the bad byte in the second.
    let mut ws = RawWs::connect(server.addr(), "/echo").await;
    let mut bytes = masked_frame(false, OpCode::Text, "é".as_bytes());
    bytes.extend(masked_frame(true, OpCode::Continuation, &[0xc3]));
    ws.write(&bytes).await;
    assert_eq!(ws.read_close().await.0, 1007);
    drop(ws);
    server.shutdown().await;
}

async fn reserved_opcode_and_reserved_bits_are_1002() {
    let server = start_ws(router()).await;
    for first_byte in [0x83u8, 0x8b, 0xc1] {
        // opcode 3, opcode 0xB, RSV1 on a text frame; all masked and empty.
        let mut ws = RawWs::connect(server.addr(), "/echo").await;
        ws.write(&[first_byte, 0x80, 1, 2, 3, 4]).await;
        assert_eq!(ws.read_close().await.0, 1002, "first byte {first_byte:#x}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn handshake_timeout_drops_the_tcp_connection_without_a_response() {
    let mut config = ws_server();
    config.limits.handshake_timeout = Duration::from_millis(300);
    let server = start_ws_with(config, router()).await;
    // Timed from before the connect: the server's clock starts at its accept, later, so
    // however slow the machine the drop cannot come sooner than 300 ms after this.
    let started = Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    tcp.write_all(b"GET /echo HTTP/1.1\r\nHost: loc")
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = within("server to drop the connection", tcp.read_to_end(&mut out)).await;
    assert!(out.is_empty(), "no response expected, got {out:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    server.shutdown().await;
}

async fn idle_timeout_closes_1001() {
    let mut config = ws_server();
    let idle = Duration::from_millis(2000);
    config.limits.idle_timeout = idle;
    let server = start_ws_with(config, router()).await;
    let mut ws = connect(server.addr(), "/echo").await;
    // Traffic keeps it open past the timeout: ticks 400 ms apart for 2.4 s (a loaded machine
    // may stretch a gap by up to 1.8 s before the test is wrong).
    let opened = Instant::now();
    while opened.elapsed() < idle + idle / 5 {
        tokio::time::sleep(idle / 5).await;
        assert_echo(&mut ws, "tick").await;
    }
    // Then silence: closed once a whole timeout has passed since the last tick (timed at
    // the close frame's arrival, before the close handshake's end).
    let quiet = idle_close(&mut ws, Instant::now()).await;
    // (The server's clock started when it read the tick, just before the echo came back.)
    assert!(
        quiet >= idle * 9 / 10,
        "closed {quiet:?} after the last tick"
    );
    // Reads do not read the clock: the first read after a timer check brings the next
    // check forward to an eighth of the timeout, so the close is at most that late (2.25 s
    // here). Without it the last tick would be seen only at the check a whole timeout
    // after the one before (3.6 s here).
    assert!(quiet < idle * 3 / 2, "closed {quiet:?} after the last tick");
    server.shutdown().await;
}

/// Waits for the server's 1001 `idle timeout` close and returns how long after `since` its
/// frame arrived (timed before the close handshake ends, which it then lets finish).
async fn idle_close(ws: &mut Client, since: Instant) -> Duration {
    // The close is the first frame: nothing is sent to an idle connection before it.
    let close = within("close frame", ws.next()).await;
    let quiet = since.elapsed();
    let Some(Ok(WsMessage::Close(Some(frame)))) = &close else {
        panic!("expected the idle close, got {close:?}");
    };
    assert_eq!(
        (u16::from(frame.code), frame.reason.as_str()),
        (1001, "idle timeout")
    );
    within("end of stream", finish_close(ws)).await;
    quiet
}

/// Answers each message after `SLOW_REPLY` (a handler awaiting a slow backend).
struct SlowEcho;

const SLOW_REPLY: Duration = Duration::from_millis(1500);

impl wharf::Handler for SlowEcho {
    async fn on_message(
        &self,
        conn: &wharf::Conn,
        message: wharf::Message,
    ) -> Result<(), wharf::HandlerError> {
        tokio::time::sleep(SLOW_REPLY).await;
        conn.send(message)?;
        Ok(())
    }
}

async fn idle_timeout_counts_a_slow_handler_call_as_activity() {
    let mut config = ws_server();
    let idle = Duration::from_millis(2000);
    config.limits.idle_timeout = idle;
    let server = start_ws_with(config, Router::new().route("/slow", SlowEcho)).await;
    let mut ws = connect(server.addr(), "/slow").await;
    ws.send(WsMessage::Text("one".into())).await.expect("send");
    let reply = within("the slow reply", ws.next()).await;
    let replied = Instant::now();
    assert!(
        matches!(&reply, Some(Ok(WsMessage::Text(t))) if t.as_str() == "one"),
        "{reply:?}"
    );
    // The handler held the message for 1.5 s. Counted from the read, the connection would
    // be closed 0.5 s after this reply; the time its handler ran counts as activity, so the
    // idle timeout runs from the call's end (the reply), at most an eighth later.
    let quiet = idle_close(&mut ws, replied).await;
    assert!(quiet >= idle * 9 / 10, "closed {quiet:?} after the reply");
    assert!(quiet < idle * 3 / 2, "closed {quiet:?} after the reply");
    server.shutdown().await;
}

async fn third_connection_over_max_connections_gets_503() {
    let mut config = ws_server();
    config.limits.max_connections = 2;
    let server = start_ws_with(config, router()).await;
    let mut a = connect(server.addr(), "/echo").await;
    let b = connect(server.addr(), "/echo").await;
    let response = raw_request(server.addr(), upgrade_request("/echo", "").as_bytes()).await;
    assert_eq!(response.status, 503);
    assert_eq!(response.json()["error"], "too_many_connections");
    assert!(response.header("retry-after").is_some());
    assert_echo(&mut a, "a still works").await;
    // A slot frees when a connection ends.
    drop(b);
    within("a free slot", async {
        loop {
            let mut tcp = tokio::net::TcpStream::connect(server.addr())
                .await
                .expect("connect");
            tcp.write_all(upgrade_request("/echo", "").as_bytes())
                .await
                .expect("write");
            let response = read_head(&mut tcp).await;
            if response.status == 101 {
                break;
            }
            assert_eq!(response.status, 503);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    drop(a);
    server.shutdown().await;
}

/// A 64 KiB outgoing queue, and `close_timeout` to wait for the client's close frame.
fn slow_consumer_config(close_timeout: Duration) -> ServerConfig {
    let mut config = ws_server();
    config.limits.max_queue_size = 64 * 1024;
    config.limits.close_timeout = close_timeout;
    config
}

/// Pushes 16 KiB messages to `id` until a push fails, giving the server time to write each
/// one (so the queue only grows once the socket is full, as with a real slow consumer);
/// returns the error and how many got in.
async fn push_until_refused(server: &Running, id: wharf::ConnId) -> (SendError, usize) {
    let payload = vec![0x5au8; 16 * 1024];
    let conn = server.sender.conn(id).expect("open");
    within_for(Duration::from_secs(20), "a push to be refused", async {
        for n in 0..20_000 {
            match server.sender.push(id, payload.clone()) {
                Ok(()) => {}
                Err(e) => return (e, n),
            }
            // Wait (briefly) for the driver to take it; a full socket leaves it queued.
            for _ in 0..20 {
                if conn.queued_bytes() == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        panic!("20000 pushes of 16 KiB to a client that never reads were all accepted");
    })
    .await
}

async fn slow_consumer_is_refused_and_sees_1008_when_it_reads() {
    slow_consumer_is_refused_and_sees_its_code(1008).await;
}

async fn slow_consumer_code_1013_is_what_the_client_reads() {
    slow_consumer_is_refused_and_sees_its_code(1013).await;
}

/// A client that stops reading is refused and closed; when it reads again it gets the data
/// queued before the refusal and then a close frame with `code` (`slow_consumer_code`).
async fn slow_consumer_is_refused_and_sees_its_code(code: u16) {
    // A close timeout long enough that the client surely reads before it runs out (else
    // the server would drop the TCP connection without the close frame).
    let mut config = slow_consumer_config(Duration::from_secs(10));
    config.limits.slow_consumer_code = code;
    let server = start_ws_with(config, router()).await;
    let mut slow = RawWs::connect(server.addr(), "/rec").await;
    let id = raw_greeting_id(&mut slow).await;
    let mut other = connect(server.addr(), "/echo").await;
    let (error, accepted) = push_until_refused(&server, id).await;
    assert!(
        matches!(error, SendError::QueueFull(got) | SendError::Closed(got) if got == id),
        "{error:?}"
    );
    assert!(accepted > 4, "the socket buffers take some first");
    // Pushes keep failing, as for a connection being closed as a slow consumer: it is still
    // registered (its close timeout is 10 s), so neither accepted nor `NotFound`.
    let more = server.sender.push(id, "more");
    assert!(
        matches!(more, Err(SendError::QueueFull(got) | SendError::Closed(got)) if got == id),
        "{more:?}"
    );
    // Other connections are not disturbed.
    assert_echo(&mut other, "fine").await;
    // The slow client finally reads: data, then the close.
    let (got, reason) = slow.read_close().await;
    assert_eq!(got, code);
    assert_eq!(reason, "slow consumer");
    eventually("the slow consumer to leave the registry", || {
        !server.sender.exists(id)
    })
    .await;
    assert_echo(&mut other, "still fine").await;
    drop((slow, other));
    server.shutdown().await;
}

async fn slow_consumer_that_never_reads_is_closed() {
    let server = start_ws_with(slow_consumer_config(Duration::from_millis(300)), router()).await;
    let mut slow = RawWs::connect(server.addr(), "/rec").await;
    let id = raw_greeting_id(&mut slow).await;
    let (error, _) = push_until_refused(&server, id).await;
    assert!(matches!(error, SendError::QueueFull(_)), "{error:?}");
    // Without reading a byte: the close frame cannot be delivered, but after the close
    // timeout (300 ms) the connection must be gone.
    eventually("the slow consumer to be closed without reading", || {
        !server.sender.exists(id)
    })
    .await;
    drop(slow);
    server.shutdown().await;
}
