//! Shared test helpers: the app started in-process on port 0, a raw HTTP/1.1 client,
//! raw WebSocket handshakes.

#![allow(dead_code, unreachable_pub)]

pub mod cluster;
pub mod engine;
pub mod nodes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use wharf_app::config::AppConfig;
use wharf_app::tokens::{TokenConfig, Tokens};
use wharf_app::users::UserStore;

/// Waits at most `within` for `child` to exit: its status, or `None` while it still runs.
pub fn exit_within(
    child: &mut std::process::Child,
    within: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The HS256 secret of every test app.
pub const SECRET: &[u8] = b"test secret, 32 bytes or longer!!";
/// The API key of every test app.
pub const API_KEY: &str = "test-api-key-0123456789";

/// A running app.
pub struct TestApp {
    pub ws: SocketAddr,
    pub http: SocketAddr,
    /// Every server's address, by name (the two above and any `extra` adds).
    pub addrs: std::collections::HashMap<String, SocketAddr>,
    pub store: UserStore,
    pub tokens: Arc<Tokens>,
    pub _dir: tempfile::TempDir,
}

/// Starts the app with the base test config plus `extra` TOML (app tables). The API
/// key is [`API_KEY`] unless `extra` has its own `[api]` table.
pub async fn start(extra: &str) -> TestApp {
    start_with_tokens(extra, &TokenConfig::default()).await
}

/// As [`start`], with tokens verified (and issued) per `tokens`, HS256 with [`SECRET`].
pub async fn start_with_tokens(extra: &str, tokens: &TokenConfig) -> TestApp {
    let api = if extra.contains("[api]") {
        String::new()
    } else {
        format!("[api]\nkey = \"{API_KEY}\"\n")
    };
    let text = format!(
        r#"
[[server]]
name = "http"
kind = "http"
host = "127.0.0.1"
port = 0

[[server]]
name = "ws"
kind = "websocket"
host = "127.0.0.1"
port = 0
route = [{{ path = "/echo", handler = "echo" }}]

{api}
{extra}
"#
    );
    let config = AppConfig::from_toml_str(&text, None).expect("test config");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = UserStore::open_default(dir.path()).await.expect("store");
    let tokens = Arc::new(Tokens::new(tokens, Some(SECRET)).expect("tokens"));
    let bound = wharf_app::app::bind(&config, store.clone(), tokens.clone())
        .await
        .expect("bind");
    let ws = bound.local_addr("ws").expect("ws addr");
    let http = bound.local_addr("http").expect("http addr");
    let addrs = (config.server.servers.iter())
        .filter_map(|s| Some((s.name.clone(), bound.local_addr(&s.name)?)))
        .collect();
    tokio::spawn(bound.serve(std::future::pending()));
    TestApp {
        ws,
        http,
        addrs,
        store,
        tokens,
        _dir: dir,
    }
}

/// An HTTP response: status, head (lower-cased), body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request over a fresh TCP connection (`Connection: close`).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write head");
    // The server may answer (413) and close before reading a large body.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await.expect("response in time");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Response {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// POST JSON with the API key.
pub async fn api(addr: SocketAddr, method: &str, path: &str, body: &str) -> Response {
    http(
        addr,
        method,
        path,
        &[("X-Api-Key", API_KEY)],
        body.as_bytes(),
    )
    .await
}

/// Adds `account` and logs in over HTTP; returns the token.
pub async fn login(app: &TestApp, account: &str, password: &str) -> String {
    app.store.add(account, password).await.expect("add user");
    let body = serde_json::json!({ "account": account, "password": password }).to_string();
    let response = http(app.http, "POST", "/auth/login", &[], body.as_bytes()).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let json = response.json();
    assert_eq!(json["token_type"], "Bearer");
    assert!(json["expires_at"].as_i64().is_some());
    json["token"].as_str().expect("token").to_owned()
}

/// A raw WebSocket handshake. On 101 returns the response and the open stream; on
/// anything else the response (with its body) and `None`.
pub async fn handshake(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (Response, Option<WebSocketStream<TcpStream>>) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    // Read the head byte by byte so no frame bytes are consumed.
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("head in time")
            .expect("read");
        assert!(n == 1, "connection closed during the handshake: {raw:?}");
        raw.push(byte[0]);
    }
    let mut response = parse_response(&raw);
    if response.status == 101 {
        let ws = WebSocketStream::from_raw_socket(stream, Role::Client, None).await;
        return (response, Some(ws));
    }
    let length: usize = response
        .head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.expect("body");
    response.body = String::from_utf8_lossy(&body).into_owned();
    (response, None)
}

/// Reads `ws` up to its close frame, skipping messages, and returns the frame's code and
/// reason. Panics, naming `who`, on an error, an end without a close frame, a close frame
/// without a code, or when none comes within `within`.
pub async fn next_close<S>(
    ws: &mut WebSocketStream<S>,
    within: Duration,
    who: &str,
) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let frame = tokio::time::timeout(within, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("{who}: expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{who}: no close frame within {within:?}"));
    let frame = frame.unwrap_or_else(|| panic!("{who}: a close frame without a code"));
    (u16::from(frame.code), frame.reason.to_string())
}
