//! Configuration: the servers to start, their limits and routes, from built-in defaults, a
//! `wharf.toml` file and environment variables (in that order of precedence, lowest first).
//!
//! ```
//! let config = wharf::Config::from_toml_str(r#"
//!     [[server]]
//!     name = "ws"
//!     kind = "websocket"
//!     port = 9000
//!     limits = { max_message_size = "1MiB" }
//!     route = [{ path = "/echo", handler = "echo" }]
//! "#).unwrap();
//! assert_eq!(config.servers[0].port, 9000);
//! assert_eq!(config.servers[0].limits.max_message_size, 1 << 20);
//! ```

mod compression;
mod drain;
mod handover;
mod history;
mod proxy;
mod units;

use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use compression::Compression;
pub use drain::DrainConfig;
pub use handover::HandoverConfig;
pub use history::{HistoryConfig, HistoryRule};
pub use proxy::{ForwardedHeader, IpNet};
pub(crate) use proxy::{canonical, is_private};
pub(crate) use units::{parse_duration, parse_size};

/// The whole configuration of a wharf process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Config {
    /// The servers to start, each on its own port. Default: `http` on 0.0.0.0:9501 and `ws`
    /// on 0.0.0.0:9502 (with the built-in echo handler on `/echo`).
    #[serde(rename = "server")]
    pub servers: Vec<ServerConfig>,
    /// How long a graceful shutdown waits for connections to finish their close handshake
    /// and `on_close` before it gives up on them. Default: `"10s"`.
    #[serde(with = "serde_duration")]
    pub drain_timeout: Duration,
    /// How a shutdown closes the connections: spread over a window, with which code and
    /// reason (`[drain]`).
    pub drain: DrainConfig,
    /// A live upgrade to a new process: its confirm timeout and the close reason of the
    /// connections left behind (`[handover]`).
    pub handover: HandoverConfig,
    /// This node's id in a cluster (0–65535); it is part of every connection id. Default: 0,
    /// which with a backplane means "pick a free one at start".
    pub node_id: u16,
    /// The cluster backplane, presence TTL and fault policy (`[cluster]`).
    pub cluster: ClusterConfig,
    /// Room behaviour (`[rooms]`).
    pub rooms: RoomsConfig,
}

/// `[cluster]`: several nodes sharing one backplane act as one server.
///
/// ```
/// let config = wharf::Config::from_toml_str(r#"
///     [cluster]
///     backplane = "redis://127.0.0.1:6379"
///     presence_ttl = "10s"
/// "#).unwrap();
/// assert_eq!(config.cluster.backplane.as_deref(), Some("redis://127.0.0.1:6379"));
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// `redis://host:port[/db]` or `nats://host:port`; unset (the default) runs one node with
    /// no external service.
    pub backplane: Option<String>,
    /// Prefix of every channel and key the cluster uses, so clusters can share an engine.
    /// Default: `"wharf"`.
    pub prefix: String,
    /// How long a node's presence outlives its last refresh (it refreshes every third of it).
    /// A node that dies leaves presence within this time. Default: `"15s"`.
    #[serde(with = "serde_duration")]
    pub presence_ttl: Duration,
    /// Start even when the backplane is unreachable, serving local connections only and
    /// reconnecting in the background. Default: false (refuse to start).
    pub allow_local_only: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            backplane: None,
            prefix: "wharf".to_owned(),
            presence_ttl: Duration::from_secs(15),
            allow_local_only: false,
        }
    }
}

/// `[rooms]`: how rooms behave.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RoomsConfig {
    /// Send `{"event":"join"|"leave","room":…,"conn":…,"user":…}` to a room's other members
    /// when a connection joins or leaves it (closing leaves every room). Default: false.
    pub presence_events: bool,
    /// Which rooms keep their last messages (`[rooms.history]`). Default: none; see
    /// [`HistoryConfig`].
    pub history: HistoryConfig,
}

/// What a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    /// Plain HTTP: `/health` and the application's HTTP routes.
    Http,
    /// WebSocket: the routes registered for this server's name.
    #[serde(alias = "ws")]
    Websocket,
    /// WebSocket routes without a listener of their own: the application's HTTP server
    /// (such as an axum app) serves them through
    /// [`BoundServer::service`](crate::BoundServer::service). `host`, `port` and `tls` do
    /// not apply.
    Mounted,
}

