//! The rooms protocol's fan-out benchmark, load side: N subscribers on `/wss/rooms` spread
//! over C rooms (each subscriber follows one room) across one or more `wharf serve` nodes,
//! then P publications spread over the rooms through one node's `POST /api/publish`, from a
//! few concurrent publishers. Each publication carries the time it was sent, so every delivery
//! gives a publish-to-delivery latency; prints deliveries per second and the p50/p99/max
//! latency as one JSON line.
//!
//! `scripts/bench-rooms.sh` starts the nodes (auth off, history on for `demo:*`) and pins the
//! processes to cores; see `docs/cluster.md` for the figures.
//!
//! ```text
//! rooms_fanout --ws ws://127.0.0.1:9502/wss/rooms[,ws://…] --http 127.0.0.1:9501 \
//!              --api-key KEY --subscribers 10000 --rooms 100 --publications 1000
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use std::sync::Mutex;

use tokio::sync::Semaphore;
use wharf_client::{ClientConfig, Event, Message, connect};

#[path = "support/api.rs"]
mod api;

#[derive(Parser)]
struct Args {
    /// WebSocket URLs of `/wss/rooms`, comma-separated; subscribers are spread over them
    #[arg(long, value_delimiter = ',')]
    ws: Vec<String>,
    /// host:port of the HTTP API the publications go through
    #[arg(long)]
    http: String,
    /// The API key
    #[arg(long)]
    api_key: String,
    /// Subscribers (one socket each)
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    /// Rooms (`demo:bench:<n>`), each followed by subscribers / rooms subscribers
    #[arg(long, default_value_t = 100)]
    rooms: usize,
    /// Publications, spread over the rooms in turn
    #[arg(long, default_value_t = 1000)]
    publications: usize,
    /// Concurrent publishers
    #[arg(long, default_value_t = 8)]
    publishers: usize,
    /// Give up after this many seconds
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

fn room(n: usize) -> String {
    format!("demo:bench:{n}")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        !args.ws.is_empty() && args.rooms > 0,
        "give --ws and --rooms > 0"
    );
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let epoch = Instant::now();
    let mut config = ClientConfig::default();
    config.protocols = vec!["wharf.rooms.v1".to_owned()];

    // Subscribers, 256 handshakes at a time; each counts its deliveries and their latencies.
    let counts = Arc::new(Counts::default());
    let ramp = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::new();
    for i in 0..args.subscribers {
        let url = args.ws[i % args.ws.len()].clone();
        let (config, counts, ramp) = (config.clone(), counts.clone(), ramp.clone());
        let room = room(i % args.rooms);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = subscriber(&url, &config, &room, &counts, &ramp, epoch).await {
                eprintln!("subscriber on {url}: {e}");
            }
        }));
    }
    let (subscribed, delivered, latencies) =
        (&counts.subscribed, &counts.delivered, &counts.latencies);
    while subscribed.load(Ordering::Relaxed) < args.subscribers as u64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out subscribing: {} of {}",
            subscribed.load(Ordering::Relaxed),
            args.subscribers
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Publishers: each takes the next publication number until all are sent.
    let expected = expected_deliveries(&args);
    let next = Arc::new(AtomicU64::new(0));
    let args = Arc::new(args);
    let first = Instant::now();
    let mut publishers = Vec::new();
    for _ in 0..args.publishers {
        let (args, next) = (args.clone(), next.clone());
        publishers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                if n >= args.publications {
                    return Ok::<(), anyhow::Error>(());
                }
                let sent = epoch.elapsed().as_micros().to_string();
                let body = serde_json::json!({"room": room(n % args.rooms), "text": sent});
                request(&args, "POST", "/api/publish", &body.to_string()).await?;
            }
        }));
    }
    for publisher in publishers {
        publisher.await??;
    }
    let published = first.elapsed();
    while delivered.load(Ordering::Relaxed) < expected {
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out: {} of {expected} deliveries",
            delivered.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = first.elapsed().as_secs_f64();
    for task in &tasks {
        task.abort();
    }
    let mut all = std::mem::take(&mut *lock(latencies));
    all.sort_unstable();
    let at = |q: f64| all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)));
    let result = serde_json::json!({
        "nodes": args.ws.len(),
        "subscribers": args.subscribers,
        "rooms": args.rooms,
        "publications": args.publications,
        "deliveries": expected,
        "seconds": elapsed,
        "deliveries_per_sec": expected as f64 / elapsed,
        "publications_per_sec": args.publications as f64 / published.as_secs_f64(),
        "latency_us_sampled": all.len(),
        "latency_us_p50": at(0.5),
        "latency_us_p99": at(0.99),
        "latency_us_max": all.last(),
    });
    println!("{result}");
    Ok(())
}

/// What the subscribers count together.
#[derive(Default)]
struct Counts {
    subscribed: AtomicU64,
    delivered: AtomicU64,
    /// Publish-to-delivery latencies, in microseconds.
    latencies: Mutex<Vec<u32>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One subscriber: connects (holding a ramp permit until subscribed), subscribes to `room`,
/// then counts each push and its latency (the text is the send time, µs since `epoch`).
async fn subscriber(
    url: &str,
    config: &ClientConfig,
    room: &str,
    counts: &Counts,
    ramp: &Arc<Semaphore>,
    epoch: Instant,
) -> anyhow::Result<()> {
    let mut permit = Some(ramp.clone().acquire_owned().await?);
    let mut client = connect(url, config).await?;
    let command = serde_json::json!({"id": 1, "op": "subscribe", "room": room});
    client.send(Message::Text(command.to_string())).await?;
    loop {
        let Some(Event::Message(Message::Text(text))) = client.recv().await? else {
            continue;
        };
        let frame: serde_json::Value = serde_json::from_str(&text)?;
        if frame.get("id").is_some() {
            anyhow::ensure!(frame["error"].is_null(), "subscribe: {frame}");
            drop(permit.take());
            counts.subscribed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let sent: u64 = frame["text"].as_str().unwrap_or("0").parse()?;
        let now = epoch.elapsed().as_micros() as u64;
        let latency = u32::try_from(now.saturating_sub(sent)).unwrap_or(u32::MAX);
        lock(&counts.latencies).push(latency);
        counts.delivered.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every publication reaches the subscribers of its room.
fn expected_deliveries(args: &Args) -> u64 {
    (0..args.publications)
        .map(|n| {
            let room = n % args.rooms;
            // Subscribers i with i % rooms == room.
            ((args.subscribers + args.rooms - 1 - room) / args.rooms) as u64
        })
        .sum()
}

/// One request to the API of `args`.
async fn request(
    args: &Args,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<serde_json::Value> {
    api::request(&args.http, &args.api_key, method, path, body).await
}
