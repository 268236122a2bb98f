//! `wss://`: against Python `websockets` serving a test certificate, and against wharf
//! behind a TLS-terminating proxy; trusted and untrusted CAs, the server-name override.

#![allow(missing_docs)]

mod common;

use std::process::ExitCode;

use common::tls::TestPki;
use common::{TestResult, Wharf, bounded, python};
use wharf_client::cli::{ClientArgs, ConnectionArgs, run};
use wharf_client::{ClientConfig, ClientError, Event, Message, connect};

async fn echo_once(url: &str, config: &ClientConfig) -> TestResult {
    let mut client = bounded(connect(url, config)).await?;
    client.send(Message::from("over tls")).await?;
    assert_eq!(
        bounded(client.recv()).await?,
        Some(Event::Message(Message::Text("over tls".into())))
    );
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    client.send(Message::from(big.clone())).await?;
    assert_eq!(
        bounded(client.recv()).await?,
        Some(Event::Message(Message::Binary(big.into())))
    );
    let reply = bounded(client.close(1000, "bye")).await?;
    assert_eq!(reply.map(|(code, _)| code), Some(1000));
    Ok(())
}

#[tokio::test]
async fn wss_against_python_websockets() -> TestResult {
    let pki = TestPki::generate()?;
    let Some((_server, port)) = python::echo_server(&[&pki.cert_pem, &pki.key_pem]).await? else {
        return Ok(());
    };
    let trusted = ClientConfig::default().with_ca_file(&pki.ca_pem);

    // The certificate names localhost: trusted CA + matching name.
    echo_once(&format!("wss://localhost:{port}/"), &trusted).await?;

    // By IP address the name does not match, unless overridden.
    let by_ip = format!("wss://127.0.0.1:{port}/");
    let err = bounded(connect(&by_ip, &trusted)).await.err();
    assert!(
        matches!(&err, Some(ClientError::Certificate(why)) if why.contains("NotValidForName")),
        "{err:?}"
    );
    echo_once(&by_ip, &trusted.clone().with_server_name("wharf.test")).await?;

    // The built-in roots do not know the test CA.
    let err = bounded(connect(
        &format!("wss://localhost:{port}/"),
        &ClientConfig::default(),
    ))
    .await
    .err();
    assert!(
        matches!(&err, Some(ClientError::Certificate(why)) if why.contains("UnknownIssuer")),
        "{err:?}"
    );
    assert!(err.is_some_and(|e| e.is_tls()));
    Ok(())
}

#[tokio::test]
async fn wss_against_wharf_behind_a_tls_proxy() -> TestResult {
    let pki = TestPki::generate()?;
    let server = Wharf::start(0).await?;
    let tls = pki.proxy(server.addr).await?;
    let trusted = ClientConfig::default().with_ca_file(&pki.ca_pem);
    echo_once(&format!("wss://localhost:{}/echo", tls.port()), &trusted).await?;
    let by_ip = format!("wss://{tls}/echo");
    echo_once(&by_ip, &trusted.clone().with_server_name("localhost")).await?;

    // A refusal comes through TLS like through TCP.
    let refused = bounded(connect(
        &format!("wss://localhost:{}/nope", tls.port()),
        &trusted,
    ))
    .await;
    assert!(
        matches!(refused, Err(ClientError::Refused { status: 404, .. })),
        "{refused:?}"
    );

    // A CA file with another CA: the chain does not verify.
    let other = ClientConfig::default().with_ca_file(&pki.other_ca_pem);
    let err = bounded(connect(
        &format!("wss://localhost:{}/echo", tls.port()),
        &other,
    ))
    .await;
    assert!(matches!(err, Err(ClientError::Certificate(_))), "{err:?}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn tls_failures_are_typed() -> TestResult {
    let server = Wharf::start(0).await?;
    // wss:// to a plain ws:// server: the TLS handshake fails, not the network.
    let plain = format!("wss://{}/echo", server.addr);
    let err = bounded(connect(&plain, &ClientConfig::default())).await;
    assert!(matches!(err, Err(ClientError::Tls(_))), "{err:?}");
    // An unreadable CA file.
    let config = ClientConfig::default().with_ca_file("/nonexistent/ca.pem");
    let err = bounded(connect(&plain, &config)).await;
    assert!(
        matches!(&err, Err(ClientError::Tls(why)) if why.contains("CA file")),
        "{err:?}"
    );
    // An invalid server name.
    let config = ClientConfig::default().with_server_name("not a name");
    let err = bounded(connect(&plain, &config)).await;
    assert!(matches!(err, Err(ClientError::Tls(_))), "{err:?}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn cli_ca_file_and_server_name() -> TestResult {
    let pki = TestPki::generate()?;
    let server = Wharf::start(0).await?;
    let tls = pki.proxy(server.addr).await?;
    let args = |ca_file: Option<&std::path::Path>, server_name: Option<&str>| ClientArgs {
        connection: ConnectionArgs {
            url: format!("wss://{tls}/echo"),
            ca_file: ca_file.map(Into::into),
            server_name: server_name.map(Into::into),
            timeout: 5.0,
            ..ConnectionArgs::default()
        },
        send: vec!["hi".into()],
        expect: Some(1),
        json: true,
        ..ClientArgs::default()
    };
    let ok = bounded(run(args(Some(&pki.ca_pem), Some("wharf.test")))).await;
    assert_eq!(ok, ExitCode::SUCCESS);
    let untrusted = bounded(run(args(None, Some("wharf.test")))).await;
    assert_eq!(untrusted, ExitCode::from(1));
    let wrong_name = bounded(run(args(Some(&pki.ca_pem), None))).await;
    assert_eq!(wrong_name, ExitCode::from(1));
    server.stop().await;
    Ok(())
}
