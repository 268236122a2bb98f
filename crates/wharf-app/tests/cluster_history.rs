//! History rooms across real `wharf serve` nodes sharing Redis or NATS: publications
//! through either node reach members of both in position order; a client whose node is
//! SIGKILLed recovers on the other; an engine restarted empty starts a new epoch
//! (`recovered: false`); a publish while the engine is down answers 503; a publication
//! stored while the backplane is still reconnecting reaches the other node's members anyway.
//!
//! The order and SIGKILL tests use the machine's Redis and NATS with a fresh prefix; the
//! outage and flush tests a private engine on a free port.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::api;
use common::cluster::{Ws, nats_url, open, prefix, redis_url};
use common::engine::Engine;
use common::nodes::{Node, NodeConfig, spawn};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Nodes keeping 1000 messages of every room.
fn config(url: &str, name: &str) -> NodeConfig {
    let mut config = NodeConfig::new(url, &prefix(name));
    config
        .extra_env
        .push(("WHARF_ROOMS_HISTORY_SIZE".into(), "1000".into()));
    config
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("a message within 15s")
            .expect("the stream is open")
            .expect("no error");
        match message {
            WsMessage::Text(text) => return serde_json::from_str(text.as_str()).expect("JSON"),
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// The offset of a `"EPOCH:OFFSET"` JSON string.
fn offset(position: &Value) -> u64 {
    let text = position.as_str().expect("a position");
    text.rsplit_once(':')
        .and_then(|(_, o)| o.parse().ok())
        .expect("EPOCH:OFFSET")
}

async fn publish(node: SocketAddr, room: &str, text: &str) -> Value {
    let body = json!({ "room": room, "text": text }).to_string();
    let response = api(node, "POST", "/api/publish", &body).await;
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()
}

/// Waits until `room` on `node` has a local member (its sequencer started).
async fn member_on(node: SocketAddr, room: &str, count: usize) {
    let start = Instant::now();
    loop {
        let response = api(node, "GET", &format!("/api/rooms/{room}"), "").await;
        if response.status == 200 && response.json()["count"] == count {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{room} never had {count} members"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn nodes(config: &NodeConfig, count: usize) -> Vec<Node> {
    (0..count).map(|_| spawn(config)).collect()
}

async fn publishers_racing_on_two_nodes_deliver_in_order_and_a_killed_nodes_client_recovers(
    url: &str,
) {
    const EACH: usize = 40;
    let mut nodes = nodes(&config(url, "hist-order"), 2);
    let (h0, h1) = (nodes[0].http, nodes[1].http);
    let mut on_0 = open(nodes[0].ws, "/wss/rooms/ord", 1).await;
    let mut on_1 = open(nodes[1].ws, "/wss/rooms/ord", 2).await;
    member_on(h0, "ord", 2).await;
    // Two publishers, one per node, at full speed: offsets interleave across nodes.
    let racers: Vec<_> = [h0, h1]
        .into_iter()
        .enumerate()
        .map(|(n, node)| {
            tokio::spawn(async move {
                for i in 0..EACH {
                    publish(node, "ord", &format!("{n}-{i}")).await;
                }
            })
        })
        .collect();
    for racer in racers {
        racer.await.expect("publisher");
    }
    let mut last = Value::Null;
    for ws in [&mut on_0, &mut on_1] {
        for expected in 1..=(2 * EACH) as u64 {
            let publication = next_json(ws).await;
            assert_eq!(offset(&publication["position"]), expected, "{publication}");
            last = publication["position"].clone();
        }
    }
    // The client on node 0 saw everything up to `last`; node 0 dies.
    nodes[0].kill();
    drop(on_0);
    for i in 0..5 {
        publish(h1, "ord", &format!("while away {i}")).await;
    }
    let since = last.as_str().expect("position").to_owned();
    let mut back = open(nodes[1].ws, &format!("/wss/rooms/ord?since={since}"), 1).await;
    for i in 0..5u64 {
        let publication = next_json(&mut back).await;
        assert_eq!(offset(&publication["position"]), 2 * EACH as u64 + 1 + i);
    }
    let recovery = next_json(&mut back).await;
    assert_eq!(recovery["event"], "recovery", "{recovery}");
    assert_eq!(
        (recovery["recovered"].clone(), recovery["delivered"].clone()),
        (json!(true), json!(5))
    );
}

async fn an_engine_restarted_empty_gives_a_new_epoch_and_a_publish_while_down_fails(
    kind: &'static str,
) {
    let mut engine = Engine::start(kind);
    let nodes = nodes(&config(&engine.url(), "hist-flush"), 2);
    let first = publish(nodes[0].http, "f", "before").await;
    let before = first["position"].as_str().expect("position").to_owned();
    engine.down();
    let body = json!({ "room": "f", "text": "lost?" }).to_string();
    let start = Instant::now();
    let refused = loop {
        let response = api(nodes[1].http, "POST", "/api/publish", &body).await;
        if response.status == 503 || start.elapsed() > Duration::from_secs(15) {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.json()["error"], "backplane_unavailable");
    engine.flush_restart();
    // Once the nodes are back on the (empty) engine, the room's history is a new one.
    let start = Instant::now();
    let after = loop {
        let response = api(
            nodes[1].http,
            "POST",
            "/api/publish",
            &json!({ "room": "f", "text": "after" }).to_string(),
        )
        .await;
        if response.status == 200 {
            break response.json();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never published again: {}",
            response.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let after = after["position"].as_str().expect("position").to_owned();
    assert_ne!(
        after.split(':').next(),
        before.split(':').next(),
        "a new epoch"
    );
    // Node 0 has not used the engine since it came back: its store may answer "unavailable"
    // once (close 1013, try again later) while it reconnects.
    let start = Instant::now();
    let recovery = loop {
        let mut ws = open(nodes[0].ws, &format!("/wss/rooms/f?since={before}"), 3).await;
        let first = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("an answer within 15s");
        match first {
            Some(Ok(WsMessage::Text(text))) => {
                break serde_json::from_str::<Value>(text.as_str()).expect("JSON");
            }
            Some(Ok(WsMessage::Close(Some(frame)))) if u16::from(frame.code) == 1013 => {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "history never came back"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => panic!("expected the recovery, got {other:?}"),
        }
    };
    assert_eq!(
        recovery["event"], "recovery",
        "nothing stale first: {recovery}"
    );
    assert_eq!(recovery["recovered"], false);
    assert_eq!(recovery["delivered"], 0);
}

async fn joins_on_one_node_racing_publishes_through_another_see_no_gap(url: &str) {
    const TOTAL: u64 = 120;
    const CLIENTS: u64 = 6;
    let nodes = nodes(&config(url, "hist-seam"), 2);
    let (h0, ws1) = (nodes[0].http, nodes[1].ws);
    let first = publish(h0, "seam", "0").await;
    let epoch = first["position"]
        .as_str()
        .and_then(|p| p.rsplit_once(':'))
        .map(|(e, _)| e.to_owned())
        .expect("position");
    let published = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1));
    let publisher = tokio::spawn({
        let published = published.clone();
        async move {
            for i in 2..=TOTAL {
                publish(h0, "seam", &i.to_string()).await;
                published.store(i, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let target = (c + 1) * TOTAL / (CLIENTS + 2);
        while published.load(std::sync::atomic::Ordering::SeqCst) < target {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let since = target.saturating_sub(c * 3);
        let path = format!("/wss/rooms/seam?since={epoch}:{since}");
        clients.push(tokio::spawn(async move {
            let mut ws = open(ws1, &path, 10 + c as i64).await;
            let mut expected = since + 1;
            while expected <= TOTAL {
                let message = next_json(&mut ws).await;
                if message["event"] == "recovery" {
                    assert_eq!(message["recovered"], true, "client {c}: {message}");
                    continue;
                }
                assert_eq!(
                    offset(&message["position"]),
                    expected,
                    "client {c} from {since}"
                );
                expected += 1;
            }
        }));
    }
    publisher.await.expect("publisher");
    for client in clients {
        client.await.expect("every offset once, in order");
    }
}

#[tokio::test]
async fn redis_joins_on_one_node_racing_publishes_through_another_see_no_gap() {
    joins_on_one_node_racing_publishes_through_another_see_no_gap(&redis_url()).await;
}

#[tokio::test]
async fn nats_joins_on_one_node_racing_publishes_through_another_see_no_gap() {
    joins_on_one_node_racing_publishes_through_another_see_no_gap(&nats_url()).await;
}

#[tokio::test]
async fn redis_publishers_racing_on_two_nodes_deliver_in_order_and_a_killed_nodes_client_recovers()
{
    publishers_racing_on_two_nodes_deliver_in_order_and_a_killed_nodes_client_recovers(&redis_url()).await;
}

#[tokio::test]
async fn nats_publishers_racing_on_two_nodes_deliver_in_order_and_a_killed_nodes_client_recovers() {
    publishers_racing_on_two_nodes_deliver_in_order_and_a_killed_nodes_client_recovers(&nats_url())
        .await;
}

#[tokio::test]
async fn redis_an_engine_restarted_empty_gives_a_new_epoch_and_a_publish_while_down_fails() {
    an_engine_restarted_empty_gives_a_new_epoch_and_a_publish_while_down_fails("redis").await;
}

#[tokio::test]
async fn nats_an_engine_restarted_empty_gives_a_new_epoch_and_a_publish_while_down_fails() {
    an_engine_restarted_empty_gives_a_new_epoch_and_a_publish_while_down_fails("nats").await;
}

/// After an engine restart the history store answers before the backplane is back (it
/// reconnects with backoff): a publication made then is stored but not broadcast. The other
/// node's member must still get it, though nothing is published after it (re-offered when
/// the publisher's backplane is back, and re-read by the member's node when its own is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_stored_while_the_backplane_reconnects_reaches_the_other_node() {
    let mut engine = Engine::start_persistent_redis();
    let nodes = nodes(&config(&engine.url(), "hist-reoffer"), 2);
    let mut member = open(nodes[1].ws, "/wss/rooms/q", 7).await;
    member_on(nodes[1].http, "q", 1).await;
    publish(nodes[0].http, "q", "one").await;
    assert_eq!(
        next_json(&mut member).await["text"]
            .as_str()
            .map(|t| t.contains("one")),
        Some(true)
    );

    // Down long enough that the backplanes' reconnect backoff grows past a second.
    engine.down();
    let body = json!({ "room": "q", "text": "two" }).to_string();
    let start = Instant::now();
    while api(nodes[0].http, "POST", "/api/publish", &body)
        .await
        .status
        != 503
    {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the engine never went away"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    engine.up();
    // The first publish the store takes; nothing is published after it.
    let start = Instant::now();
    let stored = loop {
        let response = api(nodes[0].http, "POST", "/api/publish", &body).await;
        if response.status == 200 {
            break response.json();
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "never stored: {}",
            response.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let got = next_json(&mut member).await;
    assert_eq!(
        got["position"], stored["position"],
        "the member got it: {got}"
    );
    assert_eq!(offset(&got["position"]), 2);
}
