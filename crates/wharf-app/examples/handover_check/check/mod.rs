//! The handover check (issue 15's acceptance): one `wharf serve` with plain connections
//! (echo clients on `/echo`, subscribers of the rooms protocol on `/wss/rooms` receiving a
//! room push through `POST /api/publish`) and TLS connections, through three `wharf
//! upgrade`s in a row with a successor that crashes on start between the first and the
//! second, and one that dies with the open connections it was sent between the second and
//! the third. The clients, not the server's counters, report: closes, lost, duplicated and
//! out-of-order messages, the largest pause each saw; the TLS connections each get 1012
//! spread over `[drain] spread` at every upgrade.
//!
//! Shared by `examples/handover_check` (the long run, `scripts/handover-check.sh`) and
//! `tests/handover.rs` (a short one). Needs a multi-threaded Tokio runtime.

pub mod clients;
pub mod dying;
#[path = "../../support/http.rs"]
pub mod http;
#[path = "../../../../wharf-client/tests/common/tls.rs"]
mod pki;
pub mod publisher;
pub mod report;
pub mod serve;
#[path = "../../support/serve_log.rs"]
mod serve_log;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use report::Report;
use serve::{Serve, Tls};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `wharf` binary (the release it upgrades to is itself).
    pub wharf: PathBuf,
    /// Echo clients on `/echo`.
    pub echo: usize,
    /// How often each echo client sends.
    pub echo_interval: Duration,
    /// Subscribers on `/wss/rooms` (0: no room push).
    pub subscribers: usize,
    /// Rooms; subscriber `i` follows room `i % rooms`.
    pub rooms: usize,
    /// Publications a second, in all (publication `n` to room `n % rooms`).
    pub rate: u32,
    /// TLS clients on the `tls` server's `/echo`.
    pub tls: usize,
    /// The server's `[drain] spread`.
    pub spread: Duration,
    /// Upgrades in a row (3 for the acceptance; a successor crashes on start before the
    /// second, another dies with the connections before the third; 0 measures the same
    /// load without any, for a baseline of the pauses).
    pub upgrades: usize,
    /// The command that runs [`dying::die_with_connections`] when started as a successor.
    pub dying_successor: Vec<String>,
    /// Traffic before the first upgrade, and after the last one's spread.
    pub warmup: Duration,
    /// Connections opened at once while connecting.
    pub connect_concurrency: usize,
}

/// The close reason of a handover (`[handover] reason`, not set by the check).
pub const REASON: &str = "server restarting";

