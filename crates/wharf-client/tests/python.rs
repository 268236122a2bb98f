//! Interoperability with a server no one here wrote: Python's `websockets` (see
//! `common/python.rs` for how it is installed).

#![allow(missing_docs)]

mod common;

use common::{TestResult, bounded, python};
use wharf_client::{ClientConfig, Event, Message, connect};

#[tokio::test]
async fn echo_and_close_against_python_websockets() -> TestResult {
    let Some((_server, port)) = python::echo_server(&[]).await? else {
        return Ok(());
    };

    let url = format!("ws://127.0.0.1:{port}/any/path?q=1");
    let mut client = bounded(connect(&url, &ClientConfig::default())).await?;
    client.send(Message::from("hello python")).await?;
    assert_eq!(
        bounded(client.recv()).await?,
        Some(Event::Message(Message::Text("hello python".into())))
    );
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    client.send(Message::from(data.clone())).await?;
    assert_eq!(
        bounded(client.recv()).await?,
        Some(Event::Message(Message::Binary(data.into())))
    );
    client.ping(b"p".to_vec()).await?;
    assert_eq!(bounded(client.recv()).await?, Some(Event::Pong("p".into())));
    let reply = bounded(client.close(1000, "bye")).await?;
    assert_eq!(reply, Some((1000, "bye".into())));
    assert_eq!(bounded(client.recv()).await?, None);
    Ok(())
}
