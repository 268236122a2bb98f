//! [`ClientError`], the one error type of the client.

use std::io;

/// Everything that can go wrong connecting, sending or receiving.
///
/// ```
/// use wharf_client::ClientError;
///
/// let e = ClientError::Refused { status: 404, body: "{}".into() };
/// assert!(e.is_refused());
/// assert_eq!(e.status(), Some(404));
/// assert_eq!(ClientError::Timeout.status(), None);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered the handshake with something other than 101.
    #[error("handshake refused with HTTP {status}: {body}")]
    Refused {
        /// The HTTP status code.
        status: u16,
        /// The response body (lossy UTF-8, at most 64 KiB).
        body: String,
    },
    /// A socket error, including the peer closing TCP without a close handshake.
    #[error("network error: {0}")]
    Network(#[from] io::Error),
    /// The server broke RFC 6455 (or sent an invalid handshake response).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Connecting or the handshake took longer than the configured timeout.
    #[error("timed out")]
    Timeout,
    /// The URL could not be used (bad syntax, unsupported scheme, no host).
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The server's certificate was rejected (unknown issuer, wrong name, expired). For a
    /// private CA pass it with [`ClientConfig::ca_file`](crate::ClientConfig::ca_file); when
    /// the certificate names another host than the URL, use
    /// [`ClientConfig::server_name`](crate::ClientConfig::server_name). Do not retry as is.
    #[error("TLS certificate rejected: {0}")]
    Certificate(String),
    /// The TLS handshake failed for another reason (no common protocol version or cipher, the
    /// peer does not speak TLS), or the TLS options could not be used (unreadable CA file,
    /// invalid server name). Check the URL's scheme and the options; retrying will not help.
    #[error("TLS error: {0}")]
    Tls(String),
    /// The connection is already closed (or, for [`rooms`](crate::rooms), the session was
    /// closed or ended). Connect again to go on.
    #[error("connection closed")]
    Closed,
    /// The rooms server refused a command with an error reply; the connection stays open.
    /// `error` is the stable machine code (`forbidden`, `rate_limited`, `backplane_unavailable`, …:
    /// docs/protocol.md, "Errors"), to match on with [`ClientError::error_code`]; retry
    /// only `backplane_unavailable` (503) and `rate_limited`, after a pause.
    #[error("{error} ({code}): {msg}")]
    Command {
        /// The HTTP-like status (403, 404, 429, 503, …).
        code: u16,
        /// The machine code, e.g. `forbidden`.
        error: String,
        /// The server's explanation, for people.
        msg: String,
    },
    /// The connection dropped before the reply to a rooms command came; the session
    /// reconnects by itself. The command may or may not have been done: retry a publish
    /// with the same idempotency key to make sure it is stored exactly once.
    #[error("the connection was lost before the reply")]
    ConnectionLost,
}

impl ClientError {
    /// Whether the server refused the handshake.
    pub fn is_refused(&self) -> bool {
        matches!(self, Self::Refused { .. })
    }

    /// Whether TLS failed: [`ClientError::Certificate`] or [`ClientError::Tls`].
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Certificate(_) | Self::Tls(_))
    }

    /// The machine code of a [`ClientError::Command`] (an error reply of the rooms
    /// protocol), such as `"forbidden"`.
    ///
    /// ```
    /// use wharf_client::ClientError;
    ///
    /// let e = ClientError::Command { code: 429, error: "rate_limited".into(), msg: String::new() };
    /// assert_eq!(e.error_code(), Some("rate_limited"));
    /// assert_eq!(ClientError::Closed.error_code(), None);
    /// ```
    pub fn error_code(&self) -> Option<&str> {
        match self {
            Self::Command { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Whether a rooms command failed for a passing reason, so the same command may
    /// succeed later, after a pause: a 503 (`backplane_unavailable`: the history store
    /// cannot be reached) or `rate_limited`.
    ///
    /// ```
    /// use wharf_client::ClientError;
    ///
    /// let e = ClientError::Command { code: 503, error: "backplane_unavailable".into(), msg: String::new() };
    /// assert!(e.is_retryable());
    /// assert!(!ClientError::Closed.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Command { code, error, .. } => *code == 503 || error == "rate_limited",
            _ => false,
        }
    }

    /// A copy of this error, for when one failure ends several waiters (an I/O error keeps
    /// its kind and message, not its source).
    pub(crate) fn replicate(&self) -> ClientError {
        match self {
            Self::Refused { status, body } => Self::Refused {
                status: *status,
                body: body.clone(),
            },
            Self::Network(e) => Self::Network(io::Error::new(e.kind(), e.to_string())),
            Self::Protocol(s) => Self::Protocol(s.clone()),
            Self::Timeout => Self::Timeout,
            Self::InvalidUrl(s) => Self::InvalidUrl(s.clone()),
            Self::Certificate(s) => Self::Certificate(s.clone()),
            Self::Tls(s) => Self::Tls(s.clone()),
            Self::Closed => Self::Closed,
            Self::Command { code, error, msg } => Self::Command {
                code: *code,
                error: error.clone(),
                msg: msg.clone(),
            },
            Self::ConnectionLost => Self::ConnectionLost,
        }
    }

    /// The HTTP status of a refused handshake.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}
