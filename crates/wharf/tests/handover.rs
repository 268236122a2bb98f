//! The handover's old side over a real Unix socket and real listening sockets: a successor
//! of another format or a stranger is refused before anything moves and the server keeps
//! serving; a successor that takes the sockets serves on the same port; an open connection
//! moves with its id and its room, and misses no push nor gets one twice, in a plain room
//! and in a history room kept in memory (whose history and positions move too); a handler's
//! per-connection state moves through `Handler::carry`/`resume`, and a connection whose
//! handler cannot carry it gets 1012.
//!
//! The successor is this test binary run again (`fake_successor`, ignored unless started
//! with [`HANDOVER_ENV`] set), so the peer-pid check sees the very process that was started.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use wharf::handover::{HANDOVER_ENV, Inherited, Upgrader};
use wharf::server::Stop;
use wharf::{Config, Conn, Echo, HandlerError, Router, Server, ServerConfig, ServerKind};

/// Joins room `r`; relays every text to the room; answers `whoami` with its id. Keeps
/// nothing of its own per connection, so its connections may move.
struct Relay;

impl wharf::Handler for Relay {
    async fn on_open(&self, conn: &Conn, _: &wharf::OpenRequest) -> Result<(), HandlerError> {
        conn.join("r");
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, message: wharf::Message) -> Result<(), HandlerError> {
        match message.as_text() {
            Some("whoami") => conn.send(format!("id:{}", conn.id()))?,
            Some(text) => {
                conn.sender().push_room("r", text.to_owned(), None);
            }
            None => {}
        }
        Ok(())
    }

    fn movable(&self) -> bool {
        true
    }
}

/// As [`Relay`], in history room `h` (kept in memory, joined from its top): every text
/// is published there, and every member gets each publication at its position.
struct HistoryRelay;

impl wharf::Handler for HistoryRelay {
    async fn on_open(&self, conn: &Conn, _: &wharf::OpenRequest) -> Result<(), HandlerError> {
        conn.join_from_top("h").await?;
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, message: wharf::Message) -> Result<(), HandlerError> {
        match message.as_text() {
            Some("whoami") => conn.send(format!("id:{}", conn.id()))?,
            Some(text) => {
                conn.sender()
                    .history_hub()
                    .publish("h", text.to_owned())
                    .await?;
            }
            None => {}
        }
        Ok(())
    }

    fn movable(&self) -> bool {
        true
    }
}

/// Numbers each connection's messages with a counter attached at the handshake (data
/// middleware, which does not run again in the successor): the counter moves through
/// `carry`/`resume`. On `/stuck` it cannot be carried; a count of 13 cannot be resumed.
struct Counter;

