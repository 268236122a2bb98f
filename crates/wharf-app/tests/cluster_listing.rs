//! `GET /api/connections` and the dashboard feed across a cluster: three `wharf serve`
//! processes on the running Redis, each with connections; any node lists them all with
//! their node, a page at a time, or one node's with `?node=`.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::cluster::{Ws, prefix, redis_url};
use common::nodes::{NodeConfig, spawn};
use common::{API_KEY, SECRET, api, handshake};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wharf_app::tokens::{Subject, TokenConfig, Tokens};

/// Opens `/wss/demo` on `node` as user `uid`.
async fn open(node: SocketAddr, uid: i64) -> Ws {
    let tokens = Tokens::new(&TokenConfig::default(), Some(SECRET)).expect("tokens");
    let subject = Subject {
        uid,
        account: format!("user{uid}"),
        admin: false,
    };
    let bearer = format!("Bearer {}", tokens.issue(subject).expect("token").0);
    let (response, ws) = handshake(node, "/wss/demo", &[("Authorization", &bearer)]).await;
    ws.unwrap_or_else(|| panic!("handshake refused: {} {}", response.status, response.body))
}

async fn get(node: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let response = api(node, "GET", path, "").await;
    let json = serde_json::from_str(&response.body).unwrap_or(serde_json::Value::Null);
    (response.status, json)
}

/// Polls `path` on `node` until `check` accepts its JSON, for at most 15 s.
async fn wait_for(
    node: SocketAddr,
    path: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let (status, json) = get(node, path).await;
        if status == 200 && check(&json) {
            return json;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{path} never matched; last: {status} {json}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ids(page: &serde_json::Value) -> Vec<String> {
    page["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn any_node_lists_the_whole_cluster_a_page_at_a_time() {
    let config = NodeConfig::new(&redis_url(), &prefix("listing"));
    let nodes: Vec<_> = (0..3).map(|_| spawn(&config)).collect();
    // Node i holds i + 1 connections: 6 in all, users 100..106.
    let mut sockets = Vec::new();
    let mut uid = 100;
    for (i, node) in nodes.iter().enumerate() {
        for _ in 0..=i {
            sockets.push(open(node.ws, uid).await);
            uid += 1;
        }
    }
    let everything = wait_for(nodes[0].http, "/api/connections?limit=1000", |json| {
        json["count"] == 6 && json["connections"].as_array().is_some_and(|c| c.len() == 6)
    })
    .await;
    // Each connection names its node, which is its id's first part, and its user. The
    // account comes from the token on the asked node, and from the users store for the
    // others' (each node here has a store of its own, without these users).
    let asked = get(nodes[0].http, "/api/cluster").await.1["node"].clone();
    let mut per_node = std::collections::BTreeMap::<u64, usize>::new();
    for conn in everything["connections"].as_array().expect("array") {
        let node = conn["node"].as_u64().expect("node");
        let id = conn["id"].as_str().expect("id");
        assert!(id.starts_with(&format!("{node}-")), "{conn}");
        assert_eq!(conn["route"], "/wss/demo");
        assert!(
            conn["peer"]
                .as_str()
                .expect("peer")
                .starts_with("127.0.0.1:")
        );
        let uid = conn["uid"].as_i64().expect("uid");
        assert_eq!(conn["user"], uid.to_string(), "{conn}");
        if conn["node"] == asked {
            assert_eq!(conn["account"], format!("user{uid}"), "{conn}");
            assert_eq!(conn["path"], "/wss/demo", "local details: {conn}");
        } else {
            assert!(conn["path"].is_null(), "no local details from afar: {conn}");
        }
        *per_node.entry(node).or_default() += 1;
    }
    let mut counts: Vec<usize> = per_node.values().copied().collect();
    counts.sort_unstable();
    assert_eq!(counts, [1, 2, 3]);
    assert_eq!(everything["nodes"].as_array().expect("nodes").len(), 3);
    assert!(everything["next_cursor"].is_null());

    // Pages of 4 from another node: the same six, each once, in id order.
    let first = wait_for(nodes[2].http, "/api/connections?limit=4", |json| {
        json["count"] == 6
    })
    .await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let second = get(
        nodes[2].http,
        &format!("/api/connections?limit=4&cursor={cursor}"),
    )
    .await
    .1;
    assert!(second["next_cursor"].is_null(), "{second}");
    let paged: Vec<String> = ids(&first).into_iter().chain(ids(&second)).collect();
    assert_eq!(paged.len(), 6);
    let unique: BTreeSet<&String> = paged.iter().collect();
    assert_eq!(unique.len(), 6, "no connection twice: {paged:?}");
    assert_eq!(paged, ids(&everything), "ordered by id");

    // One node's only, asked of another node.
    let (&busiest, &busiest_count) = per_node
        .iter()
        .max_by_key(|(_, count)| **count)
        .expect("a node");
    let one = get(nodes[0].http, &format!("/api/connections?node={busiest}"))
        .await
        .1;
    assert_eq!(one["count"].as_u64(), Some(busiest_count as u64), "{one}");
    let listed = one["connections"].as_array().expect("array");
    assert_eq!(listed.len(), busiest_count);
    assert!(listed.iter().all(|c| c["node"] == busiest), "{one}");

    // Bad queries are 400 `bad_query`, an unknown node 404.
    for bad in ["limit=0", "limit=1001", "cursor=nope", "node=x", "bogus=1"] {
        let (status, json) = get(nodes[1].http, &format!("/api/connections?{bad}")).await;
        assert_eq!(
            (status, json["error"].as_str()),
            (400, Some("bad_query")),
            "{bad}: {json}"
        );
    }
    let (status, json) = get(nodes[1].http, "/api/connections?node=1").await;
    if status != 200 {
        assert_eq!(
            (status, json["error"].as_str()),
            (404, Some("node_not_found"))
        );
    }

    // The dashboard feed of any node shows the cluster.
    let feed = format!("ws://{}/wss/admin/feed", nodes[1].ws);
    let request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(feed)
            .map(|mut r| {
                r.headers_mut().insert(
                    "authorization",
                    format!("Bearer {API_KEY}").parse().expect("header"),
                );
                r
            })
            .expect("request");
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("feed");
    let deadline = Instant::now() + Duration::from_secs(15);
    let snapshot = loop {
        assert!(
            Instant::now() < deadline,
            "the feed never counted the cluster's 7"
        );
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a snapshot")
            .expect("open")
            .expect("no error");
        if let WsMessage::Text(text) = message {
            let json: serde_json::Value = serde_json::from_str(text.as_str()).expect("json");
            // The feed itself is one more connection on node 1.
            if json["count"] == 7 {
                break json;
            }
        }
    };
    assert_eq!(snapshot["cluster"], true);
    assert_eq!(snapshot["nodes"].as_array().expect("nodes").len(), 3);
    let demo = snapshot["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .find(|r| r["route"] == "/wss/demo")
        .expect("the demo route");
    assert_eq!(demo["open"], 6);
    drop(sockets);
}
