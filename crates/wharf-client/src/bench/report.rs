//! What a bench run measured: [`Latency`], [`Errors`], [`EchoReport`], [`ConnectReport`],
//! their summary tables ([`Display`](fmt::Display)) and their JSON.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::ClientError;

/// Highest latency recorded exactly; slower samples are clamped to it (60 s, above any hard
/// deadline of a run).
const MAX_NANOS: u64 = 60_000_000_000;

/// A latency histogram in nanoseconds, 2 significant digits (at most 1 % off), from 1 µs
/// to 60 s; about 30 KiB, so one per connection is cheap and they [`merge`](Latency::merge).
///
/// ```
/// use std::time::Duration;
/// use wharf_client::bench::Latency;
///
/// let mut latency = Latency::new();
/// for micros in 1..=1000 {
///     latency.record(Duration::from_micros(micros));
/// }
/// assert_eq!(latency.count(), 1000);
/// let p50 = latency.quantile(0.5).as_micros();
/// assert!((495..=505).contains(&p50), "{p50}");
/// ```
#[derive(Debug, Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Latency {
        // Bounds and precision are constants that hdrhistogram accepts, so this cannot fail;
        // the fallback only exists to avoid a panic path.
        let histogram = Histogram::new_with_bounds(1_000, MAX_NANOS, 2)
            .or_else(|_| Histogram::new(2))
            .unwrap_or_else(|_| unreachable!("2 significant digits is a valid precision"));
        Latency(histogram)
    }

    /// Records one sample (clamped to 1 µs..60 s).
    pub fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(MAX_NANOS);
        self.0.saturating_record(nanos.clamp(1_000, MAX_NANOS));
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// How many samples were recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The latency at quantile `q` (0.0..=1.0); zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.0.value_at_quantile(q))
    }

    /// The largest sample; zero when empty.
    pub fn max(&self) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.0.max())
    }

    fn to_json(&self) -> Value {
        let us = |d: Duration| (d.as_nanos() as f64 / 1000.0 * 10.0).round() / 10.0;
        json!({
            "count": self.count(),
            "p50": us(self.quantile(0.5)),
            "p99": us(self.quantile(0.99)),
            "p99_9": us(self.quantile(0.999)),
            "max": us(self.max()),
            "mean": (self.0.mean() / 100.0).round() / 10.0,
        })
    }

    fn summary(&self) -> String {
        if self.count() == 0 {
            return "-".into();
        }
        format!(
            "p50 {}  p99 {}  p99.9 {}  max {}",
            millis(self.quantile(0.5)),
            millis(self.quantile(0.99)),
            millis(self.quantile(0.999)),
            millis(self.max())
        )
    }
}

/// Failures counted by kind: `refused_<status>`, `network`, `timeout`, `certificate`, `tls`,
/// `protocol`, `closed`, `invalid_url`, `mismatch` (an echo that differs from what was sent,
/// or arrives out of order) and `deadline` (the run's hard deadline cut it short).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Errors(BTreeMap<String, u64>);

impl Errors {
    /// Counts one failure of `kind`.
    pub fn add(&mut self, kind: impl Into<String>) {
        *self.0.entry(kind.into()).or_default() += 1;
    }

    /// Counts one client error under its kind.
    pub fn add_error(&mut self, error: &ClientError) {
        self.add(kind(error));
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, other: &Errors) {
        for (kind, n) in &other.0 {
            *self.0.entry(kind.clone()).or_default() += n;
        }
    }

    /// All failures.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// The count of one kind.
    pub fn get(&self, kind: &str) -> u64 {
        self.0.get(kind).copied().unwrap_or(0)
    }

    fn to_json(&self) -> Value {
        json!({ "total": self.total(), "by_kind": self.0 })
    }

    fn summary(&self) -> String {
        if self.0.is_empty() {
            return "0".into();
        }
        let kinds: Vec<String> = self.0.iter().map(|(k, n)| format!("{k} {n}")).collect();
        format!("{} ({})", self.total(), kinds.join(", "))
    }
}

