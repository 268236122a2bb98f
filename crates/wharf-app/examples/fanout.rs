//! The room fan-out benchmark's load side: opens N connections to one room across one or
//! more `wharf serve` nodes, then pushes M messages to the room through one node's HTTP API
//! and measures how fast the deliveries arrive.
//!
//! `scripts/bench-fanout.sh` starts the nodes (and pins processes to cores); see
//! `docs/cluster.md` for the figures.
//!
//! ```text
//! fanout --ws ws://127.0.0.1:9502/wss/rooms/bench[,ws://…] --http 127.0.0.1:9501 \
//!        --api-key KEY --conns 10000 --messages 100 --size 32
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::sync::Semaphore;
use wharf_client::{ClientConfig, Event, connect};

#[path = "support/api.rs"]
mod api;

#[derive(Parser)]
struct Args {
    /// WebSocket URLs of the room route, comma-separated; connections are spread over them
    #[arg(long, value_delimiter = ',')]
    ws: Vec<String>,
    /// host:port of the HTTP API the pushes go through
    #[arg(long)]
    http: String,
    /// The API key
    #[arg(long)]
    api_key: String,
    /// The room
    #[arg(long, default_value = "bench")]
    room: String,
    /// Connections in the room
    #[arg(long, default_value_t = 10_000)]
    conns: usize,
    /// Messages pushed to the room
    #[arg(long, default_value_t = 100)]
    messages: u64,
    /// Payload bytes per message
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Publish through `POST /api/publish` (the room must keep history: each message gets a
    /// position and is stored before the fan-out) instead of `POST /api/push`
    #[arg(long)]
    history: bool,
    /// Give up after this many seconds
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(!args.ws.is_empty(), "give at least one --ws URL");
    let deadline = Instant::now() + Duration::from_secs(args.timeout);

    // Open the connections, 256 handshakes at a time.
    let received = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicU64::new(0));
    let last = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let ramp = Arc::new(Semaphore::new(256));
    let opened = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..args.conns {
        let url = args.ws[i % args.ws.len()].clone();
        let (received, finished, last, ramp, opened) = (
            received.clone(),
            finished.clone(),
            last.clone(),
            ramp.clone(),
            opened.clone(),
        );
        let expected = args.messages;
        tasks.push(tokio::spawn(async move {
            let permit = ramp.acquire_owned().await;
            let mut client = match connect(&url, &ClientConfig::default()).await {
                Ok(client) => client,
                Err(e) => {
                    eprintln!("connect {url}: {e}");
                    return;
                }
            };
            drop(permit);
            opened.fetch_add(1, Ordering::Relaxed);
            let mut mine = 0;
            while mine < expected {
                match client.recv().await {
                    Ok(Some(Event::Message(_))) => {
                        mine += 1;
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Some(_)) => {}
                    _ => return,
                }
            }
            *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            finished.fetch_add(1, Ordering::Relaxed);
            // Stay connected until every connection is done, so counts stay stable.
            std::future::pending::<()>().await;
        }));
    }
    while opened.load(Ordering::Relaxed) < args.conns as u64 {
        anyhow::ensure!(Instant::now() < deadline, "timed out opening connections");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let open_secs = started.elapsed().as_secs_f64();
    // Every node has the members in its room before the first push: ask the cluster.
    let path = format!("/api/rooms/{}", args.room);
    loop {
        let answer = request(&args, "GET", &path, "").await?;
        if answer["count"].as_u64() == Some(args.conns as u64) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the room never reached {} members: {answer}",
            args.conns
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let text = "x".repeat(args.size);
    let body = serde_json::json!({ "room": args.room, "text": text }).to_string();
    let first = Instant::now();
    let endpoint = if args.history {
        "/api/publish"
    } else {
        "/api/push"
    };
    for _ in 0..args.messages {
        request(&args, "POST", endpoint, &body).await?;
    }
    let pushed = first.elapsed();
    let total = args.conns as u64 * args.messages;
    while finished.load(Ordering::Relaxed) < args.conns as u64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out: {} of {total} deliveries",
            received.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let done = last
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .unwrap_or_else(Instant::now);
    let elapsed = done.duration_since(first).as_secs_f64();
    let result = serde_json::json!({
        "nodes": args.ws.len(),
        "conns": args.conns,
        "messages": args.messages,
        "size": args.size,
        "history": args.history,
        "deliveries": total,
        "seconds": elapsed,
        "deliveries_per_sec": total as f64 / elapsed,
        "push_calls_seconds": pushed.as_secs_f64(),
        "open_seconds": open_secs,
    });
    println!("{result}");
    for task in tasks {
        task.abort();
    }
    Ok(())
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
