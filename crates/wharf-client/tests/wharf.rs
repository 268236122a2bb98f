//! The client against an in-process wharf server, over real sockets.

#![allow(missing_docs)]

mod common;

use std::time::Duration;

use common::{TestResult, Wharf, bounded};
use wharf_client::{ClientConfig, ClientError, Event, Message, Reconnecting, connect};

#[tokio::test]
async fn text_and_binary_echo() -> TestResult {
    let server = Wharf::start(0).await?;
    let mut client = bounded(connect(&server.url("/echo"), &ClientConfig::default())).await?;
    assert_eq!(client.protocol(), None);
    client.send(Message::from("héllo")).await?;
    let event = bounded(client.recv()).await?;
    assert_eq!(event, Some(Event::Message(Message::Text("héllo".into()))));
    let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    client.send(Message::from(big.clone())).await?;
    let event = bounded(client.recv()).await?;
    assert_eq!(event, Some(Event::Message(Message::Binary(big.into()))));
    bounded(client.close(1000, "")).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn ping_gets_pong() -> TestResult {
    let server = Wharf::start(0).await?;
    let mut client = bounded(connect(&server.url("/echo"), &ClientConfig::default())).await?;
    client.ping(b"abc".to_vec()).await?;
    let event = bounded(client.recv()).await?;
    assert_eq!(event, Some(Event::Pong("abc".into())));
    bounded(client.close(1000, "")).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn close_with_code_and_reason() -> TestResult {
    let server = Wharf::start(0).await?;
    let mut client = bounded(connect(&server.url("/echo"), &ClientConfig::default())).await?;
    let reply = bounded(client.close(4001, "going away now")).await?;
    let (code, _reason) = reply.expect("the server answers the close");
    assert_eq!(code, 4001);
    assert_eq!(bounded(client.recv()).await?, None);
    assert!(matches!(
        client.send(Message::from("late")).await,
        Err(ClientError::Closed)
    ));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn unknown_path_is_refused_with_404() -> TestResult {
    let server = Wharf::start(0).await?;
    let result = bounded(connect(&server.url("/nope"), &ClientConfig::default())).await;
    match result {
        Err(ClientError::Refused { status, body }) => {
            assert_eq!(status, 404);
            assert!(body.contains("route_not_found"), "{body}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn server_initiated_close_with_reason() -> TestResult {
    let server = Wharf::start(0).await?;
    let mut client = bounded(connect(&server.url("/echo"), &ClientConfig::default())).await?;
    // Make sure the connection is registered before looking it up.
    client.send(Message::from("x")).await?;
    bounded(client.recv()).await?;
    let id = server.sender.list().first().expect("one connection").id;
    server
        .sender
        .close(id, wharf::CloseCode::new(4000), "bye")?;
    let event = bounded(client.recv()).await?;
    assert_eq!(
        event,
        Some(Event::Close {
            code: 4000,
            reason: "bye".into()
        })
    );
    assert_eq!(bounded(client.recv()).await?, None);
    // The server saw our close reply and dropped the connection.
    bounded(async {
        while server.sender.count() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn split_halves_from_two_tasks() -> TestResult {
    let server = Wharf::start(0).await?;
    let client = bounded(connect(&server.url("/echo"), &ClientConfig::default())).await?;
    let (sender, mut receiver) = client.split();
    let writer = tokio::spawn(async move {
        for i in 0..100 {
            sender.send(Message::Text(format!("m{i}"))).await?;
        }
        sender.close(1000, "done").await?;
        Ok::<_, ClientError>(())
    });
    let reader = tokio::spawn(async move {
        let mut texts = Vec::new();
        let mut close = None;
        while let Some(event) = receiver.recv().await? {
            match event {
                Event::Message(Message::Text(t)) => texts.push(t),
                Event::Close { code, .. } => close = Some(code),
                _ => {}
            }
        }
        Ok::<_, ClientError>((texts, close))
    });
    bounded(writer).await??;
    let (texts, close) = bounded(reader).await??;
    assert_eq!(texts, (0..100).map(|i| format!("m{i}")).collect::<Vec<_>>());
    assert_eq!(close, Some(1000));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn reconnects_after_server_restart() -> TestResult {
    let server = Wharf::start(0).await?;
    let port = server.addr.port();
    let hook_runs = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let runs = hook_runs.clone();
    let mut ws = Reconnecting::new(server.url("/echo"), ClientConfig::default())
        .with_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .with_on_connect(move |client| {
            let n = runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move { client.send(Message::Text(format!("hello #{n}"))).await })
        });
    let event = bounded(ws.recv()).await?;
    assert_eq!(event, Event::Message(Message::Text("hello #0".into())));
    assert_eq!(ws.connects(), 1);

    // The shutdown closes the connection with 1001 (the client answers while receiving);
    // then a new server takes the same port as soon as it binds, while the client retries.
    let restarted = tokio::spawn(async move {
        server.stop().await;
        bounded(async {
            loop {
                match Wharf::start(port).await {
                    Ok(server) => return server,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
        .await
    });
    // Keep receiving until the hook's greeting arrives on the new connection.
    let mut seen = vec![bounded(ws.recv()).await?];
    assert!(
        matches!(seen[0], Event::Close { code: 1001, .. }),
        "{seen:?}"
    );
    while !matches!(seen.last(), Some(Event::Message(_))) {
        seen.push(bounded(ws.recv()).await?);
    }
    let server = bounded(restarted).await?;
    assert_eq!(
        seen.last(),
        Some(&Event::Message(Message::Text("hello #1".into())))
    );
    assert_eq!(ws.connects(), 2);
    ws.send(Message::from("after")).await?;
    assert_eq!(
        bounded(ws.recv()).await?,
        Event::Message(Message::Text("after".into()))
    );
    assert_eq!(bounded(ws.close(1000, "")).await?.map(|c| c.0), Some(1000));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn connect_errors() {
    let config = ClientConfig::default().with_connect_timeout(Duration::from_secs(2));
    let bad = bounded(connect("http://127.0.0.1/", &config)).await;
    assert!(matches!(bad, Err(ClientError::InvalidUrl(_))));
    // A port nothing listens on (bind one, then drop it).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(1);
    let refused = bounded(connect(&format!("ws://127.0.0.1:{port}/"), &config)).await;
    assert!(
        matches!(refused, Err(ClientError::Network(_))),
        "{refused:?}"
    );
}
