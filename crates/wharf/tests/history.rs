//! History rooms on one node, over real sockets: publish, recover from a position, another
//! epoch or a position too old, idempotent retries, size and ttl bounds, the sequencer
//! delivering out-of-order appends in order and filling a lost one from the store, and the
//! seam between history and live messages hammered by a publisher racing 20 joins.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wharf::cluster::BoxFuture;
use wharf::config::{HistoryConfig, HistoryRule};
use wharf::history::{
    Appended, HistoryError, HistoryPage, HistoryPolicy, HistoryStore, MemoryHistory, Position,
    PublishOptions, RoomError,
};
use wharf::{
    CloseCode, Config, Conn, Handler, HandlerError, Message, OpenRequest, Router, Sender, Server,
};

/// `/h/{room}`: joins live without a query; with `?since=EPOCH:OFFSET` (or `?since=start`)
/// recovers and then sends `recovery <recovered> <position> <delivered>`.
struct HistoryRoom;

impl Handler for HistoryRoom {
    async fn on_open(&self, conn: &Conn, request: &OpenRequest) -> Result<(), HandlerError> {
        let room = conn.param("room").unwrap_or_default().to_owned();
        let Some(since) = request.uri.query().and_then(|q| q.strip_prefix("since=")) else {
            conn.join(&room);
            conn.send("joined")?;
            return Ok(());
        };
        let since = match since {
            "start" => None,
            text => Some(text.parse::<Position>()?),
        };
        match conn.join_from(&room, since.as_ref()).await {
            Ok(r) => conn.send(format!(
                "recovery {} {} {}",
                r.recovered, r.position, r.delivered
            ))?,
            Err(e) => {
                conn.close(CloseCode::POLICY_VIOLATION, &e.to_string());
            }
        }
        Ok(())
    }
}

fn config(history: HistoryConfig) -> Config {
    let mut config = Config::empty().with_server(ws_server());
    config.rooms.history = history;
    config
}

/// Members see `EPOCH:OFFSET payload`.
async fn server_with(history: HistoryConfig, store: Option<Arc<dyn HistoryStore>>) -> Running {
    let mut builder = Server::builder(config(history))
        .websocket("ws", Router::new().route("/h/{room}", HistoryRoom))
        .history_envelope(|_room, p| {
            Message::text(format!(
                "{} {}",
                p.position,
                p.message.as_text().unwrap_or("<binary>")
            ))
        });
    if let Some(store) = store {
        builder = builder.history_store(store);
    }
    start(builder).await
}

async fn server(size: usize) -> Running {
    server_with(HistoryConfig::all(size, Duration::from_secs(300)), None).await
}

/// A publication as a member received it: its position and payload.
fn parse(text: &str) -> (Position, String) {
    let (position, payload) = text.split_once(' ').expect("`POSITION payload`");
    (position.parse().expect("a position"), payload.to_owned())
}

/// Reads until the `recovery …` line, returning the publications before it and the line's
/// `(recovered, position, delivered)`.
async fn recovery(ws: &mut Client) -> (Vec<(Position, String)>, (bool, Position, usize)) {
    let mut received = Vec::new();
    loop {
        let text = next_text(ws).await;
        if let Some(rest) = text.strip_prefix("recovery ") {
            let parts: Vec<&str> = rest.split(' ').collect();
            let result = (
                parts[0] == "true",
                parts[1].parse().expect("position"),
                parts[2].parse().expect("count"),
            );
            return (received, result);
        }
        received.push(parse(&text));
    }
}

async fn publish(sender: &Sender, room: &str, text: &str) -> Position {
    within("publish", sender.publish(room, text))
        .await
        .expect("published")
        .position
}