#[derive(Clone)]
struct Count(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl wharf::Handler for Counter {
    async fn on_message(&self, conn: &Conn, _: wharf::Message) -> Result<(), HandlerError> {
        let count = conn
            .get::<Count>()
            .ok_or_else(|| HandlerError::msg("no count"))?;
        let n = count.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        conn.send(n.to_string())?;
        Ok(())
    }

    fn movable(&self) -> bool {
        true
    }

    fn carry(&self, conn: &Conn) -> Option<serde_json::Value> {
        if conn.path() == "/stuck" {
            return None;
        }
        let count = conn.get::<Count>()?;
        Some(serde_json::json!({ "count": count.0.load(std::sync::atomic::Ordering::Relaxed) }))
    }

    fn resume(&self, event: &mut wharf::ResumeEvent) -> Result<(), HandlerError> {
        let count = event.carried["count"]
            .as_u64()
            .ok_or_else(|| HandlerError::msg("no count carried"))?;
        if count == 13 {
            return Err(HandlerError::msg("13 is unlucky"));
        }
        let count = std::sync::atomic::AtomicU64::new(count);
        event.insert(Count(std::sync::Arc::new(count)));
        Ok(())
    }
}

/// Attaches a fresh [`Count`] at the handshake (data middleware).
fn counted() -> wharf::Route {
    wharf::Route::new(Counter).layer(wharf::middleware::from_fn(
        |mut request: wharf::HandshakeRequest| async move {
            let count = std::sync::atomic::AtomicU64::new(0);
            request
                .extensions_mut()
                .insert(Count(std::sync::Arc::new(count)));
            Ok::<_, wharf::Rejection>(request)
        },
    ))
}

fn routes() -> Router {
    Router::new()
        .route("/echo", Echo)
        .route("/relay", Relay)
        .route("/history", HistoryRelay)
        .route("/count", counted())
        .route("/stuck", counted())
}

/// The server both processes run (with `max_connections = cap`); history room `h`'s members
/// get `"EPOCH:OFFSET TEXT"`.
fn builder(cap: Option<usize>) -> wharf::ServerBuilder {
    let mut config = config();
    if let Some(cap) = cap {
        config.servers[0].limits.max_connections = cap;
    }
    Server::builder(config)
        .websocket("ws", routes())
        .history_envelope(|_, publication| {
            let text = publication.message.as_text().unwrap_or_default();
            wharf::Message::text(format!("{} {text}", publication.position))
        })
}

fn config() -> Config {
    let mut server = ServerConfig::new("ws", ServerKind::Websocket, 0);
    server.host = "127.0.0.1".into();
    let mut config = Config::empty().with_server(server);
    config.handover.timeout = Duration::from_secs(10);
    config.drain.spread = Duration::from_millis(200);
    // Room `h` keeps its last 10,000 publications, in this process's memory.
    config
        .rooms
        .history
        .rules
        .push(wharf::config::HistoryRule::new("h", 10_000));
    config
}

/// The successor: what it does is chosen by `FAKE_SUCCESSOR`.
#[test]
#[ignore = "started by the tests below as the successor process"]
fn fake_successor() {
    let Some(path) = std::env::var_os(HANDOVER_ENV) else {
        return;
    };
    match std::env::var("FAKE_SUCCESSOR").as_deref() {
        Ok("v1") => speak(&path, b"WHARF-HO", 1),
        Ok("stranger") => speak(&path, b"SSH-2.0-", 1),
        Ok("takes_over") => take_over(None),
        Ok("takes_over_capped") => take_over(Some(CAP)),
        Ok("dies_after_go") => dies_after_go(),
        other => panic!("unknown FAKE_SUCCESSOR {other:?}"),
    }
}

/// Says hello with `magic` and `version` and prints the answer's head.
fn speak(path: &std::ffi::OsStr, magic: &[u8; 8], version: u16) {
    let mut stream = UnixStream::connect(path).expect("connect");
    let body = format!("{{\"type\":\"hello\",\"pid\":{}}}", std::process::id());
    let mut frame = magic.to_vec();
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body.as_bytes());
    stream.write_all(&frame).expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    println!("answer: {}", String::from_utf8_lossy(&answer));
}

/// The `max_connections` of the capped test.
const CAP: usize = 2;

/// Takes the sockets, serves echo on them, confirms, and serves until killed (or for a
/// minute at most, so a test that fails before it kills this process leaves nothing behind).
fn take_over(cap: Option<usize>) {
    as_successor(cap, |bound, arrivals| async move {
        bound.resume(arrivals).await.expect("released");
        let bounded = tokio::time::sleep(Duration::from_secs(60));
        bound.serve(bounded).await.expect("serve");
    });
}

/// Confirms, receives the open connections, and exits before registering them: a successor
/// that crashes in the middle of the handover.
fn dies_after_go() {
    as_successor(None, |_bound, arrivals| async move {
        println!("received {} connections; crashing", arrivals.len());
        std::process::exit(3);
    });
}

/// Takes the predecessor's sockets, binds `builder(cap)` on them and confirms, then runs
/// `then` with the server and the connections it was sent.
fn as_successor<F, Fut>(cap: Option<usize>, then: F)
where
    F: FnOnce(wharf::BoundServer, wharf::handover::Arrivals) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut inherited = Inherited::from_env(Duration::from_secs(10))
            .expect("handover")
            .expect("started as a successor");
        let bound = builder(cap)
            .inherit(&mut inherited)
            .bind()
            .await
            .expect("bind on the inherited socket");
        let arrivals = inherited.confirm().expect("confirm");
        then(bound, arrivals).await;
    });
}

/// Starts the successor `mode` and waits until it has taken over; its pid.
async fn hand_over(upgrader: &Upgrader, mode: &str, dir: &std::path::Path) -> u32 {
    upgrader
        .upgrade(successor(mode), dir, &[])
        .await
        .expect("handed over")
}

/// Waits (10 s at most) for the old server's task to end after it handed over.
async fn old_server_stops<T>(task: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the old server stops")
        .expect("task")
}

