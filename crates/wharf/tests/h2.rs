//! WebSocket over HTTP/2 (RFC 8441), through real loopback sockets with an h2 client that
//! opens each WebSocket as an extended CONNECT stream: on an `http` server's port and on an
//! axum app mounting `BoundServer::service` (the same tests over both, see
//! [`on_both_ports!`]), then over TLS with ALPN `h2`. Echo, several WebSockets on one TCP
//! connection, refusals as h2 responses with the HTTP/1.1 JSON bodies, `Sender` pushes, the
//! shutdown's 1001, and permessage-deflate inside a stream.

#[path = "h2/client.rs"]
mod client;
mod common;
#[path = "../../wharf-client/tests/common/tls.rs"]
mod pki;

use std::net::SocketAddr;
use std::sync::Arc;

use client::H2Client;
use common::*;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wharf::{Compression, Config, Echo, Route, Router, Server, TlsConfig};
use wharf_proto::{DeflateParams, Deflater, Inflater, OpCode, encode_compressed_frame};

/// Where the WebSocket routes are served over h2.
#[derive(Debug, Clone, Copy)]
enum Port {
    /// An `http` server's own port (`ServerBuilder::websocket("http", ...)`).
    Http,
    /// An axum app (`axum::serve`) with `BoundServer::service("ws")` as its fallback.
    Mounted,
}

/// Runs each listed test (an `async fn name(port: Port)`) on both ports, as
/// `http_port::name` and `mounted::name`.
macro_rules! on_both_ports {
    ($($name:ident),* $(,)?) => {
        mod http_port {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Port::Http).await
                }
            )*
        }
        mod mounted {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Port::Mounted).await
                }
            )*
        }
    };
}

on_both_ports!(
    echo_over_an_extended_connect_stream,
    websockets_share_one_tcp_connection_and_stay_independent,
    refusals_are_h2_responses_with_the_http1_json_bodies,
    sender_pushes_reach_h2_websockets,
    shutdown_closes_h2_websockets_with_1001,
);

/// Starts `router` on `port`; the running server and the address to speak h2 to.
async fn start_on(port: Port, router: Router) -> (Running, SocketAddr) {
    match port {
        Port::Http => {
            let config = Config::empty().with_server(http_server());
            let running = start(Server::builder(config).websocket("http", router)).await;
            let addr = running.http.expect("the http server");
            (running, addr)
        }
        Port::Mounted => {
            let running = on_door(Door::Mounted, start_ws(router)).await;
            let addr = running.addr();
            (running, addr)
        }
    }
}

/// An h2 connection (prior knowledge) over a new TCP connection to `addr`.
async fn h2_connect(addr: SocketAddr) -> H2Client {
    let tcp = within("tcp connect", TcpStream::connect(addr))
        .await
        .expect("tcp connect");
    H2Client::handshake(tcp, format!("http://{addr}")).await
}

/// Sends an extended CONNECT that must be refused; its response.
async fn refused(
    client: &mut H2Client,
    path: &str,
    protocol: &'static str,
    headers: &[(&str, &str)],
) -> RawResponse {
    match client.connect(path, protocol, headers).await {
        Ok((response, _)) => panic!("{path} accepted: {response:?}"),
        Err(response) => response,
    }
}

const VERSION_13: (&str, &str) = ("sec-websocket-version", "13");

async fn echo_over_an_extended_connect_stream(port: Port) {
    let (recorder, mut events) = Recorder::new();
    let (server, addr) = start_on(port, Router::new().route("/rec", recorder)).await;
    let mut client = h2_connect(addr).await;
    let mut ws = client.open("/rec").await;
    let id = greeting_id(&mut ws).await;

    assert_echo(&mut ws, "over h2").await;
    let binary = WsMessage::binary(vec![0u8, 1, 2, 255]);
    within("send binary", ws.send(binary.clone()))
        .await
        .expect("send");
    assert_eq!(next(&mut ws).await, binary);
    // Larger than h2's 16 KiB frames and the client's 64 KiB window, both ways.
    assert_echo(&mut ws, &"x".repeat(200_000)).await;

    let listed = server.sender.list();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].route, "/rec");

    // The client's close handshake runs inside the stream too.
    let bye = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    within("close", ws.close(Some(bye))).await.expect("close");
    within("the server's close", async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    let event = events.close_of(id).await;
    assert_eq!(
        (event.code.as_u16(), event.reason.as_str()),
        (1000, "bye"),
        "{event:?}"
    );
    eventually("the registry to empty", || server.sender.count() == 0).await;
}

