//! `[rooms.history]`: which rooms keep their last messages, how many and for how long.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::ConfigError;
use crate::history::HistoryPolicy;

/// The most messages one room may keep.
const MAX_SIZE: usize = 1_000_000;

/// `[rooms.history]`: rooms that keep their last messages, each at a position, so that a
/// client that was away recovers what it missed (see [`crate::history`]).
///
/// The top-level `size`, `ttl` and `idempotency_window` apply to every room no rule
/// matches; `size = 0` (the default) keeps no history for them. Each `[[rooms.history.rule]]`
/// gives rooms whose name matches its `pattern` their own bounds; the first matching rule
/// wins, and a rule's missing fields take the top-level values (its `size` is required).
///
/// ```
/// use std::time::Duration;
/// let config = wharf::Config::from_toml_str(r#"
///     [rooms.history]
///     ttl = "10m"
///     [[rooms.history.rule]]
///     pattern = "chat:*"
///     size = 500
///     [[rooms.history.rule]]
///     pattern = "ticker:*"
///     size = 50
///     ttl = "30s"
/// "#).unwrap();
/// let history = &config.rooms.history;
/// let chat = history.policy("chat:lobby").unwrap();
/// assert_eq!((chat.size, chat.ttl), (500, Duration::from_secs(600)));
/// assert_eq!(history.policy("ticker:eur").unwrap().ttl, Duration::from_secs(30));
/// assert!(history.policy("lobby").is_none()); // size 0 at the top: no history
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct HistoryConfig {
    /// Messages kept per room that no rule matches; `0` keeps none (history off for them).
    /// Default: 0.
    pub size: usize,
    /// How long a message is kept, and how long an idle room's history (and its epoch)
    /// outlives its last publish. Default: `"5m"`.
    #[serde(deserialize_with = "super::units::duration")]
    pub ttl: Duration,
    /// How long a publish's idempotency key is remembered; a retry with the same key within
    /// it returns the first position and delivers nothing. Default: `"2m"`.
    #[serde(deserialize_with = "super::units::duration")]
    pub idempotency_window: Duration,
    /// Per-room-pattern bounds (`[[rooms.history.rule]]`), first match wins. Default: none.
    #[serde(rename = "rule")]
    pub rules: Vec<HistoryRule>,
}

/// `[[rooms.history.rule]]`: the history of rooms whose name matches `pattern`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HistoryRule {
    /// A room name where `*` stands for any run of characters (`"chat:*"`, `"*:news"`,
    /// `"lobby"`). Required.
    pub pattern: String,
    /// Messages kept per matching room; `0` keeps none (turns history off for them).
    /// Required.
    pub size: usize,
    /// As [`HistoryConfig::ttl`]. Default: the top-level `ttl`.
    #[serde(default, deserialize_with = "optional_duration")]
    pub ttl: Option<Duration>,
    /// As [`HistoryConfig::idempotency_window`]. Default: the top-level one.
    #[serde(default, deserialize_with = "optional_duration")]
    pub idempotency_window: Option<Duration>,
}

impl HistoryRule {
    /// Rooms matching `pattern` keep `size` messages, other bounds from the top level.
    pub fn new(pattern: impl Into<String>, size: usize) -> HistoryRule {
        HistoryRule {
            pattern: pattern.into(),
            size,
            ttl: None,
            idempotency_window: None,
        }
    }

    /// The same rule with its own ttl.
    pub fn with_ttl(mut self, ttl: Duration) -> HistoryRule {
        self.ttl = Some(ttl);
        self
    }
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    super::units::duration(d).map(Some)
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            size: 0,
            ttl: Duration::from_secs(300),
            idempotency_window: Duration::from_secs(120),
            rules: Vec::new(),
        }
    }
}

impl HistoryConfig {
    /// History for every room: `size` messages for `ttl`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let history = wharf::config::HistoryConfig::all(100, Duration::from_secs(60));
    /// assert_eq!(history.policy("any").map(|p| p.size), Some(100));
    /// ```
    pub fn all(size: usize, ttl: Duration) -> HistoryConfig {
        HistoryConfig {
            size,
            ttl,
            ..HistoryConfig::default()
        }
    }

    /// The same configuration with one more rule (matched after the earlier ones).
    pub fn with_rule(mut self, rule: HistoryRule) -> HistoryConfig {
        self.rules.push(rule);
        self
    }

    /// The history policy of `room`, or `None` when it keeps no history.
    pub fn policy(&self, room: &str) -> Option<HistoryPolicy> {
        let (size, ttl, window) = match self
            .rules
            .iter()
            .find(|r| crate::pattern::matches(&r.pattern, room))
        {
            Some(rule) => (
                rule.size,
                rule.ttl.unwrap_or(self.ttl),
                rule.idempotency_window.unwrap_or(self.idempotency_window),
            ),
            None => (self.size, self.ttl, self.idempotency_window),
        };
        (size > 0).then(|| HistoryPolicy::new(size, ttl).with_idempotency_window(window))
    }

    /// Whether any room can keep history.
    pub fn enabled(&self) -> bool {
        self.size > 0 || self.rules.iter().any(|r| r.size > 0)
    }

