//! Live handover: a new process takes over this one's listening sockets without a port gap,
//! so a binary upgrade or a config change refuses no client.
//!
//! The old process (an [`Upgrader`], from [`BoundServer::upgrader`](crate::BoundServer::upgrader))
//! starts its successor with [`HANDOVER_ENV`] naming a Unix socket, checks it is the process
//! it started and speaks the same handover format, and passes it every listening socket with
//! SCM_RIGHTS. The successor ([`Inherited::from_env`], then
//! [`ServerBuilder::inherit`](crate::ServerBuilder::inherit)) binds its servers on them, and
//! [confirms](Inherited::confirm) once it is healthy. The old process then stops accepting
//! ([`serve_until`](crate::BoundServer::serve_until) does it), parks its movable
//! connections and sends them; the successor registers them all
//! ([`BoundServer::resume`](crate::BoundServer::resume)) and says so, and only then does the
//! old process let go of them, commit, and close the others with 1012 over `[drain]
//! spread` ([`Stop::HandedOver`](crate::server::Stop)). If the successor exits, is of
//! another format, or does not answer within `[handover] timeout` at any step before that,
//! the old process kills it and keeps serving everything: the connections it had sent
//! too, which it drives on itself (the successor never touched them).
//!
//! ```no_run
//! use wharf::handover::Inherited;
//! use wharf::server::Stop;
//! # async fn run(config: wharf::Config, router: wharf::Router) -> Result<(), wharf::Error> {
//! let timeout = config.handover.timeout;
//! let mut builder = wharf::Server::builder(config).websocket("ws", router);
//! // A successor takes its predecessor's sockets; a first start binds them.
//! let mut inherited = tokio::task::spawn_blocking(move || Inherited::from_env(timeout))
//!     .await
//!     .map_err(std::io::Error::other)??;
//! if let Some(inherited) = inherited.as_mut() {
//!     builder = builder.inherit(inherited);
//! }
//! let bound = builder.bind().await?;
//! if let Some(inherited) = inherited {
//!     let arrivals = tokio::task::spawn_blocking(move || inherited.confirm())
//!         .await
//!         .map_err(std::io::Error::other)??;
//!     bound.resume(arrivals).await?;
//! }
//! let upgrader = bound.upgrader();
//! let stop = async move {
//!     tokio::select! {
//!         () = wharf::shutdown_signal() => Stop::Shutdown,
//!         () = upgrader.handed_over() => Stop::HandedOver,
//!     }
//! };
//! bound.serve_until(stop).await
//! # }
//! ```
//!
//! What moves: listening sockets, the node id, the connection sequence, the default
//! in-memory history (epochs and offsets continue; the old process refuses appends from
//! then on), and every open plain-TCP connection of a [movable](crate::Handler::movable)
//! handler without compression (same id, rooms, user; in each history room the position it
//! had reached; what its handler [carried](crate::Handler::carry); bytes in flight either
//! way), which the successor [resumes](crate::BoundServer::resume) before it serves: the
//! handler [rebuilds](crate::Handler::resume) its state, and each history room sends the
//! connection what it missed after its position. The other connections (TLS, compressed,
//! other handlers, a `carry` that says `None`) are closed by the old process with 1012,
//! spread over `[drain] spread`.

mod channel;
mod error;
mod moving;
mod predecessor;
mod successor;
mod wire;

pub use error::HandoverError;
pub use moving::Arrivals;
pub(crate) use moving::{MovableGuard, Mover, Parked, Transport, now_ms};
pub(crate) use predecessor::TakenBack;
pub use predecessor::Upgrader;
pub use successor::Inherited;
pub(crate) use wire::MovedConn;
pub(crate) use wire::hex::{decode as hex_decode, encode as hex_encode};

/// The environment variable that names the handover socket in a successor's environment.
pub const HANDOVER_ENV: &str = "WHARF_HANDOVER";

/// How far past the old process's next connection sequence number the successor starts, so
/// that connections the old one still accepts before it commits never share an id with the
/// successor's.
pub(crate) const SEQ_GAP: u64 = 1 << 24;

/// A handover lock: poisoning only means a holder panicked between plain field writes, so
/// the state is still whole.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
