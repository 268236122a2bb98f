//! Hostile clients and their outcomes: a forbidden `Origin` (403), too many connections from
//! one address (429), a message flood (1008), messages of many tiny fragments (1009), an
//! oversized request line (431) and a flood of half-open handshakes.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wharf::middleware::{self, HandshakeRequest};
use wharf::{Config, Echo, Rejection, Route, Router, Server, ServerConfig};
use wharf_proto::OpCode;

const APP: &str = "https://app.example";

/// A route that only `APP` may open, behind a middleware that logs every request it sees.
fn origin_router(log: &Log) -> Router {
    let log = log.clone();
    let seen = middleware::from_fn(move |req: HandshakeRequest| {
        log.lock().expect("log").push(req.uri().path().to_owned());
        std::future::ready(Ok::<_, Rejection>(req))
    });
    Router::new()
        .route("/app", Route::new(Echo).origins([APP]).layer(seen))
        .route("/open", Echo)
}

#[tokio::test]
async fn origin_not_allowed_gets_403_before_any_middleware() {
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let server = start_ws(origin_router(&log)).await;
    let evil = upgrade_request("/app", "Origin: https://evil.example\r\n");
    let response = raw_request(server.addr(), evil.as_bytes()).await;
    assert_eq!(response.status, 403);
    let body = response.json();
    assert_eq!(body["code"], 403);
    assert_eq!(body["error"], "origin_forbidden");
    assert!(
        body["msg"]
            .as_str()
            .is_some_and(|m| m.contains("evil.example"))
    );
    // A page served from a file (`Origin: null`) is not listed either.
    let null = upgrade_request("/app", "Origin: null\r\n");
    assert_eq!(
        raw_request(server.addr(), null.as_bytes()).await.status,
        403
    );
    assert!(
        log.lock().expect("log").is_empty(),
        "the middleware never saw a forbidden origin"
    );
    // The listed origin (in any ASCII case) passes, through the middleware.
    let good = upgrade_request("/app", "Origin: HTTPS://App.Example\r\n");
    let mut ws = RawWs::connect_with(server.addr(), good.as_bytes()).await;
    ws.send(OpCode::Text, b"hi").await;
    assert_eq!(ws.read_frame().await.payload, b"hi");
    // No Origin: not a browser, let through (documented in docs/security.md).
    RawWs::connect(server.addr(), "/app").await;
    assert_eq!(log.lock().expect("log").len(), 2);
    // A route without a list takes any origin.
    let other = upgrade_request("/open", "Origin: https://evil.example\r\n");
    RawWs::connect_with(server.addr(), other.as_bytes()).await;
    drop(ws);
    server.shutdown().await;
}

