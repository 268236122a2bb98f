//! The verdict, from what the clients saw: pure, with its own tests.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use super::clients::{EchoRecord, SubscriberRecord, TlsRecord};
use super::publisher::Published;

/// One kind of plain client, summed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Clients.
    pub clients: usize,
    /// Messages they got (echoes, pushes).
    pub messages: u64,
    /// Connections that ended before the check stopped them, by how they ended.
    pub closes: BTreeMap<String, u64>,
    /// Messages that never came.
    pub lost: u64,
    /// Messages that came twice.
    pub duplicated: u64,
    /// Messages that came after a later one.
    pub out_of_order: u64,
    /// Each client's largest pause (slowest echo, largest gap between pushes), sorted.
    pub pauses: Vec<Duration>,
    /// Subscribers: each one's latest push (from the publication's due time), sorted.
    pub latest: Vec<Duration>,
}

impl Tally {
    /// Connections closed.
    pub fn closed(&self) -> u64 {
        self.closes.values().sum()
    }

    /// The `q`th percentile of the clients' largest pauses.
    pub fn pause(&self, q: usize) -> Duration {
        percentile(&self.pauses, q)
    }

    fn passed(&self) -> bool {
        self.closed() == 0 && self.lost == 0 && self.duplicated == 0 && self.out_of_order == 0
    }

    fn close(&mut self, how: &str) {
        // "1012 server restarting", "error: …": the code (or the first word) says enough.
        let kind = how.split(':').next().unwrap_or(how).to_owned();
        *self.closes.entry(kind).or_default() += 1;
    }

    fn line(&self, f: &mut fmt::Formatter<'_>, what: &str, pause: &str) -> fmt::Result {
        let closes = if self.closes.is_empty() {
            String::new()
        } else {
            format!(" {:?}", self.closes)
        };
        write!(
            f,
            "{what}: {} clients, {} messages, {} closes{closes}, {} lost, {} duplicated, {} out of order; \
             {pause} per client p50 {} p99 {} max {}",
            self.clients,
            self.messages,
            self.closed(),
            self.lost,
            self.duplicated,
            self.out_of_order,
            ms(self.pause(50)),
            ms(self.pause(99)),
            ms(self.pause(100)),
        )
    }
}

/// The TLS closes after one upgrade.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsRound {
    /// Closes with 1012 and the handover's reason.
    pub restarting: usize,
    /// Other closes (code and reason).
    pub other: Vec<String>,
    /// The first and the last close, from the upgrade's answer.
    pub first: Duration,
    /// See `first`.
    pub last: Duration,
}

/// The whole verdict.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Upgrades that went through.
    pub upgrades: usize,
    /// Upgrades that failed because the successor crashed (on start, or with the
    /// connections it was sent).
    pub crashes: usize,
    /// Echo clients.
    pub echo: Tally,
    /// Room subscribers.
    pub subscribers: Tally,
    /// Rooms and the publication rate.
    pub rooms: usize,
    /// Publications a second asked of the publisher.
    pub rate: u32,
    /// Publications acknowledged.
    pub publications: usize,
    /// Publications that failed after retries.
    pub publish_failures: usize,
    /// Publish attempts that failed and were retried.
    pub publish_retries: u64,
    /// The slowest publication, from its due time to its acknowledgement.
    pub publish_slowest: Duration,
    /// From the first publication to the last one's answer.
    pub publish_took: Duration,
    /// Epoch changes the subscribers saw.
    pub epoch_changes: u64,
    /// TLS clients.
    pub tls_clients: usize,
    /// The `[drain] spread` window.
    pub spread: Duration,
    /// The close reason expected.
    pub reason: String,
    /// Per upgrade.
    pub tls: Vec<TlsRound>,
    /// TLS connections that failed to open (or to echo).
    pub tls_failures: Vec<String>,
    /// Everything that failed, in words.
    pub problems: Vec<String>,
}

