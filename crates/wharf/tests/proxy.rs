//! Behind a proxy: the client address from a trusted peer's PROXY protocol header (v1, v2)
//! or `X-Forwarded-For` / `Forwarded`, never from an untrusted peer; the per-IP cap keys on
//! it. The trusted proxy is 127.0.0.2 and the untrusted peer 127.0.0.1 (both loopback, so
//! the client sockets bind their source address).

mod common;

use std::net::SocketAddr;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use wharf::{Conn, Handler, HandlerError, OpenRequest, Router, ServerConfig};

/// Greets every connection with the client address the server took.
struct PeerEcho;

impl Handler for PeerEcho {
    async fn on_open(&self, conn: &Conn, _request: &OpenRequest) -> Result<(), HandlerError> {
        conn.send(conn.peer().to_string())?;
        Ok(())
    }
}

const PROXY: &str = "127.0.0.2";
const DIRECT: &str = "127.0.0.1";

/// A `ws` server trusting 127.0.0.2, with `proxy_protocol` as given and a per-IP cap of 2.
fn behind_proxy(proxy_protocol: bool) -> ServerConfig {
    let mut config = ws_server();
    config.trusted_proxies = vec![PROXY.parse().expect("net")];
    config.proxy_protocol = proxy_protocol;
    config.limits.max_connections_per_ip = 2;
    config
}

async fn start_peer_echo(config: ServerConfig) -> Running {
    start_ws_with(config, Router::new().route("/peer", PeerEcho)).await
}

/// A TCP connection to `addr` from the loopback address `from`.
async fn tcp_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().expect("addr"))
        .expect("bind the source address");
    within("connect", socket.connect(addr))
        .await
        .expect("connect")
}

/// Sends `preamble` (a PROXY header or nothing) and an upgrade to `/peer` with `headers`;
/// returns the response and, on 101, the greeting (the address the server took).
async fn open(
    from: &str,
    addr: SocketAddr,
    preamble: &[u8],
    headers: &str,
) -> (RawResponse, Option<String>, TcpStream) {
    let mut tcp = tcp_from(from, addr).await;
    let mut bytes = preamble.to_vec();
    bytes.extend_from_slice(upgrade_request("/peer", headers).as_bytes());
    tcp.write_all(&bytes).await.expect("write");
    let mut response = within("response", read_head(&mut tcp)).await;
    if response.status != 101 {
        // A refusal: read its body too (the server closes after it).
        let mut rest = Vec::new();
        let _ = within("the body", tcp.read_to_end(&mut rest)).await;
        response.body = String::from_utf8_lossy(&rest).into_owned();
        return (response, None, tcp);
    }
    let frame = within("greeting", read_frame(&mut tcp))
        .await
        .expect("a greeting frame");
    let greeting = String::from_utf8(frame.payload).expect("text");
    (response, Some(greeting), tcp)
}

/// A PROXY v2 header for a TCP-over-IPv4 client.
fn v2_header(client: [u8; 4], port: u16) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[0x21, 0x11, 0, 12]);
    out.extend_from_slice(&client);
    out.extend_from_slice(&[127, 0, 0, 1]);
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&9502u16.to_be_bytes());
    out
}

fn v1_header(client: &str, port: u16) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 {port} 9502\r\n").into_bytes()
}

#[tokio::test]
async fn proxy_protocol_v1_and_v2_from_a_trusted_peer_set_the_client_address() {
    let server = start_peer_echo(behind_proxy(true)).await;
    let (_, greeting, v1) = open(PROXY, server.addr(), &v1_header("203.0.113.9", 41000), "").await;
    assert_eq!(greeting.as_deref(), Some("203.0.113.9:41000"));
    let (_, greeting, v2) = open(
        PROXY,
        server.addr(),
        &v2_header([198, 51, 100, 7], 52000),
        "",
    )
    .await;
    assert_eq!(greeting.as_deref(), Some("198.51.100.7:52000"));
    // The listing and the dashboard read the same address.
    let mut peers: Vec<String> = server
        .sender
        .list()
        .iter()
        .map(|c| c.peer.to_string())
        .collect();
    peers.sort();
    assert_eq!(peers, ["198.51.100.7:52000", "203.0.113.9:41000"]);
    // A v2 LOCAL header (the proxy's own health check): the proxy's address stands.
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    let (_, greeting, health) = open(PROXY, server.addr(), &local, "").await;
    assert!(greeting.expect("101").starts_with("127.0.0.2:"));
    drop((v1, v2, health));
    server.shutdown().await;
}

