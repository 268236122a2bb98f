//! `wharf bench`: a load generator for any WebSocket server (`ws://` or `wss://`).
//!
//! Two modes, each a library function returning a report and a subcommand:
//!
//! - [`echo`]: N connections send messages of one size for a duration, with an optional
//!   pipelining depth (messages in flight per connection), and time every round trip.
//!   Report: messages/s, MB/s, p50/p99/p99.9 latency, errors by kind ([`EchoReport`]).
//! - [`connect()`]: ramps up to N connections at a given rate (or as fast as a concurrency
//!   limit allows), holds them, pings each, closes them. Report: handshakes/s, handshake
//!   time, connections alive at the end, failures by kind ([`ConnectReport`]).
//!
//! Every run is bounded: connects by the connect timeout, the load by its duration, draining
//! and closing by a few seconds, and [`run`] adds a hard deadline on top.
//!
//! ```no_run
//! use std::time::Duration;
//! use wharf_client::ClientConfig;
//! use wharf_client::bench::{EchoOptions, echo};
//!
//! # async fn demo() {
//! let options = EchoOptions::default()
//!     .with_connections(10)
//!     .with_pipeline(16)
//!     .with_duration(Duration::from_secs(3));
//! let report = echo("ws://127.0.0.1:9502/echo", &ClientConfig::default(), &options).await;
//! println!("{report}");
//! println!("{}", report.to_json());
//! # }
//! ```
//!
//! # Layout
//!
//! `echo.rs` and `connect.rs` are the two modes; `report.rs` the histogram, the error
//! counts, the tables and the JSON; this file the command line and the progress line.

mod connect;
mod echo;
mod report;

pub use connect::{ConnectOptions, connect};
pub use echo::{EchoOptions, echo};
pub use report::{ConnectReport, EchoReport, Errors, Latency};

use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::cli::{ConnectionArgs, EXIT_ERROR, EXIT_USAGE};
use crate::{Client, ClientConfig, connect as open};

/// Arguments of `wharf bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The mode.
    #[command(subcommand)]
    pub mode: BenchMode,
}

/// `wharf bench echo` or `wharf bench connect`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchMode {
    /// N connections echo messages of a given size for a duration; latency per message
    Echo(EchoArgs),
    /// Ramp up to N connections at a given rate, hold them; handshakes/s and failures
    Connect(ConnectArgs),
}

/// Arguments of `wharf bench echo`.
#[derive(Debug, Clone, clap::Args)]
pub struct EchoArgs {
    /// How to connect (URL, headers, TLS).
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Concurrent connections (`-c` is `wharf --config`)
    #[arg(short = 'n', long, value_name = "N", default_value_t = 50)]
    pub connections: u64,
    /// Message size in bytes (suffix k or m for KiB, MiB)
    #[arg(short = 's', long, value_name = "BYTES", default_value = "32", value_parser = parse_size)]
    pub size: usize,
    /// Measurement window in seconds
    #[arg(short = 'd', long, value_name = "SECS", default_value_t = 10.0)]
    pub duration: f64,
    /// Messages in flight per connection
    #[arg(short = 'p', long, value_name = "DEPTH", default_value_t = 1)]
    pub pipeline: usize,
    /// Seconds of load before the window opens (not counted)
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    pub warmup: f64,
    /// Send binary messages instead of text
    #[arg(long)]
    pub binary: bool,
    /// Print one JSON object instead of the table (and no progress line)
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `wharf bench connect`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// How to connect (URL, headers, TLS).
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Connections to open
    #[arg(short = 'n', long, value_name = "N", default_value_t = 1000)]
    pub connections: u64,
    /// New connections per second (default: as fast as --concurrency allows)
    #[arg(long, value_name = "PER_SEC")]
    pub rate: Option<f64>,
    /// Handshakes in flight at most
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub concurrency: usize,
    /// Seconds to hold the connections open
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub hold: f64,
    /// Print one JSON object instead of the table (and no progress line)
    #[arg(long)]
    pub json: bool,
}

/// Runs `wharf bench` and returns the exit code: 0 when the run had no error, 1 when it
/// had errors (connections refused or failed, mismatched echoes) or measured nothing, 2 for
/// bad arguments. The summary goes to stdout (a table, or one JSON object with `--json`); a
/// progress line goes to stderr every 500 ms while stderr is a terminal and `--json` is off.
pub async fn run(args: BenchArgs) -> ExitCode {
    match args.mode {
        BenchMode::Echo(args) => run_echo(args).await,
        BenchMode::Connect(args) => run_connect(args).await,
    }
}

async fn run_echo(args: EchoArgs) -> ExitCode {
    let (config, duration, warmup) = match (
        args.connection.config(),
        secs("--duration", args.duration),
        secs("--warmup", args.warmup),
    ) {
        (Ok(config), Ok(duration), Ok(warmup)) if !duration.is_zero() => (config, duration, warmup),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return usage(&e),
        _ => return usage("--duration must be more than 0"),
    };
    if args.connections == 0 || args.pipeline == 0 {
        return usage("--connections and --pipeline must be at least 1");
    }
    let options = EchoOptions::default()
        .with_connections(args.connections)
        .with_size(args.size)
        .with_pipeline(args.pipeline)
        .with_duration(duration)
        .with_warmup(warmup)
        .with_binary(args.binary);
    // Connects, warm-up, window, drain and close, plus slack.
    let hard = config.connect_timeout + warmup + duration + config.close_timeout * 2 + SLACK;
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(!args.json, args.connections, &counters);
    let url = args.connection.url.clone();
    let run = echo::echo_with(&url, &config, &options, &counters);
    let report = tokio::time::timeout(hard, run).await;
    progress.stop();
    match report {
        Ok(report) => finish(
            args.json,
            &report.to_json(),
            &report,
            report.errors.total() == 0 && report.messages > 0,
        ),
        Err(_) => deadline(hard),
    }
}

