//! `wharf bench connect`: ramp up to N connections at a given rate, hold them, check they
//! are alive, close them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};

use super::Counters;
use super::report::{ConnectReport, Errors, Latency};
use crate::{Client, ClientConfig, Event, connect as open};

/// Parameters of a connect run.
///
/// ```
/// use std::time::Duration;
/// use wharf_client::bench::ConnectOptions;
///
/// let options = ConnectOptions::default()
///     .with_connections(1000)
///     .with_rate(Some(500.0))
///     .with_hold(Duration::from_secs(5));
/// assert_eq!(options.concurrency, 128);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Connections to open (default 1000).
    pub connections: u64,
    /// New connections started per second; `None` starts them as fast as `concurrency`
    /// allows (default `None`).
    pub rate: Option<f64>,
    /// Handshakes in flight at most (default 128).
    pub concurrency: usize,
    /// How long to hold the connections open once all were attempted (default 5 s).
    pub hold: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connections: 1000,
            rate: None,
            concurrency: 128,
            hold: Duration::from_secs(5),
        }
    }
}

impl ConnectOptions {
    /// Sets the number of connections.
    pub fn with_connections(mut self, n: u64) -> Self {
        self.connections = n;
        self
    }

    /// Sets the ramp rate (connections started per second), or none for as fast as possible.
    pub fn with_rate(mut self, rate: Option<f64>) -> Self {
        self.rate = rate;
        self
    }

    /// Sets the most handshakes in flight.
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Sets the hold time.
    pub fn with_hold(mut self, hold: Duration) -> Self {
        self.hold = hold;
        self
    }
}

/// How long the final ping of every held connection may take.
const ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens `options.connections` connections to `url`, holds them, pings each, closes them.
///
/// ```no_run
/// use wharf_client::ClientConfig;
/// use wharf_client::bench::{ConnectOptions, connect};
///
/// # async fn demo() {
/// let options = ConnectOptions::default().with_connections(100);
/// let report = connect("ws://127.0.0.1:9502/echo", &ClientConfig::default(), &options).await;
/// assert_eq!(report.errors.total(), 0, "{report}");
/// # }
/// ```
pub async fn connect(url: &str, config: &ClientConfig, options: &ConnectOptions) -> ConnectReport {
    connect_with(url, config, options, &Arc::new(Counters::default())).await
}

pub(crate) async fn connect_with(
    url: &str,
    config: &ClientConfig,
    options: &ConnectOptions,
    counters: &Arc<Counters>,
) -> ConnectReport {
    let url_owned: Arc<str> = url.into();
    let config = Arc::new(config.clone());
    let limit = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let interval = options
        .rate
        .filter(|r| r.is_finite() && *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let first = Instant::now();
    let mut attempts = Vec::with_capacity(usize::try_from(options.connections).unwrap_or(0));
    for i in 0..options.connections {
        if let Some(interval) = interval {
            sleep_until(first + interval.mul_f64(i as f64)).await;
        }
        // Never closed, so `acquire_owned` only fails if that changes; then go unbounded.
        let permit = limit.clone().acquire_owned().await.ok();
        let (url, config, counters) = (url_owned.clone(), config.clone(), counters.clone());
        attempts.push(tokio::spawn(async move {
            let started = Instant::now();
            let result = open(&url, &config).await;
            drop(permit);
            match &result {
                Ok(_) => counters.open.fetch_add(1, Ordering::Relaxed),
                Err(_) => counters.errors.fetch_add(1, Ordering::Relaxed),
            };
            (result, started.elapsed(), Instant::now())
        }));
    }
    let mut clients = Vec::with_capacity(attempts.len());
    let mut handshake = Latency::new();
    let mut errors = Errors::default();
    let mut last = first;
    for attempt in attempts {
        match attempt.await {
            Ok((Ok(client), took, done)) => {
                handshake.record(took);
                last = last.max(done);
                clients.push(client);
            }
            Ok((Err(e), _, _)) => errors.add_error(&e),
            Err(_) => errors.add("panic"),
        }
    }
    let opened = clients.len() as u64;
    let held = Instant::now();
    tokio::time::sleep(options.hold).await;
    let hold = held.elapsed();

    let checks: Vec<_> = clients
        .into_iter()
        .map(|client| tokio::spawn(ping_and_close(client)))
        .collect();
    let (mut alive, mut closed_cleanly) = (0, 0);
    for check in checks {
        let (is_alive, clean) = check.await.unwrap_or((false, false));
        alive += u64::from(is_alive);
        closed_cleanly += u64::from(clean);
    }
    for _ in alive..opened {
        errors.add("dead");
    }
    ConnectReport {
        url: url.to_owned(),
        connections: options.connections,
        opened,
        ramp: last.saturating_duration_since(first),
        hold,
        alive,
        closed_cleanly,
        handshake,
        errors,
    }
}

/// Pings and waits for the pong (alive?), then closes with 1000 (cleanly?).
async fn ping_and_close(mut client: Client) -> (bool, bool) {
    let deadline = Instant::now() + ALIVE_TIMEOUT;
    let pong = async {
        client.ping(b"alive?".to_vec()).await.ok()?;
        loop {
            match client.recv().await.ok()?? {
                Event::Pong(_) => return Some(()),
                Event::Close { .. } => return None,
                Event::Message(_) | Event::Ping(_) => {}
            }
        }
    };
    let alive = matches!(timeout_at(deadline, pong).await, Ok(Some(())));
    let clean = matches!(
        timeout(ALIVE_TIMEOUT, client.close(1000, "")).await,
        Ok(Ok(Some(_)))
    );
    (alive, clean)
}