impl Report {
    /// Whether every check held.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The `q`th percentile of `sorted`.
fn percentile(sorted: &[Duration], q: usize) -> Duration {
    let n = sorted.len();
    if n == 0 {
        return Duration::ZERO;
    }
    sorted[(n * q / 100).min(n - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

/// Sums the echo clients.
pub fn echo(records: &[EchoRecord]) -> Tally {
    let mut tally = Tally {
        clients: records.len(),
        ..Tally::default()
    };
    for r in records {
        tally.messages += r.trips;
        tally.lost += r.lost;
        tally.duplicated += r.duplicated;
        tally.out_of_order += r.out_of_order;
        if let Some(how) = &r.closed {
            tally.close(how);
        }
        tally.pauses.push(r.slowest);
    }
    tally.pauses.sort();
    tally
}

/// Checks every subscriber against its room's acknowledged publications: each one, once,
/// in increasing order (a closed subscriber: up to the last one it got). Returns the tally
/// and the epoch changes seen.
pub fn subscribers(records: &[SubscriberRecord], published: &Published) -> (Tally, u64) {
    let mut tally = Tally {
        clients: records.len(),
        ..Tally::default()
    };
    let mut epochs = 0;
    for r in records {
        tally.messages += r.seqs.len() as u64;
        tally.out_of_order += r.garbled;
        epochs += u64::from(r.epoch_changes);
        let mut seen = HashSet::with_capacity(r.seqs.len());
        let mut top = None;
        for &seq in &r.seqs {
            if !seen.insert(seq) {
                tally.duplicated += 1;
            } else if top.is_some_and(|top| seq < top) {
                tally.out_of_order += 1;
            }
            top = top.max(Some(seq));
        }
        if let Some(how) = &r.closed {
            tally.close(how);
        }
        let expected = published.acked.get(r.room).map_or(&[][..], Vec::as_slice);
        let upto = if r.closed.is_some() {
            top.unwrap_or(0)
        } else {
            u32::MAX
        };
        tally.lost += expected
            .iter()
            .filter(|&&seq| seq <= upto && !seen.contains(&seq))
            .count() as u64;
        if r.seqs.len() > 1 {
            tally.pauses.push(r.largest_gap);
        }
        if !r.seqs.is_empty() {
            tally.latest.push(r.latest);
        }
    }
    tally.pauses.sort();
    tally.latest.sort();
    (tally, epochs)
}

/// Sorts the TLS closes by upgrade (each close to the last upgrade before it).
pub fn tls(records: &[TlsRecord], upgrades: &[Instant], reason: &str) -> (Vec<TlsRound>, usize) {
    let mut rounds = vec![TlsRound::default(); upgrades.len()];
    let mut before = 0;
    for close in records.iter().flat_map(|r| &r.closes) {
        let Some(k) = upgrades.iter().rposition(|&u| u <= close.at) else {
            before += 1;
            continue;
        };
        let round = &mut rounds[k];
        let after = close.at - upgrades[k];
        if round.restarting + round.other.len() == 0 {
            (round.first, round.last) = (after, after);
        }
        round.first = round.first.min(after);
        round.last = round.last.max(after);
        if close.code == 1012 && close.reason == reason {
            round.restarting += 1;
        } else {
            round.other.push(format!("{} {}", close.code, close.reason));
        }
    }
    (rounds, before)
}

/// The checks on the TLS rounds: every client closed once per upgrade with 1012 and the
/// reason, all within the spread (plus `slack`), and spread over it rather than at once
/// (with 10 clients or more, the first and last at least half the window apart).
pub fn tls_problems(report: &Report, before: usize, slack: Duration) -> Vec<String> {
    let mut problems = Vec::new();
    if report.tls_clients == 0 {
        return problems;
    }
    if before > 0 {
        problems.push(format!("{before} TLS closes before the first upgrade"));
    }
    for (k, round) in report.tls.iter().enumerate() {
        let n = round.restarting + round.other.len();
        if n != report.tls_clients {
            problems.push(format!(
                "upgrade {}: {n} TLS closes, not {}",
                k + 1,
                report.tls_clients
            ));
        }
        if !round.other.is_empty() {
            problems.push(format!(
                "upgrade {}: TLS closes other than 1012 {:?}: {:?}",
                k + 1,
                report.reason,
                round.other
            ));
        }
        if round.last > report.spread + slack {
            problems.push(format!(
                "upgrade {}: the last TLS close came {} after it, past the {} spread",
                k + 1,
                ms(round.last),
                ms(report.spread)
            ));
        }
        if report.tls_clients >= 10 && round.last.saturating_sub(round.first) < report.spread / 2 {
            problems.push(format!(
                "upgrade {}: TLS closes within {} of each other, not spread over {}",
                k + 1,
                ms(round.last.saturating_sub(round.first)),
                ms(report.spread)
            ));
        }
    }
    if !report.tls_failures.is_empty() {
        problems.push(format!(
            "{} TLS connections failed to open, first: {}",
            report.tls_failures.len(),
            report.tls_failures[0]
        ));
    }
    problems
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "handover-check: {} plain connections ({} echo, {} room subscribers), {} TLS; \
             {} upgrades + {} failing successors",
            self.echo.clients + self.subscribers.clients,
            self.echo.clients,
            self.subscribers.clients,
            self.tls_clients,
            self.upgrades,
            self.crashes
        )?;
        self.echo.line(f, "  echo", "slowest round trip")?;
        writeln!(f)?;
        if self.subscribers.clients > 0 {
            writeln!(
                f,
                "  room push: {} publications asked at {}/s over {} rooms (one every {} per room), \
                 done at {:.0}/s; {} failed, {} retried, slowest {} from due to answer",
                self.publications,
                self.rate,
                self.rooms,
                ms(Duration::from_secs_f64(
                    self.rooms as f64 / f64::from(self.rate.max(1))
                )),
                self.publications as f64 / self.publish_took.as_secs_f64().max(0.001),
                self.publish_failures,
                self.publish_retries,
                ms(self.publish_slowest)
            )?;
            self.subscribers
                .line(f, "  subscribers", "largest gap between pushes")?;
            let latest = &self.subscribers.latest;
            writeln!(
                f,
                "; latest push (due to arrival) per client p50 {} p99 {} max {}; {} epoch changes",
                ms(percentile(latest, 50)),
                ms(percentile(latest, 99)),
                ms(percentile(latest, 100)),
                self.epoch_changes
            )?;
        }
        if self.tls_clients > 0 {
            for (k, round) in self.tls.iter().enumerate() {
                writeln!(
                    f,
                    "  tls, upgrade {}: {}/{} closed 1012 {:?}, first {} last {} after the upgrade \
                     (spread {}){}",
                    k + 1,
                    round.restarting,
                    self.tls_clients,
                    self.reason,
                    ms(round.first),
                    ms(round.last),
                    ms(self.spread),
                    if round.other.is_empty() {
                        String::new()
                    } else {
                        format!("; other closes {:?}", round.other)
                    }
                )?;
            }
        }
        if self.passed() {
            write!(f, "handover-check: OK")
        } else {
            write!(f, "handover-check: FAILED: {}", self.problems.join("; "))
        }
    }
}

/// The plain clients' part of the problems.
pub fn plain_problems(report: &Report) -> Vec<String> {
    let mut problems = Vec::new();
    for (what, tally) in [("echo", &report.echo), ("subscribers", &report.subscribers)] {
        if !tally.passed() {
            problems.push(format!(
                "{what}: {} closes {:?}, {} lost, {} duplicated, {} out of order",
                tally.closed(),
                tally.closes,
                tally.lost,
                tally.duplicated,
                tally.out_of_order
            ));
        }
    }
    if report.publish_failures > 0 {
        problems.push(format!(
            "{} publications failed after retries",
            report.publish_failures
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::super::clients::TlsClose;
    use super::*;

    fn published(acked: Vec<Vec<u32>>) -> Published {
        Published {
            acked,
            ..Published::default()
        }
    }

    fn sub(room: usize, seqs: &[u32], closed: Option<&str>) -> SubscriberRecord {
        SubscriberRecord {
            room,
            seqs: seqs.to_vec(),
            closed: closed.map(str::to_owned),
            largest_gap: Duration::from_millis(seqs.len() as u64),
            ..SubscriberRecord::default()
        }
    }

    #[test]
    fn a_subscriber_is_checked_against_its_room() {
        let p = published(vec![vec![0, 2, 4, 6], vec![1, 3, 5, 7]]);
        let (good, _) = subscribers(
            &[sub(0, &[0, 2, 4, 6], None), sub(1, &[1, 3, 5, 7], None)],
            &p,
        );
        assert!(good.passed(), "{good:?}");
        assert_eq!(good.messages, 8);
        let (bad, _) = subscribers(&[sub(0, &[0, 4, 2, 2], None)], &p);
        assert_eq!((bad.lost, bad.duplicated, bad.out_of_order), (1, 1, 1));
        // A closed one is expected to have everything up to the last it got.
        let (closed, _) = subscribers(&[sub(1, &[1, 5], Some("1012 server restarting"))], &p);
        assert_eq!((closed.lost, closed.closed()), (1, 1));
        assert_eq!(
            closed.closes.keys().collect::<Vec<_>>(),
            ["1012 server restarting"]
        );
    }

    #[test]
    fn echo_records_add_up_and_pauses_have_percentiles() {
        let records: Vec<EchoRecord> = (1..=100)
            .map(|i| EchoRecord {
                trips: 10,
                slowest: Duration::from_millis(i),
                ..EchoRecord::default()
            })
            .collect();
        let tally = echo(&records);
        assert!(tally.passed());
        assert_eq!(tally.messages, 1000);
        assert_eq!(tally.pause(50), Duration::from_millis(51));
        assert_eq!(tally.pause(99), Duration::from_millis(100));
        assert_eq!(tally.pause(100), Duration::from_millis(100));
    }

    #[test]
    fn tls_closes_go_to_the_upgrade_before_them() {
        let t0 = Instant::now();
        let u = [t0 + Duration::from_secs(1), t0 + Duration::from_secs(10)];
        let close = |s: u64, code| TlsClose {
            code,
            reason: "server restarting".into(),
            at: t0 + Duration::from_secs(s),
        };
        let records = vec![
            TlsRecord {
                closes: vec![close(2, 1012), close(11, 1012)],
                failures: Vec::new(),
            },
            TlsRecord {
                closes: vec![close(0, 1001), close(5, 1012), close(16, 1000)],
                failures: Vec::new(),
            },
        ];
        let (rounds, before) = tls(&records, &u, "server restarting");
        assert_eq!(before, 1);
        assert_eq!(rounds[0].restarting, 2);
        assert_eq!(
            (rounds[0].first, rounds[0].last),
            (Duration::from_secs(1), Duration::from_secs(4))
        );
        assert_eq!(rounds[1].other, ["1000 server restarting"]);
        let report = Report {
            tls_clients: 2,
            spread: Duration::from_secs(4),
            reason: "server restarting".into(),
            tls: rounds,
            ..Report::default()
        };
        let problems = tls_problems(&report, before, Duration::from_secs(1));
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
