//! A WebSocket client for `ws://` and `wss://` URLs (rustls), built on the workspace's RFC 6455 codec
//! ([`wharf_proto`]): [`connect`] performs the opening handshake and returns a
//! [`Client`] that sends [`Message`]s, receives [`Event`]s (pings are answered
//! automatically), closes with a bounded wait for the server's reply and can be
//! [`split`](Client::split) into halves for two tasks. [`Reconnecting`] adds
//! exponential backoff with jitter and a hook run after every (re)connect, [`rooms`] speaks
//! the rooms protocol (subscriptions recovered across reconnects). With the `cli` feature
//! (off by default, on in the `wharf` binary), `cli` is the `wharf client` command line and
//! `bench` the `wharf bench` load generator; without it the library compiles neither clap
//! nor hdrhistogram.
//!
//! ```no_run
//! use wharf_client::{ClientConfig, Event, Message, connect};
//!
//! # async fn demo() -> Result<(), wharf_client::ClientError> {
//! let mut client = connect("ws://127.0.0.1:9502/echo", &ClientConfig::default()).await?;
//! client.send(Message::Text("hello".into())).await?;
//! if let Some(Event::Message(Message::Text(text))) = client.recv().await? {
//!     assert_eq!(text, "hello");
//! }
//! client.close(1000, "done").await?;
//! # Ok(())
//! # }
//! ```
//!
//! `wss://` verifies the server against Mozilla's roots (built in), or only against the CAs
//! of a PEM file; the name checked can differ from the URL's host:
//!
//! ```no_run
//! use wharf_client::{ClientConfig, ClientError, connect};
//!
//! # async fn demo() -> Result<(), ClientError> {
//! let config = ClientConfig::default()
//!     .with_ca_file("ca.pem")
//!     .with_server_name("wharf.internal");
//! match connect("wss://10.0.0.5:9443/echo", &config).await {
//!     Ok(client) => drop(client),
//!     Err(ClientError::Certificate(why)) => eprintln!("not trusted: {why}"),
//!     Err(e) => return Err(e),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! `url` (parsing `ws://`/`wss://`), `transport` (TCP or rustls, as one enum), `handshake`
//! (the HTTP upgrade), `client` ([`Client`] and its halves), `error` ([`ClientError`]),
//! `reconnect` ([`Reconnecting`]), [`rooms`] (the `wharf.rooms.v1` client), `cli`
//! (`wharf client`) and `bench` (`wharf bench`), the last two with the `cli` feature.

#[cfg(feature = "cli")]
pub mod bench;
#[cfg(feature = "cli")]
pub mod cli;
mod client;
mod error;
mod handshake;
mod reconnect;
pub mod rooms;
mod transport;
mod url;

pub use client::{Client, ClientReceiver, ClientSender, Event, Message};
pub use error::ClientError;
pub use reconnect::{HookFuture, OnConnect, Reconnecting, backoff};
pub use wharf_proto::DeflateParams;

use std::path::PathBuf;
use std::time::Duration;

/// Options for [`connect`]. Build it with [`ClientConfig::default`] and the `with_*` methods
/// (or assign the public fields).
///
/// ```
/// use std::time::Duration;
/// use wharf_client::ClientConfig;
///
/// let config = ClientConfig::default()
///     .with_header("Authorization", "Bearer t0ken")
///     .with_protocol("chat")
///     .with_connect_timeout(Duration::from_secs(3));
/// assert_eq!(config.protocols, ["chat"]);
/// assert_eq!(config.max_message_size, 64 << 20);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Extra request headers sent with the handshake, such as `Authorization`.
    pub headers: Vec<(String, String)>,
    /// Subprotocols offered in `Sec-WebSocket-Protocol`, in order of preference.
    pub protocols: Vec<String>,
    /// Bound on the TCP connect plus the opening handshake (default 10 s).
    pub connect_timeout: Duration,
    /// Largest incoming message accepted; a bigger one fails the connection with 1009
    /// (default 64 MiB).
    pub max_message_size: usize,
    /// How long [`Client::close`] waits for the server's close frame (default 5 s).
    pub close_timeout: Duration,
    /// `wss://` only: a PEM file of CA certificates to trust *instead of* the built-in
    /// Mozilla roots, e.g. a private or test CA (default none: the built-in roots).
    pub ca_file: Option<PathBuf>,
    /// `wss://` only: the name sent as SNI and checked against the server's certificate,
    /// instead of the URL's host; for a server reached by IP address or through a tunnel
    /// (default none: the URL's host). The `Host` header still carries the URL's host.
    pub server_name: Option<String>,
    /// Offer permessage-deflate (RFC 7692); when the server accepts, messages of 128 bytes
    /// or more are sent compressed and compressed messages are inflated (default false).
    pub compression: bool,
    /// The rustls configuration built from `ca_file`, shared by clones.
    tls: transport::TlsCache,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            headers: Vec::new(),
            protocols: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            max_message_size: 64 << 20,
            close_timeout: Duration::from_secs(5),
            ca_file: None,
            server_name: None,
            compression: false,
            tls: transport::TlsCache::default(),
        }
    }
}

