//! Clusters of `wharf serve` processes on loopback sharing a backplane: the running Redis
//! and NATS (`../shared/services.md`), or private ones a test stops and starts.
//!
//! Every core test runs over both engines.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::api;
use common::cluster::{Ws, nats_url, open, prefix, redis_url};
use common::engine::{Engine, free_port};
use common::nodes::{Node, NodeConfig, spawn};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

async fn next_text(ws: &mut Ws) -> String {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10s")
            .expect("the stream is open")
            .expect("no error");
        match message {
            WsMessage::Text(text) => return text.as_str().to_owned(),
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

async fn assert_silent(ws: &mut Ws) {
    if let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_millis(400), ws.next()).await
    {
        panic!("expected nothing more, got {message:?}");
    }
}

async fn get_json(node: SocketAddr, path: &str) -> serde_json::Value {
    let response = api(node, "GET", path, "").await;
    assert_eq!(response.status, 200, "{path}: {}", response.body);
    response.json()
}

async fn push(node: SocketAddr, body: serde_json::Value) -> serde_json::Value {
    let response = api(node, "POST", "/api/push", &body.to_string()).await;
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()
}

/// Polls `path` on `node` until `check` accepts its JSON, for at most `limit`.
async fn wait_for(
    node: SocketAddr,
    path: &str,
    limit: Duration,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let response = api(node, "GET", path, "").await;
        if response.status == 200 && check(&response.json()) {
            return response.json();
        }
        assert!(
            start.elapsed() < limit,
            "{path} never matched within {limit:?}; last: {} {}",
            response.status,
            response.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn nodes(config: &NodeConfig, count: usize) -> Vec<Node> {
    (0..count).map(|_| spawn(config)).collect()
}

// ---------------------------------------------------------------------------------------
// the core tests, over each engine

async fn push_through_one_node_reaches_a_user_on_another(url: &str) {
    let nodes = nodes(&NodeConfig::new(url, &prefix("push")), 3);
    let (n1, n2, n3) = (nodes[0].http, nodes[1].http, nodes[2].http);
    let mut client = open(nodes[2].ws, "/wss/demo", 42).await;
    assert_eq!(next_text(&mut client).await, "Authorization Success");

    let user = wait_for(n1, "/api/users/42", Duration::from_secs(5), |j| {
        j["online"] == true
    })
    .await;
    let id = user["connections"][0]
        .as_str()
        .expect("a connection id")
        .to_owned();
    let node3 = get_json(n3, "/api/cluster").await["node"].clone();
    assert!(
        id.starts_with(&format!("{node3}-")),
        "{id} is on node {node3}"
    );

    let answer = push(n1, serde_json::json!({ "user": 42, "text": "from node 1" })).await;
    assert_eq!(
        answer["delivered"], 0,
        "no local connection of user 42 on node 1"
    );
    assert_eq!(answer["cluster"], true);
    // Node 3, which presence lists for user 42, acknowledged with its one connection. A
    // user push goes to every node: node 2 answers with none, if its answer came in before
    // node 3's (the wait ends once every node presence lists has answered).
    let node2 = get_json(n2, "/api/cluster").await["node"].to_string();
    let node3_key = node3.to_string();
    let nodes = answer["nodes"].as_object().expect("nodes");
    assert_eq!(nodes.get(&node3_key), Some(&1.into()), "{answer}");
    assert!(
        nodes
            .iter()
            .all(|(node, count)| *node == node3_key || (*node == node2 && *count == 0)),
        "{answer}"
    );
    assert_eq!(answer["missing"], serde_json::json!([]), "{answer}");
    assert_eq!(next_text(&mut client).await, "from node 1");

    // By id through node 2: node 3's own answer, not just "published".
    let answer = push(
        n2,
        serde_json::json!({ "conn": id, "text": "by id through node 2" }),
    )
    .await;
    assert_eq!(
        (answer["delivered"].clone(), answer["node"].clone()),
        (1.into(), node3.clone()),
        "{answer}"
    );
    assert_eq!(next_text(&mut client).await, "by id through node 2");
    // An id on node 3 that no connection has: node 3 says so.
    let unknown = format!("{node3}-999999");
    let refused = api(
        n1,
        "POST",
        "/api/push",
        &serde_json::json!({ "conn": unknown, "text": "nobody" }).to_string(),
    )
    .await;
    assert_eq!(refused.status, 404, "{}", refused.body);
    assert_eq!(refused.json()["error"], "conn_not_found");

    let closed = api(
        n1,
        "DELETE",
        &format!("/api/connections/{id}?code=4000&reason=bye"),
        "",
    )
    .await;
    assert_eq!(closed.status, 200, "{}", closed.body);
    let frame = loop {
        match tokio::time::timeout(Duration::from_secs(10), client.next()).await {
            Ok(Some(Ok(WsMessage::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let frame = frame.expect("a close code");
    assert_eq!(
        (u16::from(frame.code), frame.reason.as_str()),
        (4000, "bye")
    );
    // Keep reading so the client answers the close and the server sees it end.
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(5), client.next()).await {}
    wait_for(n2, "/api/users/42", Duration::from_secs(5), |j| {
        j["online"] == false
    })
    .await;
}

async fn room_broadcast_reaches_every_node_exactly_once(url: &str) {
    let nodes = nodes(&NodeConfig::new(url, &prefix("room")), 3);
    let mut clients = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        clients.push(open(node.ws, "/wss/rooms/lobby", i as i64 + 1).await);
    }
    let room = wait_for(
        nodes[1].http,
        "/api/rooms/lobby",
        Duration::from_secs(5),
        |j| j["count"] == 3,
    )
    .await;
    let mut users: Vec<&str> = room["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["user"].as_str())
        .collect();
    users.sort_unstable();
    assert_eq!(users, ["1", "2", "3"]);
    let rooms = get_json(nodes[2].http, "/api/rooms").await;
    assert_eq!(rooms["rooms"]["lobby"], 3);

    let answer = push(
        nodes[1].http,
        serde_json::json!({ "room": "lobby", "text": "hello all" }),
    )
    .await;
    for client in &mut clients {
        assert_eq!(next_text(client).await, "hello all");
    }
    // Nodes 0 and 2 acknowledged, one member each; node 1 delivered locally.
    let mut expected = serde_json::Map::new();
    for i in [0, 2] {
        let node = get_json(nodes[i].http, "/api/cluster").await["node"].to_string();
        expected.insert(node, 1.into());
    }
    assert_eq!(answer["delivered"], 1, "{answer}");
    assert_eq!(
        answer["nodes"],
        serde_json::Value::Object(expected),
        "{answer}"
    );
    assert_eq!(answer["missing"], serde_json::json!([]), "{answer}");
    // A chat message from the member on node 1 reaches all three members once.
    clients[0].send(WsMessage::text("hi")).await.expect("send");
    for client in &mut clients {
        let json: serde_json::Value = serde_json::from_str(&next_text(client).await).expect("json");
        assert_eq!(
            (json["text"].as_str(), json["user"].as_str()),
            (Some("hi"), Some("1"))
        );
    }
    push(
        nodes[2].http,
        serde_json::json!({ "broadcast": true, "text": "everyone" }),
    )
    .await;
    for client in &mut clients {
        assert_eq!(next_text(client).await, "everyone");
    }
    for client in &mut clients {
        assert_silent(client).await;
    }
}

async fn a_killed_node_leaves_presence_within_the_ttl(url: &str) {
    let config = NodeConfig::new(url, &prefix("kill"));
    let ttl = Duration::from_secs(3);
    let mut nodes = nodes(&config, 2);
    let observer = nodes[0].http;
    let _client = open(nodes[1].ws, "/wss/rooms/doomed", 7).await;
    wait_for(observer, "/api/users/7", Duration::from_secs(5), |j| {
        j["online"] == true
    })
    .await;
    wait_for(observer, "/api/rooms/doomed", Duration::from_secs(5), |j| {
        j["count"] == 1
    })
    .await;

    let doomed = get_json(nodes[1].http, "/api/cluster").await["node"].clone();
    let doomed_conn = get_json(observer, "/api/users/7").await["connections"][0].clone();

    let killed = Instant::now();
    nodes[1].kill();
    // Presence still lists the dead node: a room push says it did not answer, and a push
    // to its connection gets no answer either (not a silent "published").
    let answer = push(
        observer,
        serde_json::json!({ "room": "doomed", "text": "anyone?" }),
    )
    .await;
    assert_eq!(answer["missing"], serde_json::json!([doomed]), "{answer}");
    assert_eq!(answer["nodes"], serde_json::json!({}), "{answer}");
    let unanswered = api(
        observer,
        "POST",
        "/api/push",
        &serde_json::json!({ "conn": doomed_conn, "text": "anyone?" }).to_string(),
    )
    .await;
    assert_eq!(unanswered.status, 504, "{}", unanswered.body);
    assert_eq!(unanswered.json()["error"], "no_answer");
    wait_for(
        observer,
        "/api/users/7",
        ttl + Duration::from_secs(2),
        |j| j["online"] == false,
    )
    .await;
    let gone = killed.elapsed();
    assert!(
        gone <= ttl + Duration::from_secs(2),
        "left presence after {gone:?}"
    );
    let room = get_json(observer, "/api/rooms/doomed").await;
    assert_eq!(room["count"], 0);
    let cluster = get_json(observer, "/api/cluster").await;
    assert_eq!(cluster["connections"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_push_through_one_node_reaches_a_user_on_another() {
    push_through_one_node_reaches_a_user_on_another(&redis_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_push_through_one_node_reaches_a_user_on_another() {
    push_through_one_node_reaches_a_user_on_another(&nats_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_room_broadcast_reaches_every_node_exactly_once() {
    room_broadcast_reaches_every_node_exactly_once(&redis_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_room_broadcast_reaches_every_node_exactly_once() {
    room_broadcast_reaches_every_node_exactly_once(&nats_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_killed_node_leaves_presence_within_the_ttl() {
    a_killed_node_leaves_presence_within_the_ttl(&redis_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_a_killed_node_leaves_presence_within_the_ttl() {
    a_killed_node_leaves_presence_within_the_ttl(&nats_url()).await;
}

/// How many commands `node` has received from the backplane.
async fn received(node: SocketAddr) -> u64 {
    let cluster = get_json(node, "/api/cluster").await;
    cluster["backplane"]["received"]
        .as_u64()
        .unwrap_or_else(|| panic!("no received counter: {cluster}"))
}

async fn a_room_s_traffic_reaches_only_the_nodes_with_members(url: &str) {
    let nodes = nodes(&NodeConfig::new(url, &prefix("scoped")), 4);
    // Members of "busy" on nodes 0 and 1; nodes 2 and 3 have a member elsewhere only.
    let mut busy_0 = open(nodes[0].ws, "/wss/rooms/busy", 1).await;
    let mut busy_1 = open(nodes[1].ws, "/wss/rooms/busy", 2).await;
    let _quiet_2 = open(nodes[2].ws, "/wss/rooms/quiet", 3).await;
    let _quiet_3 = open(nodes[3].ws, "/wss/rooms/quiet", 4).await;
    wait_for(nodes[3].http, "/api/rooms", Duration::from_secs(5), |j| {
        j["rooms"]["busy"] == 2 && j["rooms"]["quiet"] == 2
    })
    .await;
    let before: Vec<u64> =
        futures_util::future::join_all(nodes.iter().map(|n| received(n.http))).await;

    const MESSAGES: usize = 50;
    for i in 0..MESSAGES {
        push(
            nodes[0].http,
            serde_json::json!({ "room": "busy", "text": format!("m{i}") }),
        )
        .await;
    }
    for i in 0..MESSAGES {
        assert_eq!(next_text(&mut busy_0).await, format!("m{i}"));
        assert_eq!(next_text(&mut busy_1).await, format!("m{i}"));
    }
    let after: Vec<u64> =
        futures_util::future::join_all(nodes.iter().map(|n| received(n.http))).await;
    // Node 1 received each message once; nodes 2 and 3, none of them.
    assert_eq!(
        after[1] - before[1],
        MESSAGES as u64,
        "{before:?} -> {after:?}"
    );
    assert_eq!(
        after[2], before[2],
        "node 2 received busy's traffic: {before:?} -> {after:?}"
    );
    assert_eq!(
        after[3], before[3],
        "node 3 received busy's traffic: {before:?} -> {after:?}"
    );

    // Node 1's last member leaves: it drops the channel, and receives nothing more of it.
    busy_1.close(None).await.expect("close");
    wait_for(
        nodes[0].http,
        "/api/rooms/busy",
        Duration::from_secs(5),
        |j| j["count"] == 1,
    )
    .await;
    let left = received(nodes[1].http).await;
    for i in 0..10 {
        push(
            nodes[0].http,
            serde_json::json!({ "room": "busy", "text": format!("late{i}") }),
        )
        .await;
        assert_eq!(next_text(&mut busy_0).await, format!("late{i}"));
    }
    assert_eq!(
        received(nodes[1].http).await,
        left,
        "node 1 still receives busy"
    );
    assert_silent(&mut busy_0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_room_s_traffic_reaches_only_the_nodes_with_members() {
    a_room_s_traffic_reaches_only_the_nodes_with_members(&redis_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_a_room_s_traffic_reaches_only_the_nodes_with_members() {
    a_room_s_traffic_reaches_only_the_nodes_with_members(&nats_url()).await;
}

// ---------------------------------------------------------------------------------------
// faults: a private engine this test stops and starts

async fn the_cluster_recovers_when_its_engine_restarts(kind: &'static str) {
    let mut engine = Engine::start(kind);
    let nodes = nodes(&NodeConfig::new(&engine.url(), &prefix("restart")), 2);
    let (n1, n2) = (nodes[0].http, nodes[1].http);
    let mut on_1 = open(nodes[0].ws, "/wss/demo", 1).await;
    let mut on_2 = open(nodes[1].ws, "/wss/demo", 2).await;
    assert_eq!(next_text(&mut on_1).await, "Authorization Success");
    assert_eq!(next_text(&mut on_2).await, "Authorization Success");
    push(n1, serde_json::json!({ "user": 2, "text": "before" })).await;
    assert_eq!(next_text(&mut on_2).await, "before");

    engine.down();
    wait_for(n1, "/api/cluster", Duration::from_secs(10), |j| {
        j["backplane"]["state"] == "disconnected"
    })
    .await;
    // Local delivery goes on; what was meant for other nodes is dropped and counted.
    let answer = push(
        n1,
        serde_json::json!({ "user": 1, "text": "local during outage" }),
    )
    .await;
    assert_eq!(answer["delivered"], 1);
    assert_eq!(next_text(&mut on_1).await, "local during outage");
    push(
        n1,
        serde_json::json!({ "user": 2, "text": "lost during outage" }),
    )
    .await;
    let during = get_json(n1, "/api/cluster").await;
    assert!(
        during["backplane"]["dropped"].as_u64() >= Some(1),
        "{during}"
    );
    assert!(
        during["backplane"]["outages"].as_u64() >= Some(1),
        "{during}"
    );
    assert!(
        during["connections"].is_null(),
        "no cluster-wide count while down: {during}"
    );
    let presence = api(n1, "GET", "/api/users/2", "").await;
    assert_eq!(presence.status, 503, "{}", presence.body);
    assert_eq!(presence.json()["error"], "backplane_unavailable");

    engine.up();
    for node in [n1, n2] {
        wait_for(node, "/api/cluster", Duration::from_secs(15), |j| {
            j["backplane"]["state"] == "connected"
                && j["backplane"]["reconnects"].as_u64() >= Some(1)
        })
        .await;
    }
    // Resubscribed, and presence rewritten: node 1 sees user 2 again and reaches it.
    wait_for(n1, "/api/users/2", Duration::from_secs(5), |j| {
        j["online"] == true
    })
    .await;
    push(n1, serde_json::json!({ "user": 2, "text": "after" })).await;
    assert_eq!(next_text(&mut on_2).await, "after");
    assert_silent(&mut on_2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_the_cluster_recovers_when_redis_restarts() {
    the_cluster_recovers_when_its_engine_restarts("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_the_cluster_recovers_when_nats_restarts() {
    the_cluster_recovers_when_its_engine_restarts("nats").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_backplane_stops_the_start_unless_local_only_is_asked() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let config = NodeConfig::new(&url, &prefix("down"));
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = common::nodes::command(&config, dir.path());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run wharf serve");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach the cluster backplane (redis)"),
        "{stderr}"
    );
    assert!(stderr.contains("allow_local_only"), "{stderr}");

    let mut local_only = config.clone();
    local_only
        .extra_env
        .push(("WHARF_CLUSTER_ALLOW_LOCAL_ONLY".into(), "true".into()));
    let node = spawn(&local_only);
    let cluster = get_json(node.http, "/api/cluster").await;
    assert_eq!(cluster["backplane"]["state"], "disconnected");
    let mut client = open(node.ws, "/wss/demo", 5).await;
    assert_eq!(next_text(&mut client).await, "Authorization Success");
    let answer = push(
        node.http,
        serde_json::json!({ "user": 5, "text": "still local" }),
    )
    .await;
    assert_eq!(answer["delivered"], 1);
    assert_eq!(next_text(&mut client).await, "still local");
}
