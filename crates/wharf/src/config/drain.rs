//! `[drain]`: how a shutdown without a successor (SIGTERM during a scale-down) closes the
//! connections.

use std::hash::BuildHasher;
use std::time::Duration;

use serde::Deserialize;

use crate::CloseCode;

/// `[drain]`: spread the closes of a shutdown over a window, with a code and reason of the
/// application's choosing, so that the clients do not all reconnect in the same instant.
///
/// Each connection is closed at its own random point within `spread` after the shutdown
/// starts, and is served normally until then; new connections are refused from the start.
/// `spread` must be shorter than `drain_timeout`, which still bounds the whole shutdown.
///
/// ```
/// use std::time::Duration;
/// let config = wharf::Config::from_toml_str(r#"
///     drain_timeout = "30s"
///     [drain]
///     spread = "20s"
///     close_code = 1012
///     reason = "restarting; reconnect to wss://eu-2.example.com"
/// "#).unwrap();
/// assert_eq!(config.drain.spread, Duration::from_secs(20));
/// assert_eq!(config.drain.close_code, 1012);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct DrainConfig {
    /// The window the closes are spread over; `"0s"` closes every connection at once.
    /// Default: `"0s"`.
    #[serde(deserialize_with = "super::units::duration")]
    pub spread: Duration,
    /// The close code: 1001 (going away), 1012 (service restart), 1013 (try again later), or
    /// an application code 4000–4999. Default: 1001.
    pub close_code: u16,
    /// The close reason, at most 123 bytes (where to reconnect, say). Default: `"server
    /// shutting down"`.
    pub reason: String,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            spread: Duration::ZERO,
            close_code: CloseCode::GOING_AWAY.as_u16(),
            reason: "server shutting down".to_owned(),
        }
    }
}

impl DrainConfig {
    /// Checks the table against `drain_timeout`; the error names the key.
    pub(super) fn check(&self, drain_timeout: Duration) -> Result<(), (String, String)> {
        if !self.spread.is_zero() && self.spread >= drain_timeout {
            return Err((
                "drain.spread".into(),
                format!("must be shorter than drain_timeout ({drain_timeout:?})"),
            ));
        }
        if !matches!(self.close_code, 1001 | 1012 | 1013 | 4000..=4999) {
            return Err((
                "drain.close_code".into(),
                "must be 1001, 1012, 1013 or 4000-4999".into(),
            ));
        }
        if self.reason.len() > 123 {
            return Err((
                "drain.reason".into(),
                "must be at most 123 bytes (it goes in a close frame)".into(),
            ));
        }
        Ok(())
    }

    /// How long after the start of a shutdown the connection `seed` names is closed: a
    /// random point in `[0, spread)`, the same for the same seed within one process.
    pub(crate) fn delay(&self, seed: u64) -> Duration {
        if self.spread.is_zero() {
            return Duration::ZERO;
        }
        let random = std::collections::hash_map::RandomState::new().hash_one(seed);
        let nanos = self.spread.as_nanos().max(1) as u64;
        Duration::from_nanos(random % nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_fall_within_the_spread_and_differ() {
        let drain = DrainConfig {
            spread: Duration::from_secs(2),
            ..DrainConfig::default()
        };
        let delays: Vec<Duration> = (0..100).map(|seed| drain.delay(seed)).collect();
        assert!(delays.iter().all(|d| *d < Duration::from_secs(2)));
        let (min, max) = (delays.iter().min(), delays.iter().max());
        assert!(
            max.zip(min)
                .is_some_and(|(max, min)| *max - *min > Duration::from_secs(1)),
            "100 delays spread over most of the window: {min:?}..{max:?}"
        );
        assert_eq!(DrainConfig::default().delay(7), Duration::ZERO);
    }

    #[test]
    fn bad_tables_name_the_key() {
        let timeout = Duration::from_secs(10);
        let mut drain = DrainConfig {
            spread: timeout,
            ..DrainConfig::default()
        };
        assert_eq!(
            drain.check(timeout).map_err(|e| e.0),
            Err("drain.spread".to_owned())
        );
        drain.spread = Duration::from_secs(5);
        drain.close_code = 1000;
        assert_eq!(
            drain.check(timeout).map_err(|e| e.0),
            Err("drain.close_code".to_owned())
        );
        drain.close_code = 4321;
        drain.reason = "x".repeat(124);
        assert_eq!(
            drain.check(timeout).map_err(|e| e.0),
            Err("drain.reason".to_owned())
        );
        drain.reason = "bye".into();
        assert!(drain.check(timeout).is_ok());
    }
}