/// How much later than the spread the last 1012 may come (the parking and moving before).
const SPREAD_SLACK: Duration = Duration::from_secs(2);

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Runs the check; an error is a check that could not run (a server that did not start,
/// an upgrade refused), a [`Report`] that did not pass is a check that failed.
pub async fn run(options: &Options) -> Result<Report, Error> {
    let pki = pki::TestPki::generate()?;
    let tls_files = Tls {
        cert: &pki.cert_pem,
        key: &pki.key_pem,
    };
    let mut serve =
        tokio::task::block_in_place(|| Serve::start(&options.wharf, &tls_files, options.spread))?;
    let outcome = drive(options, &mut serve, &pki).await;
    let left = tokio::task::block_in_place(|| serve.stop(Duration::from_secs(20)));
    let mut report = outcome?;
    if !left.is_empty() {
        report.problems.push(format!(
            "processes {left:?} still ran after the end (SIGKILLed)"
        ));
    }
    // Those of every start (no users, auth off: the check needs neither) say nothing.
    let warnings: Vec<String> = (serve.warnings().into_iter())
        .filter(|l| !l.contains("no users yet") && !l.contains("handshake auth is off"))
        .collect();
    if !report.passed() && !warnings.is_empty() {
        eprintln!("handover-check: the server's warnings and errors:");
        for line in warnings.iter().take(30) {
            eprintln!("  {line}");
        }
    }
    Ok(report)
}

async fn drive(options: &Options, serve: &mut Serve, pki: &pki::TestPki) -> Result<Report, Error> {
    let (stop_tx, stop) = watch::channel(false);
    let started = Instant::now();
    let rooms: Vec<String> = (0..options.rooms.max(1))
        .map(|i| format!("handover:{i}"))
        .collect();

    // Subscribers first: nothing is published until every one is in.
    let mut counts = Vec::new();
    let mut followers = Vec::new();
    let opened = connect_all(options.subscribers, options.connect_concurrency, |i| {
        let room = rooms[i % rooms.len()].clone();
        let addr = serve.ws;
        async move { clients::subscribe(addr, &room).await }
    })
    .await?;
    for (i, ws) in opened.into_iter().enumerate() {
        let count = Arc::new(AtomicU32::new(0));
        counts.push((i % rooms.len(), count.clone()));
        followers.push(tokio::spawn(clients::follow(
            started,
            ws,
            i % rooms.len(),
            count,
            stop.clone(),
        )));
    }
    let opened = connect_all(options.echo, options.connect_concurrency, |_| {
        let addr = serve.ws;
        async move { clients::open(addr, "/echo", None).await }
    })
    .await?;
    let mut echoes = Vec::new();
    for (i, ws) in opened.into_iter().enumerate() {
        // Spread the clients' sends over their interval.
        let phase = options
            .echo_interval
            .mul_f64(i as f64 / options.echo.max(1) as f64);
        echoes.push(tokio::spawn(clients::echo(
            ws,
            options.echo_interval,
            phase,
            stop.clone(),
        )));
    }
    let connector = clients::tls_connector(&pki.ca_pem)?;
    let tls_opened = Arc::new(AtomicU32::new(0));
    let tls_clients: Vec<_> = (0..options.tls)
        .map(|_| {
            tokio::spawn(clients::tls(
                connector.clone(),
                serve.tls,
                tls_opened.clone(),
                stop.clone(),
            ))
        })
        .collect();
    wait_for(&tls_opened, options.tls, "the TLS connections to open").await?;
    eprintln!(
        "handover-check: {} subscribers on {} rooms, {} echo clients, {} TLS clients open in {:.1?}",
        options.subscribers,
        rooms.len(),
        options.echo,
        options.tls,
        started.elapsed()
    );

    // The room push, until the upgrades are over.
    let acked: Arc<Vec<AtomicU32>> = Arc::new(rooms.iter().map(|_| AtomicU32::new(0)).collect());
    let (publishing_tx, mut publishing) = watch::channel(false);
    let publisher = (options.subscribers > 0).then(|| {
        tokio::spawn(publisher::run(
            started,
            serve.http,
            rooms.clone(),
            options.rate,
            16,
            acked.clone(),
            async move {
                let _ = publishing.changed().await;
            },
        ))
    });

    // The upgrades, a successor crashing on start before the second and one dying with the
    // connections before the third. Each waits for the TLS clients closed by the one before
    // to be back.
    let mut upgrades = Vec::new();
    let mut crashes = 0;
    tokio::time::sleep(options.warmup).await;
    for round in 0..options.upgrades {
        let failed = match round {
            1 => {
                serve.crashing_upgrade(&options.wharf).await?;
                Some(("crashed on start", "the old process serves on"))
            }
            2 => {
                let dying = &options.dying_successor;
                serve.dying_upgrade(&options.wharf, dying).await?;
                Some((
                    "died with the connections",
                    "the old process took them back",
                ))
            }
            _ => None,
        };
        if let Some((what, then)) = failed {
            crashes += 1;
            eprintln!(
                "handover-check: a successor {what} at {:.1?}; {then}",
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // The old process closes its TLS connections from the moment it has let go of the
        // moved ones, which may come before `wharf upgrade` has answered: the closes belong
        // to the upgrade from the moment it was asked.
        let asked = Instant::now();
        let pid = serve.upgrade(&options.wharf).await?;
        upgrades.push(asked);
        eprintln!(
            "handover-check: upgrade {} at {:.1?}: successor pid {pid} took over in {:.1?}",
            round + 1,
            started.elapsed(),
            asked.elapsed()
        );
        // The old process's TLS closes are over after the spread; then the clients are back.
        tokio::time::sleep(options.spread + SPREAD_SLACK).await;
        wait_for(
            &tls_opened,
            options.tls * (round + 2),
            "the TLS clients to connect again",
        )
        .await?;
    }
    tokio::time::sleep(options.warmup).await;

    // The push stops; each subscriber must then hold its room's every publication.
    let _ = publishing_tx.send(true);
    let published = match publisher {
        Some(publisher) => publisher.await?,
        None => publisher::Published::default(),
    };
    let settle = Instant::now() + Duration::from_secs(10);
    while Instant::now() < settle
        && counts.iter().any(|(room, count)| {
            count.load(Ordering::Relaxed) < acked[*room].load(Ordering::Relaxed)
        })
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);

    let mut echo_records = Vec::new();
    for echo in echoes {
        echo_records.push(echo.await?);
    }
    let mut subscriber_records = Vec::new();
    for follower in followers {
        subscriber_records.push(follower.await?);
    }
    let mut tls_records = Vec::new();
    for client in tls_clients {
        tls_records.push(client.await?);
    }

    let (subscribers, epoch_changes) = report::subscribers(&subscriber_records, &published);
    let (tls_rounds, tls_before) = report::tls(&tls_records, &upgrades, REASON);
    let mut report = Report {
        upgrades: upgrades.len(),
        crashes,
        echo: report::echo(&echo_records),
        subscribers,
        rooms: rooms.len(),
        rate: options.rate,
        publications: published.acked.iter().map(Vec::len).sum(),
        publish_failures: published.failed.len(),
        publish_retries: published.retries,
        publish_slowest: published.slowest,
        publish_took: published.took,
        epoch_changes,
        tls_clients: options.tls,
        spread: options.spread,
        reason: REASON.to_owned(),
        tls: tls_rounds,
        tls_failures: tls_records.into_iter().flat_map(|r| r.failures).collect(),
        problems: Vec::new(),
    };
    report.problems = report::plain_problems(&report);
    report
        .problems
        .extend(report::tls_problems(&report, tls_before, SPREAD_SLACK));
    Ok(report)
}

/// Opens `n` connections with `open(i)`, `concurrency` at a time, in order of `i`.
async fn connect_all<F, Fut>(
    n: usize,
    concurrency: usize,
    open: F,
) -> Result<Vec<clients::Plain>, Error>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<clients::Plain, Error>> + Send + 'static,
{
    let mut opened = Vec::with_capacity(n);
    let mut next = 0;
    while next < n {
        let batch: Vec<_> = (next..n.min(next + concurrency.max(1)))
            .map(|i| tokio::spawn(open(i)))
            .collect();
        next += batch.len();
        for connecting in batch {
            opened.push(connecting.await??);
        }
    }
    Ok(opened)
}

/// Waits (at most 30 s) until `counter` reaches `n`.
async fn wait_for(counter: &AtomicU32, n: usize, what: &str) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while (counter.load(Ordering::Relaxed) as usize) < n {
        if Instant::now() >= deadline {
            return Err(format!(
                "timed out waiting for {what} ({} of {n})",
                counter.load(Ordering::Relaxed)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The check's locks guard plain data for a moment; a poisoned one is still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
