//! The recovery check, long version: `scripts/recovery-check.sh [redis|nats] [SECONDS]`
//! builds and runs it. Two nodes on a private engine, 200 subscribers on 20 rooms, 1,000
//! publications a second through both nodes' HTTP API, and faults meanwhile (admin closes,
//! TCP resets, a node SIGKILLed and restarted, the engine restarted). It prints
//!
//! ```text
//! recovery: N subscribers, M publications, L lost, D duplicated, O out of order, U unrecoverable
//! ```
//!
//! and exits 1 on any loss, duplicate or reordering. The logic is in `check/`, shared with
//! `tests/recovery_check.rs`.

#![allow(missing_docs, unreachable_pub)]

mod check;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Arguments.
#[derive(Debug, Parser)]
struct Args {
    /// The `wharf` binary to run as the nodes.
    #[arg(long)]
    wharf: PathBuf,
    /// redis or nats.
    #[arg(long, default_value = "redis")]
    engine: check::procs::EngineKind,
    /// How long the publisher runs, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Subscriber sessions.
    #[arg(long, default_value_t = 200)]
    subscribers: usize,
    /// Rooms.
    #[arg(long, default_value_t = 20)]
    rooms: usize,
    /// Rooms each subscriber follows.
    #[arg(long, default_value_t = 1)]
    rooms_per_subscriber: usize,
    /// Publications a second.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Milliseconds between cuts (one admin close and one TCP reset each).
    #[arg(long, default_value_t = 1000)]
    cut_every_ms: u64,
    /// Do not SIGKILL a node (to narrow down a failure).
    #[arg(long)]
    no_node_kill: bool,
    /// Do not restart the engine (to narrow down a failure).
    #[arg(long)]
    no_engine_restart: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = check::Options {
        wharf: args.wharf,
        engine: args.engine,
        duration: Duration::from_secs(args.seconds),
        subscribers: args.subscribers,
        rooms: args.rooms,
        rooms_per_subscriber: args.rooms_per_subscriber,
        rate: args.rate,
        cut_every: Duration::from_millis(args.cut_every_ms),
        kill_node: !args.no_node_kill,
        restart_engine: !args.no_engine_restart,
        settle: Duration::from_secs(30),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("recovery-check: no runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(check::run(&options)) {
        Ok(outcome) => {
            eprintln!(
                "recovery-check: faults: {} admin closes, {} TCP resets, {} node SIGKILL, {} engine restart; {} reconnects; {} publishes failed on both nodes",
                outcome.admin_closes,
                outcome.resets,
                outcome.node_kills,
                outcome.engine_restarts,
                outcome.reconnects,
                outcome.publish_failures
            );
            println!("{}", outcome.report);
            if outcome.report.passed() {
                ExitCode::SUCCESS
            } else {
                eprintln!("recovery-check: node warnings:\n{}", outcome.node_warnings);
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("recovery-check: {e}");
            ExitCode::from(2)
        }
    }
}
