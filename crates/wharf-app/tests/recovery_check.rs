//! The recovery check, short (10 s): two `wharf serve` nodes on a private Redis (and NATS), a
//! few subscribers of the rooms protocol (`wharf_client::rooms`) on both, a publisher
//! through both nodes' HTTP API, and one fault of each kind meanwhile (an admin close, a
//! TCP reset, a node SIGKILLed and restarted, the engine restarted). Every subscriber must
//! hold every acknowledged publication of its room exactly once, in position order. The
//! long run is `scripts/recovery-check.sh`; the logic is shared with it.

#![allow(missing_docs, unreachable_pub, dead_code)]

#[path = "../examples/recovery_check/check/mod.rs"]
mod check;

use std::time::Duration;

use check::procs::EngineKind;

fn options(engine: EngineKind) -> check::Options {
    check::Options {
        wharf: env!("CARGO_BIN_EXE_wharf").into(),
        engine,
        // The node dies at 3.5 s and is back at 5.5 s, the engine is down from 6.5 s to
        // about 7.5 s, and publishing goes on until 10 s: the nodes' backplane reconnects
        // (with backoff) before the last publications, which open and fill any gap. (When
        // publishing stops before that, what was published while a node's backplane was
        // still reconnecting waits for the room's next publication: docs/cluster.md, "The
        // recovery check".)
        duration: Duration::from_secs(10),
        subscribers: 16,
        rooms: 4,
        rooms_per_subscriber: 2,
        rate: 200,
        // One admin close and one reset in the run: at 5 s (of 10).
        cut_every: Duration::from_millis(5000),
        kill_node: true,
        restart_engine: true,
        settle: Duration::from_secs(20),
    }
}

async fn run(engine: EngineKind) {
    let outcome = tokio::time::timeout(Duration::from_secs(90), check::run(&options(engine)))
        .await
        .expect("the check ends within 90 s")
        .expect("the check runs");
    eprintln!("{}", outcome.report);
    // The faults happened, or the check proved nothing.
    assert_eq!(outcome.node_kills, 1);
    assert_eq!(outcome.engine_restarts, 1);
    assert!(outcome.admin_closes >= 1, "no admin close");
    assert!(outcome.resets >= 1, "no TCP reset");
    assert!(outcome.reconnects >= 3, "{} reconnects", outcome.reconnects);
    assert!(outcome.report.publications > 1000, "{}", outcome.report);
    assert!(
        outcome.report.passed(),
        "{}\nnode warnings:\n{}",
        outcome.report,
        outcome.node_warnings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_recovery_check() {
    run(EngineKind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_recovery_check() {
    run(EngineKind::Nats).await;
}
