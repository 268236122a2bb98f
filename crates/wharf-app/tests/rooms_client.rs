//! The Rust client of the rooms protocol (`wharf_client::rooms`) against the app's
//! `/wss/rooms`, over real sockets: every command and its typed errors, a reconnect after
//! a TCP reset and after an admin close recovering what was published meanwhile exactly
//! once, and `wharf client --room`.

#![allow(missing_docs)]

mod common;

#[path = "../examples/recovery_check/check/proxy.rs"]
#[allow(dead_code, unreachable_pub)]
mod proxy;

use std::time::Duration;

use common::{TestApp, api};
use serde_json::json;
use wharf_client::ClientError;
use wharf_client::rooms::{Notice, Payload, Position, RoomEvent, Rooms, RoomsConfig, Subscription};

/// Auth off (every room allowed), history for `t:*` rooms.
const OPEN: &str = "[auth]\nenabled = false\n\n[rooms.history]\n[[rooms.history.rule]]\npattern = \"t:*\"\nsize = 1000\n";

const STEP: Duration = Duration::from_secs(10);

fn url(app: &TestApp) -> String {
    format!("ws://{}/wss/rooms", app.ws)
}

fn quick() -> RoomsConfig {
    RoomsConfig::default().with_backoff(Duration::from_millis(20), Duration::from_millis(200))
}

async fn next(sub: &mut Subscription) -> RoomEvent {
    tokio::time::timeout(STEP, sub.recv())
        .await
        .expect("an event within 10 s")
        .expect("the subscription is open")
}

/// The next publication, skipping notices; its offset and text.
async fn next_publication(sub: &mut Subscription) -> (u64, String) {
    loop {
        if let RoomEvent::Publication(p) = next(sub).await {
            let text = p.payload.as_text().unwrap_or("<binary>").to_owned();
            return (p.position.offset(), text);
        }
    }
}