#[tokio::test]
async fn origins_from_the_config_file_guard_mounted_routes() {
    let mut server_config = ws_server().with_route("/echo", "echo");
    server_config.routes[0].origins = vec![APP.to_owned()];
    let server = start(Server::builder(Config::empty().with_server(server_config))).await;
    let evil = upgrade_request("/echo", "Origin: https://evil.example\r\n");
    let response = raw_request(server.addr(), evil.as_bytes()).await;
    assert_eq!(response.status, 403);
    assert_eq!(response.json()["error"], "origin_forbidden");
    let good = upgrade_request("/echo", &format!("Origin: {APP}\r\n"));
    RawWs::connect_with(server.addr(), good.as_bytes()).await;
    server.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_per_ip_cap_get_429_until_one_ends() {
    let mut config = ws_server();
    config.limits.max_connections_per_ip = 2;
    // The test clients are on loopback, which the cap leaves alone by default.
    config.limits.cap_private_addresses = true;
    let server = start_ws_with(config, Router::new().route("/echo", Echo)).await;
    let mut a = connect(server.addr(), "/echo").await;
    let b = connect(server.addr(), "/echo").await;
    let response = raw_request(server.addr(), upgrade_request("/echo", "").as_bytes()).await;
    assert_eq!(response.status, 429);
    assert_eq!(response.json()["error"], "too_many_connections");
    assert!(response.header("retry-after").is_some());
    // Over the cap, a client is answered at once, before it sends its request: it cannot
    // hold a socket for a whole handshake timeout.
    let silent = within("an immediate 429", async {
        let mut tcp = TcpStream::connect(server.addr()).await.expect("connect");
        read_head(&mut tcp).await
    })
    .await;
    assert_eq!(silent.status, 429);
    assert_echo(&mut a, "a still works").await;
    // The slot is released when a connection ends (here abruptly, without a close frame).
    drop(b);
    within("a free slot", async {
        loop {
            let mut tcp = TcpStream::connect(server.addr()).await.expect("connect");
            tcp.write_all(upgrade_request("/echo", "").as_bytes())
                .await
                .expect("write");
            match read_head(&mut tcp).await.status {
                101 => break,
                429 => tokio::time::sleep(Duration::from_millis(20)).await,
                other => panic!("unexpected status {other}"),
            }
        }
    })
    .await;
    drop(a);
    server.shutdown().await;
}

fn rate_limited() -> ServerConfig {
    let mut config = ws_server();
    config.limits.max_messages_per_sec = 20;
    config.limits.message_burst = 10;
    config.limits.close_timeout = Duration::from_millis(300);
    config
}

#[tokio::test]
async fn message_flood_closes_1008_and_a_steady_client_is_left_alone() {
    let server = start_ws_with(rate_limited(), Router::new().route("/echo", Echo)).await;
    // Within the rate (one message per 100 ms against 20/s) for a second: never closed.
    let mut steady = connect(server.addr(), "/echo").await;
    for i in 0..10 {
        assert_echo(&mut steady, &format!("tick {i}")).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A burst of 10 is allowed; 200 in one write are not.
    let mut flood = RawWs::connect(server.addr(), "/echo").await;
    let mut burst = Vec::new();
    for _ in 0..10 {
        burst.extend(masked_frame(true, OpCode::Text, b"x"));
    }
    flood.write(&burst).await;
    for _ in 0..10 {
        assert_eq!(flood.read_frame().await.payload, b"x");
    }
    let mut wave = Vec::new();
    for _ in 0..200 {
        wave.extend(masked_frame(true, OpCode::Ping, b"p"));
    }
    flood.write(&wave).await;
    assert_eq!(
        flood.read_close().await,
        (1008, "message rate limit exceeded".to_owned())
    );
    assert_echo(&mut steady, "still open").await;
    drop((steady, flood));
    server.shutdown().await;
}

/// `count` masked fragments of `size` bytes: one binary message.
fn fragmented(count: usize, size: usize) -> Vec<u8> {
    let payload = vec![0x61u8; size];
    let mut wire = Vec::with_capacity(count * (size + 6));
    for i in 0..count {
        let opcode = if i == 0 {
            OpCode::Binary
        } else {
            OpCode::Continuation
        };
        wire.extend(masked_frame(i + 1 == count, opcode, &payload));
    }
    wire
}

fn four_mib() -> ServerConfig {
    let mut config = ws_server();
    config.limits.max_message_size = 4 << 20;
    config.limits.close_timeout = Duration::from_millis(300);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_one_byte_fragments_are_refused_with_1009() {
    let server = start_ws_with(four_mib(), Router::new().route("/echo", Echo)).await;
    let ws = RawWs::connect(server.addr(), "/echo").await;
    // 100 KB of payload, but each fragment counts as 64 bytes: 6.4 MB > 4 MiB.
    let wire = fragmented(100_000, 1);
    let (mut read, mut write) = ws.tcp.into_split();
    // The server stops reading at the limit; the rest of the write may fail.
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&wire).await;
        write
    });
    let started = Instant::now();
    let close = within("the 1009 close", async {
        loop {
            let mut head = [0u8; 2];
            read.read_exact(&mut head).await.expect("a frame");
            let len = usize::from(head[1] & 0x7f);
            let mut payload = vec![0u8; len];
            read.read_exact(&mut payload).await.expect("payload");
            if head[0] & 0x0f == 0x8 {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    })
    .await;
    assert_eq!(close, 1009);
    // Refused at the limit, not after reading all 100,000 fragments (loose, for loaded CI).
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    drop(within("writer", writer).await);
    eventually("the connection to leave the registry", || {
        server.sender.count() == 0
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autobahn_sized_65536_fragments_of_64_bytes_pass() {
    let server = start_ws_with(four_mib(), Router::new().route("/echo", Echo)).await;
    let mut ws = RawWs::connect(server.addr(), "/echo").await;
    // Autobahn 9.4.1: 4 MiB in 64-byte fragments, exactly at a 4 MiB limit.
    ws.write(&fragmented(65_536, 64)).await;
    let frame = ws.read_frame().await;
    assert_eq!((frame.opcode, frame.fin), (0x2, true));
    assert_eq!(frame.payload.len(), 4 << 20);
    ws.send(OpCode::Text, b"after").await;
    assert_eq!(ws.read_frame().await.payload, b"after");
    drop(ws);
    server.shutdown().await;
}

#[tokio::test]
async fn request_line_over_the_head_limit_gets_431() {
    let server = start_ws(Router::new().route("/echo", Echo)).await;
    let long_path = format!("/echo?pad={}", "a".repeat(20 * 1024));
    let response = raw_request(server.addr(), upgrade_request(&long_path, "").as_bytes()).await;
    assert_eq!(response.status, 431);
    assert_eq!(response.json()["error"], "headers_too_large");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_of_500_half_open_handshakes_is_bounded_by_the_handshake_timeout() {
    // Long enough that 500 connects and a good client fit in it on a loaded machine.
    let timeout = Duration::from_secs(4);
    let mut config = ws_server();
    config.limits.handshake_timeout = timeout;
    let server = start_ws_with(config, Router::new().route("/echo", Echo)).await;
    let started = Instant::now();
    let mut flood = Vec::new();
    for _ in 0..500 {
        let mut tcp = TcpStream::connect(server.addr()).await.expect("connect");
        tcp.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgr")
            .await
            .expect("write");
        flood.push(tcp);
    }
    // A good client connects and talks in the middle of the flood.
    let mut good = connect(server.addr(), "/echo").await;
    assert_echo(&mut good, "not starved").await;
    let served = started.elapsed();
    assert!(
        served < timeout,
        "the good client was served while the flood was still held: {served:?}"
    );
    // Every half-open handshake is dropped by the server, none answered.
    let dropped = within_for(Duration::from_secs(10), "the flood to be dropped", async {
        let mut dropped = 0;
        for tcp in &mut flood {
            let mut out = Vec::new();
            let _ = tcp.read_to_end(&mut out).await;
            assert!(out.is_empty(), "no response to a half-open handshake");
            dropped += 1;
        }
        dropped
    })
    .await;
    assert_eq!(dropped, 500);
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
    assert_echo(&mut good, "still fine").await;
    assert_eq!(server.sender.count(), 1);
    drop(good);
    server.shutdown().await;
}
