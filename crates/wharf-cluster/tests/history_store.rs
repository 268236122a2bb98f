//! One test suite for every history store: the same test functions run against wharf's
//! `MemoryHistory` (with tokio's paused clock), Redis Streams and NATS JetStream (the
//! machine's Redis and NATS, `WHARF_TEST_REDIS_URL` / `WHARF_TEST_NATS_URL`; a fresh prefix
//! per test, its NATS stream deleted at the end and its Redis keys expiring with the ttl).
//! Then what only an engine can do: lose its data (keys deleted, `FLUSHALL`, stream
//! deleted) and restart (a private `redis-server` / `nats-server` stopped and started).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use wharf::Message;
use wharf::history::{
    HistoryError, HistoryPage, HistoryPolicy, HistoryStore, MemoryHistory, Position,
};
use wharf_cluster::{NatsHistory, RedisHistory};

fn redis_url() -> String {
    std::env::var("WHARF_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn nats_url() -> String {
    std::env::var("WHARF_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A prefix of keys and subjects no other test (or earlier run) uses.
fn prefix(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("th{}-{n}-{nanos}-{name}", std::process::id())
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Engine {
    Memory,
    Redis,
    Nats,
}

/// A store of one engine under a fresh prefix.
struct Store {
    engine: Engine,
    store: Arc<dyn HistoryStore>,
    prefix: String,
    url: String,
}

impl Store {
    fn new(engine: Engine, name: &str) -> Store {
        let url = match engine {
            Engine::Memory => String::new(),
            Engine::Redis => redis_url(),
            Engine::Nats => nats_url(),
        };
        Store::at(engine, &url, name)
    }

    fn at(engine: Engine, url: &str, name: &str) -> Store {
        let prefix = prefix(name);
        let store: Arc<dyn HistoryStore> = match engine {
            Engine::Memory => Arc::new(MemoryHistory::new()),
            Engine::Redis => Arc::new(RedisHistory::new(url, &prefix).expect("a redis url")),
            Engine::Nats => Arc::new(NatsHistory::new(url, &prefix)),
        };
        Store {
            engine,
            store,
            prefix,
            url: url.to_owned(),
        }
    }

    /// Another store on the same engine and prefix, as another node has: its own
    /// connection and its own locks (the memory store is one process's, so itself).
    fn twin(&self) -> Arc<dyn HistoryStore> {
        match self.engine {
            Engine::Memory => self.store.clone(),
            Engine::Redis => {
                Arc::new(RedisHistory::new(&self.url, &self.prefix).expect("a redis url"))
            }
            Engine::Nats => Arc::new(NatsHistory::new(&self.url, &self.prefix)),
        }
    }

    async fn append(&self, room: &str, text: &str, policy: &HistoryPolicy) -> Position {
        let appended = self
            .store
            .append(room, &Message::text(text), policy, None)
            .await
            .expect("append");
        assert!(!appended.duplicate);
        appended.position
    }

    async fn read(
        &self,
        room: &str,
        since: Option<&Position>,
        limit: usize,
        policy: &HistoryPolicy,
    ) -> HistoryPage {
        self.store
            .read(room, since, limit, policy)
            .await
            .expect("read")
    }

    /// Sleeps `d`: tokio's paused clock for memory (it advances at once), real time for the
    /// engines.
    async fn wait(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    /// The NATS stream's name for this prefix.
    fn nats_stream(&self) -> String {
        NatsHistory::new(&self.url, &self.prefix)
            .stream()
            .to_owned()
    }

    async fn delete_nats_stream(&self) {
        let client = async_nats::connect(self.url.as_str()).await.expect("nats");
        let reply = client
            .request(
                format!("$JS.API.STREAM.DELETE.{}", self.nats_stream()),
                "".into(),
            )
            .await
            .expect("stream delete");
        let answer: serde_json::Value = serde_json::from_slice(&reply.payload).expect("json");
        assert!(answer.get("error").is_none(), "{answer}");
    }

    /// Deletes this test's Redis keys matching `<prefix>:<tail>` (never anything else: the
    /// Redis is shared).
    async fn delete_redis_keys(&self, tail: &str) {
        let client = ::redis::Client::open(self.url.as_str()).expect("redis url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg(format!("{}:{tail}", self.prefix))
            .query_async(&mut conn)
            .await
            .expect("keys");
        assert!(!keys.is_empty(), "no keys matched {tail}");
        let _: () = ::redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .expect("del");
    }

    /// Deletes the test's NATS stream (Redis keys expire with the ttl).
    async fn done(self) {
        if self.engine == Engine::Nats {
            self.delete_nats_stream().await;
        }
    }
}

fn policy(size: usize, ttl_secs: u64) -> HistoryPolicy {
    HistoryPolicy::new(size, Duration::from_secs(ttl_secs))
}

fn texts(page: &HistoryPage) -> Vec<String> {
    page.publications
        .iter()
        .map(|p| p.message.as_text().expect("text").to_owned())
        .collect()
}

fn offsets(page: &HistoryPage) -> Vec<u64> {
    page.publications
        .iter()
        .map(|p| p.position.offset)
        .collect()
}

// ---------------------------------------------------------------------------------------
// the shared suite

async fn offsets_are_contiguous_from_one(engine: Engine) {
    let s = Store::new(engine, "contiguous");
    let p = policy(100, 60);
    let mut got = Vec::new();
    for i in 1..=5 {
        got.push(s.append("room", &format!("m{i}"), &p).await);
    }
    let epoch = &got[0].epoch;
    assert!(Position::valid_epoch(epoch), "{epoch}");
    let expected: Vec<Position> = (1..=5).map(|o| Position::new(epoch.clone(), o)).collect();
    assert_eq!(got, expected);
    let page = s.read("room", None, 100, &p).await;
    assert_eq!(page.top, got[4]);
    assert!(page.complete);
    assert_eq!(texts(&page), ["m1", "m2", "m3", "m4", "m5"]);
    assert_eq!(offsets(&page), [1, 2, 3, 4, 5]);
    assert!(page.publications.iter().all(|p| &p.position.epoch == epoch));
    s.done().await;
}

async fn an_empty_room_has_a_top_that_the_first_publish_continues(engine: Engine) {
    let s = Store::new(engine, "empty");
    let p = policy(100, 60);
    let empty = s.read("room", None, 10, &p).await;
    assert_eq!(empty.top.offset, 0);
    assert!(empty.complete && empty.publications.is_empty());
    let again = s.read("room", Some(&empty.top), 10, &p).await;
    assert_eq!(again.top, empty.top, "reading twice keeps the epoch");
    assert!(again.complete);
    let first = s.append("room", "one", &p).await;
    assert_eq!(first, Position::new(empty.top.epoch.clone(), 1));
    let page = s.read("room", Some(&empty.top), 10, &p).await;
    assert!(page.complete);
    assert_eq!(texts(&page), ["one"]);
    s.done().await;
}

async fn concurrent_readers_of_an_empty_room_agree_on_its_epoch(engine: Engine) {
    let s = Store::new(engine, "readers");
    let p = policy(100, 60);
    let mut handles = Vec::new();
    for _ in 0..8 {
        let (store, p) = (s.store.clone(), p.clone());
        handles.push(tokio::spawn(async move {
            store.read("room", None, 10, &p).await.expect("read").top
        }));
    }
    let mut tops = Vec::new();
    for h in handles {
        tops.push(h.await.expect("task"));
    }
    let top = tops[0].clone();
    assert!(tops.iter().all(|t| *t == top), "{tops:?}");
    assert_eq!(top.offset, 0);
    assert_eq!(
        s.append("room", "one", &p).await,
        Position::new(top.epoch, 1)
    );
    s.done().await;
}

async fn concurrent_appenders_get_distinct_contiguous_offsets(engine: Engine) {
    let s = Store::new(engine, "concurrent");
    let p = policy(1000, 60);
    let (tasks, each) = (8, 50);
    // Four stores (as four nodes have), two tasks on each: races within a node and
    // between nodes.
    let stores = [s.store.clone(), s.twin(), s.twin(), s.twin()];
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = stores[t % stores.len()].clone();
        let p = p.clone();
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..each {
                let text = format!("{t}-{i}");
                let a = store
                    .append("room", &Message::text(text.clone()), &p, None)
                    .await
                    .expect("append");
                got.push((a.position, text));
            }
            got
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        let got = h.await.expect("task");
        // Each task's own appends come out in increasing offsets.
        assert!(got.windows(2).all(|w| w[0].0.offset < w[1].0.offset));
        all.extend(got);
    }
    let epochs: BTreeSet<&str> = all.iter().map(|(p, _)| p.epoch.as_str()).collect();
    assert_eq!(epochs.len(), 1, "{epochs:?}");
    all.sort_by_key(|(p, _)| p.offset);
    let offsets: Vec<u64> = all.iter().map(|(p, _)| p.offset).collect();
    assert_eq!(offsets, (1..=(tasks * each) as u64).collect::<Vec<_>>());
    let page = s.read("room", None, 1000, &p).await;
    assert!(page.complete);
    assert_eq!(page.publications.len(), tasks * each);
    for (publication, (position, text)) in page.publications.iter().zip(&all) {
        assert_eq!(&publication.position, position);
        assert_eq!(publication.message.as_text(), Some(text.as_str()));
    }
    s.done().await;
}

async fn reads_after_since_from_the_start_and_by_limit(engine: Engine) {
    let s = Store::new(engine, "reads");
    let p = policy(100, 60);
    let mut at = Vec::new();
    for i in 1..=10 {
        at.push(s.append("room", &format!("m{i}"), &p).await);
    }
    let page = s.read("room", Some(&at[3]), 3, &p).await;
    assert!(page.complete);
    assert_eq!(offsets(&page), [5, 6, 7]);
    assert_eq!(texts(&page), ["m5", "m6", "m7"]);
    assert_eq!(page.top, at[9]);
    let page = s.read("room", None, 4, &p).await;
    assert!(page.complete);
    assert_eq!(offsets(&page), [1, 2, 3, 4]);
    let page = s.read("room", Some(&at[9]), 10, &p).await;
    assert!(page.complete && page.publications.is_empty());
    let page = s.read("room", Some(&at[0]), 0, &p).await;
    assert!(page.complete && page.publications.is_empty());
    assert_eq!(page.top, at[9], "limit 0 reads the top");
    let zero = Position::new(at[0].epoch.clone(), 0);
    let page = s.read("room", Some(&zero), 100, &p).await;
    assert!(page.complete);
    assert_eq!(offsets(&page), (1..=10).collect::<Vec<_>>());
    // Every single position in the middle: the engines' seeks land exactly.
    for since in &at {
        let page = s.read("room", Some(since), 2, &p).await;
        let expected: Vec<u64> = (since.offset + 1..=10).take(2).collect();
        assert_eq!(offsets(&page), expected, "after {since}");
    }
    s.done().await;
}

async fn a_future_offset_is_refused(engine: Engine) {
    let s = Store::new(engine, "ahead");
    let p = policy(100, 60);
    let top = s.append("room", "one", &p).await;
    let ahead = Position::new(top.epoch.clone(), 2);
    match s.store.read("room", Some(&ahead), 10, &p).await {
        Err(HistoryError::PositionAhead { since, top: t }) => {
            assert_eq!((since, t), (ahead, top));
        }
        other => panic!("expected PositionAhead, got {other:?}"),
    }
    s.done().await;
}

async fn another_epoch_is_incomplete_and_returns_nothing(engine: Engine) {
    let s = Store::new(engine, "epoch");
    let p = policy(100, 60);
    let top = s.append("room", "one", &p).await;
    s.append("room", "two", &p).await;
    let other_epoch: String = format!("x{}", top.epoch).chars().take(32).collect();
    let other = Position::new(other_epoch, 1);
    let page = s.read("room", Some(&other), 10, &p).await;
    assert!(!page.complete);
    assert!(page.publications.is_empty());
    assert_eq!(page.top, Position::new(top.epoch.clone(), 2));
    // Even far ahead: another epoch is a resync, not an error.
    let far = Position::new(other.epoch.clone(), 1_000);
    assert!(!s.read("room", Some(&far), 10, &p).await.complete);
    s.done().await;
}

async fn size_trims_the_oldest(engine: Engine) {
    let s = Store::new(engine, "size");
    let p = policy(5, 60);
    let mut at = Vec::new();
    for i in 1..=12 {
        at.push(s.append("room", &format!("m{i}"), &p).await);
    }
    let page = s.read("room", None, 100, &p).await;
    assert!(!page.complete, "1..7 were trimmed");
    assert_eq!(offsets(&page), [8, 9, 10, 11, 12]);
    let page = s.read("room", Some(&at[5]), 100, &p).await;
    assert!(!page.complete, "7 is gone");
    assert_eq!(offsets(&page), [8, 9, 10, 11, 12]);
    let page = s.read("room", Some(&at[6]), 100, &p).await;
    assert!(page.complete, "everything after 7 is kept");
    assert_eq!(offsets(&page), [8, 9, 10, 11, 12]);
    // A smaller size for the same room applies at once.
    let page = s.read("room", Some(&at[6]), 100, &policy(2, 60)).await;
    assert!(!page.complete);
    assert_eq!(offsets(&page), [11, 12]);
    s.done().await;
}

async fn size_zero_keeps_nothing_but_positions_go_on(engine: Engine) {
    let s = Store::new(engine, "size0");
    let p = policy(0, 60);
    let first = s.append("room", "a", &p).await;
    let second = s.append("room", "b", &p).await;
    assert_eq!(second, Position::new(first.epoch.clone(), 2));
    let page = s.read("room", Some(&first), 10, &p).await;
    assert_eq!(page.top, second);
    assert!(!page.complete && page.publications.is_empty());
    let page = s.read("room", Some(&second), 10, &p).await;
    assert!(page.complete && page.publications.is_empty());
    s.done().await;
}

async fn ttl_expires_messages_then_the_idle_room(engine: Engine) {
    let s = Store::new(engine, "ttl");
    let p = policy(1000, 2);
    // Enough old messages that the age trim takes several passes.
    let mut first = None;
    for i in 0..150 {
        first = Some(s.append("room", &format!("old{i}"), &p).await);
    }
    let first = first.expect("appended");
    s.wait(Duration::from_millis(1200)).await;
    let second = s.append("room", "new", &p).await;
    s.wait(Duration::from_millis(1200)).await;
    let page = s.read("room", None, 100, &p).await;
    assert_eq!(page.top, second);
    assert_eq!(texts(&page), ["new"], "the first is older than the ttl");
    assert!(!page.complete);
    let before_first = Position::new(first.epoch.clone(), 0);
    assert!(!s.read("room", Some(&before_first), 10, &p).await.complete);
    assert!(s.read("room", Some(&first), 10, &p).await.complete);
    // Idle for longer than the ttl: the room's history, epoch included, is gone.
    s.wait(Duration::from_millis(2600)).await;
    let page = s.read("room", Some(&second), 10, &p).await;
    assert!(!page.complete);
    assert!(page.publications.is_empty());
    assert_ne!(page.top.epoch, second.epoch);
    assert_eq!(page.top.offset, 0);
    let next = s.append("room", "again", &p).await;
    assert_eq!(next, Position::new(page.top.epoch.clone(), 1));
    s.done().await;
}

async fn an_idempotent_retry_stores_once(engine: Engine) {
    let s = Store::new(engine, "idempotent");
    let p = policy(100, 60).with_idempotency_window(Duration::from_secs(1));
    let m = Message::text("pay");
    let append = |room: &'static str, key: &'static str| {
        let (store, m, p) = (s.store.clone(), m.clone(), p.clone());
        async move { store.append(room, &m, &p, Some(key)).await.expect("append") }
    };
    let first = append("room", "k-1").await;
    assert!(!first.duplicate);
    let retry = append("room", "k-1").await;
    assert!(retry.duplicate);
    assert_eq!(retry.position, first.position);
    // The same key in another room, and another key, are new publishes.
    assert!(!append("other", "k-1").await.duplicate);
    let other_key = append("room", "k-2").await;
    assert!(!other_key.duplicate);
    assert_eq!(other_key.position.offset, 2);
    let page = s.read("room", None, 100, &p).await;
    assert_eq!(offsets(&page), [1, 2], "stored once");
    // After the window the key is forgotten: a new publish.
    s.wait(Duration::from_millis(1500)).await;
    let late = append("room", "k-1").await;
    assert!(!late.duplicate);
    assert_eq!(late.position.offset, 3);
    s.done().await;
}

async fn messages_round_trip_byte_for_byte(engine: Engine) {
    let s = Store::new(engine, "bytes");
    let p = policy(100, 60);
    let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let messages = [
        Message::binary(all),
        Message::binary(Vec::new()),
        Message::binary(b"\r\n\r\nNATS/1.0\r\n".to_vec()),
        Message::text(""),
        Message::text("héllo ✓ 🚢 \u{0}\r\n"),
        Message::text("{\"json\":[1,2]}"),
        Message::binary(vec![0x5a; 64 * 1024]),
    ];
    for m in &messages {
        s.store.append("room", m, &p, None).await.expect("append");
    }
    let page = s.read("room", None, 100, &p).await;
    let back: Vec<Message> = page.publications.into_iter().map(|p| p.message).collect();
    assert_eq!(back, messages);
    s.done().await;
}

async fn odd_room_names_stay_separate(engine: Engine) {
    let s = Store::new(engine, "names");
    let p = policy(100, 60);
    let rooms = [
        "chat:*",
        "chat:>",
        "chat",
        "a b",
        "a.b",
        "a",
        "b",
        "café",
        "x:y",
        "x",
        "=3A",
        ":",
        "*",
        ">",
        "a=2Eb",
        "日本語",
    ];
    for (i, room) in rooms.iter().enumerate() {
        for j in 0..=i {
            s.append(room, &format!("{room}#{j}"), &p).await;
        }
    }
    for (i, room) in rooms.iter().enumerate() {
        let page = s.read(room, None, 100, &p).await;
        assert_eq!(page.top.offset, i as u64 + 1, "{room}");
        let expected: Vec<String> = (0..=i).map(|j| format!("{room}#{j}")).collect();
        assert_eq!(texts(&page), expected, "{room}");
    }
    s.done().await;
}

/// Runs each shared test against every engine.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    super::$name(super::Engine::Memory).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Engine::Redis).await;
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Engine::Nats).await;
                }
            )*
        }
    };
}