async fn publish_http(app: &TestApp, room: &str, text: &str) -> Position {
    let body = json!({ "room": room, "text": text }).to_string();
    let response = api(app.http, "POST", "/api/publish", &body).await;
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()["position"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .expect("a position")
}

#[tokio::test]
async fn every_command_and_its_errors() {
    let app = common::start(OPEN).await;
    let rooms = Rooms::connect(&url(&app), RoomsConfig::default())
        .await
        .expect("connect");
    let mut sub = rooms.subscribe("t:a").await.expect("subscribe");
    assert_eq!(sub.room(), "t:a");
    assert_eq!(sub.subscribed_at().offset(), 0);
    let epoch = sub.subscribed_at().epoch().to_owned();

    let first = rooms.publish("t:a", "one").await.expect("publish");
    assert_eq!(first, Position::new(&epoch, 1));
    assert_eq!(next_publication(&mut sub).await, (1, "one".into()));

    let binary = Payload::from(vec![0u8, 255, 7]);
    let stored = rooms
        .publish_with("t:a", binary.clone(), Some("k1"))
        .await
        .expect("publish binary");
    assert!(!stored.duplicate);
    let again = rooms
        .publish_with("t:a", binary.clone(), Some("k1"))
        .await
        .expect("publish again");
    assert!(again.duplicate);
    assert_eq!(again.position, stored.position);
    match next(&mut sub).await {
        RoomEvent::Publication(p) => {
            assert_eq!(p.position, Position::new(&epoch, 2));
            assert_eq!(p.payload, binary);
        }
        other => panic!("expected the binary publication, got {other:?}"),
    }

    let history = rooms.history("t:a", None, None).await.expect("history");
    assert_eq!(history.top, Position::new(&epoch, 2));
    assert!(history.complete);
    assert_eq!(history.publications.len(), 2);
    assert_eq!(history.publications[0].payload.as_text(), Some("one"));
    let tail = rooms
        .history("t:a", Some(&first), Some(10))
        .await
        .expect("history since");
    assert_eq!(tail.publications.len(), 1);

    let presence = rooms.presence("t:a").await.expect("presence");
    assert_eq!(presence.count, 1);

    let code = |e: ClientError| e.error_code().map(str::to_owned);
    let bad = rooms.subscribe("bad room!").await.expect_err("bad room");
    assert_eq!(code(bad).as_deref(), Some("bad_room"));
    let twice = rooms.subscribe("t:a").await.expect_err("twice");
    assert_eq!(code(twice).as_deref(), Some("already_subscribed"));
    let none = rooms
        .unsubscribe("t:never")
        .await
        .expect_err("not subscribed");
    assert_eq!(code(none).as_deref(), Some("not_subscribed"));
    let ahead = rooms
        .history("t:a", Some(&Position::new(&epoch, 99)), None)
        .await
        .expect_err("ahead");
    assert!(
        matches!(&ahead, ClientError::Command { code: 400, error, .. } if error == "bad_position"),
        "{ahead:?}"
    );
    let no_history = rooms.publish("lobby", "x").await.expect_err("no history");
    assert!(matches!(
        &no_history,
        ClientError::Command { code: 404, error, .. } if error == "no_history"
    ));

    // The connection stayed open through the errors.
    assert_eq!(rooms.connects(), 1);
    sub.unsubscribe().await.expect("unsubscribe");
    let mut again = rooms.subscribe("t:a").await.expect("subscribe again");
    assert_eq!(again.subscribed_at(), &Position::new(&epoch, 2));
    rooms.unsubscribe("t:a").await.expect("unsubscribe by name");
    assert!(matches!(
        tokio::time::timeout(STEP, again.recv()).await,
        Ok(Err(ClientError::Closed))
    ));
    rooms.close().await;
    assert!(matches!(
        rooms.publish("t:a", "late").await,
        Err(ClientError::Closed)
    ));
}

#[tokio::test]
async fn handshakes_that_are_not_the_rooms_protocol() {
    let app = common::start(OPEN).await;
    let echo = format!("ws://{}/echo", app.ws);
    let err = Rooms::connect(&echo, RoomsConfig::default())
        .await
        .expect_err("echo is not the rooms protocol");
    assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");

    let guarded = common::start("[rooms.history]\n").await;
    let err = Rooms::connect(&url(&guarded), RoomsConfig::default())
        .await
        .expect_err("no token");
    assert_eq!(err.status(), Some(401), "{err:?}");
}

/// Publishes `from..=to` through the HTTP API and checks the subscription gets exactly
/// those, in order, once.
async fn publish_and_expect(app: &TestApp, sub: &mut Subscription, from: u64, to: u64) {
    for i in from..=to {
        publish_http(app, sub.room(), &i.to_string()).await;
    }
    for i in from..=to {
        assert_eq!(next_publication(sub).await, (i, i.to_string()));
    }
}

#[tokio::test]
async fn a_reset_and_an_admin_close_lose_and_repeat_nothing() {
    let app = common::start(OPEN).await;
    let proxy = proxy::Proxy::start(app.ws).await.expect("proxy");
    let rooms = Rooms::connect(&format!("ws://{}/wss/rooms", proxy.addr), quick())
        .await
        .expect("connect");
    let mut sub = rooms.subscribe("t:r").await.expect("subscribe");
    publish_and_expect(&app, &mut sub, 1, 5).await;

    // The TCP connection is reset; publications go on while the client is away.
    assert!(proxy.reset(0));
    publish_and_expect(&app, &mut sub, 6, 10).await;
    assert_eq!(rooms.connects(), 2);

    // The admin closes it; same again.
    let listing = api(app.http, "GET", "/api/connections", "").await;
    let id = listing.json()["connections"][0]["id"].clone();
    let id = id
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| id.to_string());
    let closed = api(app.http, "DELETE", &format!("/api/connections/{id}"), "").await;
    assert_eq!(closed.status, 200, "{}", closed.body);
    publish_and_expect(&app, &mut sub, 11, 15).await;
    assert_eq!(rooms.connects(), 3);
    // Nothing more: at most the recovery notice, which follows the recovered ones.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Some(event) = sub.try_recv() {
        let event = event.expect("open");
        assert!(matches!(event, RoomEvent::Notice(_)), "{event:?}");
    }
    rooms.close().await;
}

