//! Rooms, users and presence on one node (no backplane): join and leave from a handler and
//! through the sender, push to a room leaving out the sender, push to and close a user,
//! broadcast by scope, presence queries and join/leave events. Real sockets throughout.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wharf::{
    CloseCode, Config, Conn, Handler, HandlerError, HandshakeRequest, Message, OpenRequest, Router,
    Scope, Sender, Server, UserId, middleware,
};

both_doors! {
    room_messages_reach_every_other_member_once,
    large_room_messages_arrive_whole_and_in_order_between_small_ones,
    sender_push_room_counts_and_leaves_out_one_member,
    leaving_and_closing_free_the_room,
    the_sender_joins_and_leaves_by_id,
    users_are_indexed_by_the_handshake_user_id,
    broadcast_reaches_its_scope,
    presence_events_tell_the_other_members,
}

/// Joins the room in its path on open; a text `leave` leaves it, any other text goes to the
/// room's other members.
struct Rooms;

impl Handler for Rooms {
    async fn on_open(&self, conn: &Conn, _req: &OpenRequest) -> Result<(), HandlerError> {
        let room = conn.param("room").unwrap_or_default();
        conn.join(room);
        conn.send(format!("{} {}", conn.id(), room))?;
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, message: Message) -> Result<(), HandlerError> {
        let room = conn.param("room").unwrap_or_default();
        match message.as_text() {
            Some("leave") => {
                conn.leave(room);
                conn.send("left")?;
            }
            _ => {
                conn.sender().push_room(room, message, Some(conn.id()));
            }
        }
        Ok(())
    }
}

/// The user id comes from an `x-user` header, as authentication middleware would set it.
async fn user_from_header(mut req: HandshakeRequest) -> Result<HandshakeRequest, wharf::Rejection> {
    if let Some(user) = req.headers().get("x-user").and_then(|v| v.to_str().ok()) {
        let user = UserId::new(user);
        req.extensions_mut().insert(user);
    }
    Ok(req)
}

async fn server(presence_events: bool) -> Running {
    let mut config = Config::empty().with_server(ws_server());
    config.rooms.presence_events = presence_events;
    config.node_id = 4;
    let router = Router::new()
        .route("/rooms/{room}", Rooms)
        .route("/other", wharf::Echo)
        .layer(middleware::from_fn(user_from_header));
    start(Server::builder(config).websocket("ws", router)).await
}

async fn join(
    addr: std::net::SocketAddr,
    room: &str,
    user: Option<&str>,
) -> (Client, wharf::ConnId) {
    let mut request = format!("ws://{addr}/rooms/{room}")
        .into_client_request()
        .expect("request");
    if let Some(user) = user {
        request
            .headers_mut()
            .insert("x-user", user.parse().expect("header"));
    }
    let mut ws = connect_request(addr, request).await;
    let greeting = next_text(&mut ws).await;
    let id = greeting
        .split(' ')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("greeting starts with the id");
    (ws, id)
}

