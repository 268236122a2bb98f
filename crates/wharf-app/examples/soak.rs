//! The soak test's load side: holds N connections to an echo route, drops a share of them
//! abruptly every second (the TCP connection ends without a close frame) and opens as many
//! new ones, checks a few round trips each second, and at the end drops everything.
//!
//! `scripts/soak.sh` starts `wharf serve` in its own process and samples the server's
//! registry count, file descriptors and memory while this runs; see `docs/security.md`.
//!
//! ```text
//! soak --url ws://127.0.0.1:9502/echo --conns 10000 --drop-percent 1 --seconds 300
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use wharf_client::{ClientConfig, Event, Message, connect};

#[derive(Parser)]
struct Args {
    /// The echo route's URL
    #[arg(long, default_value = "ws://127.0.0.1:9502/echo")]
    url: String,
    /// Connections held open
    #[arg(long, default_value_t = 10_000)]
    conns: usize,
    /// Share of the connections dropped abruptly (and replaced) each second, in percent
    #[arg(long, default_value_t = 1.0)]
    drop_percent: f64,
    /// How long to churn, after the ramp
    #[arg(long, default_value_t = 300)]
    seconds: u64,
    /// Round trips checked each second, on random connections
    #[arg(long, default_value_t = 20)]
    probes: usize,
}

/// Counters shared by the connection tasks.
#[derive(Default)]
struct Stats {
    opened: AtomicU64,
    failed: AtomicU64,
    ended_by_server: AtomicU64,
}

/// One held connection: a task that reads (answering the server's pings) until aborted.
/// Aborting it drops the client, which ends the TCP connection with no close frame.
struct Held {
    task: JoinHandle<()>,
    probe: tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<Duration>>,
}

fn open(url: &str, stats: &Arc<Stats>, ramp: &Arc<Semaphore>) -> Held {
    let (probe, mut probes) =
        tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<Duration>>(1);
    let (url, stats, ramp) = (url.to_owned(), stats.clone(), ramp.clone());
    let task = tokio::spawn(async move {
        let permit = ramp.acquire_owned().await;
        let mut client = match connect(&url, &ClientConfig::default()).await {
            Ok(client) => client,
            Err(e) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("connect: {e}");
                return;
            }
        };
        drop(permit);
        stats.opened.fetch_add(1, Ordering::Relaxed);
        let mut waiting: Option<(Instant, tokio::sync::oneshot::Sender<Duration>)> = None;
        loop {
            tokio::select! {
                asked = probes.recv(), if waiting.is_none() => {
                    let Some(reply) = asked else { return };
                    if client.send(Message::Text("probe".into())).await.is_err() {
                        return;
                    }
                    waiting = Some((Instant::now(), reply));
                }
                event = client.recv() => match event {
                    Ok(Some(Event::Message(_))) => {
                        if let Some((sent, reply)) = waiting.take() {
                            let _ = reply.send(sent.elapsed());
                        }
                    }
                    Ok(Some(_)) => {}
                    _ => {
                        stats.ended_by_server.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }
    });
    Held { task, probe }
}

/// A small xorshift generator: victims spread over the pool, no dependency needed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.conns > 0, "--conns must be above 0");
    let stats = Arc::new(Stats::default());
    let ramp = Arc::new(Semaphore::new(256));
    let started = Instant::now();
    let mut pool: Vec<Held> = (0..args.conns)
        .map(|_| open(&args.url, &stats, &ramp))
        .collect();
    while stats.opened.load(Ordering::Relaxed) + stats.failed.load(Ordering::Relaxed)
        < args.conns as u64
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "ramp: {} open in {:.1}s, {} failed",
        stats.opened.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        stats.failed.load(Ordering::Relaxed)
    );

    let per_tick = ((args.conns as f64 * args.drop_percent / 100.0).round() as usize).max(1);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut dropped = 0u64;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let churn = Instant::now();
    let mut worst = Duration::ZERO;
    while churn.elapsed() < Duration::from_secs(args.seconds) {
        ticker.tick().await;
        for _ in 0..per_tick {
            let victim = pool.swap_remove(rng.below(pool.len()));
            victim.task.abort();
            dropped += 1;
            pool.push(open(&args.url, &stats, &ramp));
        }
        // Round trips on random survivors.
        let mut rtts = Vec::new();
        for _ in 0..args.probes {
            let held = &pool[rng.below(pool.len())];
            let (tx, rx) = tokio::sync::oneshot::channel();
            if held.probe.try_send(tx).is_ok() {
                if let Ok(Ok(rtt)) = tokio::time::timeout(Duration::from_secs(2), rx).await {
                    rtts.push(rtt);
                }
            }
        }
        let tick_worst = rtts.iter().max().copied().unwrap_or_default();
        worst = worst.max(tick_worst);
        let secs = churn.elapsed().as_secs();
        if secs % 10 == 0 {
            println!(
                "t={secs}s dropped={dropped} opened={} failed={} ended_by_server={} probes={}/{} worst_rtt_ms={:.1}",
                stats.opened.load(Ordering::Relaxed),
                stats.failed.load(Ordering::Relaxed),
                stats.ended_by_server.load(Ordering::Relaxed),
                rtts.len(),
                args.probes,
                tick_worst.as_secs_f64() * 1000.0
            );
        }
    }
    for held in pool.drain(..) {
        held.task.abort();
    }
    println!(
        "done: dropped {dropped} abruptly, opened {} in all, {} failed, {} ended by the server, worst probe {:.1} ms",
        stats.opened.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed),
        stats.ended_by_server.load(Ordering::Relaxed),
        worst.as_secs_f64() * 1000.0
    );
    // Give the aborted tasks a moment to drop their sockets before the process exits.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}