async fn run_connect(args: ConnectArgs) -> ExitCode {
    let (config, hold) = match (args.connection.config(), secs("--hold", args.hold)) {
        (Ok(config), Ok(hold)) => (config, hold),
        (Err(e), _) | (_, Err(e)) => return usage(&e),
    };
    if args.connections == 0 || args.concurrency == 0 {
        return usage("--connections and --concurrency must be at least 1");
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return usage("--rate must be a positive number");
    }
    let options = ConnectOptions::default()
        .with_connections(args.connections)
        .with_rate(args.rate)
        .with_concurrency(args.concurrency)
        .with_hold(hold);
    let ramp = args.rate.map_or(Duration::ZERO, |r| {
        Duration::from_secs_f64(args.connections as f64 / r)
    });
    let hard = ramp + config.connect_timeout + hold + config.close_timeout * 2 + SLACK;
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(!args.json, args.connections, &counters);
    let url = args.connection.url.clone();
    let run = connect::connect_with(&url, &config, &options, &counters);
    let report = tokio::time::timeout(hard, run).await;
    progress.stop();
    match report {
        Ok(report) => finish(
            args.json,
            &report.to_json(),
            &report,
            report.errors.total() == 0 && report.opened > 0,
        ),
        Err(_) => deadline(hard),
    }
}

/// Added to every hard deadline.
const SLACK: Duration = Duration::from_secs(10);

fn finish(
    json: bool,
    value: &serde_json::Value,
    table: &dyn std::fmt::Display,
    ok: bool,
) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let _ = if json {
        writeln!(out, "{value}")
    } else {
        write!(out, "{table}")
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ERROR)
    }
}

fn deadline(hard: Duration) -> ExitCode {
    eprintln!(
        "error: the run overran its hard deadline ({:.0} s)",
        hard.as_secs_f64()
    );
    ExitCode::from(EXIT_ERROR)
}

fn usage(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_USAGE)
}

fn secs(flag: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("{flag} {value} is not a number of seconds"))
}

/// `32`, `4k`, `1m` (KiB, MiB) into bytes.
fn parse_size(text: &str) -> Result<usize, String> {
    let lower = text.trim().to_ascii_lowercase();
    let (digits, unit) = match lower.strip_suffix('k') {
        Some(d) => (d, 1 << 10),
        None => match lower.strip_suffix('m') {
            Some(d) => (d, 1 << 20),
            None => (lower.as_str(), 1),
        },
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("{text:?} is not a size (e.g. 32, 4k, 1m)"))
}

/// Live counts for the progress line, shared with the connection tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) open: AtomicU64,
    pub(crate) messages: AtomicU64,
    pub(crate) errors: AtomicU64,
}

/// Connects `n` clients, at most 64 handshakes at a time; failures are counted.
pub(crate) async fn open_all(
    url: &str,
    config: &ClientConfig,
    n: u64,
    counters: &Arc<Counters>,
    errors: &mut Errors,
) -> Vec<Client> {
    let limit = Arc::new(Semaphore::new(64));
    let url: Arc<str> = url.into();
    let config = Arc::new(config.clone());
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (limit, url, config, counters) =
                (limit.clone(), url.clone(), config.clone(), counters.clone());
            tokio::spawn(async move {
                let _permit = limit.acquire_owned().await;
                let result = open(&url, &config).await;
                match &result {
                    Ok(_) => counters.open.fetch_add(1, Ordering::Relaxed),
                    Err(_) => counters.errors.fetch_add(1, Ordering::Relaxed),
                };
                result
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok(Ok(client)) => clients.push(client),
            Ok(Err(e)) => errors.add_error(&e),
            Err(_) => errors.add("panic"),
        }
    }
    clients
}

/// The progress line on stderr (only when it is a terminal).
struct Progress(Option<tokio::task::JoinHandle<()>>);

impl Progress {
    fn start(enabled: bool, connections: u64, counters: &Arc<Counters>) -> Progress {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let counters = counters.clone();
        Progress(Some(tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            let (mut last_messages, mut last_at) = (0, started);
            loop {
                tick.tick().await;
                let now = Instant::now();
                let messages = counters.messages.load(Ordering::Relaxed);
                let rate = (messages - last_messages) as f64
                    / now.duration_since(last_at).as_secs_f64().max(1e-3);
                (last_messages, last_at) = (messages, now);
                let _ = write!(
                    std::io::stderr().lock(),
                    "\r\x1b[2K[{:5.1} s] open {}/{}  messages {} ({}/s)  errors {}",
                    now.duration_since(started).as_secs_f64(),
                    counters.open.load(Ordering::Relaxed),
                    connections,
                    messages,
                    report::thousands(rate),
                    counters.errors.load(Ordering::Relaxed),
                );
            }
        })))
    }

    fn stop(self) {
        if let Some(task) = self.0 {
            task.abort();
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("32"), Ok(32));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert!(parse_size("x").is_err());
        assert!(parse_size("-1").is_err());
    }
}
