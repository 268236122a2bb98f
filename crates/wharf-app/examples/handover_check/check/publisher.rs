//! The room push: `rate` publications a second through `POST /api/publish`, publication
//! `seq` to room `seq % rooms`, its text `"SEQ MICROS"`: the number, and when it was due in
//! microseconds since the check's `origin` (the subscribers, in the same process, tell
//! from it how late each push came). Each room belongs to one worker, which publishes
//! its rooms' publications one after the other, so within a room the numbers are stored, and
//! must arrive, in increasing order.
//!
//! A publish that fails (its keep-alive connection closed by the old process at a
//! handover, say) is tried again, with the same idempotency key, until `RETRY_FOR` is over.
//! The old process answers every request it read before it lets its connections go, so a
//! failed attempt was not stored; if one ever were, the successor (history in memory does
//! not move, nor the keys) would store the retry again and the subscribers would report
//! a duplicate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use std::time::Instant;

use tokio::sync::mpsc;

use super::http::Api;
use super::serve::API_KEY;

/// How long one publication is retried before it counts as failed.
const RETRY_FOR: Duration = Duration::from_secs(15);

/// What the publisher did.
#[derive(Debug, Default)]
pub struct Published {
    /// The acknowledged publications' numbers, per room, in order.
    pub acked: Vec<Vec<u32>>,
    /// Publications still failing after `RETRY_FOR` (not expected by anyone).
    pub failed: Vec<u32>,
    /// Attempts that failed and were tried again.
    pub retries: u64,
    /// The longest a publication took from its due time to its acknowledgement.
    pub slowest: Duration,
    /// From the first publication's due time to the last one's answer.
    pub took: Duration,
}

/// Publishes until `stop` resolves; `acked` counts, per room, the acknowledged ones.
pub async fn run(
    origin: Instant,
    http: SocketAddr,
    rooms: Vec<String>,
    rate: u32,
    workers: usize,
    acked: Arc<Vec<AtomicU32>>,
    stop: impl std::future::Future<Output = ()>,
) -> Published {
    let workers = workers.clamp(1, rooms.len().max(1));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut queues = Vec::new();
    for _ in 0..workers {
        let (tx, mut rx) = mpsc::unbounded_channel::<(u32, usize, Instant)>();
        queues.push(tx);
        let done = done_tx.clone();
        let rooms = rooms.clone();
        let acked = acked.clone();
        tokio::spawn(async move {
            let mut api = Api::new(http, API_KEY);
            while let Some((seq, room, due)) = rx.recv().await {
                let body = serde_json::json!({
                    "room": rooms[room],
                    "text": format!("{seq} {}", due.duration_since(origin).as_micros()),
                    "idempotency_key": format!("seq-{seq}"),
                })
                .to_string();
                let mut retries = 0;
                let ok = loop {
                    match api.request("POST", "/api/publish", &body).await {
                        Ok((200, _)) => break true,
                        _ if due.elapsed() < RETRY_FOR => {
                            retries += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        _ => break false,
                    }
                };
                if ok {
                    acked[room].fetch_add(1, Ordering::Relaxed);
                }
                let _ = done.send((seq, room, ok, retries, due.elapsed()));
            }
        });
    }
    drop(done_tx);
    let start = Instant::now();
    let mut seq = 0u32;
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stop => break,
        }
        let due = (start.elapsed().as_secs_f64() * f64::from(rate)) as u32;
        while seq < due {
            let room = seq as usize % rooms.len();
            let _ = queues[room % workers].send((seq, room, Instant::now()));
            seq += 1;
        }
    }
    drop(queues);
    let mut published = Published {
        acked: vec![Vec::new(); rooms.len()],
        ..Published::default()
    };
    while let Some((seq, room, ok, retries, took)) = done_rx.recv().await {
        if ok {
            published.acked[room].push(seq);
        } else {
            published.failed.push(seq);
        }
        published.retries += retries;
        published.slowest = published.slowest.max(took);
    }
    published.took = start.elapsed();
    for room in &mut published.acked {
        room.sort_unstable();
    }
    published
}
