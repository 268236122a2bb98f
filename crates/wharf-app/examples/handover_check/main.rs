//! The handover check, long version: `scripts/handover-check.sh` builds and runs it. One
//! `wharf serve` with 10,000 plain connections (echo clients on `/echo`, subscribers of the
//! rooms protocol on `/wss/rooms` receiving 1,000 publications a second over 500 rooms) and
//! 100 TLS connections, through three `wharf upgrade`s in a row with a successor that
//! crashes on start between the first and the second, and one that dies with the open
//! connections it was sent (this binary, started as the successor) between the second and
//! the third. It prints what the clients saw
//! (closes, lost, duplicated, out of order, the largest pause each saw as p50/p99/max; the
//! TLS closes' codes and spread per upgrade) and exits 1 on any failure.
//!
//! The logic is in `check/`, shared with `tests/handover.rs`.

#![allow(missing_docs, unreachable_pub)]

mod check;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Arguments.
#[derive(Debug, Parser)]
struct Args {
    /// The `wharf` binary to serve and upgrade to.
    #[arg(long)]
    wharf: PathBuf,
    /// Plain connections in all: echo clients, the rest room subscribers.
    #[arg(long, default_value_t = 10_000)]
    conns: usize,
    /// Of them, echo clients on `/echo` (all of them with --no-rooms).
    #[arg(long, default_value_t = 1_000)]
    echo: usize,
    /// Milliseconds between two messages of one echo client.
    #[arg(long, default_value_t = 100)]
    echo_interval_ms: u64,
    /// No room push: every plain connection is an echo client (for a server whose
    /// `/wss/rooms` connections do not move).
    #[arg(long)]
    no_rooms: bool,
    /// Rooms the subscribers are spread over. 500: 18 subscribers a room, 18,000 pushes a
    /// second at 1,000 publications a second, which the 2-core machine holds with the load
    /// on it too (without upgrades the latest push of a subscriber is 52 ms late at p99);
    /// 200 rooms (45,000 pushes a second) saturates it (1.7 s late), 100 rooms does not keep
    /// the rate (530 publications a second done).
    #[arg(long, default_value_t = 500)]
    rooms: usize,
    /// Publications a second, in all.
    #[arg(long, default_value_t = 1_000)]
    rate: u32,
    /// TLS connections.
    #[arg(long, default_value_t = 100)]
    tls: usize,
    /// The server's `[drain] spread`, in seconds.
    #[arg(long, default_value_t = 10)]
    spread_secs: u64,
    /// Upgrades in a row (a successor crashes on start before the second, another dies
    /// with the connections before the third); 0 runs the same load without any, for a
    /// baseline of the pauses.
    #[arg(long, default_value_t = 3)]
    upgrades: usize,
    /// Seconds of traffic before the first upgrade and after the last.
    #[arg(long, default_value_t = 5)]
    warmup_secs: u64,
}

fn main() -> ExitCode {
    // Started by the server as its successor: the one that dies with the connections.
    if let Some(status) = check::dying::die_with_connections() {
        return ExitCode::from(status);
    }
    let args = Args::parse();
    let dying_successor = match std::env::current_exe() {
        Ok(exe) => vec![exe.display().to_string()],
        Err(e) => {
            eprintln!("handover-check: where is this binary? {e}");
            return ExitCode::from(2);
        }
    };
    let (echo, subscribers) = if args.no_rooms {
        (args.conns, 0)
    } else {
        let echo = args.echo.min(args.conns);
        (echo, args.conns - echo)
    };
    let options = check::Options {
        wharf: args.wharf,
        echo,
        echo_interval: Duration::from_millis(args.echo_interval_ms),
        subscribers,
        rooms: args.rooms,
        rate: args.rate,
        tls: args.tls,
        spread: Duration::from_secs(args.spread_secs),
        upgrades: args.upgrades,
        dying_successor,
        warmup: Duration::from_secs(args.warmup_secs),
        connect_concurrency: 64,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("handover-check: no runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(check::run(&options)) {
        Ok(report) => {
            println!("{report}");
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("handover-check: could not run: {e}");
            ExitCode::from(2)
        }
    }
}
