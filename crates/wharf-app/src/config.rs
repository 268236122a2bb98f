//! The application's configuration: the core server config plus the app's own tables.
//!
//! One TOML file holds both. `wharf::Config` refuses unknown top-level keys, so the app
//! splits off its tables (`[jwt]`, `[auth]`, `[api]`, `[database]`, `[app]`) and hands the
//! rest to [`wharf::Config::from_toml_str`]. Environment variables then override both:
//! the core's `WHARF_<SERVER>_*` set and the app's `JWT_SECRET`, `JWT_OPEN`,
//! `WHARF_API_KEY`, `DATABASE_URL` and `WHARF_DATA_DIR`.
//!
//! ```
//! let config = wharf_app::config::AppConfig::from_toml_str(
//!     "[auth]\nquery_token = true\n[[server]]\nname = \"ws\"\nkind = \"websocket\"\nport = 0\n",
//!     None,
//! ).unwrap();
//! assert!(config.auth.query_token);
//! assert_eq!(config.auth.routes, ["/wss/demo", "/wss/rooms/{room}"]);
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::tokens::TokenConfig;

/// The top-level tables that belong to the application, not to the core.
pub const APP_TABLES: [&str; 6] = ["jwt", "auth", "api", "database", "app", "rooms_protocol"];

/// The `[auth]` table: the handshake auth middleware.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AuthConfig {
    /// Whether WebSocket handshakes on the app's routes need a token. Default: `true`.
    /// `JWT_OPEN=false` in the environment turns it off too.
    pub enabled: bool,
    /// The seed's whitelist: the guarded WebSocket routes that may be opened at all
    /// (route patterns or exact paths); any other guarded route answers 403.
    /// Default: `["/wss/demo", "/wss/rooms/{room}"]`.
    pub routes: Vec<String>,
    /// Accept the token in a `token` query parameter. Default: `false`, because query
    /// strings end up in access logs, proxy logs and browser history.
    pub query_token: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: true,
            routes: vec!["/wss/demo".to_owned(), crate::chat::CHAT_PATH.to_owned()],
            query_token: false,
        }
    }
}

/// The `[api]` table: the HTTP admin endpoints.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ApiConfig {
    /// The API key for `/api/*` (`WHARF_API_KEY` overrides it). Without one, only JWTs
    /// with `admin: true` are accepted. Default: none.
    pub key: Option<String>,
}

impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiConfig")
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The `[database]` table.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct DatabaseConfig {
    /// `sqlite:…`, `postgres://…` or `mysql://…` (`DATABASE_URL` overrides it).
    /// Default: the SQLite file `wharf.db` in the data directory.
    pub url: Option<String>,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password.
        f.debug_struct("DatabaseConfig")
            .field("url", &self.url.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The `[app]` table: where the application lives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AppSection {
    /// Directory for `wharf.db` and `jwt.secret` (`WHARF_DATA_DIR` overrides it).
    /// Default: the working directory.
    pub data_dir: Option<PathBuf>,
    /// The WebSocket server that carries `/wss/demo`. Default: `"ws"`.
    pub ws_server: String,
    /// The HTTP server that carries `/auth/login` and `/api/*`. Default: `"http"`.
    pub http_server: String,
    /// The ws server's base URL as browsers reach it (such as `wss://example.com` behind a
    /// proxy), for the demo page and the dashboard. Default: none, the page's own host
    /// and the ws server's port.
    pub ws_url: Option<String>,
    /// Browser origins allowed to open the app's WebSocket routes (`/wss/demo`,
    /// `/wss/rooms/{room}`), such as `"https://app.example"`; another `Origin` gets 403
    /// `origin_forbidden` before the auth middleware runs, a request without `Origin` (not a
    /// browser) passes. Default: none, which allows any origin.
    pub origins: Vec<String>,
}

impl Default for AppSection {
    fn default() -> Self {
        AppSection {
            data_dir: None,
            ws_server: "ws".to_owned(),
            http_server: "http".to_owned(),
            ws_url: None,
            origins: Vec::new(),
        }
    }
}

/// `[rooms_protocol]`: the limits of the rooms protocol (`/wss/rooms`, docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RoomsProtocolConfig {
    /// Rooms one connection may follow at once; the next `subscribe` gets
    /// `too_many_subscriptions`. Default: 128.
    pub max_subscriptions: usize,
    /// Publishes per second one connection may send; beyond it (after the burst) a
    /// `publish` gets `rate_limited`. `0` turns the limit off. Default: 50.
    pub publish_rate: u32,
    /// Publishes one connection may send at once before `publish_rate` applies.
    /// Default: 100.
    pub publish_burst: u32,
}

impl Default for RoomsProtocolConfig {
    fn default() -> Self {
        RoomsProtocolConfig {
            max_subscriptions: 128,
            publish_rate: 50,
            publish_burst: 100,
        }
    }
}

/// The app's tables as they appear in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AppTables {
    jwt: TokenConfig,
    auth: AuthConfig,
    api: ApiConfig,
    database: DatabaseConfig,
    app: AppSection,
    rooms_protocol: RoomsProtocolConfig,
}

