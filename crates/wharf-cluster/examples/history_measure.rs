//! What a history store costs, measured and printed (not a check): memory per stored message
//! (this process's RSS for the memory store; `MEMORY USAGE` and the server's RSS for Redis, the
//! stream's bytes and the server's RSS for NATS, each on a private server so nothing else
//! counts), then appends and reads per second on the machine's Redis and NATS.
//!
//! ```sh
//! cargo run --release -p wharf-cluster --example history_measure
//! ```
//!
//! Needs `redis-server` and `nats-server` (for the private servers) and the machine's Redis
//! and NATS (`WHARF_TEST_REDIS_URL`, `WHARF_TEST_NATS_URL`; default the standard ports).
//! Figures of a run are in docs/cluster.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf::Message;
use wharf::history::{HistoryPolicy, HistoryStore, MemoryHistory};
use wharf_cluster::{NatsHistory, RedisHistory};

#[allow(dead_code, unreachable_pub)]
#[path = "../../wharf-app/tests/common/engine.rs"]
mod private_engine;

type Failure = Box<dyn std::error::Error>;

fn policy(size: usize, ttl_secs: u64) -> HistoryPolicy {
    HistoryPolicy::new(size, Duration::from_secs(ttl_secs))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// A prefix no other run uses.
fn prefix(name: &str) -> String {
    format!("measure-{name}-{}", std::process::id())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Failure> {
    memory_per_message().await?;
    rates().await?;
    Ok(())
}

async fn memory_per_message() -> Result<(), Failure> {
    const N: usize = 10_000;
    let many = policy(100_000, 3600);
    let store = MemoryHistory::new();
    let text = Message::text("y".repeat(64));
    let before = rss_kib(std::process::id());
    for _ in 0..100_000 {
        store.append("room", &text, &many, None).await?;
    }
    let per = (rss_kib(std::process::id()).saturating_sub(before) * 1024) as f64 / 100_000.0;
    println!(
        "memory: RSS +{per:.0} B per message ({} kept)",
        store.stored()
    );

    let p = policy(N, 3600);
    let payload = Message::binary(vec![b'x'; 64]);
    for kind in ["redis", "nats"] {
        let engine = private_engine::Engine::start(kind);
        let pid = engine.pid().ok_or("the private server is not running")?;
        let prefix = prefix("memory");
        let store: Arc<dyn HistoryStore> = if kind == "redis" {
            Arc::new(RedisHistory::new(&engine.url(), &prefix)?)
        } else {
            Arc::new(NatsHistory::new(&engine.url(), &prefix))
        };
        // Create the stream / load the scripts first, so only the messages are counted.
        store.read("warm", None, 1, &p).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = rss_kib(pid);
        for _ in 0..N {
            store.append("room", &payload, &p, None).await?;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss = (rss_kib(pid).saturating_sub(before) * 1024) as f64 / N as f64;
        if kind == "redis" {
            let client = ::redis::Client::open(engine.url())?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            let usage: u64 = ::redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(format!("{prefix}:history:room"))
                .arg("SAMPLES")
                .arg(0)
                .query_async(&mut conn)
                .await?;
            println!(
                "redis: MEMORY USAGE {} B per message; RSS +{rss:.0} B per message",
                usage / N as u64
            );
        } else {
            let client = async_nats::connect(engine.url()).await?;
            let stream = NatsHistory::new(&engine.url(), &prefix).stream().to_owned();
            let reply = client
                .request(format!("$JS.API.STREAM.INFO.{stream}"), "".into())
                .await?;
            let info: serde_json::Value = serde_json::from_slice(&reply.payload)?;
            let bytes = info["state"]["bytes"].as_u64().unwrap_or(0);
            println!(
                "nats: stream state.bytes {} B per message; RSS +{rss:.0} B per message",
                bytes / N as u64
            );
        }
    }
    Ok(())
}

/// Appends per second, one appender and 8 concurrent ones in one room, and reads per second.
async fn rates() -> Result<(), Failure> {
    const N: usize = 2_000;
    let redis = std::env::var("WHARF_TEST_REDIS_URL").unwrap_or("redis://127.0.0.1:6379".into());
    let nats = std::env::var("WHARF_TEST_NATS_URL").unwrap_or("nats://127.0.0.1:4222".into());
    let stores: [(&str, Arc<dyn HistoryStore>); 3] = [
        ("memory", Arc::new(MemoryHistory::new())),
        (
            "redis",
            Arc::new(RedisHistory::new(&redis, &prefix("rate"))?),
        ),
        ("nats", Arc::new(NatsHistory::new(&nats, &prefix("rate")))),
    ];
    // Short-lived: the ttl removes what this leaves on the shared servers.
    let p = policy(1000, 60);
    let m = Message::binary(vec![b'x'; 64]);
    for (name, store) in stores {
        let started = Instant::now();
        for _ in 0..N {
            store.append("room", &m, &p, None).await?;
        }
        let one = N as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (store, m, p) = (store.clone(), m.clone(), p.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..N / 8 {
                    store.append("room", &m, &p, None).await?;
                }
                Ok::<(), wharf::history::HistoryError>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        let eight = N as f64 / started.elapsed().as_secs_f64();
        let mut per_read = Vec::new();
        for limit in [100, 4] {
            let started = Instant::now();
            for _ in 0..200 {
                store.read("room", None, limit, &p).await?;
            }
            per_read.push(200.0 / started.elapsed().as_secs_f64());
        }
        println!(
            "{name}: {one:.0} appends/s alone, {eight:.0}/s with 8 appenders, \
             {:.0} reads of 100/s, {:.0} reads of 4/s",
            per_read[0], per_read[1]
        );
    }
    Ok(())
}