/// One listening server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The server's name; routes and middleware are registered per name. Required.
    pub name: String,
    /// `http` or `websocket`. Required.
    pub kind: ServerKind,
    /// Address to bind. Default: `"0.0.0.0"`.
    #[serde(default = "default_host")]
    pub host: String,
    /// Port to bind; 0 picks a free one. Required.
    pub port: u16,
    /// Limits of this server's connections. Default: see [`Limits`].
    #[serde(default)]
    pub limits: Limits,
    /// Server heartbeat (WebSocket servers). Default: see [`Heartbeat`].
    #[serde(default)]
    pub heartbeat: Heartbeat,
    /// Routes mounted from the config file, by handler name (such as `echo`). Default: none.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// Serve `https` / `wss` with this certificate and key. Default: none (plain TCP).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// permessage-deflate (`[server.compression]`, WebSocket servers). Default: off; see
    /// [`Compression`].
    #[serde(default)]
    pub compression: Compression,
    /// Peers (addresses and CIDR networks) trusted to say who the client is: from them the
    /// client address is taken from the PROXY protocol header (with `proxy_protocol`) or from
    /// `forwarded_header`, and used for `max_connections_per_ip`, logs, listings and
    /// [`PeerAddr`](crate::PeerAddr). From any other peer those are ignored. WebSocket
    /// servers only. Default: none (every client address is the TCP peer).
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    /// Every connection starts with a PROXY protocol header (v1 or v2, as HAProxy, nginx
    /// `proxy_protocol on`, AWS NLB and others send it) carrying the client's address. Such a
    /// listener refuses a peer outside `trusted_proxies` (403 `untrusted_proxy`) and a
    /// connection without a valid header (400 `bad_proxy_header`); needs `trusted_proxies`.
    /// WebSocket servers only. Default: false.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// The header a trusted proxy writes the client's address into: `"x-forwarded-for"`,
    /// `"forwarded"` (RFC 7239) or `"none"`. The rightmost address that is not itself a
    /// trusted proxy is the client. Default: `"x-forwarded-for"`.
    #[serde(default)]
    pub forwarded_header: ForwardedHeader,
}

/// `tls = { cert = "cert.pem", key = "key.pem" }`: PEM files, the certificate chain (leaf
/// first) and its private key (PKCS#8, PKCS#1 or SEC1). Served with rustls, TLS 1.2 and 1.3.
///
/// ```
/// let config = wharf::Config::from_toml_str(r#"
///     [[server]]
///     name = "ws"
///     kind = "websocket"
///     port = 443
///     tls = { cert = "/etc/wharf/cert.pem", key = "/etc/wharf/key.pem" }
/// "#).unwrap();
/// assert!(config.servers[0].tls.is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// The certificate chain, PEM.
    pub cert: PathBuf,
    /// The private key, PEM.
    pub key: PathBuf,
}

impl TlsConfig {
    /// A certificate chain file and a key file.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsConfig {
        TlsConfig {
            cert: cert.into(),
            key: key.into(),
        }
    }
}

/// A route declared in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RouteConfig {
    /// The path, static or with `{param}` segments. Required.
    pub path: String,
    /// The name of a handler the application registered, or the built-in `echo`. Required.
    pub handler: String,
    /// Subprotocols this route speaks, in order of preference. Default: none.
    #[serde(default)]
    pub protocols: Vec<String>,
    /// Browser origins allowed to open this route, such as `"https://app.example"`; a
    /// handshake with another `Origin` gets 403 `origin_forbidden` (cross-site WebSocket
    /// hijacking). A request without `Origin` (not a browser) is let through. Default: none,
    /// which allows any origin.
    #[serde(default)]
    pub origins: Vec<String>,
}

