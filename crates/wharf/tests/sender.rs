//! The registry and the `Sender`: ids, push, close, listing, per-connection data.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wharf::{
    CloseCode, Config, Conn, ConnId, Handler, HandlerError, HandshakeRequest, Initiator,
    OpenRequest, Router, SendError, Server, middleware,
};

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("fits")
}

async fn server(node_id: u16) -> (Running, Events) {
    let (recorder, events) = Recorder::new();
    let mut config = Config::empty().with_server(ws_server());
    config.node_id = node_id;
    let running =
        start(Server::builder(config).websocket("ws", Router::new().route("/rec", recorder))).await;
    (running, events)
}

#[tokio::test]
async fn ids_are_unique_and_formatted_node_dash_seq() {
    let (server, _events) = server(7).await;
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut ws = connect(server.addr(), "/rec").await;
        ids.push(greeting_id(&mut ws).await);
        clients.push(ws);
    }
    for id in &ids {
        assert_eq!(id.node(), 7);
        assert_eq!(id.to_string(), format!("7-{}", id.seq()));
        assert_eq!(id.to_string().parse::<ConnId>().ok(), Some(*id));
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 3, "{ids:?}");
    drop(clients);
    server.shutdown().await;
}

#[tokio::test]
async fn push_from_outside_reaches_the_client() {
    let (server, _events) = server(0).await;
    let mut ws = connect(server.addr(), "/rec").await;
    let id = greeting_id(&mut ws).await;
    server.sender.push(id, "from outside").expect("push text");
    server
        .sender
        .push(id, vec![1u8, 2, 3])
        .expect("push binary");
    assert_eq!(next_text(&mut ws).await, "from outside");
    assert_eq!(
        next(&mut ws).await,
        WsMessage::Binary(vec![1u8, 2, 3].into())
    );
    // From another task too.
    let sender = server.sender.clone();
    tokio::spawn(async move { sender.push(id, "from a task") })
        .await
        .expect("task")
        .expect("push");
    assert_eq!(next_text(&mut ws).await, "from a task");
    drop(ws);
    server.shutdown().await;
}

#[tokio::test]
async fn sender_close_does_a_close_handshake() {
    let (server, mut events) = server(0).await;
    let mut ws = connect(server.addr(), "/rec").await;
    let id = greeting_id(&mut ws).await;
    server.sender.push(id, "last words").expect("push");
    server
        .sender
        .close(id, CloseCode::new(4002), "kicked")
        .expect("close");
    // Pushes after the close request are refused; a second close too.
    assert_eq!(server.sender.push(id, "late"), Err(SendError::Closed(id)));
    assert_eq!(
        server.sender.close(id, CloseCode::NORMAL, "again"),
        Err(SendError::Closed(id))
    );
    // What was queued before the close still arrives, then the close.
    assert_eq!(next_text(&mut ws).await, "last words");
    assert_eq!(expect_close(&mut ws).await, (4002, "kicked".to_owned()));
    let event = events.close_of(id).await;
    assert_eq!(event.code, CloseCode::new(4002));
    assert_eq!(event.reason, "kicked");
    assert_eq!(event.initiator, Initiator::Server);
    assert!(!server.sender.exists(id));
    assert_eq!(server.sender.push(id, "gone"), Err(SendError::NotFound(id)));
    server.shutdown().await;
}

#[tokio::test]
async fn long_close_reason_is_cut_on_a_char_boundary() {
    let (server, _events) = server(0).await;
    let mut ws = connect(server.addr(), "/rec").await;
    let id = greeting_id(&mut ws).await;
    let reason = "é".repeat(100); // 200 bytes
    server
        .sender
        .close(id, CloseCode::new(4003), &reason)
        .expect("close");
    let (code, got) = expect_close(&mut ws).await;
    assert_eq!(code, 4003);
    assert!(got.len() <= 123, "{} bytes", got.len());
    assert_eq!(got, "é".repeat(61));
    // Three-byte characters.
    let mut ws = connect(server.addr(), "/rec").await;
    let id = greeting_id(&mut ws).await;
    server
        .sender
        .close(id, CloseCode::new(4003), &"€".repeat(67))
        .expect("close");
    assert_eq!(expect_close(&mut ws).await.1, "€".repeat(41));
    server.shutdown().await;
}