async fn websockets_share_one_tcp_connection_and_stay_independent(port: Port) {
    let (recorder, mut events) = Recorder::new();
    let (server, addr) = start_on(port, Router::new().route("/rec", recorder)).await;
    let mut client = h2_connect(addr).await;
    let mut a = client.open("/rec").await;
    let mut b = client.open("/rec").await;
    let mut c = client.open("/rec").await;
    let ids = [
        greeting_id(&mut a).await,
        greeting_id(&mut b).await,
        greeting_id(&mut c).await,
    ];
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    // Three connections in the registry, all from the one TCP connection's address.
    let listed = server.sender.list();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed[0].peer.port() != 0, "{listed:?}");
    assert!(
        listed.iter().all(|c| c.peer == listed[0].peer),
        "{listed:?}"
    );

    // All three in flight at once, each answered on its own stream.
    send_text(&mut a, "to a").await;
    send_text(&mut b, "to b").await;
    send_text(&mut c, "to c").await;
    assert_eq!(next_text(&mut c).await, "to c");
    assert_eq!(next_text(&mut a).await, "to a");
    assert_eq!(next_text(&mut b).await, "to b");
    tokio::join!(
        assert_echo(&mut a, "a again"),
        assert_echo(&mut c, "c again")
    );

    // One closes; the others, and the TCP connection, go on.
    send_text(&mut b, "close").await;
    assert_eq!(expect_close(&mut b).await, (1000, "done".to_owned()));
    assert_eq!(events.close_of(ids[1]).await.code.as_u16(), 1000);
    assert_echo(&mut a, "still here").await;
    assert_echo(&mut c, "me too").await;
    let mut d = client.open("/rec").await;
    greeting_id(&mut d).await;
    assert_echo(&mut d, "a fourth").await;
    assert_eq!(server.sender.count(), 3);
}

async fn refusals_are_h2_responses_with_the_http1_json_bodies(port: Port) {
    let app = Route::new(Echo)
        .origins(["https://app.example"])
        .protocols(["chat"]);
    let router = Router::new().route("/echo", Echo).route("/app", app);
    let (server, addr) = start_on(port, router).await;
    let mut client = h2_connect(addr).await;

    let missing = refused(&mut client, "/nope", "websocket", &[VERSION_13]).await;
    assert_eq!(missing.status, 404, "{missing:?}");
    assert_eq!(missing.json()["error"], "route_not_found");
    assert_eq!(missing.header("description"), Some("Route Error"));
    let http1 = raw_request(addr, upgrade_request("/nope", "").as_bytes()).await;
    assert_eq!((missing.status, &missing.body), (http1.status, &http1.body));

    let version = [("sec-websocket-version", "8")];
    let old = refused(&mut client, "/echo", "websocket", &version).await;
    assert_eq!(old.status, 426, "{old:?}");
    assert_eq!(old.json()["error"], "unsupported_version");
    assert_eq!(old.header("sec-websocket-version"), Some("13"));
    let http1 = format!(
        "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
    );
    let http1 = raw_request(addr, http1.as_bytes()).await;
    assert_eq!((old.status, &old.body), (http1.status, &http1.body));
    let unversioned = refused(&mut client, "/echo", "websocket", &[]).await;
    assert_eq!(unversioned.json()["error"], "unsupported_version");

    // Malformed as an extended CONNECT: a clear 400.
    let other = refused(&mut client, "/echo", "webtransport", &[VERSION_13]).await;
    assert_eq!(other.status, 400, "{other:?}");
    assert_eq!(other.json()["error"], "bad_request");
    let msg = other.json()["msg"].as_str().unwrap_or_default().to_owned();
    assert!(msg.contains(":protocol websocket"), "{msg}");

    // The route's origins hold over h2, and its subprotocol is picked as over HTTP/1.1.
    let evil = [VERSION_13, ("origin", "https://evil.example")];
    let forbidden = refused(&mut client, "/app", "websocket", &evil).await;
    assert_eq!(forbidden.status, 403, "{forbidden:?}");
    assert_eq!(forbidden.json()["error"], "origin_forbidden");
    let good = [
        VERSION_13,
        ("origin", "https://app.example"),
        ("sec-websocket-protocol", "other, chat"),
    ];
    let (accepted, mut chat) = match client.connect("/app", "websocket", &good).await {
        Ok(opened) => opened,
        Err(refusal) => panic!("the app route refused: {refusal:?}"),
    };
    assert_eq!(accepted.status, 200);
    assert_eq!(accepted.header("sec-websocket-protocol"), Some("chat"));
    assert_echo(&mut chat, "from the app's origin").await;

    // A plain GET over h2 to a WebSocket route: wharf's 426, as over HTTP/1.1.
    let plain = client.get("/echo").await;
    assert_eq!(plain.status, 426, "{plain:?}");
    let http1 = raw_request(addr, plain_get("/echo").as_bytes()).await;
    assert_eq!(plain.body, http1.body);

    let rejected = server.sender.metrics().handshakes_rejected;
    for (reason, count) in [
        ("route_not_found", 2),
        ("unsupported_version", 3),
        ("bad_request", 1),
        ("upgrade_required", 2),
        ("origin_forbidden", 1),
    ] {
        assert_eq!(rejected.get(reason), Some(&count), "{reason}: {rejected:?}");
    }

    // A refusal ends its stream only: the connection carries a WebSocket after all of them.
    let mut ws = client.open("/echo").await;
    assert_echo(&mut ws, "after the refusals").await;
}