#[tokio::test]
async fn a_client_away_recovers_exactly_what_it_missed() {
    let running = server(100).await;
    let sender = running.sender.clone();
    let mut first = connect(running.addr(), "/h/news?since=start").await;
    let (history, (recovered, top, delivered)) = recovery(&mut first).await;
    assert!(history.is_empty() && recovered && delivered == 0);
    assert_eq!(top.offset, 0);
    for text in ["one", "two", "three"] {
        publish(&sender, "news", text).await;
    }
    let mut last = top;
    for expected in ["one", "two", "three"] {
        let (position, text) = parse(&next_text(&mut first).await);
        assert_eq!(
            (position.offset, text.as_str()),
            (last.offset + 1, expected)
        );
        last = position;
    }
    drop(first);
    publish(&sender, "news", "four").await;
    publish(&sender, "news", "five").await;
    let mut back = connect(running.addr(), &format!("/h/news?since={last}")).await;
    let (missed, (recovered, position, delivered)) = recovery(&mut back).await;
    let texts: Vec<&str> = missed.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts, ["four", "five"]);
    assert_eq!(missed[0].0.offset, 4);
    assert!(recovered);
    assert_eq!((position.offset, delivered), (5, 2));
    publish(&sender, "news", "six").await;
    let (position, text) = parse(&next_text(&mut back).await);
    assert_eq!((position.offset, text.as_str()), (6, "six"));
    let metrics = sender.metrics();
    assert_eq!(metrics.history.appends, 6);
    assert_eq!(metrics.history.recoveries_complete, 2);
    assert!(
        metrics
            .to_prometheus(None)
            .contains("wharf_history_recoveries_total{result=\"complete\"} 2")
    );
}

#[tokio::test]
async fn another_epoch_or_a_trimmed_position_recovers_nothing_stale() {
    let running = server(3).await;
    let sender = running.sender.clone();
    let mut positions = Vec::new();
    for i in 1..=6 {
        positions.push(publish(&sender, "r", &format!("m{i}")).await);
    }
    let epoch = positions[0].epoch.clone();
    // Another epoch: the history it continues is gone.
    let mut ws = connect(running.addr(), "/h/r?since=zzzz:3").await;
    let (history, (recovered, position, delivered)) = recovery(&mut ws).await;
    assert!(history.is_empty() && !recovered && delivered == 0);
    assert_eq!(position, Position::new(epoch.clone(), 6));
    // Older than the 3 kept (4, 5, 6): offset 2 missed 3.
    let mut old = connect(running.addr(), &format!("/h/r?since={epoch}:2")).await;
    let (history, (recovered, ..)) = recovery(&mut old).await;
    assert!(history.is_empty() && !recovered);
    // Offset 3 misses nothing: 4, 5, 6.
    let mut ok = connect(running.addr(), &format!("/h/r?since={epoch}:3")).await;
    let (history, (recovered, ..)) = recovery(&mut ok).await;
    assert_eq!(history.len(), 3);
    assert!(recovered);
    // Both incomplete ones are live from the top.
    publish(&sender, "r", "m7").await;
    for ws in [&mut ws, &mut old, &mut ok] {
        assert_eq!(parse(&next_text(ws).await).0.offset, 7);
    }
    // From the future: refused, and the connection is not left in the room.
    let mut ahead = connect(running.addr(), &format!("/h/r?since={epoch}:99")).await;
    let (code, reason) = expect_close(&mut ahead).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("ahead"), "{reason}");
    assert_eq!(sender.metrics().history.recoveries_incomplete, 2);
}

#[tokio::test]
async fn an_idempotent_retry_stores_and_delivers_once() {
    let running = server(100).await;
    let sender = running.sender.clone();
    let mut member = connect(running.addr(), "/h/orders").await;
    assert_eq!(next_text(&mut member).await, "joined");
    let key = PublishOptions::idempotent("order-17");
    let first = sender
        .publish_with("orders", "paid", key.clone())
        .await
        .expect("first");
    let retry = sender
        .publish_with("orders", "paid", key)
        .await
        .expect("retry");
    assert!(!first.duplicate && retry.duplicate);
    assert_eq!(first.position, retry.position);
    assert_eq!(retry.delivered_local, 0);
    let other = publish(&sender, "orders", "next").await;
    assert_eq!(other.offset, first.position.offset + 1);
    assert_eq!(parse(&next_text(&mut member).await).1, "paid");
    assert_eq!(parse(&next_text(&mut member).await).1, "next");
    let page = sender.history("orders", None, 10).await.expect("read");
    assert_eq!(page.publications.len(), 2);
    assert_eq!(sender.metrics().history.duplicates, 1);
}