/// Nothing more arrives within a short wait.
async fn assert_silent(ws: &mut Client) {
    if let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
        panic!("expected nothing more, got {message:?}");
    }
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    within(what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

async fn room_messages_reach_every_other_member_once() {
    let server = server(false).await;
    let (mut a, _) = join(server.addr(), "lobby", None).await;
    let (mut b, _) = join(server.addr(), "lobby", None).await;
    let (mut c, _) = join(server.addr(), "lobby", None).await;
    let (mut elsewhere, _) = join(server.addr(), "kitchen", None).await;
    send_text(&mut a, "hello lobby").await;
    assert_eq!(next_text(&mut b).await, "hello lobby");
    assert_eq!(next_text(&mut c).await, "hello lobby");
    assert_silent(&mut a).await;
    assert_silent(&mut elsewhere).await;
    assert_silent(&mut b).await;
}

/// A room message of 1 KiB or more is encoded once and shared by the members' queues rather
/// than copied into each: every member still reads it whole, in its place among the small
/// ones.
async fn large_room_messages_arrive_whole_and_in_order_between_small_ones() {
    let server = server(false).await;
    let (mut a, _) = join(server.addr(), "big", None).await;
    let (mut b, _) = join(server.addr(), "big", None).await;
    let (mut c, _) = join(server.addr(), "big", None).await;
    let large: String = (0..70_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let just_large: String = large.chars().take(1024).collect();
    let sent = ["one", large.as_str(), "two", just_large.as_str(), "three"];
    for text in sent {
        send_text(&mut a, text).await;
    }
    for member in [&mut b, &mut c] {
        for text in sent {
            assert_eq!(next_text(member).await, text);
        }
    }
    assert_silent(&mut a).await;
}

async fn sender_push_room_counts_and_leaves_out_one_member() {
    let server = server(false).await;
    let (mut a, a_id) = join(server.addr(), "r", None).await;
    let (mut b, _) = join(server.addr(), "r", None).await;
    assert_eq!(server.sender.push_room("r", "all", None), 2);
    assert_eq!(next_text(&mut a).await, "all");
    assert_eq!(next_text(&mut b).await, "all");
    assert_eq!(server.sender.push_room("r", "not a", Some(a_id)), 1);
    assert_eq!(next_text(&mut b).await, "not a");
    assert_silent(&mut a).await;
    assert_eq!(server.sender.push_room("nobody-here", "x", None), 0);
}

async fn leaving_and_closing_free_the_room() {
    let server = server(false).await;
    let sender: &Sender = &server.sender;
    let (mut a, a_id) = join(server.addr(), "r", None).await;
    let (mut b, b_id) = join(server.addr(), "r", None).await;
    assert_eq!(sender.room_count("r").await.expect("count"), 2);
    assert_eq!(sender.conn(a_id).expect("open").rooms(), ["r"]);
    send_text(&mut a, "leave").await;
    assert_eq!(next_text(&mut a).await, "left");
    let members = sender.room_members("r").await.expect("members");
    assert_eq!(members.iter().map(|m| m.conn).collect::<Vec<_>>(), [b_id]);
    assert!(sender.conn(a_id).expect("open").rooms().is_empty());
    b.close(None).await.expect("close");
    wait_until("the room to be freed", async || {
        sender.rooms().await.expect("rooms").is_empty()
    })
    .await;
    assert_eq!(sender.room_count("r").await.expect("count"), 0);
}

async fn the_sender_joins_and_leaves_by_id() {
    let server = server(false).await;
    let sender = &server.sender;
    let (mut a, a_id) = join(server.addr(), "first", None).await;
    sender.join(a_id, "second").expect("join");
    assert_eq!(sender.push_room("second", "in second", None), 1);
    assert_eq!(next_text(&mut a).await, "in second");
    let rooms = sender.rooms().await.expect("rooms");
    assert_eq!(rooms.get("first"), Some(&1));
    assert_eq!(rooms.get("second"), Some(&1));
    sender.leave(a_id, "second").expect("leave");
    assert_eq!(sender.push_room("second", "gone", None), 0);
    let unknown = wharf::ConnId::new(4, 999_999);
    assert_eq!(
        sender.join(unknown, "x"),
        Err(wharf::SendError::NotFound(unknown))
    );
    // Another node's id with no cluster configured: nobody to hand it to.
    let remote = wharf::ConnId::new(9, 1);
    assert_eq!(
        sender.push(remote, "x"),
        Err(wharf::SendError::NotFound(remote))
    );
}

async fn users_are_indexed_by_the_handshake_user_id() {
    let server = server(false).await;
    let sender = &server.sender;
    let (mut alice1, a1) = join(server.addr(), "r1", Some("alice")).await;
    let (mut alice2, a2) = join(server.addr(), "r2", Some("alice")).await;
    let (mut bob, _) = join(server.addr(), "r1", Some("bob")).await;
    assert!(sender.user_online("alice").await.expect("presence"));
    assert!(!sender.user_online("carol").await.expect("presence"));
    let mut expected = vec![a1, a2];
    expected.sort();
    assert_eq!(sender.user_conns("alice").await.expect("conns"), expected);
    assert_eq!(sender.conn(a1).expect("open").user(), Some("alice"));
    let members = sender.room_members("r1").await.expect("members");
    assert!(members.iter().any(|m| m.user.as_deref() == Some("bob")));

    assert_eq!(sender.push_user("alice", "for alice"), 2);
    assert_eq!(next_text(&mut alice1).await, "for alice");
    assert_eq!(next_text(&mut alice2).await, "for alice");
    assert_silent(&mut bob).await;

    assert_eq!(
        sender.close_user("alice", CloseCode::new(4001), "signed out"),
        2
    );
    assert_eq!(
        expect_close(&mut alice1).await,
        (4001, "signed out".to_owned())
    );
    assert_eq!(
        expect_close(&mut alice2).await,
        (4001, "signed out".to_owned())
    );
    wait_until("alice to be offline", async || {
        !sender.user_online("alice").await.expect("presence")
    })
    .await;
    assert!(sender.user_online("bob").await.expect("presence"));
}

async fn broadcast_reaches_its_scope() {
    let server = server(false).await;
    let sender = &server.sender;
    let (mut in_room, _) = join(server.addr(), "r", None).await;
    let mut other = connect(server.addr(), "/other").await;
    assert_eq!(sender.broadcast("everyone", Scope::All), 2);
    assert_eq!(next_text(&mut in_room).await, "everyone");
    assert_eq!(next_text(&mut other).await, "everyone");
    assert_eq!(sender.broadcast("route", Scope::Route("/other".into())), 1);
    assert_eq!(next_text(&mut other).await, "route");
    assert_eq!(sender.broadcast("server", Scope::Server("ws".into())), 2);
    assert_eq!(next_text(&mut in_room).await, "server");
    assert_eq!(next_text(&mut other).await, "server");
    assert_eq!(sender.broadcast("none", Scope::Server("nope".into())), 0);
    assert_silent(&mut in_room).await;
    assert_eq!(sender.count_all().await.expect("count"), 2);
    assert!(sender.cluster_stats().is_none());
}

async fn presence_events_tell_the_other_members() {
    let server = server(true).await;
    let (mut a, _) = join(server.addr(), "r", Some("alice")).await;
    let (mut b, b_id) = join(server.addr(), "r", Some("bob")).await;
    let joined: serde_json::Value =
        serde_json::from_str(&next_text(&mut a).await).expect("json event");
    assert_eq!(joined["event"], "join");
    assert_eq!(joined["room"], "r");
    assert_eq!(joined["conn"], b_id.to_string());
    assert_eq!(joined["user"], "bob");
    b.close(None).await.expect("close");
    let left: serde_json::Value =
        serde_json::from_str(&next_text(&mut a).await).expect("json event");
    assert_eq!(left["event"], "leave");
    assert_eq!(left["conn"], b_id.to_string());
}