/// Per-server limits. Every bound has an outcome a client can see.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Limits {
    /// Largest message (all fragments together); over it the connection is closed with 1009.
    /// Default: `"16MiB"`.
    #[serde(deserialize_with = "units::size")]
    pub max_message_size: usize,
    /// Largest single frame; over it the connection is closed with 1009. Default: `"16MiB"`.
    #[serde(deserialize_with = "units::size")]
    pub max_frame_size: usize,
    /// Time from TCP accept to a complete request head; past it the TCP connection is dropped
    /// (slowloris). Default: `"10s"`.
    #[serde(with = "serde_duration")]
    pub handshake_timeout: Duration,
    /// A connection that sends nothing (not even a pong) for this long is closed with 1001.
    /// Counted from its last read, or from the end of the handler call that read started
    /// when that is later (a connection is not idle while its handler works for it); never
    /// sooner, and at most an eighth of the shorter of this and the heartbeat interval later
    /// (reads do not read the clock; the timer check does). `0` turns it off.
    /// Default: `"120s"`.
    #[serde(with = "serde_duration")]
    pub idle_timeout: Duration,
    /// Open connections on this server; more are refused with 503 at the handshake.
    /// Default: 50000.
    pub max_connections: usize,
    /// Concurrent TCP connections (handshakes in progress and open WebSockets) from one
    /// client address (IPv6: one /64); more are refused with 429 at the handshake. Generous
    /// because many clients can share one address behind NAT. The client address is the one
    /// a trusted proxy reports (see `trusted_proxies`). A trusted proxy's own address is
    /// never capped, nor (unless `cap_private_addresses`) a loopback or private one, which is
    /// what a proxy that is not listed in `trusted_proxies` connects from. `0` turns it off.
    /// Default: 1000.
    pub max_connections_per_ip: usize,
    /// Apply `max_connections_per_ip` to loopback, private (RFC 1918, IPv6 unique local)
    /// and link-local client addresses too. Off by default so that a server behind a proxy
    /// that is not listed in `trusted_proxies` (every client then shares the proxy's
    /// address) does not refuse its 1,001st user. Default: false.
    pub cap_private_addresses: bool,
    /// Messages (data and control frames) one connection may send per second on average;
    /// more close it with 1008 "message rate limit exceeded". `0` turns it off.
    /// Default: 0 (off).
    pub max_messages_per_sec: u32,
    /// How many messages a connection may send at once above `max_messages_per_sec`
    /// (the token bucket's size); `0` means as many as `max_messages_per_sec`. Default: 0.
    pub message_burst: u32,
    /// Bytes queued for one connection that it has not read yet; a push beyond it marks the
    /// client a slow consumer and closes it with `slow_consumer_code`. Default: `"4MiB"`.
    #[serde(deserialize_with = "units::size")]
    pub max_queue_size: usize,
    /// Close code for a slow consumer: 1008 (policy) or 1013 (try again later). Default: 1008.
    pub slow_consumer_code: u16,
    /// Largest HTTP request head (request line and headers); over it the handshake gets 431.
    /// Default: `"16KiB"`.
    #[serde(deserialize_with = "units::size")]
    pub max_request_head: usize,
    /// Most headers in a handshake request; more get 431. Default: 64.
    pub max_headers: usize,
    /// How long the server waits for the client's close frame after sending its own. Default: `"5s"`.
    #[serde(with = "serde_duration")]
    pub close_timeout: Duration,
}

/// Server heartbeat: pings that detect half-open TCP connections.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Heartbeat {
    /// Send a ping after this long without traffic from the client (never sooner, at most
    /// an eighth of it later, as `idle_timeout`); `0` turns heartbeats off. Default: `"30s"`.
    #[serde(with = "serde_duration")]
    pub interval: Duration,
    /// Close the connection (1001) when no pong or other frame arrives this long after a ping.
    /// Default: `"10s"`.
    #[serde(with = "serde_duration")]
    pub timeout: Duration,
}

fn default_host() -> String {
    "0.0.0.0".to_owned()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            servers: vec![
                ServerConfig::new("http", ServerKind::Http, 9501),
                ServerConfig::new("ws", ServerKind::Websocket, 9502).with_route("/echo", "echo"),
            ],
            drain_timeout: Duration::from_secs(10),
            drain: DrainConfig::default(),
            handover: HandoverConfig::default(),
            node_id: 0,
            cluster: ClusterConfig::default(),
            rooms: RoomsConfig::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 16 << 20,
            max_frame_size: 16 << 20,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_connections: 50_000,
            max_connections_per_ip: 1000,
            cap_private_addresses: false,
            max_messages_per_sec: 0,
            message_burst: 0,
            max_queue_size: 4 << 20,
            slow_consumer_code: 1008,
            max_request_head: 16 << 10,
            max_headers: 64,
            close_timeout: Duration::from_secs(5),
        }
    }
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

impl ServerConfig {
    /// A server with default limits and no routes, bound to 0.0.0.0.
    pub fn new(name: impl Into<String>, kind: ServerKind, port: u16) -> ServerConfig {
        ServerConfig {
            name: name.into(),
            kind,
            host: default_host(),
            port,
            limits: Limits::default(),
            heartbeat: Heartbeat::default(),
            routes: Vec::new(),
            tls: None,
            compression: Compression::default(),
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
            forwarded_header: ForwardedHeader::default(),
        }
    }