fn successor(mode: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command
        .args([
            "fake_successor",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FAKE_SUCCESSOR", mode);
    command
}

async fn echoes(addr: SocketAddr) -> bool {
    let attempt = async {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/echo"))
            .await
            .ok()?;
        ws.send(Message::text("ping")).await.ok()?;
        let reply = ws.next().await?.ok()?;
        Some(reply == Message::text("ping"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(10), attempt).await,
        Ok(Some(true))
    )
}

async fn old_server() -> (
    SocketAddr,
    wharf::handover::Upgrader,
    wharf::Sender,
    tokio::task::JoinHandle<()>,
) {
    old_server_capped(None).await
}

async fn old_server_capped(
    cap: Option<usize>,
) -> (
    SocketAddr,
    wharf::handover::Upgrader,
    wharf::Sender,
    tokio::task::JoinHandle<()>,
) {
    let bound = builder(cap).bind().await.expect("bind");
    let addr = bound.local_addr("ws").expect("addr");
    let upgrader = bound.upgrader();
    let sender = bound.sender();
    let handed = upgrader.clone();
    let task = tokio::spawn(async move {
        let stop = async move {
            handed.handed_over().await;
            Stop::HandedOver
        };
        bound.serve_until(stop).await.expect("serve");
    });
    (addr, upgrader, sender, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_of_another_format_or_a_stranger_is_refused_before_anything_moves() {
    let dir = tempfile::tempdir().expect("dir");
    let (addr, upgrader, sender, _task) = old_server().await;
    for (mode, words) in [
        ("v1", "format v1, this process v4"),
        ("stranger", "bad magic"),
    ] {
        let error = upgrader
            .upgrade(successor(mode), dir.path(), &[])
            .await
            .expect_err("refused");
        assert_eq!(error.reason(), "incompatible", "{mode}: {error}");
        assert!(error.to_string().contains(words), "{mode}: {error}");
        assert!(!upgrader.is_handed_over());
        assert!(echoes(addr).await, "{mode}: the old server still serves");
    }
    let handovers = sender.metrics().handovers;
    assert_eq!(handovers.started, 2);
    assert_eq!(handovers.completed, 0);
    assert_eq!(handovers.aborted.get("incompatible"), Some(&2));
    // The socket file is gone with the attempt.
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_takes_the_listening_socket_and_serves_on_the_same_port() {
    let dir = tempfile::tempdir().expect("dir");
    let (addr, upgrader, sender, task) = old_server().await;
    let pid = hand_over(&upgrader, "takes_over", dir.path()).await;
    assert!(upgrader.is_handed_over());
    // The old server stops; the port keeps answering, from the successor.
    old_server_stops(task).await;
    assert!(echoes(addr).await, "the successor serves on {addr}");
    let handovers = sender.metrics().handovers;
    assert_eq!((handovers.started, handovers.completed), (1, 1));
    // A second upgrade of a process that handed over is refused.
    let again = upgrader
        .upgrade(successor("v1"), dir.path(), &[])
        .await
        .expect_err("refused");
    assert!(again.to_string().contains("handed over to pid"), "{again}");
    let _ = Command::new("kill").arg(pid.to_string()).status();
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text message, within 10 s; panics on anything else (a close above all).
async fn next_text(ws: &mut Ws) -> String {
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => text.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

async fn whoami(ws: &mut Ws) -> String {
    ws.send(Message::text("whoami")).await.expect("send");
    loop {
        let text = next_text(ws).await;
        if let Some(id) = text.strip_prefix("id:") {
            return id.to_owned();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_connection_moves_with_its_id_and_misses_no_room_push() {
    rides_a_handover("/relay", false).await;
}

/// The same through history room `h`, kept in this process's memory: the successor takes
/// the history over and recovers each member from the position it had reached, so the
/// positions continue (the test checks the texts; a restarted history would answer the
/// publish of the successor at offset 1 and push the texts again after the recovery).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_connection_moves_with_its_history_position_and_misses_no_publication() {
    rides_a_handover("/history", false).await;
}

/// A successor that crashes after it was sent the connections (before it registered them):
/// the old process kills it, takes them back and serves on (the connections do not notice,
/// a connection that could not move is not closed, a new one is accepted, the in-memory
/// history goes on in the same epoch); a second successor then takes them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_that_dies_with_the_connections_leaves_them_with_the_old_process() {
    rides_a_handover("/history", true).await;
}

/// A publisher and a subscriber on `path` (both in one room), 1,500 messages at one a
/// millisecond through the handover: each arrives once and in order, no close, ids kept.
/// With `first_fails`, through a successor that crashes with the connections first.
async fn rides_a_handover(path: &str, first_fails: bool) {
    const COUNT: u32 = 1500;
    let dir = tempfile::tempdir().expect("dir");
    let (addr, upgrader, sender, task) = old_server().await;
    let url = format!("ws://{addr}{path}");
    let (mut subscriber, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect");
    let (mut publisher, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect");
    let (subscriber_id, publisher_id) =
        (whoami(&mut subscriber).await, whoami(&mut publisher).await);
    // The publisher sends 1..=COUNT, one a millisecond, through the handover; each comes
    // back to every member of the room as a push.
    let publishing = tokio::spawn(async move {
        for n in 1..=COUNT {
            publisher
                .send(Message::text(n.to_string()))
                .await
                .expect("publish");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        publisher
    });
    let receiving = tokio::spawn(async move {
        let mut expected = 1;
        // In the history room: the position of the last push (epoch, offset).
        let mut last: Option<(String, u64)> = None;
        while expected <= COUNT {
            let text = next_text(&mut subscriber).await;
            let n = match text.split_once(' ') {
                Some((position, n)) => {
                    let (epoch, offset) = position.split_once(':').expect("EPOCH:OFFSET");
                    let offset: u64 = offset.parse().expect("offset");
                    if let Some((last_epoch, last_offset)) = &last {
                        assert_eq!(
                            (epoch, offset),
                            (last_epoch.as_str(), last_offset + 1),
                            "positions continue: same epoch, contiguous offsets"
                        );
                    }
                    last = Some((epoch.to_owned(), offset));
                    n
                }
                None => &text,
            };
            let n: u32 = n.parse().unwrap_or_else(|_| panic!("not a number: {text}"));
            assert_eq!(n, expected, "in order, none lost, none twice");
            expected += 1;
        }
        (subscriber, last)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A connection that cannot move: served on through a failed handover, 1012 after one.
    let (mut stuck, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/stuck"))
        .await
        .expect("connect");
    if first_fails {
        let error = upgrader
            .upgrade(successor("dies_after_go"), dir.path(), &[])
            .await
            .expect_err("the successor crashed");
        assert!(
            matches!(error, wharf::handover::HandoverError::Exited { .. }),
            "{error}"
        );
        assert!(!upgrader.is_handed_over());
        assert!(!task.is_finished(), "the old server serves on");
        assert!(echoes(addr).await, "the old server accepts again on {addr}");
        stuck.send(Message::text("x")).await.expect("send");
        assert_eq!(next_text(&mut stuck).await, "1", "not closed: served on");
        let handovers = sender.metrics().handovers;
        assert_eq!((handovers.started, handovers.completed), (1, 0));
        assert_eq!(handovers.connections_moved, 0);
        assert_eq!(handovers.connections_taken_back, 2);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let pid = hand_over(&upgrader, "takes_over", dir.path()).await;
    old_server_stops(task).await;
    match tokio::time::timeout(Duration::from_secs(10), stuck.next()).await {
        Ok(Some(Ok(Message::Close(Some(frame))))) => assert_eq!(u16::from(frame.code), 1012),
        other => panic!("expected a 1012 close, got {other:?}"),
    }
    let mut publisher = publishing.await.expect("publisher");
    let (mut subscriber, last) = tokio::time::timeout(Duration::from_secs(20), receiving)
        .await
        .expect("every push arrives")
        .expect("subscriber");
    assert_eq!(sender.metrics().handovers.connections_moved, 2);
    // The same connections, with the same ids, now served by the successor.
    assert_eq!(whoami(&mut subscriber).await, subscriber_id);
    assert_eq!(whoami(&mut publisher).await, publisher_id);
    if let Some((epoch, offset)) = last {
        // The history moved: one more publication continues the old positions, and the
        // subscriber gets it alone (nothing of the history again).
        publisher.send(Message::text("after")).await.expect("send");
        assert_eq!(
            next_text(&mut subscriber).await,
            format!("{epoch}:{} after", offset + 1)
        );
    }
    let _ = Command::new("kill").arg(pid.to_string()).status();
}

/// `Handler::carry` moves a handler's own per-connection state (a counter attached at the
/// handshake) and `Handler::resume` rebuilds it in the successor; a connection whose handler
/// cannot carry it (`None`) is closed with 1012 by the old process, and one whose `resume`
/// fails with 1012 and the error by the successor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_carries_its_connection_state_and_one_it_cannot_carry_or_resume_gets_1012() {
    let dir = tempfile::tempdir().expect("dir");
    let (addr, upgrader, sender, task) = old_server().await;
    let (mut counted, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/count"))
        .await
        .expect("connect");
    let (mut stuck, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/stuck"))
        .await
        .expect("connect");
    for n in 1..=3 {
        counted.send(Message::text("+")).await.expect("send");
        assert_eq!(next_text(&mut counted).await, n.to_string());
    }
    stuck.send(Message::text("+")).await.expect("send");
    assert_eq!(next_text(&mut stuck).await, "1");
    let (mut unlucky, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/count"))
        .await
        .expect("connect");
    for n in 1..=13 {
        unlucky.send(Message::text("+")).await.expect("send");
        assert_eq!(next_text(&mut unlucky).await, n.to_string());
    }
    let pid = hand_over(&upgrader, "takes_over", dir.path()).await;
    match tokio::time::timeout(Duration::from_secs(10), stuck.next()).await {
        Ok(Some(Ok(Message::Close(Some(frame))))) => assert_eq!(u16::from(frame.code), 1012),
        other => panic!("expected a 1012 close, got {other:?}"),
    }
    old_server_stops(task).await;
    assert_eq!(sender.metrics().handovers.connections_moved, 2);
    match tokio::time::timeout(Duration::from_secs(10), unlucky.next()).await {
        Ok(Some(Ok(Message::Close(Some(frame))))) => {
            assert_eq!(u16::from(frame.code), 1012);
            assert_eq!(frame.reason.as_str(), "could not resume: 13 is unlucky");
        }
        other => panic!("expected a 1012 close from the successor, got {other:?}"),
    }
    // Served by the successor now, the count goes on where it was.
    counted.send(Message::text("+")).await.expect("send");
    assert_eq!(next_text(&mut counted).await, "4");
    let _ = Command::new("kill").arg(pid.to_string()).status();
}

/// The handshake's status on `/echo`: 101, or the refusal's.
async fn handshake_status(addr: SocketAddr) -> (u16, Option<Ws>) {
    match tokio_tungstenite::connect_async(format!("ws://{addr}/echo")).await {
        Ok((ws, _)) => (101, Some(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            (response.status().as_u16(), None)
        }
        Err(e) => panic!("handshake: {e}"),
    }
}

/// In the successor, moved connections count against `max_connections` as they did in the
/// old process: at the limit, a new connection is refused until one of them closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_connections_count_against_max_connections_in_the_successor() {
    let dir = tempfile::tempdir().expect("dir");
    let (addr, upgrader, _sender, task) = old_server_capped(Some(CAP)).await;
    let mut moved = Vec::new();
    for _ in 0..CAP {
        let (status, ws) = handshake_status(addr).await;
        assert_eq!(status, 101);
        moved.push(ws.expect("open"));
    }
    assert_eq!(
        handshake_status(addr).await.0,
        503,
        "the old process is full"
    );
    let pid = hand_over(&upgrader, "takes_over_capped", dir.path()).await;
    old_server_stops(task).await;
    assert_eq!(
        handshake_status(addr).await.0,
        503,
        "the successor counts the connections it took over"
    );
    let mut first = moved.remove(0);
    first.send(Message::text("ping")).await.expect("send");
    assert_eq!(next_text(&mut first).await, "ping", "moved, still served");
    first.close(None).await.expect("close");
    drop(first);
    // Its slot is given back once the successor has seen the close.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, ws) = handshake_status(addr).await;
        if let Some(mut ws) = ws {
            ws.send(Message::text("fresh")).await.expect("send");
            assert_eq!(next_text(&mut ws).await, "fresh");
            break;
        }
        assert_eq!(status, 503);
        assert!(tokio::time::Instant::now() < deadline, "the slot came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = Command::new("kill").arg(pid.to_string()).status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_successor_a_handed_over_stop_closes_movable_connections_with_1012() {
    let bound = builder(None).bind().await.expect("bind");
    let addr = bound.local_addr("ws").expect("addr");
    let (go, stop) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bound.serve_until(async move {
        let _ = stop.await;
        Stop::HandedOver
    }));
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/echo"))
        .await
        .expect("connect");
    ws.send(Message::text("ping")).await.expect("send");
    assert_eq!(next_text(&mut ws).await, "ping");
    let _ = go.send(());
    // Nobody to move it to: it is closed, not parked and dropped.
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Close(Some(frame))))) => assert_eq!(u16::from(frame.code), 1012),
        other => panic!("expected a 1012 close, got {other:?}"),
    }
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("serve returns")
        .expect("task")
        .expect("serve");
}