/// The kind under which [`Errors`] counts a client error.
pub(crate) fn kind(error: &ClientError) -> String {
    match error {
        ClientError::Refused { status, .. } => format!("refused_{status}"),
        ClientError::Network(_) => "network".into(),
        ClientError::Protocol(_) => "protocol".into(),
        ClientError::Timeout => "timeout".into(),
        ClientError::InvalidUrl(_) => "invalid_url".into(),
        ClientError::Certificate(_) => "certificate".into(),
        ClientError::Tls(_) => "tls".into(),
        ClientError::Closed => "closed".into(),
        ClientError::Command { error, .. } => error.clone(),
        ClientError::ConnectionLost => "connection_lost".into(),
    }
}

/// The result of [`echo`](super::echo).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EchoReport {
    /// The URL loaded.
    pub url: String,
    /// Connections asked for.
    pub connections: u64,
    /// Connections that completed the handshake.
    pub opened: u64,
    /// Message payload size in bytes.
    pub size: usize,
    /// Messages in flight per connection.
    pub pipeline: usize,
    /// Binary (true) or text messages.
    pub binary: bool,
    /// The measurement window (after the warm-up).
    pub window: Duration,
    /// Echoes received and verified in the window.
    pub messages: u64,
    /// Round-trip latency of those echoes (from just before the send to the parsed echo).
    pub latency: Latency,
    /// Connection and run failures.
    pub errors: Errors,
}

impl EchoReport {
    /// Echoes per second over the window.
    pub fn messages_per_sec(&self) -> f64 {
        per_sec(self.messages, self.window)
    }

    /// Echoed payload megabytes (10^6) per second, one direction.
    pub fn mb_per_sec(&self) -> f64 {
        self.messages_per_sec() * self.size as f64 / 1e6
    }

    /// The one JSON object `wharf bench echo --json` prints.
    ///
    /// Keys: `mode` ("echo"), `url`, `connections`, `opened`, `size`, `pipeline`, `binary`,
    /// `duration_secs`, `messages`, `messages_per_sec`, `mb_per_sec`, `latency_us` {`count`,
    /// `p50`, `p99`, `p99_9`, `max`, `mean`}, `errors` {`total`, `by_kind`}.
    pub fn to_json(&self) -> Value {
        json!({
            "mode": "echo",
            "url": self.url,
            "connections": self.connections,
            "opened": self.opened,
            "size": self.size,
            "pipeline": self.pipeline,
            "binary": self.binary,
            "duration_secs": round3(self.window.as_secs_f64()),
            "messages": self.messages,
            "messages_per_sec": round3(self.messages_per_sec()),
            "mb_per_sec": round3(self.mb_per_sec()),
            "latency_us": self.latency.to_json(),
            "errors": self.errors.to_json(),
        })
    }
}

impl fmt::Display for EchoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.binary { "binary" } else { "text" };
        writeln!(f, "echo {}", self.url)?;
        row(
            f,
            "connections",
            format!("{} of {} open", self.opened, self.connections),
        )?;
        row(
            f,
            "load",
            format!(
                "{} B {kind}, pipeline {}, {:.1} s",
                self.size,
                self.pipeline,
                self.window.as_secs_f64()
            ),
        )?;
        row(
            f,
            "messages",
            format!(
                "{} ({}/s)",
                self.messages,
                thousands(self.messages_per_sec())
            ),
        )?;
        row(
            f,
            "throughput",
            format!("{:.2} MB/s each way", self.mb_per_sec()),
        )?;
        row(f, "latency", self.latency.summary())?;
        row(f, "errors", self.errors.summary())
    }
}

/// The result of [`connect`](super::connect()).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectReport {
    /// The URL loaded.
    pub url: String,
    /// Connections asked for.
    pub connections: u64,
    /// Connections that completed the handshake.
    pub opened: u64,
    /// From the first connect to the last completed handshake.
    pub ramp: Duration,
    /// How long the connections were held open.
    pub hold: Duration,
    /// Connections that still answered a ping after the hold.
    pub alive: u64,
    /// Connections whose close handshake completed.
    pub closed_cleanly: u64,
    /// TCP connect + (TLS) + HTTP upgrade time of each opened connection.
    pub handshake: Latency,
    /// Failures: handshakes by kind, plus `dead` for opened connections that did not answer
    /// the final ping.
    pub errors: Errors,
}