    /// A `mounted` server: WebSocket routes with default limits and no listener of their
    /// own, for [`BoundServer::service`](crate::BoundServer::service).
    ///
    /// ```
    /// use wharf::{ServerConfig, ServerKind};
    /// assert_eq!(ServerConfig::mounted("chat").kind, ServerKind::Mounted);
    /// ```
    pub fn mounted(name: impl Into<String>) -> ServerConfig {
        ServerConfig::new(name, ServerKind::Mounted, 0)
    }

    /// Sets permessage-deflate.
    ///
    /// ```
    /// use wharf::{Compression, ServerConfig, ServerKind};
    /// let server = ServerConfig::new("ws", ServerKind::Websocket, 0).with_compression(Compression::on());
    /// assert!(server.compression.enabled);
    /// ```
    pub fn with_compression(mut self, compression: Compression) -> ServerConfig {
        self.compression = compression;
        self
    }

    /// Serves this server over TLS.
    pub fn with_tls(mut self, tls: TlsConfig) -> ServerConfig {
        self.tls = Some(tls);
        self
    }

    /// Sets the bind host.
    pub fn with_host(mut self, host: impl Into<String>) -> ServerConfig {
        self.host = host.into();
        self
    }

    /// Mounts a named handler (such as the built-in `echo`) at `path`.
    pub fn with_route(mut self, path: impl Into<String>, handler: impl Into<String>) -> Self {
        self.routes.push(RouteConfig {
            path: path.into(),
            handler: handler.into(),
            protocols: Vec::new(),
            origins: Vec::new(),
        });
        self
    }
}

impl Config {
    /// A configuration with no servers, for building one in code.
    pub fn empty() -> Config {
        Config {
            servers: Vec::new(),
            ..Config::default()
        }
    }

    /// Adds a server.
    pub fn with_server(mut self, server: ServerConfig) -> Config {
        self.servers.push(server);
        self
    }

    /// The server called `name`.
    pub fn server(&self, name: &str) -> Option<&ServerConfig> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// The server called `name`, mutably.
    pub fn server_mut(&mut self, name: &str) -> Option<&mut ServerConfig> {
        self.servers.iter_mut().find(|s| s.name == name)
    }

