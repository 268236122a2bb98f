//! Shared helpers for the integration tests: start a server on 127.0.0.1 port 0, connect
//! WebSocket clients (tokio-tungstenite), and speak raw HTTP / raw frames for bad inputs.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wharf::{
    CloseEvent, Config, Conn, ConnId, Handler, HandlerError, Message, OpenRequest, Router, Sender,
    Server, ServerBuilder, ServerConfig, ServerKind,
};
use wharf_proto::OpCode;

/// The bound on every single await of a test.
pub(crate) const T: Duration = Duration::from_secs(5);

/// The RFC 6455 sample key and its accept value.
pub(crate) const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub(crate) const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

pub(crate) type Client = WebSocketStream<TcpStream>;

/// What a WebSocket client runs over: a TCP stream, or an HTTP/2 stream (`tests/h2.rs`).
pub(crate) trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin {}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Io for S {}

/// Awaits `future` within [`T`], panicking with `what` on timeout.
pub(crate) async fn within<F: Future>(what: &str, future: F) -> F::Output {
    within_for(T, what, future).await
}

/// Awaits `future` within `limit`, panicking with `what` on timeout.
pub(crate) async fn within_for<F: Future>(limit: Duration, what: &str, future: F) -> F::Output {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// A websocket server config named `ws` on 127.0.0.1, port 0.
pub(crate) fn ws_server() -> ServerConfig {
    ServerConfig::new("ws", ServerKind::Websocket, 0).with_host("127.0.0.1")
}

/// An http server config named `http` on 127.0.0.1, port 0.
pub(crate) fn http_server() -> ServerConfig {
    ServerConfig::new("http", ServerKind::Http, 0).with_host("127.0.0.1")
}

/// The door a test reaches its `ws` server through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Door {
    /// wharf's own listener.
    Raw,
    /// `BoundServer::service("ws")` as the fallback of an axum application on another port
    /// (the server's own listener is bound too, and unused).
    Mounted,
}

tokio::task_local! {
    /// The door of the test running in this task (set by [`on_door`]).
    static DOOR: Door;
}

/// The current test's door: [`Door::Raw`] unless the test runs under [`on_door`].
pub(crate) fn door() -> Door {
    DOOR.try_with(|door| *door).unwrap_or(Door::Raw)
}

/// Runs `test` with [`start`] serving the `ws` server through `door`.
pub(crate) async fn on_door<F: Future>(door: Door, test: F) -> F::Output {
    DOOR.scope(door, test).await
}

/// Runs each listed test of the file (an `async fn name()`) over both doors, as
/// `raw::name` and `mounted::name`: the same test body, parametrised, not copied. A name may
/// carry `#[tokio::test]` arguments in parentheses: `slow(flavor = "multi_thread")`.
#[macro_export]
macro_rules! both_doors {
    ($($name:ident $(($($args:tt)*))?),* $(,)?) => {
        mod raw {
            $(
                #[tokio::test($($($args)*)?)]
                async fn $name() {
                    $crate::common::on_door($crate::common::Door::Raw, super::$name()).await
                }
            )*
        }
        mod mounted {
            $(
                #[tokio::test($($($args)*)?)]
                async fn $name() {
                    $crate::common::on_door($crate::common::Door::Mounted, super::$name()).await
                }
            )*
        }
    };
}

/// A running server: its addresses, its sender, and how to stop it.
pub(crate) struct Running {
    /// The `ws` server's address: its own listener, or the axum app it is mounted in.
    pub(crate) ws: Option<SocketAddr>,
    /// The `ws` server's own listener, whatever the door.
    pub(crate) raw: Option<SocketAddr>,
    pub(crate) http: Option<SocketAddr>,
    pub(crate) sender: Sender,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), wharf::Error>>>,
    /// The axum app of the mounted door.
    app: Option<JoinHandle<()>>,
}

