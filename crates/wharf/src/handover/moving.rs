//! Open connections moving to a successor. The old process parks each movable connection's
//! driver at a safe point (no frame half-decoded), collects its socket and state, and sends
//! them after `Go`; the successor registers them all (same ids, same rooms), then drives
//! them on, with no `on_open` and no close frame.
//!
//! What moves: plain-TCP connections whose handler says it is [movable](crate::Handler::movable)
//! and [carries](crate::Handler::carry) their state, and that negotiated no compression. The
//! rest are closed with 1012 by the old process.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::lock;
use super::wire::{MovedConn, MovedRoom};
use crate::conn::Conn;

/// A stream a connection runs over, and whether it can be handed to another process.
pub(crate) trait Transport: Sized {
    /// Whether a connection over it can move (plain TCP: yes; TLS, hyper's upgrade: no).
    const MOVABLE: bool;
    /// The socket, to pass to the successor.
    fn into_fd(self) -> Option<OwnedFd>;
}

impl Transport for TcpStream {
    const MOVABLE: bool = true;
    fn into_fd(self) -> Option<OwnedFd> {
        self.into_std().ok().map(OwnedFd::from)
    }
}

impl Transport for tokio_rustls::server::TlsStream<TcpStream> {
    /// A TLS session's keys and sequence numbers stay in this process.
    const MOVABLE: bool = false;
    fn into_fd(self) -> Option<OwnedFd> {
        None
    }
}

/// What a parked driver hands back: its socket and the bytes in flight either way.
pub(crate) struct Parked<S> {
    pub(crate) stream: S,
    /// A frame header read but not complete.
    pub(crate) read: Vec<u8>,
    /// Bytes the driver had taken from the outbox and not written yet.
    pub(crate) unwritten: Vec<u8>,
    /// What its handler carried ([`Handler::carry`](crate::Handler::carry)).
    pub(crate) state: serde_json::Value,
    /// Released once the parked connection is collected.
    pub(crate) guard: Option<MovableGuard>,
}

/// The old process's parked connections, and how many movable ones have not decided yet.
#[derive(Default)]
pub(crate) struct Mover {
    parked: Mutex<Vec<(Conn, MovedConn, OwnedFd)>>,
    undecided: AtomicUsize,
    decided: Notify,
    /// Set while a healthy successor waits for the connections: only then may a connection park (a
    /// `Stop::HandedOver` without one closes them all with 1012).
    open: AtomicBool,
}

/// Held by a movable connection's driver until it has parked or decided to close instead.
pub(crate) struct MovableGuard(Arc<Mover>);

impl MovableGuard {
    /// Whether a successor is there to take the connection.
    pub(crate) fn may_park(&self) -> bool {
        self.0.open.load(Ordering::Acquire)
    }
}

impl Drop for MovableGuard {
    fn drop(&mut self) {
        if self.0.undecided.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.decided.notify_waiters();
        }
    }
}

impl Mover {
    /// A successor is healthy: movable connections may park from now on.
    pub(crate) fn open(&self) {
        self.open.store(true, Ordering::Release);
    }

    /// The handover failed: connections no longer park.
    pub(crate) fn close(&self) {
        self.open.store(false, Ordering::Release);
    }

    /// A movable connection opened (or was resumed).
    pub(crate) fn enter(self: &Arc<Self>) -> MovableGuard {
        self.undecided.fetch_add(1, Ordering::AcqRel);
        MovableGuard(self.clone())
    }

    /// Keeps a parked connection for the successor.
    pub(crate) fn park<S: Transport>(&self, conn: &Conn, parked: Parked<S>) {
        let Parked {
            stream,
            read,
            unwritten,
            state,
            guard,
        } = parked;
        if let Some(fd) = stream.into_fd() {
            let opened_at_ms = conn
                .opened_at()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            let moved = MovedConn {
                id: conn.id().as_u64(),
                server: conn.server().to_owned(),
                route: conn.route().to_owned(),
                path: conn.path().to_owned(),
                peer: conn.peer(),
                protocol: conn.protocol().map(str::to_owned),
                opened_at_ms,
                user: conn.user().map(str::to_owned),
                rooms: Vec::new(),
                state,
                read,
                write: unwritten,
                parked_at_ms: now_ms(),
            };
            lock(&self.parked).push((conn.clone(), moved, fd));
        }
        drop(guard);
    }

    /// Waits (at most `wait`) until every movable connection has parked or chosen to close,
    /// then returns the parked ones with what was queued to them since: nothing is pushed to
    /// them any more (their outboxes are closed here), and their rooms as they are now, with
    /// the position each history room's sequencer had reached for it.
    ///
    /// Ordering: each history room's sequencer stops delivering to the connection (under
    /// its lock, reading the position) *before* its outbox closes, so every publication up
    /// to that position is in the bytes taken and none after it: the successor recovers it
    /// from exactly there.
    pub(crate) async fn collect(&self, wait: Duration) -> Vec<(MovedConn, OwnedFd)> {
        let all_decided = async {
            loop {
                let notified = self.decided.notified();
                if self.undecided.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(wait, all_decided).await;
        let parked = std::mem::take(&mut *lock(&self.parked));
        parked
            .into_iter()
            .map(|(conn, mut moved, fd)| {
                let sender = conn.sender();
                let hub = sender.history_hub();
                moved.rooms = conn
                    .rooms()
                    .into_iter()
                    .map(|name| {
                        let covered = sender.history_state().covers(&name);
                        let position = covered.then(|| hub.park_member(&name, conn.id()));
                        MovedRoom {
                            position: position.flatten(),
                            name,
                        }
                    })
                    .collect();
                moved
                    .write
                    .extend(conn.0.outbox.close_and_take().into_vec());
                (moved, fd)
            })
            .collect()
    }
}

/// Milliseconds since the Unix epoch (a moved connection's pause is measured across
/// processes, so by the wall clock).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The connections a successor received (and the predecessor's in-memory history), to give
/// to [`BoundServer::resume`](crate::BoundServer::resume).
#[derive(Debug, Default)]
pub struct Arrivals(
    pub(crate) Vec<(MovedConn, OwnedFd)>,
    pub(crate) Vec<crate::history::RoomSnapshot>,
    /// The predecessor to tell once they are registered (`None`: they are this process's
    /// own, taken back from a successor that failed).
    pub(crate) Option<super::successor::Release>,
);

impl Arrivals {
    /// How many connections arrived.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none did.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