async fn sender_pushes_reach_h2_websockets(port: Port) {
    let (recorder, _events) = Recorder::new();
    let (server, addr) = start_on(port, Router::new().route("/rec", recorder)).await;
    let mut client = h2_connect(addr).await;
    let mut h2 = client.open("/rec").await;
    let h2_id = greeting_id(&mut h2).await;
    let mut h1 = connect(addr, "/rec").await;
    let h1_id = greeting_id(&mut h1).await;

    server.sender.push(h2_id, "to the h2 stream").expect("push");
    server
        .sender
        .push(h1_id, "to the HTTP/1.1 one")
        .expect("push");
    assert_eq!(next_text(&mut h2).await, "to the h2 stream");
    assert_eq!(next_text(&mut h1).await, "to the HTTP/1.1 one");

    // And a close from the sender, inside the stream.
    server
        .sender
        .close(h2_id, wharf::CloseCode::POLICY_VIOLATION, "pushed out")
        .expect("close");
    assert_eq!(expect_close(&mut h2).await, (1008, "pushed out".to_owned()));
    assert_echo(&mut h1, "unaffected").await;
}

async fn shutdown_closes_h2_websockets_with_1001(port: Port) {
    let (recorder, mut events) = Recorder::new();
    let (mut server, addr) = start_on(port, Router::new().route("/rec", recorder)).await;
    let mut client = h2_connect(addr).await;
    let mut a = client.open("/rec").await;
    let mut b = client.open("/rec").await;
    let ids = [greeting_id(&mut a).await, greeting_id(&mut b).await];

    server.trigger_shutdown();
    assert_eq!(expect_close(&mut a).await.0, 1001);
    assert_eq!(expect_close(&mut b).await.0, 1001);
    for id in ids {
        assert_eq!(events.close_of(id).await.code.as_u16(), 1001);
    }
    server.join().await.expect("serve returned Ok");
    // The HTTP server then ends the connection the streams shared.
    client.closed().await;
}

