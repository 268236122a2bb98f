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
    /// The connection is already closed.
    #[error("connection closed")]
    Closed,
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

    /// The HTTP status of a refused handshake.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}
