//! `[handover]`: a live upgrade to a new process (see [`crate::handover`]).

use std::time::Duration;

use serde::Deserialize;

/// `[handover]`: how long a successor has to confirm, and the close reason the old
/// process's connections get (with 1012, spread over `[drain] spread`).
///
/// ```
/// use std::time::Duration;
/// let config = wharf::Config::from_toml_str(r#"
///     [handover]
///     timeout = "20s"
///     reason = "new version; reconnect"
/// "#).unwrap();
/// assert_eq!(config.handover.timeout, Duration::from_secs(20));
/// assert_eq!(config.handover.reason, "new version; reconnect");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct HandoverConfig {
    /// How long the successor has, from its start, to load its config, bind on the handed
    /// sockets and confirm; past it the successor is stopped and this process keeps
    /// serving. Default: `"30s"`.
    #[serde(deserialize_with = "super::units::duration")]
    pub timeout: Duration,
    /// The reason of the 1012 close the old process's connections get, at most 123 bytes.
    /// Default: `"server restarting"`.
    pub reason: String,
}

impl Default for HandoverConfig {
    fn default() -> Self {
        HandoverConfig {
            timeout: Duration::from_secs(30),
            reason: "server restarting".to_owned(),
        }
    }
}

impl HandoverConfig {
    /// Checks the table; the error names the key.
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        if self.timeout < Duration::from_millis(100) {
            return Err(("handover.timeout".into(), "must be at least 100ms".into()));
        }
        if self.reason.len() > 123 {
            return Err((
                "handover.reason".into(),
                "must be at most 123 bytes (it goes in a close frame)".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_tables_name_the_key() {
        let mut handover = HandoverConfig {
            timeout: Duration::from_millis(10),
            ..HandoverConfig::default()
        };
        assert_eq!(
            handover.check().map_err(|e| e.0),
            Err("handover.timeout".to_owned())
        );
        handover.timeout = Duration::from_secs(1);
        handover.reason = "x".repeat(124);
        assert_eq!(
            handover.check().map_err(|e| e.0),
            Err("handover.reason".to_owned())
        );
        assert!(HandoverConfig::default().check().is_ok());
    }
}