impl ConnectReport {
    /// Completed handshakes per second of ramp.
    pub fn handshakes_per_sec(&self) -> f64 {
        per_sec(self.opened, self.ramp)
    }

    /// The one JSON object `wharf bench connect --json` prints.
    ///
    /// Keys: `mode` ("connect"), `url`, `connections`, `opened`, `ramp_secs`,
    /// `handshakes_per_sec`, `hold_secs`, `alive`, `closed_cleanly`, `handshake_us`
    /// {`count`, `p50`, `p99`, `p99_9`, `max`, `mean`}, `errors` {`total`, `by_kind`}.
    pub fn to_json(&self) -> Value {
        json!({
            "mode": "connect",
            "url": self.url,
            "connections": self.connections,
            "opened": self.opened,
            "ramp_secs": round3(self.ramp.as_secs_f64()),
            "handshakes_per_sec": round3(self.handshakes_per_sec()),
            "hold_secs": round3(self.hold.as_secs_f64()),
            "alive": self.alive,
            "closed_cleanly": self.closed_cleanly,
            "handshake_us": self.handshake.to_json(),
            "errors": self.errors.to_json(),
        })
    }
}

impl fmt::Display for ConnectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "connect {}", self.url)?;
        row(
            f,
            "connections",
            format!("{} of {} open", self.opened, self.connections),
        )?;
        row(
            f,
            "handshakes",
            format!(
                "{}/s over {:.2} s",
                thousands(self.handshakes_per_sec()),
                self.ramp.as_secs_f64()
            ),
        )?;
        row(f, "handshake time", self.handshake.summary())?;
        row(
            f,
            "after hold",
            format!(
                "{} alive after {:.1} s, {} closed cleanly",
                self.alive,
                self.hold.as_secs_f64(),
                self.closed_cleanly
            ),
        )?;
        row(f, "errors", self.errors.summary())
    }
}

fn row(f: &mut fmt::Formatter<'_>, name: &str, value: String) -> fmt::Result {
    writeln!(f, "  {name:<15} {value}")
}

fn per_sec(n: u64, window: Duration) -> f64 {
    if window.is_zero() {
        0.0
    } else {
        n as f64 / window.as_secs_f64()
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `1234567.8` as `1,234,568`.
pub(crate) fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A latency in milliseconds with 3 significant digits, e.g. `0.412 ms`, `12.3 ms`.
fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1.0 {
        format!("{ms:.3} ms")
    } else if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1234567.8), "1,234,568");
        assert_eq!(millis(Duration::from_micros(412)), "0.412 ms");
        assert_eq!(millis(Duration::from_micros(12_345)), "12.3 ms");
    }

    #[test]
    fn latency_quantiles_and_merge() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        for i in 0..990 {
            a.record(Duration::from_micros(100 + i % 10));
        }
        for _ in 0..10 {
            b.record(Duration::from_millis(50));
        }
        a.merge(&b);
        assert_eq!(a.count(), 1000);
        assert!(a.quantile(0.5) < Duration::from_micros(111));
        assert!(a.quantile(0.999) > Duration::from_millis(49));
        assert_eq!(Latency::new().quantile(0.99), Duration::ZERO);
        // Out-of-range samples are clamped, not dropped.
        a.record(Duration::from_secs(3600));
        assert_eq!(a.count(), 1001);
    }

    #[test]
    fn errors_by_kind() {
        let mut e = Errors::default();
        e.add_error(&ClientError::Refused {
            status: 404,
            body: String::new(),
        });
        e.add_error(&ClientError::Timeout);
        let mut f = Errors::default();
        f.add("timeout");
        e.merge(&f);
        assert_eq!(
            (e.total(), e.get("timeout"), e.get("refused_404")),
            (3, 2, 1)
        );
        assert_eq!(e.summary(), "3 (refused_404 1, timeout 2)");
        assert_eq!(e.to_json()["by_kind"]["timeout"], 2);
    }
}