/// Everything `wharf serve` and the other commands read.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AppConfig {
    /// The core servers, limits and heartbeat.
    pub server: wharf::Config,
    /// `[jwt]`: token algorithm, keys, lifetime.
    pub jwt: TokenConfig,
    /// `[auth]`: the handshake middleware.
    pub auth: AuthConfig,
    /// `[api]`: the admin endpoints.
    pub api: ApiConfig,
    /// `[database]`: the users store.
    pub database: DatabaseConfig,
    /// `[app]`: data directory and server names.
    pub app: AppSection,
    /// `[rooms_protocol]`: the rooms protocol's limits.
    pub rooms_protocol: RoomsProtocolConfig,
}

/// A configuration that cannot be used: the file (if any) and what is wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{message}", file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default())]
pub struct AppConfigError {
    file: Option<PathBuf>,
    message: String,
}

impl AppConfigError {
    fn new(file: Option<&Path>, message: impl Into<String>) -> AppConfigError {
        AppConfigError {
            file: file.map(Path::to_owned),
            message: message.into(),
        }
    }

    /// The file the error is in, if it came from one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

impl AppConfig {
    /// Parses a whole config file's text (no environment overrides) and validates it.
    /// `file` only names the file in errors.
    pub fn from_toml_str(text: &str, file: Option<&Path>) -> Result<AppConfig, AppConfigError> {
        let mut table: toml::Table = toml::from_str(text)
            .map_err(|e| AppConfigError::new(file, e.to_string().trim_end()))?;
        let mut own = toml::Table::new();
        for name in APP_TABLES {
            if let Some(value) = table.remove(name) {
                own.insert(name.to_owned(), value);
            }
        }
        let tables: AppTables = toml::Value::Table(own)
            .try_into()
            .map_err(|e: toml::de::Error| AppConfigError::new(file, e.to_string().trim_end()))?;
        // The core sees exactly what is left; unknown keys are still refused there.
        let server = if table.is_empty() {
            wharf::Config::from_toml_str("")
        } else {
            let rest = toml::to_string(&table)
                .map_err(|e| AppConfigError::new(file, format!("cannot re-read the file: {e}")))?;
            wharf::Config::from_toml_str(&rest)
        }
        .map_err(|e| AppConfigError::new(file, e.to_string()))?;
        let config = AppConfig {
            server,
            jwt: tables.jwt,
            auth: tables.auth,
            api: tables.api,
            database: tables.database,
            app: tables.app,
            rooms_protocol: tables.rooms_protocol,
        };
        config
            .validate()
            .map_err(|m| AppConfigError::new(file, m))?;
        Ok(config)
    }

    /// What `wharf serve` runs without a config file: the defaults, and history for the rooms
    /// login tokens may use over the rooms protocol (`demo:*` and `user:*`: the last 100
    /// messages for 5 minutes, in memory), so that a reconnecting client recovers what it
    /// missed. A config file sets its own `[rooms.history]` (none by default).
    pub fn builtin() -> AppConfig {
        let mut config = AppConfig::default();
        let mut history = wharf::config::HistoryConfig::default();
        history.rules = ["demo:*", "user:*"]
            .into_iter()
            .map(|pattern| wharf::config::HistoryRule::new(pattern, 100))
            .collect();
        config.server.rooms.history = history;
        config
    }

