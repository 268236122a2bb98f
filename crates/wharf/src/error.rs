//! wharf's errors.

use std::io;

use crate::ConnId;

/// Why a server could not start or run. `wharf serve` prints it and exits non-zero.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid. Fix the file or variable it names.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// A server could not bind its address (the port is taken, or not permitted). Free the
    /// port or change it in the config.
    #[error("server `{server}`: cannot listen on {addr}: {source}")]
    Bind {
        /// The server's name.
        server: String,
        /// The address it tried.
        addr: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Routes were registered for a server the config does not declare, or for a server of
    /// the wrong kind, or a config route names an unknown handler. Fix the application or config.
    #[error("{0}")]
    Setup(String),
    /// The cluster backplane cannot be reached at start (and `cluster.allow_local_only` is
    /// not set). Start it or fix `cluster.backplane`.
    #[error("{0}")]
    Backplane(String),
    /// A server's TLS certificate or key cannot be used (missing, unreadable, not PEM, not
    /// matching). Fix the files `tls` names.
    #[error("server `{server}`: TLS: {message}")]
    Tls {
        /// The server's name.
        server: String,
        /// What is wrong.
        message: String,
    },
    /// A live handover to or from another process failed; the old process keeps serving.
    /// See the variant for what to do.
    #[error(transparent)]
    Handover(#[from] crate::handover::HandoverError),
    /// An I/O error while serving.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Why a message could not be queued to a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No open connection has this id (it closed, or never existed). Drop the message.
    #[error("connection {0} not found")]
    NotFound(ConnId),
    /// The connection is closing. Drop the message.
    #[error("connection {0} is closing")]
    Closed(ConnId),
    /// The connection's outgoing queue is full; it is being closed as a slow consumer.
    #[error("connection {0} is not reading; its queue is full")]
    QueueFull(ConnId),
    /// The connection's node did not answer a confirmed push in time
    /// ([`Sender::confirm`](crate::Sender::confirm)): it may have died or be cut off from the
    /// backplane. The message may or may not have arrived.
    #[error("the node of connection {0} did not answer in time")]
    NoAnswer(ConnId),
    /// A cluster-wide query needs the backplane, and it is unreachable. Retry later.
    #[error("cluster backplane unavailable: {0}")]
    Backplane(String),
}

/// An error a handler returns. The connection is closed (1011 unless the server's
/// [`ErrorHandler`](crate::ErrorHandler) says otherwise) and the error is logged.
///
/// Any `std::error::Error` converts with `?`:
///
/// ```
/// async fn parse(text: &str) -> Result<u32, wharf::HandlerError> {
///     Ok(text.parse::<u32>()?)
/// }
/// ```
#[derive(Debug)]
pub struct HandlerError(Box<dyn std::error::Error + Send + Sync>);

impl HandlerError {
    /// An error with a message.
    pub fn msg(message: impl Into<String>) -> HandlerError {
        HandlerError(message.into().into())
    }

    /// The underlying error.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(error: E) -> Self {
        HandlerError(Box::new(error))
    }
}