suite!(
    offsets_are_contiguous_from_one,
    an_empty_room_has_a_top_that_the_first_publish_continues,
    concurrent_readers_of_an_empty_room_agree_on_its_epoch,
    concurrent_appenders_get_distinct_contiguous_offsets,
    reads_after_since_from_the_start_and_by_limit,
    a_future_offset_is_refused,
    another_epoch_is_incomplete_and_returns_nothing,
    size_trims_the_oldest,
    size_zero_keeps_nothing_but_positions_go_on,
    ttl_expires_messages_then_the_idle_room,
    an_idempotent_retry_stores_once,
    messages_round_trip_byte_for_byte,
    odd_room_names_stay_separate,
);

// ---------------------------------------------------------------------------------------
// losing the engine's data

async fn lost_history_is_a_new_epoch(s: &Store, lose: impl std::future::Future<Output = ()>) {
    let p = policy(100, 60);
    s.append("room", "one", &p).await;
    let old = s.append("room", "two", &p).await;
    lose.await;
    let page = s.read("room", Some(&old), 10, &p).await;
    assert!(!page.complete, "what was missed is gone");
    assert!(page.publications.is_empty());
    assert_ne!(page.top.epoch, old.epoch);
    assert_eq!(page.top.offset, 0);
    let next = s.append("room", "three", &p).await;
    assert_eq!(next, Position::new(page.top.epoch.clone(), 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_deleted_keys_give_a_new_epoch() {
    let s = Store::new(Engine::Redis, "deleted");
    lost_history_is_a_new_epoch(&s, s.delete_redis_keys("history*")).await;
    let p = policy(100, 60);
    // The stream alone lost (evicted) while the meta says messages were published.
    let before = s.append("room", "four", &p).await;
    s.delete_redis_keys("history:room").await;
    let page = s.read("room", Some(&before), 10, &p).await;
    assert!(!page.complete);
    assert_ne!(page.top.epoch, before.epoch);
    // The meta alone lost.
    let before = s.append("room", "five", &p).await;
    s.delete_redis_keys("history-meta:room").await;
    let after = s.append("room", "six", &p).await;
    assert_ne!(after.epoch, before.epoch);
    assert_eq!(after.offset, 1);
    assert_eq!(texts(&s.read("room", None, 10, &p).await), ["six"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_a_deleted_stream_gives_a_new_epoch() {
    let s = Store::new(Engine::Nats, "deleted");
    lost_history_is_a_new_epoch(&s, s.delete_nats_stream()).await;
    s.done().await;
}

// ---------------------------------------------------------------------------------------
// a private engine, stopped and started: the one the app's tests use

#[allow(dead_code, unreachable_pub)]
#[path = "../../wharf-app/tests/common/engine.rs"]
mod private_engine;

use private_engine::{Engine as PrivateEngine, free_port};

async fn a_restarted_engine_is_unavailable_then_a_new_epoch(kind: &'static str) {
    let mut engine = PrivateEngine::start(kind);
    let which = if kind == "redis" {
        Engine::Redis
    } else {
        Engine::Nats
    };
    let s = Store::at(which, &engine.url(), "restart");
    let p = policy(100, 60);
    s.append("room", "one", &p).await;
    let old = s.append("room", "two", &p).await;

    engine.down();
    for _ in 0..2 {
        let asked = Instant::now();
        let result = s
            .store
            .append("room", &Message::text("lost"), &p, None)
            .await;
        assert!(
            matches!(result, Err(HistoryError::Unavailable(_))),
            "{result:?}"
        );
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "{:?}",
            asked.elapsed()
        );
        let asked = Instant::now();
        let result = s.store.read("room", Some(&old), 10, &p).await;
        assert!(
            matches!(result, Err(HistoryError::Unavailable(_))),
            "{result:?}"
        );
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "{:?}",
            asked.elapsed()
        );
    }

    engine.flush_restart();
    let start = Instant::now();
    let next = loop {
        match s
            .store
            .append("room", &Message::text("three"), &p, None)
            .await
        {
            Ok(appended) => break appended.position,
            Err(HistoryError::Unavailable(e)) => {
                assert!(
                    start.elapsed() < Duration::from_secs(15),
                    "still unavailable: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_ne!(next.epoch, old.epoch, "nothing survived the restart");
    assert_eq!(next.offset, 1);
    let page = s.read("room", Some(&old), 10, &p).await;
    assert!(!page.complete && page.publications.is_empty());
    assert_eq!(page.top, next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_restarted_engine_is_unavailable_then_a_new_epoch() {
    a_restarted_engine_is_unavailable_then_a_new_epoch("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_a_restarted_engine_is_unavailable_then_a_new_epoch() {
    a_restarted_engine_is_unavailable_then_a_new_epoch("nats").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_flushall_gives_a_new_epoch() {
    let engine = PrivateEngine::start("redis");
    let s = Store::at(Engine::Redis, &engine.url(), "flushall");
    let flush = async {
        let client = ::redis::Client::open(engine.url()).expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let _: () = ::redis::cmd("FLUSHALL")
            .query_async(&mut conn)
            .await
            .expect("flushall");
        // The scripts too: the store must load them again.
        let _: () = ::redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut conn)
            .await
            .expect("script flush");
    };
    lost_history_is_a_new_epoch(&s, flush).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_engine_is_unavailable_quickly() {
    for (engine, url) in [
        (Engine::Redis, format!("redis://127.0.0.1:{}", free_port())),
        (Engine::Nats, format!("nats://127.0.0.1:{}", free_port())),
    ] {
        let s = Store::at(engine, &url, "unreachable");
        let asked = Instant::now();
        let result = s
            .store
            .append("room", &Message::text("x"), &policy(10, 60), None)
            .await;
        assert!(
            matches!(result, Err(HistoryError::Unavailable(_))),
            "{result:?}"
        );
        assert!(asked.elapsed() < Duration::from_secs(3));
    }
}

/// An engine that accepts connections and never answers: a burst of calls still fails
/// within the bound, instead of queueing one connect timeout after another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_engine_is_unavailable_within_the_bound() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    for engine in [Engine::Redis, Engine::Nats] {
        let scheme = if engine == Engine::Redis {
            "redis"
        } else {
            "nats"
        };
        let s = Store::at(engine, &format!("{scheme}://127.0.0.1:{port}"), "silent");
        let asked = Instant::now();
        let mut calls = Vec::new();
        for _ in 0..8 {
            let store = s.store.clone();
            calls.push(tokio::spawn(async move {
                let m = Message::text("x");
                store.append("room", &m, &policy(10, 60), None).await
            }));
        }
        for call in calls {
            let result = call.await.expect("task");
            assert!(
                matches!(result, Err(HistoryError::Unavailable(_))),
                "{result:?}"
            );
        }
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "{engine:?}: {:?}",
            asked.elapsed()
        );
    }
    drop(silent);
}

#[test]
fn the_store_follows_the_backplane_scheme() {
    let mut config = wharf::ClusterConfig::default();
    assert!(wharf_cluster::history_store(&config).is_err());
    config.backplane = Some("redis://127.0.0.1:6379".into());
    let store = wharf_cluster::history_store(&config).expect("redis");
    assert_eq!(store.engine(), "redis");
    config.backplane = Some("nats://127.0.0.1:4222".into());
    let store = wharf_cluster::history_store(&config).expect("nats");
    assert_eq!(store.engine(), "nats");
    config.backplane = Some("kafka://x".into());
    assert!(wharf_cluster::history_store(&config).is_err());
}