#[tokio::test]
async fn a_room_without_history_is_refused() {
    let history = HistoryConfig::default().with_rule(HistoryRule::new("chat:*", 10));
    let running = server_with(history, None).await;
    let sender = &running.sender;
    assert!(sender.publish("chat:a", "x").await.is_ok());
    for result in [
        sender.publish("lobby", "x").await.map(drop),
        sender.history("lobby", None, 10).await.map(drop),
    ] {
        assert!(
            matches!(result, Err(RoomError::NoHistory(ref r)) if r == "lobby"),
            "{result:?}"
        );
    }
    let mut ws = connect(running.addr(), "/h/lobby?since=start").await;
    let (code, _) = expect_close(&mut ws).await;
    assert_eq!(code, 1008);
}

#[tokio::test(start_paused = true)]
async fn size_and_ttl_bound_the_history() {
    let builder = Server::builder(config(HistoryConfig::all(3, Duration::from_secs(60))));
    let sender = builder.sender();
    for i in 1..=5 {
        sender.publish("r", format!("m{i}")).await.expect("publish");
    }
    let page = sender.history("r", None, 10).await.expect("read");
    let offsets: Vec<u64> = page
        .publications
        .iter()
        .map(|p| p.position.offset)
        .collect();
    assert_eq!(offsets, [3, 4, 5]);
    assert!(!page.complete, "1 and 2 were trimmed");
    let epoch = page.top.epoch.clone();
    tokio::time::advance(Duration::from_secs(30)).await;
    sender.publish("r", "m6").await.expect("publish");
    tokio::time::advance(Duration::from_secs(40)).await;
    // 3..5 are older than the ttl; 6 is not.
    let page = sender.history("r", None, 10).await.expect("read");
    let offsets: Vec<u64> = page
        .publications
        .iter()
        .map(|p| p.position.offset)
        .collect();
    assert_eq!(offsets, [6]);
    // Idle past the ttl: the history is gone, with its epoch.
    tokio::time::advance(Duration::from_secs(61)).await;
    let page = sender
        .history("r", Some(&Position::new(epoch.clone(), 6)), 10)
        .await
        .expect("read");
    assert_ne!(page.top.epoch, epoch);
    assert!(!page.complete && page.publications.is_empty());
}

/// A store that delays chosen appends after storing them, or loses the answer (stores, then
/// reports an error), to make publications reach the sequencer out of order or not at all.
struct Unruly {
    inner: MemoryHistory,
    appends: AtomicU64,
    /// The n-th append (from 1) waits this long after storing.
    slow: (u64, Duration),
    /// The n-th append stores, then fails.
    lost: u64,
}

impl HistoryStore for Unruly {
    fn engine(&self) -> &'static str {
        "unruly"
    }

    fn append<'a>(
        &'a self,
        room: &'a str,
        message: &'a Message,
        policy: &'a HistoryPolicy,
        key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Appended, HistoryError>> {
        Box::pin(async move {
            let n = self.appends.fetch_add(1, Ordering::SeqCst) + 1;
            let appended = self.inner.append(room, message, policy, key).await?;
            if n == self.slow.0 {
                tokio::time::sleep(self.slow.1).await;
            }
            if n == self.lost {
                return Err(HistoryError::Unavailable("the answer was lost".into()));
            }
            Ok(appended)
        })
    }

    fn read<'a>(
        &'a self,
        room: &'a str,
        since: Option<&'a Position>,
        limit: usize,
        policy: &'a HistoryPolicy,
    ) -> BoxFuture<'a, Result<HistoryPage, HistoryError>> {
        self.inner.read(room, since, limit, policy)
    }
}