impl Running {
    /// The `ws` server's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.ws.expect("a ws server")
    }

    /// Completes the shutdown future without waiting for `serve` to return.
    pub(crate) fn trigger_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for `serve` to return (after [`trigger_shutdown`](Self::trigger_shutdown)).
    pub(crate) async fn join(&mut self) -> Result<(), wharf::Error> {
        let task = self.task.take().expect("serve still running");
        within("serve to return", task)
            .await
            .expect("serve task did not panic")
    }

    /// Triggers shutdown and waits for `serve` to return.
    pub(crate) async fn shutdown(mut self) {
        self.trigger_shutdown();
        self.join().await.expect("serve returned Ok");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        if let Some(app) = &self.app {
            app.abort();
        }
    }
}

/// Binds `builder` and spawns `serve`, with a oneshot as the shutdown future. On the
/// mounted [`door`], the `ws` server is reached through an axum app with an ordinary route
/// of its own and the server's service as its fallback; the shutdown stops both.
pub(crate) async fn start(builder: ServerBuilder) -> Running {
    let sender = builder.sender();
    let bound = within("bind", builder.bind()).await.expect("bind");
    let mut ws = bound.local_addr("ws");
    let raw = ws;
    let http = bound.local_addr("http");
    let (stop, stopped) = oneshot::channel::<()>();
    let (stop_app, app_stopped) = oneshot::channel::<()>();
    let mut app = None;
    if door() == Door::Mounted && ws.is_some() {
        let service = bound.service("ws").expect("the ws server as a service");
        let router = wharf::axum::Router::new()
            .route(
                "/hello",
                wharf::axum::routing::get(|| async { "hello from axum" }),
            )
            .fallback_service(service);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the axum app");
        ws = Some(listener.local_addr().expect("local addr"));
        let serve = wharf::axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = app_stopped.await;
        });
        app = Some(tokio::spawn(async move {
            serve.await.expect("the axum app serves");
        }));
    }
    let task = tokio::spawn(bound.serve(async move {
        let _ = stopped.await;
        let _ = stop_app.send(());
    }));
    Running {
        ws,
        raw,
        http,
        sender,
        stop: Some(stop),
        task: Some(task),
        app,
    }
}

/// Starts one `ws` server with `server`'s settings and `router`.
pub(crate) async fn start_ws_with(server: ServerConfig, router: Router) -> Running {
    start(Server::builder(Config::empty().with_server(server)).websocket("ws", router)).await
}

/// Starts one default `ws` server with `router`.
pub(crate) async fn start_ws(router: Router) -> Running {
    start_ws_with(ws_server(), router).await
}

// ---------------------------------------------------------------------------------------
// tungstenite clients

/// Connects a WebSocket client to `path`.
pub(crate) async fn connect(addr: SocketAddr, path: &str) -> Client {
    let request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("request");
    connect_request(addr, request).await
}

