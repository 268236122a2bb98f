//! Churn, bounded: 500 connections, 5% of them dropped abruptly (TCP reset, or FIN without
//! a close frame) every 100 ms while as many new ones open. At the end the registry is
//! empty and the process holds as many file descriptors as before. The long version is
//! `scripts/soak.sh`.

mod common;

use std::time::Duration;

use common::*;
use wharf::{Echo, Router};
use wharf_proto::OpCode;

const OPEN: usize = 500;
const DROP_EACH_ROUND: usize = OPEN / 20;
const ROUNDS: usize = 30;

/// Open file descriptors of this process (server and clients live in it).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| dir.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abrupt_churn_returns_registry_and_fds_to_baseline() {
    let mut config = ws_server();
    config.limits.close_timeout = Duration::from_millis(300);
    let server = start_ws_with(config, Router::new().route("/echo", Echo)).await;
    // A first connection warms up lazily created state (runtime threads, timers) before
    // the baseline is taken.
    let warm = RawWs::connect(server.addr(), "/echo").await;
    drop(warm);
    eventually("warm-up closed", || server.sender.count() == 0).await;
    let baseline = open_fds();

    let mut conns = Vec::with_capacity(OPEN);
    for _ in 0..OPEN {
        conns.push(RawWs::connect(server.addr(), "/echo").await);
    }
    eventually("all registered", || server.sender.count() == OPEN).await;

    let mut dropped = 0usize;
    let mut next = 7usize;
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    for round in 0..ROUNDS {
        ticker.tick().await;
        for i in 0..DROP_EACH_ROUND {
            // A spread of victims, deterministic from run to run.
            next = (next * 31 + 17) % conns.len();
            let victim = conns.swap_remove(next);
            if i % 2 == 0 {
                // RST: SO_LINGER 0 then close.
                victim.tcp.set_zero_linger().expect("linger");
            }
            drop(victim);
            dropped += 1;
        }
        for _ in 0..DROP_EACH_ROUND {
            conns.push(RawWs::connect(server.addr(), "/echo").await);
        }
        // The survivors still work.
        let probe = &mut conns[round * 13 % OPEN];
        probe.send(OpCode::Text, b"alive").await;
        assert_eq!(probe.read_frame().await.payload, b"alive");
    }
    eventually("the registry to match the open connections", || {
        server.sender.count() == OPEN
    })
    .await;
    println!(
        "dropped {dropped} abruptly over {ROUNDS} rounds; fds: baseline {baseline}, peak {}",
        open_fds()
    );

    // Everyone leaves abruptly.
    for (i, conn) in conns.drain(..).enumerate() {
        if i % 2 == 0 {
            let _ = conn.tcp.set_zero_linger();
        }
    }
    within_for(Duration::from_secs(10), "registry and fds back", async {
        while server.sender.count() != 0 || open_fds() > baseline + 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    println!(
        "after: registry 0, fds {} (baseline {baseline})",
        open_fds()
    );
    server.shutdown().await;
}
