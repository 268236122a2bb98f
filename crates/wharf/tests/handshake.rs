//! The opening handshake over both doors (the raw listener and the service mounted in an
//! axum app): accepted variants, refusals and their statuses,
//! subprotocol choice, and the request-head limits.

mod common;

use common::*;
use wharf::{Echo, Route, Router};

both_doors! {
    keep_alive_upgrade_and_mixed_case_are_accepted,
    version_8_gets_426_with_supported_version,
    bad_or_missing_key_gets_400,
    post_with_upgrade_headers_gets_405,
    http_1_0_upgrade_gets_400,
    subprotocol_is_the_clients_first_that_the_route_speaks,
}

async fn echo_server() -> Running {
    start_ws(
        Router::new()
            .route("/echo", Echo)
            .route("/proto", Route::new(Echo).protocols(["b", "a"])),
    )
    .await
}

async fn keep_alive_upgrade_and_mixed_case_are_accepted() {
    let server = echo_server().await;
    let request = format!(
        "GET /echo HTTP/1.1\r\nHost: x\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive, Upgrade\r\nsec-websocket-version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
    );
    let mut ws = RawWs::connect_with(server.addr(), request.as_bytes()).await;
    assert_eq!(ws.response.header("sec-websocket-accept"), Some(ACCEPT));
    assert!(
        ws.response
            .header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    );
    assert_eq!(ws.response.header("sec-websocket-protocol"), None);
    // And it really is a WebSocket now.
    ws.send(wharf_proto::OpCode::Text, b"hi").await;
    let frame = ws.read_frame().await;
    assert_eq!((frame.opcode, frame.payload.as_slice()), (0x1, &b"hi"[..]));
    drop(ws);
    server.shutdown().await;
}

async fn version_8_gets_426_with_supported_version() {
    let server = echo_server().await;
    let request = format!(
        "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
    );
    let response = raw_request(server.addr(), request.as_bytes()).await;
    assert_eq!(response.status, 426);
    assert_eq!(response.header("sec-websocket-version"), Some("13"));
    assert_eq!(response.json()["code"], 426);
    assert_eq!(response.json()["error"], "unsupported_version");
    server.shutdown().await;
}

async fn bad_or_missing_key_gets_400() {
    let server = echo_server().await;
    let base = "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";
    for key_line in [
        "",
        "Sec-WebSocket-Key: abc\r\n",
        "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\n",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    ] {
        let request = format!("{base}{key_line}\r\n");
        let response = raw_request(server.addr(), request.as_bytes()).await;
        assert_eq!(response.status, 400, "key line {key_line:?}");
        assert!(
            response.body.contains("sec-websocket-key is invalid"),
            "{response:?}"
        );
        assert_eq!(response.json()["code"], 400);
    }
    server.shutdown().await;
}

async fn post_with_upgrade_headers_gets_405() {
    let server = echo_server().await;
    let request = upgrade_request("/echo", "").replacen("GET", "POST", 1);
    let response = raw_request(server.addr(), request.as_bytes()).await;
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET"));
    assert_eq!(response.json()["error"], "method_not_allowed");
    server.shutdown().await;
}

async fn http_1_0_upgrade_gets_400() {
    let server = echo_server().await;
    let request = upgrade_request("/echo", "").replacen("HTTP/1.1", "HTTP/1.0", 1);
    let response = raw_request(server.addr(), request.as_bytes()).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["error"], "bad_request");
    server.shutdown().await;
}

async fn subprotocol_is_the_clients_first_that_the_route_speaks() {
    let server = echo_server().await;
    let ws = RawWs::connect_with(
        server.addr(),
        upgrade_request("/proto", "Sec-WebSocket-Protocol: a, b\r\n").as_bytes(),
    )
    .await;
    assert_eq!(ws.response.header("sec-websocket-protocol"), Some("a"));

    // Offered over two header lines, in the other order: still the client's first.
    drop(ws);
    let ws = RawWs::connect_with(
        server.addr(),
        upgrade_request(
            "/proto",
            "Sec-WebSocket-Protocol: x\r\nSec-WebSocket-Protocol: b, a\r\n",
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(ws.response.header("sec-websocket-protocol"), Some("b"));
    drop(ws);

    // Nothing the route speaks: no header at all.
    let ws = RawWs::connect_with(
        server.addr(),
        upgrade_request("/proto", "Sec-WebSocket-Protocol: x\r\n").as_bytes(),
    )
    .await;
    assert_eq!(ws.response.header("sec-websocket-protocol"), None);
    drop(ws);

    // A route with no protocols never echoes one.
    let ws = RawWs::connect_with(
        server.addr(),
        upgrade_request("/echo", "Sec-WebSocket-Protocol: a\r\n").as_bytes(),
    )
    .await;
    assert_eq!(ws.response.header("sec-websocket-protocol"), None);
    drop(ws);
    server.shutdown().await;
}

#[tokio::test]
async fn garbage_request_line_gets_400() {
    let server = echo_server().await;
    for garbage in [
        &b"NOT HTTP AT ALL\r\n\r\n"[..],
        b"\x01\x02 nonsense\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
    ] {
        let response = raw_request(server.addr(), garbage).await;
        assert_eq!(response.status, 400, "{garbage:?}");
        assert_eq!(response.json()["error"], "bad_request");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn head_over_16_kib_sent_slowly_gets_431() {
    let server = echo_server().await;
    let big = "x".repeat(17 * 1024);
    let request = upgrade_request("/echo", &format!("X-Big: {big}\r\n"));
    // Sent in small pieces, so the server sees the head grow past the limit.
    let response = within("431", async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(server.addr())
            .await
            .expect("connect");
        for chunk in request.as_bytes().chunks(1000) {
            if tcp.write_all(chunk).await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let mut out = Vec::new();
        let _ = tcp.read_to_end(&mut out).await;
        parse_response(&out)
    })
    .await;
    assert_eq!(response.status, 431);
    assert_eq!(response.json()["error"], "headers_too_large");
    server.shutdown().await;
}

#[tokio::test]

async fn head_over_16_kib_in_one_write_gets_431() {
    let server = echo_server().await;
    let big = "x".repeat(20 * 1024);
    let request = upgrade_request("/echo", &format!("X-Big: {big}\r\n"));
    let response = within("a response head", async {
        use tokio::io::AsyncWriteExt;
        let mut tcp = tokio::net::TcpStream::connect(server.addr())
            .await
            .expect("connect");
        tcp.write_all(request.as_bytes()).await.expect("write");
        read_head(&mut tcp).await
    })
    .await;
    assert_eq!(response.status, 431, "{:?}", response.headers);
    server.shutdown().await;
}

#[tokio::test]
async fn more_than_64_headers_get_431() {
    let server = echo_server().await;
    let extra: String = (0..65).map(|i| format!("X-H{i}: v\r\n")).collect();
    let response = raw_request(server.addr(), upgrade_request("/echo", &extra).as_bytes()).await;
    assert_eq!(response.status, 431);
    assert_eq!(response.json()["code"], 431);
    // 58 extra + 6 standard = 64 headers: still fine.
    let extra: String = (0..58).map(|i| format!("X-H{i}: v\r\n")).collect();
    RawWs::connect_with(server.addr(), upgrade_request("/echo", &extra).as_bytes()).await;
    server.shutdown().await;
}