/// Connects with a prepared request (extra headers).
pub(crate) async fn connect_request(
    addr: SocketAddr,
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> Client {
    within("websocket connect", async {
        let tcp = TcpStream::connect(addr).await.expect("tcp connect");
        let (ws, response) = tokio_tungstenite::client_async(request, tcp)
            .await
            .expect("websocket handshake");
        assert_eq!(response.status(), 101);
        ws
    })
    .await
}

/// The next message (of any kind) from the server.
pub(crate) async fn next<S: Io>(ws: &mut WebSocketStream<S>) -> WsMessage {
    within("next message", ws.next())
        .await
        .expect("a message, not the end of the stream")
        .expect("a message, not an error")
}

/// The next text message; panics on anything else.
pub(crate) async fn next_text<S: Io>(ws: &mut WebSocketStream<S>) -> String {
    match next(ws).await {
        WsMessage::Text(text) => text.as_str().to_owned(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Sends a text message.
pub(crate) async fn send_text<S: Io>(ws: &mut WebSocketStream<S>, text: &str) {
    within("send", ws.send(WsMessage::text(text)))
        .await
        .expect("send");
}

/// Reads until the server's close frame (skipping data and pings) and returns its code and
/// reason. tungstenite answers the close when it reads it.
pub(crate) async fn expect_close<S: Io>(ws: &mut WebSocketStream<S>) -> (u16, String) {
    within("close frame", async {
        let close = next_close(ws).await;
        finish_close(ws).await;
        close
    })
    .await
}

/// Reads until the server's close frame (skipping data and pings) and returns its code and
/// reason (1005 for none), leaving the close handshake to [`finish_close`]. Unbounded in
/// time: callers bound it.
async fn next_close<S: Io>(ws: &mut WebSocketStream<S>) -> (u16, String) {
    loop {
        match ws.next().await {
            Some(Ok(WsMessage::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.as_str().to_owned());
            }
            Some(Ok(WsMessage::Close(None))) => return (1005, String::new()),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// After the server's close frame: keeps polling so tungstenite writes its close reply,
/// until the server ends the stream.
pub(crate) async fn finish_close<S: Io>(ws: &mut WebSocketStream<S>) {
    while let Some(Ok(_)) = ws.next().await {}
}

/// Sends text and expects it echoed back.
pub(crate) async fn assert_echo<S: Io>(ws: &mut WebSocketStream<S>, text: &str) {
    send_text(ws, text).await;
    assert_eq!(next_text(ws).await, text);
}

// ---------------------------------------------------------------------------------------
// raw HTTP

/// A raw HTTP response.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl RawResponse {
    /// A header's value (case-insensitive name).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// Parses a response head and body (the body is everything after the head).
pub(crate) fn parse_response(bytes: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response head in {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    RawResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Sends `request` and reads the whole response until the server closes the connection.
pub(crate) async fn raw_request(addr: SocketAddr, request: &[u8]) -> RawResponse {
    within("raw request", async {
        let mut tcp = TcpStream::connect(addr).await.expect("tcp connect");
        tcp.write_all(request).await.expect("write request");
        let mut out = Vec::new();
        // The server may reset after its response; what was read is kept.
        let mut chunk = [0u8; 4096];
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
            }
        }
        parse_response(&out)
    })
    .await
}

/// An upgrade request for `path` with the standard headers plus `extra` (each line ending
/// in `\r\n`).
pub(crate) fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
    )
}

/// A plain GET with `Connection: close`.
pub(crate) fn plain_get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

// ---------------------------------------------------------------------------------------
// raw WebSocket

/// A raw WebSocket client over TCP: writes masked (or deliberately bad) frames and parses the
/// server's frames itself.
pub(crate) struct RawWs {
    pub(crate) tcp: TcpStream,
    pub(crate) response: RawResponse,
}

/// A frame from the server.
#[derive(Debug)]
pub(crate) struct ServerFrame {
    pub(crate) fin: bool,
    /// RSV1: the message is compressed (permessage-deflate).
    pub(crate) rsv1: bool,
    pub(crate) opcode: u8,
    pub(crate) payload: Vec<u8>,
}

impl ServerFrame {
    /// The close code and reason of a close frame.
    pub(crate) fn close(&self) -> (u16, String) {
        assert_eq!(self.opcode, 0x8, "expected a close frame, got {self:?}");
        if self.payload.len() < 2 {
            return (1005, String::new());
        }
        let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        let reason = String::from_utf8(self.payload[2..].to_vec()).expect("UTF-8 reason");
        (code, reason)
    }
}

/// Reads a response head byte by byte (so no frame byte after it is consumed).
pub(crate) async fn read_head(tcp: &mut TcpStream) -> RawResponse {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tcp.read(&mut byte).await.expect("read head");
        assert!(
            n == 1,
            "connection closed inside the response head: {head:?}"
        );
        head.push(byte[0]);
    }
    parse_response(&head)
}

impl RawWs {
    /// Connects and completes the handshake to `path` (asserting 101).
    pub(crate) async fn connect(addr: SocketAddr, path: &str) -> RawWs {
        Self::connect_with(addr, upgrade_request(path, "").as_bytes()).await
    }

    /// Sends `bytes` (a handshake request, maybe followed by frames) and reads the 101 head.
    pub(crate) async fn connect_with(addr: SocketAddr, bytes: &[u8]) -> RawWs {
        within("raw websocket connect", async {
            let mut tcp = TcpStream::connect(addr).await.expect("tcp connect");
            tcp.write_all(bytes).await.expect("write handshake");
            let response = read_head(&mut tcp).await;
            assert_eq!(response.status, 101, "{response:?}");
            RawWs { tcp, response }
        })
        .await
    }

    /// Writes raw bytes.
    pub(crate) async fn write(&mut self, bytes: &[u8]) {
        within("raw write", self.tcp.write_all(bytes))
            .await
            .expect("raw write");
    }

    /// Writes one masked frame.
    pub(crate) async fn send(&mut self, opcode: OpCode, payload: &[u8]) {
        let mut out = Vec::new();
        wharf_proto::encode_frame(&mut out, opcode, payload, Some(MASK));
        self.write(&out).await;
    }

    /// Writes a masked close frame.
    pub(crate) async fn send_close(&mut self, code: u16, reason: &str) {
        let mut out = Vec::new();
        wharf_proto::encode_close(&mut out, code, reason, Some(MASK));
        self.write(&out).await;
    }

    /// Reads one frame from the server within [`T`].
    pub(crate) async fn read_frame(&mut self) -> ServerFrame {
        within("server frame", read_frame(&mut self.tcp))
            .await
            .expect("a frame")
    }

    /// Reads frames until a close frame (skipping others) and returns its code and reason;
    /// answers it with a close frame, as a client should.
    pub(crate) async fn read_close(&mut self) -> (u16, String) {
        let (code, reason) = self.read_close_no_reply().await;
        let mut out = Vec::new();
        wharf_proto::encode_close(&mut out, 1000, "", Some(MASK));
        let _ = self.tcp.write_all(&out).await;
        (code, reason)
    }

    /// Reads frames until a close frame (skipping others) and returns its code and reason.
    pub(crate) async fn read_close_no_reply(&mut self) -> (u16, String) {
        within("server close frame", async {
            loop {
                let frame = read_frame(&mut self.tcp).await.expect("a frame");
                if frame.opcode == 0x8 {
                    return frame.close();
                }
            }
        })
        .await
    }

    /// Waits for the server to end the TCP connection (EOF or reset), skipping frames.
    pub(crate) async fn read_to_end(&mut self) {
        let mut sink = [0u8; 4096];
        within("server to end the connection", async {
            loop {
                match self.tcp.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
}

/// One masked frame with an explicit FIN bit (for fragments).
pub(crate) fn masked_frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    wharf_proto::encode_header(&mut out, fin, opcode, Some(MASK), payload.len());
    let start = out.len();
    out.extend_from_slice(payload);
    wharf_proto::apply_mask(&mut out[start..], MASK, 0);
    out
}

/// A fixed client mask.
pub(crate) const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// Reads one unmasked server frame (from TCP, or any byte stream such as an h2 stream);
/// `None` at EOF before a frame starts.
pub(crate) async fn read_frame<S: tokio::io::AsyncRead + Unpin>(
    tcp: &mut S,
) -> Option<ServerFrame> {
    let mut head = [0u8; 2];
    if tcp.read_exact(&mut head).await.is_err() {
        return None;
    }
    assert_eq!(head[1] & 0x80, 0, "server frames must not be masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            tcp.read_exact(&mut ext).await.ok()?;
            u64::from(u16::from_be_bytes(ext))
        }
        127 => {
            let mut ext = [0u8; 8];
            tcp.read_exact(&mut ext).await.ok()?;
            u64::from_be_bytes(ext)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(len).expect("length fits")];
    tcp.read_exact(&mut payload).await.ok()?;
    Some(ServerFrame {
        fin: head[0] & 0x80 != 0,
        rsv1: head[0] & 0x40 != 0,
        opcode: head[0] & 0x0f,
        payload,
    })
}

// ---------------------------------------------------------------------------------------
// a recording handler

/// What a [`Recorder`] saw.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    Open(ConnId),
    Message(ConnId, Message),
    Close(ConnId, CloseEvent),
}

/// A handler that reports every callback on a channel, sends the connection id on open, and
/// acts on some text commands: `close` (conn.close 1000 "done"), `fail` (returns an error),
/// `panic` (panics); anything else is echoed.
#[derive(Clone)]
pub(crate) struct Recorder {
    events: mpsc::UnboundedSender<Event>,
}

impl Recorder {
    pub(crate) fn new() -> (Recorder, Events) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Recorder { events: tx }, Events(rx))
    }
}

impl Handler for Recorder {
    async fn on_open(&self, conn: &Conn, _request: &OpenRequest) -> Result<(), HandlerError> {
        let _ = self.events.send(Event::Open(conn.id()));
        conn.send(format!("id {}", conn.id()))?;
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, message: Message) -> Result<(), HandlerError> {
        let _ = self.events.send(Event::Message(conn.id(), message.clone()));
        match message.as_text() {
            Some("close") => {
                conn.close(wharf::CloseCode::NORMAL, "done");
            }
            Some("fail") => return Err(HandlerError::msg("secret failure detail")),
            Some("panic") => panic!("handler panicked on purpose"),
            _ => {
                if message.is_data() {
                    conn.send(message)?;
                }
            }
        }
        Ok(())
    }

    async fn on_close(&self, conn: &Conn, event: &CloseEvent) {
        let _ = self.events.send(Event::Close(conn.id(), event.clone()));
    }
}

/// The receiving end of a [`Recorder`].
pub(crate) struct Events(pub(crate) mpsc::UnboundedReceiver<Event>);

impl Events {
    /// The next event.
    pub(crate) async fn next(&mut self) -> Event {
        within("handler event", self.0.recv())
            .await
            .expect("recorder alive")
    }

    /// Waits for the close event of `id`, skipping other events.
    pub(crate) async fn close_of(&mut self, id: ConnId) -> CloseEvent {
        loop {
            if let Event::Close(got, event) = self.next().await {
                if got == id {
                    return event;
                }
            }
        }
    }

    /// Asserts that no further close event for `id` arrives within `wait`.
    pub(crate) async fn assert_no_more_closes(&mut self, id: ConnId, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.0.recv()).await {
            if let Event::Close(got, _) = event {
                assert_ne!(got, id, "on_close ran twice for {id}");
            }
        }
    }
}

/// Reads the `id <id>` greeting a [`Recorder`] sends on open.
pub(crate) async fn greeting_id<S: Io>(ws: &mut WebSocketStream<S>) -> ConnId {
    let text = next_text(ws).await;
    text.strip_prefix("id ")
        .unwrap_or_else(|| panic!("expected the id greeting, got {text:?}"))
        .parse()
        .expect("a connection id")
}

/// Reads the `id <id>` greeting from a raw client.
pub(crate) async fn raw_greeting_id(ws: &mut RawWs) -> ConnId {
    let frame = ws.read_frame().await;
    assert_eq!(frame.opcode, 0x1, "{frame:?}");
    let text = String::from_utf8(frame.payload).expect("utf-8");
    text.strip_prefix("id ")
        .unwrap_or_else(|| panic!("expected the id greeting, got {text:?}"))
        .parse()
        .expect("a connection id")
}

/// A shared log of strings.
pub(crate) type Log = Arc<Mutex<Vec<String>>>;

/// Polls `check` every 10 ms until it holds, within [`T`].
pub(crate) async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    within(what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