#[tokio::test]
async fn a_reconnect_reports_what_it_recovered() {
    let app = common::start(OPEN).await;
    let proxy = proxy::Proxy::start(app.ws).await.expect("proxy");
    // A slow first reconnect, so the publications happen while it is away.
    let config =
        RoomsConfig::default().with_backoff(Duration::from_millis(500), Duration::from_millis(500));
    let rooms = Rooms::connect(&format!("ws://{}/wss/rooms", proxy.addr), config)
        .await
        .expect("connect");
    let mut sub = rooms.subscribe("t:n").await.expect("subscribe");
    publish_and_expect(&app, &mut sub, 1, 2).await;
    assert!(proxy.reset(0));
    for i in 3..=5 {
        publish_http(&app, "t:n", &i.to_string()).await;
    }
    let mut events = Vec::new();
    while events.len() < 4 {
        events.push(next(&mut sub).await);
    }
    let epoch = sub.subscribed_at().epoch().to_owned();
    let offsets: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            RoomEvent::Publication(p) => Some(p.position.offset()),
            _ => None,
        })
        .collect();
    assert_eq!(offsets, [3, 4, 5]);
    // The recovered publications come before the subscribe's reply, so the notice last.
    assert_eq!(
        events[3],
        RoomEvent::Notice(Notice::Recovered {
            since: Position::new(&epoch, 2),
            delivered: 3
        })
    );
    rooms.close().await;
}

#[tokio::test]
async fn wharf_client_follows_rooms() {
    let app = common::start(OPEN).await;
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["client", &url(&app), "--room", "t:cli", "--room", "t:other"])
            .args(["--send", "hello", "--send", "world", "--expect", "2"])
            .output(),
    )
    .await
    .expect("wharf client ends")
    .expect("wharf client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let history = api(app.http, "GET", "/api/rooms/t:cli/history", "")
        .await
        .json();
    let epoch = history["top"]
        .as_str()
        .and_then(|t| t.split(':').next())
        .expect("top");
    assert_eq!(lines[0], format!("t:cli {epoch}:1 hello"));
    assert_eq!(lines[1], format!("t:cli {epoch}:2 world"));
}

#[tokio::test]
async fn the_token_goes_in_the_handshake_and_its_claims_apply() {
    let app =
        common::start("[rooms.history]\n[[rooms.history.rule]]\npattern = \"t:*\"\nsize = 100\n")
            .await;
    let grants = wharf_app::tokens::Grants {
        rooms: vec!["t:*".into()],
        publish: vec!["t:pub".into()],
    };
    let (token, _) = app
        .tokens
        .issue_with((7, "alice", false), grants)
        .expect("token");
    let rooms = Rooms::connect(&url(&app), RoomsConfig::default().with_token(&token))
        .await
        .expect("connect with the token");
    let mut sub = rooms.subscribe("t:pub").await.expect("a followed room");
    let code = |e: ClientError| e.error_code().map(str::to_owned);
    let other = rooms
        .subscribe("x:other")
        .await
        .expect_err("not in `rooms`");
    assert_eq!(code(other).as_deref(), Some("forbidden"));
    let read_only = rooms
        .publish("t:read", "x")
        .await
        .expect_err("not in `publish`");
    assert_eq!(code(read_only).as_deref(), Some("forbidden"));
    rooms.publish("t:pub", "hi").await.expect("publish");
    assert_eq!(next_publication(&mut sub).await, (1, "hi".into()));
    rooms.close().await;
}