#[tokio::test]
async fn out_of_order_appends_are_delivered_in_order_and_a_lost_one_is_filled() {
    let store = Arc::new(Unruly {
        inner: MemoryHistory::new(),
        appends: AtomicU64::new(0),
        slow: (1, Duration::from_millis(150)),
        lost: 3,
    });
    let history = HistoryConfig::all(100, Duration::from_secs(300));
    let running = server_with(history, Some(store)).await;
    let sender = running.sender.clone();
    let mut member = connect(running.addr(), "/h/r?since=start").await;
    recovery(&mut member).await;
    // 1 is stored first but its publisher is held back: 2 reaches the sequencer first.
    let slow = tokio::spawn({
        let sender = sender.clone();
        async move { sender.publish("r", "one").await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let two = sender.publish("r", "two").await.expect("two");
    assert_eq!(
        (two.position.offset, two.delivered_local),
        (2, 0),
        "2 waits for 1"
    );
    assert_eq!(slow.await.expect("task").expect("one").delivered_local, 1);
    // 3 is stored but its publisher hears an error: nobody hands it to the sequencer.
    assert!(sender.publish("r", "three").await.is_err());
    publish(&sender, "r", "four").await;
    let mut offsets = Vec::new();
    for _ in 0..4 {
        offsets.push(parse(&next_text(&mut member).await).0.offset);
    }
    assert_eq!(
        offsets,
        [1, 2, 3, 4],
        "3 was read from the store to fill the gap"
    );
    assert_eq!(sender.metrics().history.gaps_filled, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seam_between_history_and_live_holds_under_racing_publishes() {
    const TOTAL: u64 = 1500;
    const CLIENTS: usize = 20;
    let running = server(10_000).await;
    let sender = running.sender.clone();
    let addr = running.addr();
    let first = publish(&sender, "hot", "0").await;
    let epoch = first.epoch.clone();
    let published = Arc::new(AtomicU64::new(1));
    let publisher = tokio::spawn({
        let sender = sender.clone();
        let published = published.clone();
        async move {
            for i in 2..=TOTAL {
                sender.publish("hot", i.to_string()).await.expect("publish");
                published.store(i, Ordering::SeqCst);
                // Full speed, with a breath now and then so that joins land mid-stream.
                if i % 4 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    });
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        // Wait for the publisher to be somewhere in the stream, then join from a little
        // (or a lot) behind it.
        let target = (c as u64 + 1) * TOTAL / (CLIENTS as u64 + 2);
        while published.load(Ordering::SeqCst) < target {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let since = target.saturating_sub((c as u64 % 5) * 37);
        let epoch = epoch.clone();
        clients.push(tokio::spawn(async move {
            let mut ws = connect(addr, &format!("/h/hot?since={epoch}:{since}")).await;
            let mut expected = since + 1;
            let mut recovered_at = None;
            while expected <= TOTAL {
                let frame = within_for(Duration::from_secs(20), "publications", ws.next())
                    .await
                    .expect("open")
                    .expect("a message");
                let WsMessage::Text(text) = frame else {
                    continue;
                };
                if let Some(rest) = text.strip_prefix("recovery ") {
                    assert!(rest.starts_with("true"), "client {c}: {rest}");
                    recovered_at = Some(expected - 1);
                    continue;
                }
                let (position, _) = parse(&text);
                assert_eq!(position.epoch, epoch);
                assert_eq!(
                    position.offset, expected,
                    "client {c} from {since}: gap or duplicate"
                );
                expected += 1;
            }
            // Whether live publications followed its history.
            recovered_at.is_none_or(|at| at < TOTAL)
        }));
    }
    within_for(Duration::from_secs(60), "publisher", publisher)
        .await
        .expect("publisher");
    let mut raced = 0;
    for client in clients {
        raced += usize::from(
            within_for(Duration::from_secs(60), "client", client)
                .await
                .expect("client saw every offset once, in order"),
        );
    }
    assert!(
        raced >= CLIENTS / 2,
        "only {raced} joins raced the publisher"
    );
}

#[tokio::test]
async fn a_gap_trimmed_from_the_store_closes_members_to_resync() {
    let store = Arc::new(Unruly {
        inner: MemoryHistory::new(),
        appends: AtomicU64::new(0),
        slow: (1, Duration::from_millis(800)),
        lost: 0,
    });
    // Keeps one message: by the time the gap before 2 is read, 1 is gone.
    let history = HistoryConfig::all(1, Duration::from_secs(300));
    let running = server_with(history, Some(store)).await;
    let sender = running.sender.clone();
    let mut member = connect(running.addr(), "/h/r?since=start").await;
    recovery(&mut member).await;
    let slow = tokio::spawn({
        let sender = sender.clone();
        async move { sender.publish("r", "one").await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    publish(&sender, "r", "two").await;
    publish(&sender, "r", "three").await;
    let (code, reason) = expect_close(&mut member).await;
    assert_eq!(code, CloseCode::RESYNC.as_u16(), "{reason}");
    assert_eq!(sender.metrics().history.resyncs, 1);
    slow.await.expect("task").expect("one was stored");
}
