//! The counters move by exactly what the traffic did, in `Sender::metrics` and in the
//! Prometheus text at `GET /metrics`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wharf::{Config, Echo, Router, Server};

both_doors! {
    counters_move_by_the_traffic,
}

/// Every sample line of a Prometheus text page: `name{labels}` → value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').expect("sample line: name value");
            (name.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

async fn counters_move_by_the_traffic() {
    let config = Config::empty()
        .with_server(ws_server())
        .with_server(http_server());
    let server = start(
        Server::builder(config)
            .websocket("ws", Router::new().route("/echo", Echo))
            .http("http", wharf::axum::Router::new()),
    )
    .await;
    let mut a = connect(server.addr(), "/echo").await;
    let mut b = connect(server.addr(), "/echo").await;
    for text in ["one", "two", "three"] {
        assert_echo(&mut a, text).await;
    }
    assert_eq!(
        raw_request(server.addr(), upgrade_request("/nope", "").as_bytes())
            .await
            .status,
        404
    );
    assert_eq!(
        raw_request(server.addr(), upgrade_request("/nope", "").as_bytes())
            .await
            .status,
        404
    );
    let bad_version = upgrade_request("/echo", "").replace("Version: 13", "Version: 8");
    assert_eq!(
        raw_request(server.addr(), bad_version.as_bytes())
            .await
            .status,
        426
    );
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    within("close", b.close(Some(frame))).await.expect("close");
    drop(b);
    assert_eq!(server.sender.push_room("nobody", "x", None), 0);

    // The close is counted when the server has finished it.
    let metrics = within("the close to be counted", async {
        loop {
            let m = server.sender.metrics();
            if m.connections == 1 {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(metrics.handshakes_accepted, 2);
    assert_eq!(metrics.handshakes_rejected.get("route_not_found"), Some(&2));
    assert_eq!(
        metrics.handshakes_rejected.values().sum::<u64>(),
        3,
        "{metrics:?}"
    );
    assert_eq!(metrics.messages_in, 3);
    assert_eq!(metrics.bytes_in, 3 + 3 + 5);
    assert_eq!(metrics.messages_out, 3);
    assert_eq!(metrics.bytes_out, (2 + 3) + (2 + 3) + (2 + 5));
    let closes: Vec<_> = metrics
        .closes
        .iter()
        .map(|c| (c.code, c.side, c.count))
        .collect();
    assert_eq!(closes, [(1000, "client", 1)]);
    assert_eq!(metrics.routes.len(), 1);
    assert_eq!(
        (metrics.routes[0].route.as_str(), metrics.routes[0].open),
        ("/echo", 1)
    );

    let page = raw_request(server.http.expect("http"), plain_get("/metrics").as_bytes()).await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4"))
    );
    let text = page.body.clone();
    assert!(
        text.contains("# TYPE wharf_messages_received_total counter"),
        "{text}"
    );
    let s = samples(&text);
    let route = r#"{server="ws",route="/echo"}"#;
    assert_eq!(s[&format!("wharf_connections{route}")], 1.0);
    assert_eq!(s[&format!("wharf_messages_received_total{route}")], 3.0);
    assert_eq!(s[&format!("wharf_messages_sent_total{route}")], 3.0);
    assert_eq!(s[&format!("wharf_received_bytes_total{route}")], 11.0);
    assert_eq!(s["wharf_handshakes_accepted_total"], 2.0);
    assert_eq!(
        s[r#"wharf_handshakes_rejected_total{reason="route_not_found"}"#],
        2.0
    );
    assert_eq!(s[r#"wharf_closes_total{code="1000",side="client"}"#], 1.0);
    assert!(
        !text.contains("wharf_backplane_up"),
        "no backplane configured"
    );

    // More traffic moves the counters by exactly that much.
    within("send", a.send(WsMessage::binary(vec![0u8; 1000])))
        .await
        .expect("send");
    assert!(matches!(next(&mut a).await, WsMessage::Binary(b) if b.len() == 1000));
    let after = server.sender.metrics();
    assert_eq!(after.messages_in - metrics.messages_in, 1);
    assert_eq!(after.bytes_in - metrics.bytes_in, 1000);
    assert_eq!(after.bytes_out - metrics.bytes_out, 1004);
}
