//! The recovery check (issue 13, point 5): two `wharf serve` nodes on a private Redis or
//! NATS, subscribers of the rooms protocol (`wharf_client::rooms`) spread over both, a
//! publisher through both nodes' HTTP API, and faults while it runs: subscribers closed by
//! the admin API and reset at the TCP level, one node SIGKILLed and started again, the
//! engine restarted. At the end every subscription must hold every acknowledged
//! publication of its room exactly once, in position order.
//!
//! Shared by `examples/recovery_check` (the long run, `scripts/recovery-check.sh`) and
//! `tests/recovery_check.rs` (a short one). Needs a multi-threaded Tokio runtime: process
//! starts block a worker (`block_in_place`).

#[path = "../../support/http.rs"]
pub mod http;
pub mod procs;
pub mod proxy;
pub mod publisher;
#[path = "../../support/serve_log.rs"]
mod serve_log;
pub mod verify;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use wharf_client::rooms::{Position, RoomEvent, Rooms, RoomsConfig};

use http::Api;
use procs::{API_KEY, Engine, EngineKind, Node};
use proxy::Proxy;
use verify::{Record, Report};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `wharf` binary.
    pub wharf: PathBuf,
    /// Redis or NATS.
    pub engine: EngineKind,
    /// How long the publisher runs.
    pub duration: Duration,
    /// Subscriber sessions, spread over both nodes.
    pub subscribers: usize,
    /// Rooms.
    pub rooms: usize,
    /// Rooms each subscriber follows.
    pub rooms_per_subscriber: usize,
    /// Publications a second, in all.
    pub rate: u32,
    /// How often one subscriber is closed by the admin API and another reset.
    pub cut_every: Duration,
    /// SIGKILL the second node at 35 % of the run, start it again 2 s later.
    pub kill_node: bool,
    /// Restart the engine at 65 % of the run (down for 1 s).
    pub restart_engine: bool,
    /// How long to wait after the last publication for subscribers to catch up.
    pub settle: Duration,
}