#[tokio::test]
async fn exists_count_and_list() {
    let (server, mut events) = server(0).await;
    assert_eq!(server.sender.count(), 0);
    assert!(server.sender.list().is_empty());
    let before = now_ms();
    let mut a = connect(server.addr(), "/rec").await;
    let a_id = greeting_id(&mut a).await;
    let mut b = connect(server.addr(), "/rec?x=1").await;
    let b_id = greeting_id(&mut b).await;
    let after = now_ms();
    assert!(server.sender.exists(a_id) && server.sender.exists(b_id));
    assert!(!server.sender.exists(ConnId::new(0, 999_999)));
    assert_eq!(server.sender.count(), 2);
    let list = server.sender.list();
    assert_eq!(
        list.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![a_id, b_id]
    );
    for (info, ws) in list.iter().zip([&a, &b]) {
        assert_eq!(info.route, "/rec");
        assert_eq!(info.path, "/rec");
        assert_eq!(info.server, "ws");
        assert_eq!(info.peer, ws.get_ref().local_addr().expect("addr"));
        assert!(
            info.opened_at_ms >= before && info.opened_at_ms <= after,
            "{} not in {before}..={after}",
            info.opened_at_ms
        );
    }
    let json = serde_json::to_value(&list[0]).expect("serializes");
    assert_eq!(json["id"], a_id.to_string());
    drop(a);
    events.close_of(a_id).await;
    assert_eq!(server.sender.count(), 1);
    assert!(!server.sender.exists(a_id));
    assert_eq!(server.sender.list().len(), 1);
    drop(b);
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_ids_are_not_found() {
    let (server, _events) = server(0).await;
    let id = ConnId::new(0, 424_242);
    assert_eq!(server.sender.push(id, "x"), Err(SendError::NotFound(id)));
    assert_eq!(
        server.sender.close(id, CloseCode::NORMAL, ""),
        Err(SendError::NotFound(id))
    );
    assert!(server.sender.conn(id).is_none());
    server.shutdown().await;
}

#[derive(Clone)]
struct Tenant(String);

/// Sends the tenant the middleware attached, and the peer address it saw.
struct TenantHandler;

impl Handler for TenantHandler {
    async fn on_open(&self, conn: &Conn, _request: &OpenRequest) -> Result<(), HandlerError> {
        let tenant = conn.get::<Tenant>().map(|t| t.0.clone());
        let peer = conn.get::<wharf::PeerAddr>().map(|p| p.0);
        conn.send(format!(
            "tenant={} peer_ok={}",
            tenant.as_deref().unwrap_or("none"),
            peer == Some(conn.peer())
        ))?;
        Ok(())
    }
}

#[tokio::test]
async fn middleware_data_reaches_the_handler() {
    let router = Router::new()
        .route("/t", TenantHandler)
        .layer(middleware::from_fn(
            |mut req: HandshakeRequest| async move {
                let tenant = req
                    .headers()
                    .get("x-tenant")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("anon")
                    .to_owned();
                req.extensions_mut().insert(Tenant(tenant));
                Ok::<_, wharf::Rejection>(req)
            },
        ));
    let server = start_ws(router).await;
    let mut request = format!("ws://{}/t", server.addr())
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("x-tenant", "acme".parse().expect("header"));
    let mut ws = connect_request(server.addr(), request).await;
    assert_eq!(next_text(&mut ws).await, "tenant=acme peer_ok=true");
    let mut anon = connect(server.addr(), "/t").await;
    assert_eq!(next_text(&mut anon).await, "tenant=anon peer_ok=true");
    drop((ws, anon));
    server.shutdown().await;
}
