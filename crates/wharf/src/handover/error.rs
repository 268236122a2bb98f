//! Why a handover did not happen.

use std::io;

/// Why a handover failed. The old process keeps serving everything in every case; the
/// successor, when one was started, has been stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandoverError {
    /// A handover is already running. Wait for it to finish (at most `[handover] timeout`).
    #[error("a handover is already running (successor pid {0}); wait for it to finish")]
    Busy(u32),
    /// The successor could not be started (its binary is missing or not executable). Fix the
    /// binary at that path.
    #[error("cannot start the successor `{program}`: {source}")]
    Spawn {
        /// The binary.
        program: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The successor exited before taking over (a config that does not load exits 2; see
    /// its log lines above this one). Fix what it said and retry.
    #[error("the successor (pid {pid}) exited before taking over: {status}")]
    Exited {
        /// Its process id.
        pid: u32,
        /// How it ended.
        status: String,
    },
    /// The successor did not confirm within `[handover] timeout`; it was killed.
    #[error("the successor (pid {0}) did not confirm in time; it was stopped")]
    Timeout(u32),
    /// The peer is not a wharf process, or speaks another handover format. Upgrade to a
    /// build with the same format (see docs/operations.md), or restart instead.
    #[error("incompatible handover peer: {0}")]
    Incompatible(String),
    /// The other side refused, and said why.
    #[error("refused by the other process: {0}")]
    Refused(String),
    /// The handover socket failed, or the peer broke the protocol.
    #[error("handover socket: {0}")]
    Io(String),
}

impl HandoverError {
    /// A short label for the metrics (`wharf_handovers_aborted_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            HandoverError::Busy(_) => "busy",
            HandoverError::Spawn { .. } => "spawn_failed",
            HandoverError::Exited { .. } => "exited",
            HandoverError::Timeout(_) => "timeout",
            HandoverError::Incompatible(_) => "incompatible",
            HandoverError::Refused(_) => "refused",
            HandoverError::Io(_) => "io",
        }
    }
}
