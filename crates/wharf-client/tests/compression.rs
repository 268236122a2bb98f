//! permessage-deflate between the client and two servers (wharf's and Python's
//! `websockets`), and Python's client against wharf's server.

#![allow(missing_docs)]

mod common;

use std::process::Command;

use common::{TestResult, Wharf, bounded, python};
use wharf::{Compression, ServerConfig, ServerKind};
use wharf_client::{Client, ClientConfig, Event, Message, connect};

/// Sends messages of several sizes and kinds and expects each back unchanged.
async fn round_trips(client: &mut Client) -> TestResult {
    let text = "compressible text, ".repeat(1000);
    let binary: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
    for message in [
        Message::from(text),
        Message::from(binary),
        Message::from("short"),
    ] {
        client.send(message.clone()).await?;
        assert_eq!(bounded(client.recv()).await?, Some(Event::Message(message)));
    }
    Ok(())
}

#[tokio::test]
async fn client_and_wharf_agree_on_deflate() -> TestResult {
    let config =
        ServerConfig::new("ws", ServerKind::Websocket, 0).with_compression(Compression::on());
    let server = Wharf::start_with(config).await?;
    let offer = ClientConfig::default().with_compression(true);
    let mut client = bounded(connect(&server.url("/echo"), &offer)).await?;
    let params = client.deflate().copied().expect("negotiated");
    assert!(params.server_no_context_takeover && params.client_no_context_takeover);
    round_trips(&mut client).await?;
    bounded(client.close(1000, "")).await?;

    // Not offered: plain frames, as before.
    let mut plain = bounded(connect(&server.url("/echo"), &ClientConfig::default())).await?;
    assert!(plain.deflate().is_none());
    round_trips(&mut plain).await?;
    bounded(plain.close(1000, "")).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn client_against_python_websockets_with_deflate() -> TestResult {
    let Some((_server, port)) = python::echo_server(&[]).await? else {
        return Ok(());
    };
    let offer = ClientConfig::default().with_compression(true);
    let mut client = bounded(connect(&format!("ws://127.0.0.1:{port}/"), &offer)).await?;
    // websockets accepts with context takeover both ways (its default).
    let params = client.deflate().copied().expect("negotiated");
    assert!(!params.server_no_context_takeover);
    for _ in 0..3 {
        round_trips(&mut client).await?;
    }
    bounded(client.close(1000, "")).await?;
    Ok(())
}

#[tokio::test]
async fn python_websockets_client_against_wharf() -> TestResult {
    let python = match python::python() {
        Ok(python) => python,
        Err(why) if std::env::var_os("WHARF_CLIENT_REQUIRE_PYTHON").is_none() => {
            eprintln!("skipping the Python interop test: {why}");
            return Ok(());
        }
        Err(why) => return Err(why.into()),
    };
    let config =
        ServerConfig::new("ws", ServerKind::Websocket, 0).with_compression(Compression::on());
    let server = Wharf::start_with(config).await?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/echo_client.py");
    let url = server.url("/echo");
    let output = bounded(tokio::task::spawn_blocking(move || {
        Command::new(python).arg(script).arg(url).output()
    }))
    .await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "ok"
        ]
    );
    server.stop().await;
    Ok(())
}
