//! The publisher: `rate` publications a second for `duration`, spread over the rooms and
//! sent through every node's `POST /api/publish`, each text a sequence number. A publish
//! that fails is tried once more through the next node with the same idempotency key, so a
//! retry never stores a publication twice.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use wharf_client::rooms::Position;

use super::http::Api;
use super::procs::API_KEY;
use super::verify::Acked;

/// What the publisher did.
#[derive(Debug, Default)]
pub struct Published {
    /// The acknowledged publications.
    pub acked: Vec<Acked>,
    /// Publications that failed on both nodes (not counted; maybe stored).
    pub failed: u64,
}

/// Publishes until `duration` is over.
pub async fn run(
    nodes: Vec<SocketAddr>,
    rooms: Vec<String>,
    rate: u32,
    duration: Duration,
    workers: usize,
) -> Published {
    let workers = workers.max(nodes.len()).max(1);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut queues = Vec::new();
    for w in 0..workers {
        let (tx, mut rx) = mpsc::unbounded_channel::<(u64, String)>();
        queues.push(tx);
        let mut apis: Vec<Api> = (0..nodes.len())
            .map(|i| Api::new(nodes[(w + i) % nodes.len()], API_KEY))
            .collect();
        let done = done_tx.clone();
        tokio::spawn(async move {
            while let Some((seq, room)) = rx.recv().await {
                let body = serde_json::json!({
                    "room": room,
                    "text": seq.to_string(),
                    "idempotency_key": format!("seq-{seq}"),
                })
                .to_string();
                let mut result = None;
                for api in apis.iter_mut().take(2) {
                    if let Some(position) = publish(api, &body).await {
                        result = Some(Acked {
                            room: room.clone(),
                            position,
                            seq,
                        });
                        break;
                    }
                }
                let _ = done.send(result);
            }
        });
    }
    drop(done_tx);
    let start = Instant::now();
    let mut seq = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    while start.elapsed() < duration {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        while seq < due {
            let room = rooms[(seq % rooms.len() as u64) as usize].clone();
            let _ = queues[(seq % workers as u64) as usize].send((seq, room));
            seq += 1;
        }
    }
    drop(queues);
    let mut published = Published::default();
    while let Some(result) = done_rx.recv().await {
        match result {
            Some(acked) => published.acked.push(acked),
            None => published.failed += 1,
        }
    }
    published
}

async fn publish(api: &mut Api, body: &str) -> Option<Position> {
    let (status, body) = api.request("POST", "/api/publish", body).await.ok()?;
    if status != 200 {
        return None;
    }
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    json["position"].as_str()?.parse().ok()
}