#[tokio::test]
async fn a_proxy_protocol_listener_refuses_untrusted_peers_and_missing_headers() {
    let server = start_peer_echo(behind_proxy(true)).await;
    // A spoofed header from an untrusted peer: refused before the header is read.
    let (response, _, _) = open(DIRECT, server.addr(), &v1_header("203.0.113.9", 1), "").await;
    assert_eq!(response.status, 403, "{response:?}");
    assert_eq!(response.json()["error"], "untrusted_proxy");
    // A trusted peer without a header, or with a broken one.
    let (response, _, _) = open(PROXY, server.addr(), b"", "").await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["error"], "bad_proxy_header");
    let (response, _, _) = open(
        PROXY,
        server.addr(),
        b"PROXY TCP4 203.0.113.9 nope 1 2\r\n",
        "",
    )
    .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["code"], 400);
    let metrics = server.sender.metrics().to_prometheus(None);
    assert!(
        metrics.contains("reason=\"untrusted_proxy\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("reason=\"bad_proxy_header\"} 2"),
        "{metrics}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn forwarded_headers_count_only_from_a_trusted_peer() {
    let server = start_peer_echo(behind_proxy(false)).await;
    // The client wrote 1.1.1.1; the proxy appended what it saw: the rightmost untrusted hop.
    let xff = "X-Forwarded-For: 1.1.1.1, 203.0.113.9\r\n";
    let (_, greeting, a) = open(PROXY, server.addr(), b"", xff).await;
    assert_eq!(greeting.as_deref(), Some("203.0.113.9:0"));
    // The same header straight from a client is ignored.
    let (_, greeting, b) = open(DIRECT, server.addr(), b"", xff).await;
    assert!(greeting.expect("101").starts_with("127.0.0.1:"));
    // A PROXY header on a listener without proxy_protocol is not HTTP: 400, nothing taken.
    let (response, _, _) = open(PROXY, server.addr(), &v1_header("203.0.113.9", 1), "").await;
    assert_eq!(response.status, 400);
    // `Forwarded` is read only when it is the configured header.
    let forwarded = "Forwarded: for=\"[2001:db8::7]:4711\"\r\n";
    let (_, greeting, c) = open(PROXY, server.addr(), b"", forwarded).await;
    assert!(
        greeting.expect("101").starts_with("127.0.0.2:"),
        "x-forwarded-for is configured"
    );
    drop((a, b, c));
    server.shutdown().await;
    let mut config = behind_proxy(false);
    config.forwarded_header = wharf::config::ForwardedHeader::Forwarded;
    let server = start_peer_echo(config).await;
    let (_, greeting, d) = open(PROXY, server.addr(), b"", forwarded).await;
    assert_eq!(greeting.as_deref(), Some("[2001:db8::7]:4711"));
    drop(d);
    server.shutdown().await;
}

#[tokio::test]
async fn the_per_ip_cap_keys_on_the_client_behind_the_proxy() {
    for proxy_protocol in [false, true] {
        let server = start_peer_echo(behind_proxy(proxy_protocol)).await;
        let via = |client: &str| {
            if proxy_protocol {
                (v1_header(client, 4000), String::new())
            } else {
                (Vec::new(), format!("X-Forwarded-For: {client}\r\n"))
            }
        };
        let mut held = Vec::new();
        for _ in 0..2 {
            let (preamble, headers) = via("203.0.113.9");
            let (response, _, tcp) = open(PROXY, server.addr(), &preamble, &headers).await;
            assert_eq!(response.status, 101);
            held.push(tcp);
        }
        let (preamble, headers) = via("203.0.113.9");
        let (response, _, _) = open(PROXY, server.addr(), &preamble, &headers).await;
        assert_eq!(response.status, 429, "the third from one client");
        assert_eq!(response.json()["error"], "too_many_connections");
        // Another client behind the same proxy is not affected.
        let (preamble, headers) = via("203.0.113.10");
        let (response, _, other) = open(PROXY, server.addr(), &preamble, &headers).await;
        assert_eq!(response.status, 101, "proxy_protocol = {proxy_protocol}");
        drop((held, other));
        server.shutdown().await;
    }
}

#[tokio::test]
async fn a_proxy_missing_from_trusted_proxies_is_not_capped_by_default() {
    // Every client shares the proxy's (private) address; the default does not cap it.
    let mut config = ws_server();
    config.limits.max_connections_per_ip = 2;
    let server = start_peer_echo(config).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let (response, _, tcp) = open(DIRECT, server.addr(), b"", "").await;
        assert_eq!(response.status, 101);
        held.push(tcp);
    }
    drop(held);
    server.shutdown().await;
    // With cap_private_addresses the loopback address is capped like any other.
    let mut config = ws_server();
    config.limits.max_connections_per_ip = 2;
    config.limits.cap_private_addresses = true;
    let server = start_peer_echo(config).await;
    let a = open(DIRECT, server.addr(), b"", "").await;
    let b = open(DIRECT, server.addr(), b"", "").await;
    let (response, _, _) = open(DIRECT, server.addr(), b"", "").await;
    assert_eq!(response.status, 429);
    drop((a, b));
    server.shutdown().await;
}