    /// Applies `WHARF_ROOMS_HISTORY_SIZE`, `_TTL` and `_IDEMPOTENCY_WINDOW`.
    pub(super) fn apply_env(
        &mut self,
        var: &impl Fn(&str) -> Option<String>,
        bad: fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        const SIZE: &str = "WHARF_ROOMS_HISTORY_SIZE";
        if let Some(v) = var(SIZE) {
            self.size = v
                .trim()
                .parse()
                .map_err(|_| bad(SIZE, format!("`{v}` is not a number")))?;
        }
        for (name, field) in [
            ("WHARF_ROOMS_HISTORY_TTL", &mut self.ttl),
            (
                "WHARF_ROOMS_HISTORY_IDEMPOTENCY_WINDOW",
                &mut self.idempotency_window,
            ),
        ] {
            if let Some(v) = var(name) {
                *field = super::parse_duration(&v).map_err(|m| bad(name, m))?;
            }
        }
        Ok(())
    }

    /// Sizes within bounds, ttls of at least a second, patterns that are not empty.
    /// Errors as `(key, message)`.
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        check_bounds(
            "rooms.history",
            self.size,
            self.ttl,
            self.idempotency_window,
        )?;
        for (i, rule) in self.rules.iter().enumerate() {
            let key = format!("rooms.history.rule[{i}]");
            if rule.pattern.is_empty() {
                return Err((format!("{key}.pattern"), "must not be empty".into()));
            }
            check_bounds(
                &key,
                rule.size,
                rule.ttl.unwrap_or(self.ttl),
                rule.idempotency_window.unwrap_or(self.idempotency_window),
            )?;
        }
        Ok(())
    }
}

fn check_bounds(
    key: &str,
    size: usize,
    ttl: Duration,
    window: Duration,
) -> Result<(), (String, String)> {
    if size > MAX_SIZE {
        return Err((
            format!("{key}.size"),
            format!("must be at most {MAX_SIZE}, not {size}"),
        ));
    }
    if ttl < Duration::from_secs(1) {
        return Err((format!("{key}.ttl"), "must be at least 1s".into()));
    }
    if window.is_zero() {
        return Err((
            format!("{key}.idempotency_window"),
            "must be above 0".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn defaults_keep_no_history() {
        let config = Config::default();
        assert!(!config.rooms.history.enabled());
        assert_eq!(config.rooms.history.policy("lobby"), None);
        let history = HistoryConfig::default();
        assert_eq!(history.ttl, Duration::from_secs(300));
        assert_eq!(history.idempotency_window, Duration::from_secs(120));
    }

    #[test]
    fn rules_override_the_top_level_first_match_wins() {
        let config = Config::from_toml_str(
            "[rooms.history]\nsize = 10\nidempotency_window = \"30s\"\n\
             [[rooms.history.rule]]\npattern = \"quiet:*\"\nsize = 0\n\
             [[rooms.history.rule]]\npattern = \"chat:*\"\nsize = 3\nttl = \"1h\"\n\
             [[rooms.history.rule]]\npattern = \"chat:x\"\nsize = 99\n",
        )
        .expect("valid");
        let history = &config.rooms.history;
        assert_eq!(history.policy("quiet:a"), None);
        let chat = history.policy("chat:x").expect("chat");
        assert_eq!(
            (chat.size, chat.ttl, chat.idempotency_window),
            (3, Duration::from_secs(3600), Duration::from_secs(30))
        );
        assert_eq!(history.policy("other").map(|p| p.size), Some(10));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            ("[rooms.history]\nttl = \"0s\"\n", "rooms.history.ttl"),
            ("[rooms.history]\nsize = 2000000\n", "rooms.history.size"),
            (
                "[rooms.history]\nidempotency_window = 0\n",
                "rooms.history.idempotency_window",
            ),
            (
                "[[rooms.history.rule]]\npattern = \"\"\nsize = 1\n",
                "rooms.history.rule[0].pattern",
            ),
            (
                "[[rooms.history.rule]]\npattern = \"a\"\nsize = 1\nttl = \"500ms\"\n",
                "rooms.history.rule[0].ttl",
            ),
        ] {
            let err = Config::from_toml_str(toml).expect_err(toml);
            assert_eq!(err.key(), Some(key), "{toml}: {err}");
        }
        // Shape errors come from the parser and name the key.
        for toml in [
            "[rooms.history]\nsize = -1\n",
            "[rooms.history]\nttl = \"soon\"\n",
            "[[rooms.history.rule]]\npattern = \"a\"\n",
            "[[rooms.history.rule]]\npattern = \"a\"\nsize = 1\nbogus = 1\n",
        ] {
            let err = Config::from_toml_str(toml).expect_err(toml);
            assert!(
                ["size", "ttl", "bogus"]
                    .iter()
                    .any(|k| err.to_string().contains(k)),
                "{toml}: {err}"
            );
        }
    }

    #[test]
    fn environment_overrides() {
        let mut config = Config::default();
        config
            .apply_env(|name| match name {
                "WHARF_ROOMS_HISTORY_SIZE" => Some("50".into()),
                "WHARF_ROOMS_HISTORY_TTL" => Some("90s".into()),
                _ => None,
            })
            .expect("valid");
        let policy = config.rooms.history.policy("x").expect("on");
        assert_eq!((policy.size, policy.ttl), (50, Duration::from_secs(90)));
        let err = Config::default()
            .apply_env(|name| (name == "WHARF_ROOMS_HISTORY_SIZE").then(|| "many".into()))
            .expect_err("not a number");
        assert!(
            err.to_string().contains("WHARF_ROOMS_HISTORY_SIZE"),
            "{err}"
        );
    }
}