    /// Parses a TOML document (no environment overrides) and validates it.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::parse(None, &e))?;
        config.validate().map_err(|e| e.in_file(None))?;
        Ok(config)
    }

    /// Loads the configuration the way `wharf serve` does: the file at `path` if given, else
    /// the built-in defaults; then the environment overrides (see [`Config::apply_env`]).
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                    file: Some(path.to_owned()),
                    key: None,
                    message: format!("cannot read the file: {e}"),
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::parse(Some(path), &e))?
            }
            None => Config::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate().map_err(|e| e.in_file(path))?;
        Ok(config)
    }

    /// Applies environment overrides, read through `var`:
    ///
    /// | variable | overrides |
    /// |---|---|
    /// | `WHARF_<NAME>_HOST` | `host` of the server called `<name>` (upper case, `-` as `_`) |
    /// | `WHARF_<NAME>_PORT` | `port` of that server |
    /// | `WHARF_<NAME>_MAX_CONNECTIONS` | its `limits.max_connections` |
    /// | `WHARF_<NAME>_MAX_MESSAGE_SIZE` | its `limits.max_message_size` |
    /// | `WHARF_<NAME>_TLS_CERT`, `WHARF_<NAME>_TLS_KEY` | its `tls` (both or neither) |
    /// | `WHARF_<NAME>_MAX_CONNECTIONS_PER_IP` | its `limits.max_connections_per_ip` |
    /// | `WHARF_<NAME>_MAX_MESSAGES_PER_SEC` | its `limits.max_messages_per_sec` |
    /// | `WHARF_<NAME>_COMPRESSION` | its `compression.enabled` (`true`/`false`) |
    /// | `WHARF_<NAME>_TRUSTED_PROXIES` | its `trusted_proxies`, comma-separated (empty: none) |
    /// | `WHARF_<NAME>_PROXY_PROTOCOL` | its `proxy_protocol` (`true`/`false`) |
    /// | `WHARF_<NAME>_FORWARDED_HEADER` | its `forwarded_header` |
    /// | `WHARF_DRAIN_TIMEOUT` | `drain_timeout` |
    /// | `WHARF_DRAIN_SPREAD` | `drain.spread` |
    /// | `WHARF_HANDOVER_TIMEOUT` | `handover.timeout` |
    /// | `WHARF_NODE_ID` | `node_id` |
    /// | `WHARF_CLUSTER_BACKPLANE` | `cluster.backplane` (empty: none) |
    /// | `WHARF_CLUSTER_PREFIX` | `cluster.prefix` |
    /// | `WHARF_CLUSTER_PRESENCE_TTL` | `cluster.presence_ttl` |
    /// | `WHARF_CLUSTER_ALLOW_LOCAL_ONLY` | `cluster.allow_local_only` (`true`/`false`) |
    /// | `WHARF_ROOMS_HISTORY_SIZE` | `rooms.history.size` |
    /// | `WHARF_ROOMS_HISTORY_TTL` | `rooms.history.ttl` |
    /// | `WHARF_ROOMS_HISTORY_IDEMPOTENCY_WINDOW` | `rooms.history.idempotency_window` |
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn bad(name: &str, message: String) -> ConfigError {
            ConfigError {
                file: None,
                key: Some(format!("environment variable {name}")),
                message,
            }
        }
        /// The variable `name` parsed with `FromStr`, if set; `what` is the kind it must be.
        fn parsed<T: std::str::FromStr>(
            var: &impl Fn(&str) -> Option<String>,
            name: &str,
            what: &str,
        ) -> Result<Option<T>, ConfigError> {
            var(name)
                .map(|v| {
                    v.parse()
                        .map_err(|_| bad(name, format!("`{v}` is not {what}")))
                })
                .transpose()
        }
        if let Some(v) = var("WHARF_DRAIN_TIMEOUT") {
            self.drain_timeout = parse_duration(&v).map_err(|m| bad("WHARF_DRAIN_TIMEOUT", m))?;
        }
        if let Some(v) = var("WHARF_DRAIN_SPREAD") {
            self.drain.spread = parse_duration(&v).map_err(|m| bad("WHARF_DRAIN_SPREAD", m))?;
        }
        if let Some(v) = var("WHARF_HANDOVER_TIMEOUT") {
            self.handover.timeout =
                parse_duration(&v).map_err(|m| bad("WHARF_HANDOVER_TIMEOUT", m))?;
        }
        if let Some(id) = parsed(&var, "WHARF_NODE_ID", "a number 0-65535")? {
            self.node_id = id;
        }
        if let Some(v) = var("WHARF_CLUSTER_BACKPLANE") {
            self.cluster.backplane = (!v.is_empty()).then_some(v);
        }
        if let Some(v) = var("WHARF_CLUSTER_PREFIX") {
            self.cluster.prefix = v;
        }
        if let Some(v) = var("WHARF_CLUSTER_PRESENCE_TTL") {
            self.cluster.presence_ttl =
                parse_duration(&v).map_err(|m| bad("WHARF_CLUSTER_PRESENCE_TTL", m))?;
        }
        if let Some(allow) = parsed(&var, "WHARF_CLUSTER_ALLOW_LOCAL_ONLY", "true or false")? {
            self.cluster.allow_local_only = allow;
        }
        self.rooms.history.apply_env(&var, bad)?;
        for server in &mut self.servers {
            let prefix = format!("WHARF_{}_", server.name.to_uppercase().replace('-', "_"));
            let name = |suffix: &str| format!("{prefix}{suffix}");
            if let Some(v) = var(&name("HOST")) {
                server.host = v;
            }
            if let Some(port) = parsed(&var, &name("PORT"), "a port number")? {
                server.port = port;
            }
            if let Some(max) = parsed(&var, &name("MAX_CONNECTIONS"), "a number")? {
                server.limits.max_connections = max;
            }
            match (var(&name("TLS_CERT")), var(&name("TLS_KEY"))) {
                (Some(cert), Some(key)) => server.tls = Some(TlsConfig::new(cert, key)),
                (None, None) => {}
                _ => {
                    return Err(bad(
                        &name("TLS_CERT"),
                        format!("set both {} and {}", name("TLS_CERT"), name("TLS_KEY")),
                    ));
                }
            }
            if let Some(max) = parsed(&var, &name("MAX_CONNECTIONS_PER_IP"), "a number")? {
                server.limits.max_connections_per_ip = max;
            }
            if let Some(rate) = parsed(&var, &name("MAX_MESSAGES_PER_SEC"), "a number")? {
                server.limits.max_messages_per_sec = rate;
            }
            if let Some(on) = parsed(&var, &name("COMPRESSION"), "true or false")? {
                server.compression.enabled = on;
            }
            if let Some(v) = var(&name("TRUSTED_PROXIES")) {
                server.trusted_proxies =
                    proxy::parse_list(&v).map_err(|m| bad(&name("TRUSTED_PROXIES"), m))?;
            }
            if let Some(on) = parsed(&var, &name("PROXY_PROTOCOL"), "true or false")? {
                server.proxy_protocol = on;
            }
            if let Some(v) = var(&name("FORWARDED_HEADER")) {
                server.forwarded_header =
                    v.parse().map_err(|m| bad(&name("FORWARDED_HEADER"), m))?;
            }
            if let Some(v) = var(&name("MAX_MESSAGE_SIZE")) {
                server.limits.max_message_size =
                    parse_size(&v).map_err(|m| bad(&name("MAX_MESSAGE_SIZE"), m))?;
            }
        }
        Ok(())
    }

    /// Checks what serde cannot: unique names and ports, paths, codes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let key_err = |key: String, message: String| ConfigError {
            file: None,
            key: Some(key),
            message,
        };
        if self.cluster.presence_ttl < Duration::from_secs(1) {
            return Err(key_err(
                "cluster.presence_ttl".into(),
                "must be at least 1s".into(),
            ));
        }
        if self.cluster.prefix.is_empty() || self.cluster.prefix.contains(char::is_whitespace) {
            return Err(key_err(
                "cluster.prefix".into(),
                "must be a non-empty word".into(),
            ));
        }
        self.rooms
            .history
            .check()
            .map_err(|(key, message)| key_err(key, message))?;
        self.drain
            .check(self.drain_timeout)
            .map_err(|(key, message)| key_err(key, message))?;
        self.handover
            .check()
            .map_err(|(key, message)| key_err(key, message))?;
        let mut names = HashSet::new();
        let mut ports = HashSet::new();
        for (i, server) in self.servers.iter().enumerate() {
            let key = |field: &str| format!("server[{i}].{field}");
            if server.name.is_empty() {
                return Err(key_err(key("name"), "must not be empty".into()));
            }
            if !names.insert(server.name.as_str()) {
                return Err(key_err(
                    key("name"),
                    format!("two servers are called `{}`", server.name),
                ));
            }
            if server.kind != ServerKind::Mounted
                && server.port != 0
                && !ports.insert((server.host.as_str(), server.port))
            {
                return Err(key_err(
                    key("port"),
                    format!("port {} is used by two servers", server.port),
                ));
            }
            let code = server.limits.slow_consumer_code;
            if code != 1008 && code != 1013 {
                return Err(key_err(
                    key("limits.slow_consumer_code"),
                    format!("must be 1008 or 1013, not {code}"),
                ));
            }
            if server.limits.max_frame_size == 0 || server.limits.max_message_size == 0 {
                return Err(key_err(key("limits"), "sizes must be above 0".into()));
            }
            if server.kind == ServerKind::Mounted {
                if server.tls.is_some() {
                    return Err(key_err(
                        key("tls"),
                        "a `mounted` server has no listener; TLS is the application's HTTP server's".into(),
                    ));
                }
                if server.proxy_protocol {
                    return Err(key_err(
                        key("proxy_protocol"),
                        "a `mounted` server has no listener to read the PROXY protocol on".into(),
                    ));
                }
            }
            if server.kind == ServerKind::Http {
                if server.proxy_protocol {
                    return Err(key_err(
                        key("proxy_protocol"),
                        "only websocket servers read the PROXY protocol; remove it from this `http` server".into(),
                    ));
                }
                if !server.trusted_proxies.is_empty() {
                    return Err(key_err(
                        key("trusted_proxies"),
                        "only websocket servers use the client address; remove it from this `http` server".into(),
                    ));
                }
            }
            if server.proxy_protocol && server.trusted_proxies.is_empty() {
                return Err(key_err(
                    key("proxy_protocol"),
                    "needs trusted_proxies (the proxies' addresses): without them every connection would be refused".into(),
                ));
            }
            if server.limits.message_burst != 0 && server.limits.max_messages_per_sec == 0 {
                return Err(key_err(
                    key("limits.message_burst"),
                    "needs max_messages_per_sec above 0".into(),
                ));
            }
            if let Err((field, message)) = server.compression.check() {
                return Err(key_err(key(&format!("compression.{field}")), message));
            }
            for (j, route) in server.routes.iter().enumerate() {
                if !route.path.starts_with('/') {
                    return Err(key_err(
                        format!("server[{i}].route[{j}].path"),
                        format!("`{}` must start with `/`", route.path),
                    ));
                }
                if let Some(bad) = route.origins.iter().find(|o| !is_origin(o)) {
                    return Err(key_err(
                        format!("server[{i}].route[{j}].origins"),
                        format!("`{bad}` is not an origin such as `https://app.example`"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether `text` looks like a serialized origin: `scheme://host[:port]`, no path.
fn is_origin(text: &str) -> bool {
    match text.split_once("://") {
        Some((scheme, host)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !host.is_empty()
                && !host.contains(['/', '?', '#', ' '])
        }
        None => false,
    }
}

/// A configuration that cannot be used: which file, which key, what is wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{}{message}", file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default(), key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
pub struct ConfigError {
    file: Option<PathBuf>,
    key: Option<String>,
    message: String,
}

impl ConfigError {
    fn parse(file: Option<&Path>, error: &toml::de::Error) -> ConfigError {
        // toml's Display names the line, the column, the offending key and what is wrong.
        ConfigError {
            file: file.map(Path::to_owned),
            key: None,
            message: error.to_string().trim_end().to_owned(),
        }
    }

    fn in_file(mut self, file: Option<&Path>) -> ConfigError {
        if self.file.is_none() {
            self.file = file.map(Path::to_owned);
        }
        self
    }

    /// The file the error is in, if it came from one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The key (or position) that is wrong, if known.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

mod serde_duration {
    use serde::Deserializer;
    use std::time::Duration;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        super::units::duration(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_seed() {
        let config = Config::default();
        assert_eq!(config.servers[0].name, "http");
        assert_eq!(config.servers[0].port, 9501);
        assert_eq!(config.servers[1].name, "ws");
        assert_eq!(config.servers[1].port, 9502);
    }

    #[test]
    fn unknown_key_is_named() {
        let err =
            Config::from_toml_str("[[server]]\nname='ws'\nkind='websocket'\nport=1\nprot=2\n")
                .expect_err("unknown key");
        assert!(err.to_string().contains("prot"), "{err}");
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let err = Config::from_toml_str(
            "[[server]]\nname='a'\nkind='http'\nport=1\n[[server]]\nname='a'\nkind='http'\nport=2\n",
        )
        .expect_err("duplicate");
        assert_eq!(err.key(), Some("server[1].name"));
    }

    #[test]
    fn compression_parses_validates_and_follows_the_environment() {
        let ws = |table: &str| {
            format!(
                "[[server]]\nname='ws'\nkind='websocket'\nport=1\n[server.compression]\n{table}"
            )
        };
        let config =
            Config::from_toml_str(&ws("enabled=true\nlevel=1\nserver_max_window_bits=10\n"))
                .expect("valid");
        let compression = &config.servers[0].compression;
        assert!(compression.enabled);
        assert_eq!(
            (compression.level, compression.server_max_window_bits),
            (1, 10)
        );
        assert_eq!(compression.threshold, 128);
        for (table, key) in [
            ("level=10", "server[0].compression.level"),
            (
                "server_max_window_bits=8",
                "server[0].compression.server_max_window_bits",
            ),
            (
                "client_max_window_bits=7",
                "server[0].compression.client_max_window_bits",
            ),
        ] {
            let err = Config::from_toml_str(&ws(table)).expect_err(table);
            assert_eq!(err.key(), Some(key), "{table}");
        }
        assert!(Config::from_toml_str(&ws("bogus=1")).is_err());
        let mut config = Config::default();
        assert!(!config.servers[1].compression.enabled);
        config
            .apply_env(|name| (name == "WHARF_WS_COMPRESSION").then(|| "true".to_owned()))
            .expect("valid");
        assert!(config.server("ws").expect("ws").compression.enabled);
        let err = Config::default()
            .apply_env(|name| (name == "WHARF_WS_COMPRESSION").then(|| "yes".to_owned()))
            .expect_err("not a bool");
        assert!(err.to_string().contains("WHARF_WS_COMPRESSION"), "{err}");
    }

    #[test]
    fn new_limits_parse_and_validate() {
        let config = Config::from_toml_str(
            "[[server]]\nname='ws'\nkind='websocket'\nport=1\n\
             route=[{ path='/a', handler='echo', origins=['https://app.example'] }]\n\
             [server.limits]\nmax_connections_per_ip=5\nmax_messages_per_sec=10\nmessage_burst=20\n",
        )
        .expect("valid");
        let server = &config.servers[0];
        assert_eq!(server.routes[0].origins, ["https://app.example"]);
        assert_eq!(
            (
                server.limits.max_connections_per_ip,
                server.limits.max_messages_per_sec,
                server.limits.message_burst
            ),
            (5, 10, 20)
        );
        let err = Config::from_toml_str(
            "[[server]]\nname='ws'\nkind='websocket'\nport=1\n\
             route=[{ path='/a', handler='echo', origins=['app.example'] }]\n",
        )
        .expect_err("not an origin");
        assert_eq!(err.key(), Some("server[0].route[0].origins"));
        let err = Config::from_toml_str(
            "[[server]]\nname='ws'\nkind='websocket'\nport=1\n[server.limits]\nmessage_burst=5\n",
        )
        .expect_err("a burst without a rate");
        assert_eq!(err.key(), Some("server[0].limits.message_burst"));
        let mut config = Config::default();
        config
            .apply_env(|name| (name == "WHARF_WS_MAX_MESSAGES_PER_SEC").then(|| "100".to_owned()))
            .expect("valid");
        assert_eq!(
            config.server("ws").map(|s| s.limits.max_messages_per_sec),
            Some(100)
        );
    }

    #[test]
    fn proxy_settings_parse_validate_and_follow_the_environment() {
        let ws = |extra: &str| format!("[[server]]\nname='ws'\nkind='websocket'\nport=1\n{extra}");
        let config = Config::from_toml_str(&ws(
            "trusted_proxies=['10.0.0.0/8','::1']\nproxy_protocol=true\nforwarded_header='forwarded'\n",
        ))
        .expect("valid");
        let server = &config.servers[0];
        assert_eq!(server.trusted_proxies.len(), 2);
        assert!(server.proxy_protocol);
        assert_eq!(server.forwarded_header, ForwardedHeader::Forwarded);
        let err = Config::from_toml_str(&ws("proxy_protocol=true\n")).expect_err("no proxies");
        assert_eq!(err.key(), Some("server[0].proxy_protocol"));
        assert!(Config::from_toml_str(&ws("trusted_proxies=['10.0.0.0/33']\n")).is_err());
        assert!(Config::from_toml_str(&ws("forwarded_header='x-real-ip'\n")).is_err());
        let err = Config::from_toml_str(
            "[[server]]\nname='h'\nkind='http'\nport=1\ntrusted_proxies=['10.0.0.1']\n",
        )
        .expect_err("http server");
        assert_eq!(err.key(), Some("server[0].trusted_proxies"));
        let mut config = Config::default();
        config
            .apply_env(|name| match name {
                "WHARF_WS_TRUSTED_PROXIES" => Some("10.0.0.0/8, 192.0.2.7".to_owned()),
                "WHARF_WS_PROXY_PROTOCOL" => Some("true".to_owned()),
                "WHARF_WS_FORWARDED_HEADER" => Some("none".to_owned()),
                _ => None,
            })
            .expect("valid");
        let ws = config.server("ws").expect("ws");
        assert_eq!(ws.trusted_proxies.len(), 2);
        assert!(ws.proxy_protocol);
        assert_eq!(ws.forwarded_header, ForwardedHeader::None);
        let err = Config::default()
            .apply_env(|name| (name == "WHARF_WS_TRUSTED_PROXIES").then(|| "nope".to_owned()))
            .expect_err("not an address");
        assert!(
            err.to_string().contains("WHARF_WS_TRUSTED_PROXIES"),
            "{err}"
        );
        assert!(!Limits::default().cap_private_addresses);
    }

    #[test]
    fn env_overrides_port() {
        let mut config = Config::default();
        config
            .apply_env(|name| (name == "WHARF_WS_PORT").then(|| "7000".to_owned()))
            .expect("valid");
        assert_eq!(config.server("ws").map(|s| s.port), Some(7000));
        let err = config
            .apply_env(|name| (name == "WHARF_HTTP_PORT").then(|| "x".to_owned()))
            .expect_err("bad port");
        assert!(err.to_string().contains("WHARF_HTTP_PORT"));
    }
}