    /// Loads the file at `path` (or the built-in config, [`AppConfig::builtin`]), then applies the environment read
    /// through `var` (see [`AppConfig::apply_env`]) and validates the result.
    pub fn load(
        path: Option<&Path>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<AppConfig, AppConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    AppConfigError::new(Some(path), format!("cannot read the file: {e}"))
                })?;
                AppConfig::from_toml_str(&text, Some(path))?
            }
            None => AppConfig::builtin(),
        };
        config
            .apply_env(var)
            .map_err(|m| AppConfigError::new(path, m))?;
        Ok(config)
    }

    /// Applies environment overrides: the core's (`WHARF_<SERVER>_PORT`, …) and
    /// `JWT_SECRET` (→ `jwt.secret`), `JWT_OPEN` (`false`/`0`/`off` → `auth.enabled =
    /// false`), `WHARF_API_KEY` (→ `api.key`), `DATABASE_URL` (→ `database.url`),
    /// `WHARF_DATA_DIR` (→ `app.data_dir`). Empty values are ignored.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        self.server.apply_env(var).map_err(|e| e.to_string())?;
        self.server.validate().map_err(|e| e.to_string())?;
        if let Some(secret) = var("JWT_SECRET") {
            self.jwt.secret = Some(secret);
        }
        if let Some(open) = var("JWT_OPEN") {
            self.auth.enabled = parse_bool(&open)
                .ok_or_else(|| format!("JWT_OPEN: `{open}` is not true or false"))?;
        }
        if let Some(key) = var("WHARF_API_KEY") {
            self.api.key = Some(key);
        }
        if let Some(url) = var("DATABASE_URL") {
            self.database.url = Some(url);
        }
        if let Some(dir) = var("WHARF_DATA_DIR") {
            self.app.data_dir = Some(PathBuf::from(dir));
        }
        self.validate()
    }

    /// The data directory: `app.data_dir`, else the working directory.
    pub fn data_dir(&self) -> PathBuf {
        self.app
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// Checks the app's tables against the core config.
    pub fn validate(&self) -> Result<(), String> {
        if self.rooms_protocol.max_subscriptions == 0 {
            return Err("rooms_protocol.max_subscriptions: must be at least 1".into());
        }
        for route in &self.auth.routes {
            if !route.starts_with('/') {
                return Err(format!("auth.routes: `{route}` must start with `/`"));
            }
        }
        if self.api.key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err("api.key: must not be empty (remove it to disable keys)".to_owned());
        }
        Ok(())
    }
}

/// `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`, any case.
fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_app_tables_from_core() {
        let text = "drain_timeout = \"1s\"\n[jwt]\nttl_secs = 60\n[auth]\nenabled = false\n[api]\nkey = \"k\"\n";
        let config = AppConfig::from_toml_str(text, None).expect("valid");
        assert_eq!(config.jwt.ttl_secs, 60);
        assert!(!config.auth.enabled);
        assert_eq!(config.api.key.as_deref(), Some("k"));
        assert_eq!(
            config.server.drain_timeout,
            std::time::Duration::from_secs(1)
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_the_file_name() {
        let err = AppConfig::from_toml_str("bogus = 1\n", Some(Path::new("x.toml")))
            .expect_err("unknown key");
        assert!(err.to_string().starts_with("x.toml: "), "{err}");
        assert!(err.to_string().contains("bogus"), "{err}");
        let err = AppConfig::from_toml_str("[auth]\nbogus = 1\n", None).expect_err("unknown");
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn env_overrides() {
        let mut config = AppConfig::default();
        config
            .apply_env(|n| match n {
                "JWT_OPEN" => Some("false".into()),
                "WHARF_API_KEY" => Some("key".into()),
                "WHARF_DATA_DIR" => Some("/tmp/x".into()),
                _ => None,
            })
            .expect("valid env");
        assert!(!config.auth.enabled);
        assert_eq!(config.api.key.as_deref(), Some("key"));
        assert_eq!(config.data_dir(), PathBuf::from("/tmp/x"));
        assert!(
            config
                .apply_env(|n| (n == "JWT_OPEN").then(|| "maybe".into()))
                .is_err()
        );
    }
}