impl ClientConfig {
    /// Adds a request header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Offers a subprotocol.
    pub fn with_protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Sets the connect (TCP + handshake) timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the largest incoming message accepted.
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Offers permessage-deflate.
    ///
    /// ```
    /// assert!(wharf_client::ClientConfig::default().with_compression(true).compression);
    /// ```
    pub fn with_compression(mut self, on: bool) -> Self {
        self.compression = on;
        self
    }

    /// Sets how long [`Client::close`] waits for the server's close frame.
    pub fn with_close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Trusts only the CA certificates in this PEM file for `wss://` (instead of the
    /// built-in roots). The file is read at the first `wss://` connect; an unreadable file
    /// or one without certificates fails that connect with [`ClientError::Tls`].
    ///
    /// ```
    /// use wharf_client::ClientConfig;
    ///
    /// let config = ClientConfig::default()
    ///     .with_ca_file("tests/certs/ca.pem")
    ///     .with_server_name("wharf.test");
    /// assert_eq!(config.server_name.as_deref(), Some("wharf.test"));
    /// ```
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Sends this TLS server name (SNI) and verifies the certificate against it, instead of
    /// the URL's host.
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }
}

/// Connects to `url` (`ws://` or `wss://`, `host[:port][/path][?query]`) and performs the
/// opening handshake (after the TLS handshake for `wss://`).
///
/// A non-101 answer is [`ClientError::Refused`] with the status and the body; an
/// unreachable host is [`ClientError::Network`]; a certificate that does not verify is
/// [`ClientError::Certificate`]; the whole attempt is bounded by
/// [`ClientConfig::connect_timeout`] ([`ClientError::Timeout`]).
///
/// ```no_run
/// # async fn demo() {
/// use wharf_client::{ClientConfig, connect};
///
/// match connect("ws://127.0.0.1:9502/nope", &ClientConfig::default()).await {
///     Ok(client) => println!("protocol: {:?}", client.protocol()),
///     Err(e) if e.is_refused() => println!("refused with {:?}", e.status()),
///     Err(e) => println!("failed: {e}"),
/// }
/// # }
/// ```
pub async fn connect(url: &str, config: &ClientConfig) -> Result<Client, ClientError> {
    let target = url::Target::parse(url)?;
    let open = async {
        let mut stream = transport::connect(&target, config).await?;
        let handshake = handshake::open(&mut stream, &target, config).await?;
        Ok::<_, ClientError>((stream, handshake))
    };
    let (stream, handshake) = tokio::time::timeout(config.connect_timeout, open)
        .await
        .map_err(|_| ClientError::Timeout)??;
    Ok(Client::new(stream, handshake, config))
}

/// Fills a 4-byte masking key (or any buffer) from the OS random source.
pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    if getrandom::fill(&mut out).is_err() {
        // The OS source is unavailable: fall back to the clock; masks only need to be
        // unpredictable to script running in browsers, which this is not.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        for (i, b) in out.iter_mut().enumerate() {
            *b = (nanos >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(151);
        }
    }
    out
}