#[tokio::test]
async fn permessage_deflate_is_negotiated_and_used_inside_the_stream() {
    let http = http_server().with_compression(Compression::on());
    let builder = Server::builder(Config::empty().with_server(http))
        .websocket("http", Router::new().route("/echo", Echo));
    let server = start(builder).await;
    let mut client = h2_connect(server.http.expect("the http server")).await;
    // What Chromium and Firefox offer.
    let offer = [
        VERSION_13,
        (
            "sec-websocket-extensions",
            "permessage-deflate; client_max_window_bits",
        ),
    ];
    let (head, mut ws) = match client.connect("/echo", "websocket", &offer).await {
        Ok(opened) => opened,
        Err(refusal) => panic!("refused: {refusal:?}"),
    };
    let agreed = head
        .header("sec-websocket-extensions")
        .and_then(DeflateParams::from_response)
        .expect("permessage-deflate agreed in the 200");
    let mut deflater = Deflater::new(15, 6, agreed.client_no_context_takeover);
    let mut inflater = Inflater::new(agreed.server_no_context_takeover);

    // Raw frames on the stream (tungstenite does not speak permessage-deflate): a compressed
    // message in, a compressed message back.
    let text = "permessage-deflate inside an h2 stream ".repeat(40);
    let mut body = Vec::new();
    deflater.compress(text.as_bytes(), &mut body);
    let mut frame = Vec::new();
    encode_compressed_frame(&mut frame, OpCode::Text, &body, Some(MASK));
    let stream = ws.get_mut();
    within("write", stream.write_all(&frame))
        .await
        .expect("write");
    let echoed = within("the echo", read_frame(stream))
        .await
        .expect("a frame");
    assert!(
        echoed.fin && echoed.rsv1,
        "a compressed message: {echoed:?}"
    );
    let inflated = inflater
        .inflate(&echoed.payload, 1 << 20)
        .expect("valid DEFLATE from the server");
    assert_eq!(inflated, text.as_bytes());
}

/// A TLS connection to `addr` offering `alpn`, trusting only the test CA.
async fn tls_connect(pki: &pki::TestPki, addr: SocketAddr, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&pki.ca_pem).expect("ca file") {
        roots.add(cert.expect("ca cert")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = ServerName::try_from("localhost").expect("name");
    within("TLS connect", async {
        let tcp = TcpStream::connect(addr).await.expect("tcp connect");
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("TLS handshake")
    })
    .await
}

/// The protocol the server picked in ALPN.
fn alpn(stream: &TlsStream<TcpStream>) -> Option<&[u8]> {
    stream.get_ref().1.alpn_protocol()
}

#[tokio::test]
async fn https_offers_h2_in_alpn_and_carries_websockets_over_it() {
    let pki = pki::TestPki::generate().expect("test PKI");
    let tls = TlsConfig::new(&pki.cert_pem, &pki.key_pem);
    let config = Config::empty()
        .with_server(http_server().with_tls(tls.clone()))
        .with_server(ws_server().with_tls(tls));
    let server = start(
        Server::builder(config)
            .websocket("http", Router::new().route("/echo", Echo))
            .websocket("ws", Router::new().route("/echo", Echo)),
    )
    .await;
    let https = server.http.expect("the http server");

    let stream = tls_connect(&pki, https, &[b"h2", b"http/1.1"]).await;
    assert_eq!(alpn(&stream), Some(&b"h2"[..]));
    let origin = format!("https://localhost:{}", https.port());
    let mut client = H2Client::handshake(stream, origin).await;
    let mut one = client.open("/echo").await;
    let mut two = client.open("/echo").await;
    assert_echo(&mut one, "wss over h2").await;
    assert_echo(&mut two, "and another stream").await;
    let health = client.get("/health").await;
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(health.json()["connections"], 2);

    // A client that offers only HTTP/1.1 gets it, and its 101, as before.
    let stream = tls_connect(&pki, https, &[b"http/1.1"]).await;
    assert_eq!(alpn(&stream), Some(&b"http/1.1"[..]));
    let request = format!("wss://localhost:{}/echo", https.port())
        .into_client_request()
        .expect("request");
    let (mut ws, response) = within(
        "wss handshake over HTTP/1.1",
        tokio_tungstenite::client_async(request, stream),
    )
    .await
    .expect("handshake");
    assert_eq!(response.status(), 101);
    assert_echo(&mut ws, "wss over HTTP/1.1").await;

    // A `websocket` server's own listener reads HTTP/1.1 only, and says so in ALPN.
    let stream = tls_connect(&pki, server.addr(), &[b"h2", b"http/1.1"]).await;
    assert_eq!(alpn(&stream), Some(&b"http/1.1"[..]));
}