/// What happened, and the verdict.
#[derive(Debug)]
pub struct Outcome {
    /// The verdict.
    pub report: Report,
    /// Subscribers closed through `DELETE /api/connections/{id}`.
    pub admin_closes: u64,
    /// Subscriber connections reset (RST) at the proxy.
    pub resets: u64,
    /// Nodes SIGKILLed (and started again).
    pub node_kills: u64,
    /// Engine restarts.
    pub engine_restarts: u64,
    /// Publications that failed on both nodes (not counted).
    pub publish_failures: u64,
    /// Reconnects of all subscriber sessions.
    pub reconnects: u64,
    /// The nodes' logged warnings and errors (for a failed run).
    pub node_warnings: String,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Runs the check.
pub async fn run(options: &Options) -> Result<Outcome, Error> {
    let engine = Arc::new(Mutex::new(Engine::start(options.engine)?));
    let url = lock(&engine).url();
    let prefix = format!("rc{}-{}", std::process::id(), nanos());
    let history = (options.rate as usize * (options.duration.as_secs() as usize + 30)
        / options.rooms.max(1))
    .max(1000);
    let nodes: Vec<Arc<Mutex<Node>>> = (0..2)
        .map(|_| {
            Node::start(&options.wharf, &url, &prefix, history).map(|n| Arc::new(Mutex::new(n)))
        })
        .collect::<Result<_, _>>()?;
    let ws: Vec<SocketAddr> = nodes.iter().map(|n| lock(n).ws).collect();
    let http: Vec<SocketAddr> = nodes.iter().map(|n| lock(n).http).collect();
    let proxies = Arc::new(vec![Proxy::start(ws[0]).await?, Proxy::start(ws[1]).await?]);
    let rooms: Vec<String> = (0..options.rooms)
        .map(|i| format!("check:room{i}"))
        .collect();

    // Subscribers: subscriber i is on node (i / rooms) % 2, so each room has some on both.
    let (stop_tx, stop) = watch::channel(false);
    let mut sessions = Vec::new();
    let mut collectors = Vec::new();
    let mut progress: Vec<(String, Arc<Mutex<Option<Position>>>)> = Vec::new();
    for i in 0..options.subscribers {
        let home = (i / options.rooms.max(1)) % 2;
        let url = format!("ws://{}/wss/rooms", proxies[home].addr);
        let config = RoomsConfig::default()
            .with_fallback_url(format!("ws://{}/wss/rooms", proxies[1 - home].addr))
            .with_backoff(Duration::from_millis(100), Duration::from_secs(2));
        let session = Rooms::connect(&url, config).await?;
        for k in 0..options.rooms_per_subscriber.min(options.rooms) {
            let room = &rooms[(i + k * 7) % options.rooms];
            let subscription = session.subscribe(room).await?;
            let last = Arc::new(Mutex::new(None));
            progress.push((room.clone(), last.clone()));
            collectors.push(tokio::spawn(collect(subscription, last, stop.clone())));
        }
        sessions.push(session);
    }
    eprintln!(
        "recovery-check: {} subscribers on {} rooms via {:?}, publishing {}/s for {:?}",
        options.subscribers, options.rooms, ws, options.rate, options.duration
    );

    // The publisher and the faults, side by side.
    let publisher = tokio::spawn(publisher::run(
        http.clone(),
        rooms.clone(),
        options.rate,
        options.duration,
        16,
    ));
    let faults = faults(options, &engine, &nodes, &proxies, http[0]).await;
    let published = publisher.await?;

    // Wait until every subscription has the room's last acknowledged publication.
    let mut tops: std::collections::HashMap<&str, &Position> = Default::default();
    for a in &published.acked {
        let top = tops.entry(&a.room).or_insert(&a.position);
        if top.epoch() != a.position.epoch() || top.is_before(&a.position) {
            *top = &a.position;
        }
    }
    let deadline = Instant::now() + options.settle;
    let mut stuck: Option<(String, Option<Position>)> = None;
    loop {
        let behind: Vec<(usize, String, Option<Position>)> = progress
            .iter()
            .enumerate()
            .filter_map(|(i, (room, last))| {
                let last = lock(last).clone();
                let top = tops.get(room.as_str())?;
                let behind = last
                    .as_ref()
                    .is_none_or(|l| l.epoch() == top.epoch() && l.is_before(top));
                behind.then(|| (i, room.clone(), last))
            })
            .collect();
        if behind.is_empty() || Instant::now() >= deadline {
            if !behind.is_empty() {
                eprintln!(
                    "recovery-check: {} subscriptions still behind after {:?}",
                    behind.len(),
                    options.settle
                );
                for (i, room, last) in &behind {
                    let top = tops.get(room.as_str()).map(|t| t.to_string());
                    eprintln!(
                        "recovery-check:   subscription {i} to {room}: at {last:?}, top {top:?}"
                    );
                }
                stuck = behind
                    .into_iter()
                    .next()
                    .map(|(_, room, last)| (room, last));
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The verdict is taken before any diagnosis publishes more.
    let _ = stop_tx.send(true);
    let mut records = Vec::new();
    for collector in collectors {
        records.push(collector.await?);
    }
    if let Some((room, last)) = stuck {
        diagnose(&ws, &http, &room, last).await;
    }
    let reconnects = sessions.iter().map(|s| s.connects() - 1).sum();
    for session in &sessions {
        session.close().await;
    }
    let report = verify::verify(options.subscribers, &published.acked, &records);
    let node_warnings = nodes.iter().map(|n| lock(n).warnings()).collect();
    Ok(Outcome {
        report,
        admin_closes: faults.0,
        resets: faults.1,
        node_kills: faults.2,
        engine_restarts: faults.3,
        publish_failures: published.failed,
        reconnects,
        node_warnings,
    })
}

/// For a run that failed: a fresh subscribe to a room left behind on each node, one live
/// publication through each node, and the nodes' history and backplane counters.
async fn diagnose(ws: &[SocketAddr], http: &[SocketAddr], room: &str, since: Option<Position>) {
    probe(ws, http, room, since).await;
    for (n, addr) in http.iter().enumerate() {
        let metrics = match Api::new(*addr, API_KEY)
            .request("GET", "/metrics", "")
            .await
        {
            Ok((_, body)) => body,
            Err(e) => e.to_string(),
        };
        let counters: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("wharf_history_") || l.starts_with("wharf_backplane_"))
            .collect();
        eprintln!("recovery-check:     node {} metrics: {counters:?}", n + 1);
    }
}

/// For a run that failed: what a fresh session gets on each node when it subscribes to
/// `room` from `since` (tells a node that no longer receives the room from one that does
/// not recover).
async fn probe(ws: &[SocketAddr], http: &[SocketAddr], room: &str, since: Option<Position>) {
    for (n, addr) in ws.iter().enumerate() {
        let url = format!("ws://{addr}/wss/rooms");
        let Ok(session) = Rooms::connect(&url, RoomsConfig::default()).await else {
            eprintln!("recovery-check:     probe node {}: no connection", n + 1);
            continue;
        };
        let subscribed = tokio::time::timeout(
            Duration::from_secs(5),
            session.subscribe_since(room, since.clone()),
        )
        .await;
        let mut sub = match subscribed {
            Ok(Ok(sub)) => sub,
            Ok(Err(e)) => {
                eprintln!(
                    "recovery-check:     probe node {}: subscribe failed: {e}",
                    n + 1
                );
                continue;
            }
            Err(_) => {
                eprintln!(
                    "recovery-check:     probe node {}: no subscribe reply in 5 s",
                    n + 1
                );
                continue;
            }
        };
        let mut got = Vec::new();
        while let Ok(Ok(event)) = tokio::time::timeout(Duration::from_secs(2), sub.recv()).await {
            got.push(match event {
                RoomEvent::Publication(p) => p.position.to_string(),
                other => format!("{other:?}"),
            });
        }
        let shown: Vec<&String> = got.iter().take(3).collect();
        eprintln!(
            "recovery-check:     probe node {}: subscribed at {}, {} events after since {since:?} (first {shown:?})",
            n + 1,
            sub.subscribed_at(),
            got.len()
        );
        // Then one live publication through each node: does this node push it?
        for (m, api) in http.iter().enumerate() {
            let body = serde_json::json!({ "room": room, "text": "probe" }).to_string();
            let published = Api::new(*api, API_KEY)
                .request("POST", "/api/publish", &body)
                .await;
            let live = tokio::time::timeout(Duration::from_secs(2), sub.recv()).await;
            eprintln!(
                "recovery-check:     probe node {}: a publish through node {} ({:?}) pushed live: {:?}",
                n + 1,
                m + 1,
                published.map(|(status, body)| format!("{status} {body}")),
                live.map(|event| event.map(|e| match e {
                    RoomEvent::Publication(p) => p.position.to_string(),
                    other => format!("{other:?}"),
                }))
            );
        }
        session.close().await;
    }
}

/// One subscription's events until `stop`.
async fn collect(
    mut subscription: wharf_client::rooms::Subscription,
    last: Arc<Mutex<Option<Position>>>,
    mut stop: watch::Receiver<bool>,
) -> Record {
    let mut record = Record {
        room: subscription.room().to_owned(),
        subscribed_at: Some(subscription.subscribed_at().clone()),
        ..Record::default()
    };
    loop {
        tokio::select! {
            event = subscription.recv() => match event {
                Ok(RoomEvent::Publication(p)) => {
                    let seq = p.payload.as_text().and_then(|t| t.parse().ok()).unwrap_or(u64::MAX);
                    *lock(&last) = Some(p.position.clone());
                    record.received.push((p.position, seq));
                }
                // Loss notices are counted as unrecoverable, not printed (a NATS restart
                // gives one per subscription).
                Ok(RoomEvent::Notice(notice)) => record.notices.push(notice),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("recovery-check: subscription to {} ended: {e}", record.room);
                    return record;
                }
            },
            _ = stop.changed() => return record,
        }
    }
}

/// Runs the faults until the run's duration is over; returns how many of each kind
/// (admin closes, resets, node kills, engine restarts).
async fn faults(
    options: &Options,
    engine: &Arc<Mutex<Engine>>,
    nodes: &[Arc<Mutex<Node>>],
    proxies: &Arc<Vec<Proxy>>,
    api: SocketAddr,
) -> (u64, u64, u64, u64) {
    let start = Instant::now();
    let kill_at = start + options.duration.mul_f64(0.35);
    let engine_at = start + options.duration.mul_f64(0.65);
    let end = start + options.duration;
    let (mut closes, mut resets, mut kills, mut restarts) = (0, 0, 0, 0);
    let mut random = nanos() | 1;
    let mut api = Api::new(api, API_KEY);
    let mut next_cut = start + options.cut_every;
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_cut {
            next_cut += options.cut_every;
            if admin_close(&mut api, xorshift(&mut random)).await {
                closes += 1;
            }
            // A random proxy, or the other one when it carries nothing (its node is down).
            let first = (xorshift(&mut random) % 2) as usize;
            let pick = xorshift(&mut random);
            if proxies[first].reset(pick) || proxies[1 - first].reset(pick) {
                resets += 1;
            }
        }
        if options.kill_node && kills == 0 && now >= kill_at {
            kills += 1;
            let node = nodes[1].clone();
            eprintln!("recovery-check: SIGKILL node 2 at {:?}", start.elapsed());
            lock(&node).kill();
            tokio::time::sleep(Duration::from_secs(2)).await;
            let restarted = tokio::task::block_in_place(|| lock(&node).up());
            eprintln!(
                "recovery-check: node 2 restarted ({restarted:?}) at {:?}",
                start.elapsed()
            );
        }
        if options.restart_engine && restarts == 0 && now >= engine_at {
            restarts += 1;
            eprintln!("recovery-check: engine down at {:?}", start.elapsed());
            tokio::task::block_in_place(|| lock(engine).down());
            tokio::time::sleep(Duration::from_secs(1)).await;
            let up = tokio::task::block_in_place(|| lock(engine).up());
            eprintln!(
                "recovery-check: engine up ({up:?}) at {:?}",
                start.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (closes, resets, kills, restarts)
}

/// Closes one random subscriber connection of the cluster with the admin API.
async fn admin_close(api: &mut Api, pick: u64) -> bool {
    let Ok((200, body)) = api.request("GET", "/api/connections?limit=1000", "").await else {
        return false;
    };
    let Ok(listing) = serde_json::from_str::<serde_json::Value>(&body) else {
        return false;
    };
    let ids: Vec<String> = listing["connections"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|c| match &c["id"] {
                    serde_json::Value::String(id) => Some(id.clone()),
                    serde_json::Value::Number(id) => Some(id.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let Some(id) = ids.get((pick % ids.len().max(1) as u64) as usize) else {
        return false;
    };
    matches!(
        api.request("DELETE", &format!("/api/connections/{id}"), "")
            .await,
        Ok((200, _))
    )
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// The check's locks guard plain data for a moment; a poisoned one is still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
