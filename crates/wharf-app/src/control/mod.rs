//! The control socket: `wharf.sock` in the data directory, where `wharf upgrade` asks a
//! running `wharf serve` for a live handover to a new process.
//!
//! One JSON line each way, after a greeting that names the protocol, so a client never
//! talks to a socket that is not ours:
//!
//! ```text
//! server → client  {"magic":"wharf-control","version":1,"pid":4242}
//! client → server  {"command":"upgrade"}
//! server → client  {"ok":true,"successor":4300}   or   {"ok":false,"error":"…"}
//! ```
//!
//! Only a process of the same user may connect (the file is mode 0600 and the server checks
//! the peer's uid). The socket itself is handed to the successor with the listening
//! sockets, so the path keeps answering across upgrades.

pub mod client;
mod server;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use server::{ControlSocket, serve};

/// The socket's file name in the data directory.
pub const SOCKET_FILE: &str = "wharf.sock";
/// The greeting's `magic`.
pub const MAGIC: &str = "wharf-control";
/// The protocol version this build speaks.
pub const VERSION: u32 = 1;
/// The name the socket is handed over by.
pub const HANDOVER_NAME: &str = "control";
/// The longest line either side reads.
const MAX_LINE: usize = 4096;

/// The control socket's path for the data directory `data_dir`.
///
/// ```
/// let path = wharf_app::control::socket_path(std::path::Path::new("/var/lib/wharf"));
/// assert_eq!(path, std::path::Path::new("/var/lib/wharf/wharf.sock"));
/// ```
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}

/// The server's first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Greeting {
    /// Always [`MAGIC`].
    pub magic: String,
    /// The server's [`VERSION`].
    pub version: u32,
    /// The serving process.
    pub pid: u32,
}

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// `upgrade`: start a successor and hand over to it.
    pub command: String,
}

/// The server's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether it was done.
    pub ok: bool,
    /// The successor's pid, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successor: Option<u32>,
    /// Why not, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// This process's uid.
fn my_uid() -> u32 {
    rustix::process::getuid().as_raw()
}
