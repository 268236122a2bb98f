//! TLS from the config: a `websocket` server serving `wss` and an `http` server serving
//! `https`, with a certificate from a test CA (large echoes included); bad key files fail the
//! bind with a clear error.

mod common;
#[path = "../../wharf-client/tests/common/tls.rs"]
mod pki;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wharf::{Config, Echo, Router, Server, TlsConfig};

/// A TLS connection to `addr` that trusts only the test CA and checks the name `localhost`.
async fn tls_connect(
    pki: &pki::TestPki,
    addr: SocketAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&pki.ca_pem).expect("ca file") {
        roots.add(cert.expect("ca cert")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

async fn tls_server(pki: &pki::TestPki) -> Running {
    let tls = TlsConfig::new(&pki.cert_pem, &pki.key_pem);
    let config = Config::empty()
        .with_server(ws_server().with_tls(tls.clone()))
        .with_server(http_server().with_tls(tls));
    start(
        Server::builder(config)
            .websocket("ws", Router::new().route("/echo", Echo))
            .http("http", wharf::axum::Router::new()),
    )
    .await
}

#[tokio::test]
async fn wss_and_https_from_the_config() {
    let pki = pki::TestPki::generate().expect("test PKI");
    let server = tls_server(&pki).await;

    let stream = within("TLS connect", tls_connect(&pki, server.addr()))
        .await
        .expect("TLS");
    let request = format!("wss://localhost:{}/echo", server.addr().port())
        .into_client_request()
        .expect("request");
    let (mut ws, response) = within(
        "wss handshake",
        tokio_tungstenite::client_async(request, stream),
    )
    .await
    .expect("handshake");
    assert_eq!(response.status(), 101);
    // Large replies are written with vectored writes beside their headers; through TLS too.
    let large_text: String = (0..200_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let large_binary: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    for message in [
        WsMessage::text("over tls"),
        WsMessage::text(large_text),
        WsMessage::binary(large_binary),
        WsMessage::text("after"),
    ] {
        within("send", ws.send(message.clone()))
            .await
            .expect("send");
        let echoed = within("echo", ws.next())
            .await
            .expect("open")
            .expect("message");
        assert_eq!(echoed, message);
    }

    let http = server.http.expect("http");
    let mut stream = within("TLS connect", tls_connect(&pki, http))
        .await
        .expect("TLS");
    let request = b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    stream.write_all(request).await.expect("write");
    let mut raw = Vec::new();
    let _ = within("response", stream.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"connections\":1"), "{text}");

    // Plain HTTP to the TLS port is not a WebSocket handshake: no 101, counted as refused.
    let mut plain = TcpStream::connect(server.addr()).await.expect("connect");
    plain
        .write_all(upgrade_request("/echo", "").as_bytes())
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = within("the server to hang up", plain.read_to_end(&mut answer)).await;
    assert!(!answer.starts_with(b"HTTP/1.1 101"), "{answer:?}");
    within("the refusal to be counted", async {
        while server
            .sender
            .metrics()
            .handshakes_rejected
            .get("tls_handshake")
            != Some(&1)
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_is_refused_by_its_own_check() {
    let pki = pki::TestPki::generate().expect("test PKI");
    let server = tls_server(&pki).await;
    let other = pki::TestPki::generate().expect("another PKI");
    let refused = within("TLS connect", tls_connect(&other, server.addr())).await;
    // Refused by the client's certificate check, not by a reset or any other failure.
    let error = refused.expect_err("a certificate from another CA must not verify");
    let cause = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    assert!(
        matches!(
            cause,
            // Both test CAs have the same name: found by name, its signature fails.
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer | rustls::CertificateError::BadSignature
            ))
        ),
        "{error:?}"
    );
}

/// A TLS server whose handshake timeout is `timeout`.
async fn tls_server_with_timeout(pki: &pki::TestPki, timeout: Duration) -> Running {
    let tls = TlsConfig::new(&pki.cert_pem, &pki.key_pem);
    let mut ws = ws_server().with_tls(tls.clone());
    ws.limits.handshake_timeout = timeout;
    let mut http = http_server().with_tls(tls);
    http.limits.handshake_timeout = timeout;
    let config = Config::empty().with_server(ws).with_server(http);
    start(
        Server::builder(config)
            .websocket("ws", Router::new().route("/echo", Echo))
            .http("http", wharf::axum::Router::new()),
    )
    .await
}

#[tokio::test]
async fn a_tcp_connection_that_never_sends_a_client_hello_is_dropped_after_the_handshake_timeout() {
    let pki = pki::TestPki::generate().expect("test PKI");
    let timeout = Duration::from_millis(500);
    let server = tls_server_with_timeout(&pki, timeout).await;
    for (name, addr) in [
        ("wss", server.addr()),
        ("https", server.http.expect("http")),
    ] {
        let started = Instant::now();
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        let mut answer = Vec::new();
        // Dropped (EOF or reset) with nothing sent: no ServerHello comes without a ClientHello.
        let _ = within(
            "the server to drop a silent TLS client",
            silent.read_to_end(&mut answer),
        )
        .await;
        let waited = started.elapsed();
        assert!(answer.is_empty(), "{name}: {answer:?}");
        // Not before the timeout (the connect came first, so the server's clock started later).
        assert!(waited >= timeout, "{name}: dropped after {waited:?}");
    }
    within("the silent wss client to be counted", async {
        while server
            .sender
            .metrics()
            .handshakes_rejected
            .get("tls_handshake")
            != Some(&1)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // A client that does speak gets through after that.
    let stream = within("TLS connect", tls_connect(&pki, server.addr()))
        .await
        .expect("TLS");
    drop(stream);
    server.shutdown().await;
}

#[tokio::test]
async fn unusable_tls_files_fail_the_bind_naming_the_file() {
    let pki = pki::TestPki::generate().expect("test PKI");
    let missing = pki.path().join("missing.pem");
    let config =
        Config::empty().with_server(ws_server().with_tls(TlsConfig::new(&missing, &pki.key_pem)));
    let error = Server::builder(config)
        .bind()
        .await
        .err()
        .expect("bind fails");
    let text = error.to_string();
    assert!(text.contains("server `ws`: TLS: certificate"), "{text}");
    assert!(text.contains("missing.pem"), "{text}");

    // The key of another certificate does not match.
    let other = pki::TestPki::generate().expect("another PKI");
    let config = Config::empty()
        .with_server(ws_server().with_tls(TlsConfig::new(&pki.cert_pem, &other.key_pem)));
    let error = Server::builder(config)
        .bind()
        .await
        .err()
        .expect("bind fails");
    assert!(matches!(error, wharf::Error::Tls { .. }), "{error}");
}
