//! The old process's side: start the successor, hand it the listening sockets, wait for its
//! confirmation, commit.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use super::channel::{Channel, ChannelError, MAX_FDS};
use super::wire::{BATCH_BYTES, FrameError, Message, MovedConn, SocketEntry, SocketKind};
use super::{HANDOVER_ENV, HandoverError, SEQ_GAP, lock};
use crate::Sender;
use crate::history::RoomSnapshot;

/// How often a successor that has not connected yet is checked for having exited.
const POLL: Duration = Duration::from_millis(20);

/// Hands this process's listening sockets to a successor: one handover at a time, each
/// bounded by `[handover] timeout`. Cheap to clone; get it from
/// [`BoundServer::upgrader`](crate::BoundServer::upgrader) before serving.
#[derive(Clone)]
pub struct Upgrader(Arc<Inner>);

struct Inner {
    /// Duplicates of the servers' listening sockets, by server name.
    listeners: Vec<(String, OwnedFd)>,
    sender: Sender,
    timeout: Duration,
    /// The successor being tried (0 while it starts), or the one handed over to.
    running: Mutex<Option<u32>>,
    committed: watch::Sender<bool>,
    /// Set while a successor told `Go` waits for the connections (see [`Upgrader::going`]).
    going: watch::Sender<bool>,
    /// That successor, until `serve_until` hands it the connections.
    handing: Mutex<Option<Handing>>,
}

/// A successor told `Go`: the connections are to be sent to it, and the outcome reported to
/// [`Upgrader::upgrade`].
struct Handing {
    pid: u32,
    child: Child,
    channel: Channel,
    outcome: oneshot::Sender<Result<usize, HandoverError>>,
}

/// What [`Upgrader::send_connections`] gives back when the successor failed: the
/// connections, still this process's.
pub(crate) type TakenBack = Vec<(MovedConn, OwnedFd)>;

impl std::fmt::Debug for Upgrader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrader")
            .field("listeners", &self.0.listeners.len())
            .field("timeout", &self.0.timeout)
            .finish()
    }
}

/// Releases the one-handover-at-a-time claim unless the handover committed.
struct Claim<'a>(&'a Inner, bool);

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.1 {
            *lock(&self.0.running) = None;
        }
    }
}

impl Upgrader {
    pub(crate) fn new(
        listeners: Vec<(String, OwnedFd)>,
        sender: Sender,
        timeout: Duration,
    ) -> Upgrader {
        Upgrader(Arc::new(Inner {
            listeners,
            sender,
            timeout,
            running: Mutex::new(None),
            committed: watch::channel(false).0,
            going: watch::channel(false).0,
            handing: Mutex::new(None),
        }))
    }

    /// Starts `successor` (normally this binary, with this process's arguments and
    /// environment) with [`HANDOVER_ENV`] naming a socket created in `socket_dir`, and hands
    /// it every server's listening socket plus `extra` (the application's own listening Unix
    /// sockets, by name). Once it is healthy, [`serve_until`](crate::BoundServer::serve_until)
    /// (which must be running) stops accepting and hands it the open connections. Returns the
    /// successor's pid once it has registered them all and this process has committed: from
    /// then on [`handed_over`](Upgrader::handed_over) is complete.
    ///
    /// On any error this process keeps serving everything and the successor is stopped; a
    /// successor that fails after it was sent the connections is killed first, and this
    /// process drives them on itself.
    pub async fn upgrade(
        &self,
        successor: Command,
        socket_dir: &Path,
        extra: &[(String, OwnedFd)],
    ) -> Result<u32, HandoverError> {
        let inner = &*self.0;
        {
            let mut running = lock(&inner.running);
            if let Some(pid) = *running {
                let error = if *inner.committed.borrow() {
                    HandoverError::Refused(format!(
                        "this process has handed over to pid {pid} already; ask that one"
                    ))
                } else {
                    HandoverError::Busy(pid)
                };
                warn!(reason = error.reason(), error = %error, "upgrade refused");
                return Err(error);
            }
            *running = Some(0);
        }
        let mut claim = Claim(inner, false);
        let counters = inner.sender.counters();
        counters.handover_started();
        let program = successor.get_program().to_string_lossy().into_owned();
        info!(successor = %program, pid = std::process::id(), "handover started");
        let offer = self.offer(extra);
        let path = socket_dir.join(format!("wharf-handover-{}.sock", std::process::id()));
        let timeout = inner.timeout;
        let this = self.clone();
        let started = tokio::task::spawn_blocking(move || {
            let offer = offer?;
            run(successor, &path, timeout, &offer, |pid| {
                this.set_running(pid)
            })
        })
        .await
        .unwrap_or_else(|e| Err(HandoverError::Io(format!("handover task failed: {e}"))));
        let outcome = match started {
            Ok((pid, child, channel)) => {
                let (tx, rx) = oneshot::channel();
                *lock(&inner.handing) = Some(Handing {
                    pid,
                    child,
                    channel,
                    outcome: tx,
                });
                info!(
                    successor = pid,
                    "the successor is healthy: this process stops accepting and hands it the open connections"
                );
                inner.going.send_replace(true);
                match rx.await {
                    Ok(Ok(_)) => Ok(pid),
                    Ok(Err(error)) => Err(error),
                    Err(_) => Err(HandoverError::Io(
                        "the server stopped serving during the handover".into(),
                    )),
                }
            }
            Err(error) => Err(error),
        };
        match outcome {
            Ok(pid) => {
                claim.1 = true;
                counters.handover_completed();
                info!(
                    successor = pid,
                    "handover completed: the successor serves, this process stops accepting"
                );
                Ok(pid)
            }
            Err(error) => {
                counters.handover_aborted(error.reason());
                warn!(reason = error.reason(), error = %error, "handover aborted; this process keeps serving");
                Err(error)
            }
        }
    }

    /// Completes when a successor has been told `Go`: `serve_until` then parks the
    /// connections and calls [`send_connections`](Upgrader::send_connections).
    pub(crate) async fn going(&self) {
        let mut going = self.0.going.subscribe();
        let _ = going.wait_for(|go| *go).await;
    }

    /// Sends the in-memory history (if any), then the parked connections to the successor
    /// told `Go`, then `Done`; waits (at most `[handover] timeout`) for it to say it
    /// registered them all, then releases them to it and commits. Called by `serve_until`.
    ///
    /// When the successor fails before that (it exits, hangs up, refuses or stays silent),
    /// it is killed (so it never drives them) and the connections come back, still this
    /// process's: the caller drives them on.
    pub(crate) async fn send_connections(
        &self,
        conns: Vec<(MovedConn, OwnedFd)>,
        history: Vec<RoomSnapshot>,
    ) -> Result<usize, TakenBack> {
        let inner = &*self.0;
        inner.going.send_replace(false);
        let Some(handing) = lock(&inner.handing).take() else {
            return Err(conns);
        };
        let Handing {
            pid,
            mut child,
            mut channel,
            outcome,
        } = handing;
        let timeout = inner.timeout;
        let delivered = tokio::task::spawn_blocking(move || {
            let result = deliver(&mut channel, &mut child, pid, timeout, &conns, history);
            if result.is_err() {
                // Killed and reaped before the connections are driven here again: a
                // successor that could still write to them would own them too.
                let _ = child.kill();
                let _ = child.wait();
            }
            (result, conns)
        })
        .await;
        let (result, conns) = match delivered {
            Ok(done) => done,
            Err(e) => (
                Err(HandoverError::Io(format!("handover task failed: {e}"))),
                Vec::new(),
            ),
        };
        match result {
            Ok(moved) => {
                inner.sender.counters().handover_moved(moved);
                inner.committed.send_replace(true);
                let _ = outcome.send(Ok(moved));
                Ok(moved)
            }
            Err(error) => {
                warn!(
                    successor = pid,
                    connections = conns.len(),
                    error = %error,
                    "the successor failed before taking the connections: it was killed, this process drives them on"
                );
                let _ = outcome.send(Err(error));
                Err(conns)
            }
        }
    }

    /// Stops a successor told `Go` whose connections will not be sent (this process is
    /// shutting down instead): it is killed, and [`upgrade`](Upgrader::upgrade) fails.
    pub(crate) fn cancel(&self) {
        self.0.going.send_replace(false);
        if let Some(mut handing) = lock(&self.0.handing).take() {
            let _ = handing.child.kill();
            let _ = handing.child.wait();
            let _ = handing.outcome.send(Err(HandoverError::Refused(
                "this process is shutting down".into(),
            )));
        }
    }

    /// New listening sockets on the same ports (duplicates of the servers' own), by server
    /// name: to accept again after a handover that failed once this process had stopped.
    pub(crate) fn reopen(&self) -> std::io::Result<Vec<(String, std::net::TcpListener)>> {
        self.0
            .listeners
            .iter()
            .map(|(name, fd)| Ok((name.clone(), std::net::TcpListener::from(fd.try_clone()?))))
            .collect()
    }

    /// Whether a handover has committed.
    pub fn is_handed_over(&self) -> bool {
        *self.0.committed.borrow()
    }

    /// Completes once a handover has committed (never, if none does).
    pub async fn handed_over(&self) {
        let mut committed = self.0.committed.subscribe();
        let _ = committed.wait_for(|done| *done).await;
    }

    fn set_running(&self, pid: u32) {
        *lock(&self.0.running) = Some(pid);
    }

    /// What the successor gets: fresh duplicates of every socket (the originals stay ours
    /// for a later attempt if this one fails), the node id and the next sequence number.
    fn offer(&self, extra: &[(String, OwnedFd)]) -> Result<Offer, HandoverError> {
        let dup = |(name, fd): &(String, OwnedFd), kind| {
            fd.try_clone()
                .map(|fd| {
                    (
                        SocketEntry {
                            name: name.clone(),
                            kind,
                        },
                        fd,
                    )
                })
                .map_err(|e| HandoverError::Io(format!("cannot duplicate socket `{name}`: {e}")))
        };
        let mut sockets = Vec::new();
        for listener in &self.0.listeners {
            sockets.push(dup(listener, SocketKind::Tcp)?);
        }
        for listener in extra {
            sockets.push(dup(listener, SocketKind::Unix)?);
        }
        let registry = self.0.sender.registry();
        Ok(Offer {
            node: registry.node(),
            next_seq: registry.peek_seq().saturating_add(SEQ_GAP),
            sockets,
        })
    }
}

struct Offer {
    node: u16,
    next_seq: u64,
    sockets: Vec<(SocketEntry, OwnedFd)>,
}

/// `items` in order, in batches of at most `count` items and about [`BATCH_BYTES`] (an item
/// heavier than that goes alone).
fn batches<T>(items: Vec<T>, count: usize, weight: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0;
    for item in items {
        let w = weight(&item);
        if !batch.is_empty() && (batch.len() >= count || bytes + w > BATCH_BYTES) {
            out.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += w;
        batch.push(item);
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

/// The socket file, removed however the handover ends.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs one handover on a blocking thread; on error the successor is stopped.
fn run(
    mut successor: Command,
    path: &Path,
    timeout: Duration,
    offer: &Offer,
    started: impl FnOnce(u32),
) -> Result<(u32, Child, Channel), HandoverError> {
    let deadline = Instant::now() + timeout;
    // Our own pid names the file: one left by a crash of this very process is the only one
    // we may remove.
    let _ = std::fs::remove_file(path);
    let io = |what: &str, e: std::io::Error| {
        HandoverError::Io(format!("{what} {}: {e}", path.display()))
    };
    let listener = UnixListener::bind(path).map_err(|e| io("cannot create", e))?;
    let _file = SocketFile(path.to_owned());
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io("cannot restrict", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| io("cannot configure", e))?;
    successor.env(HANDOVER_ENV, path);
    let mut child = successor.spawn().map_err(|source| HandoverError::Spawn {
        program: successor.get_program().to_string_lossy().into_owned(),
        source,
    })?;
    let pid = child.id();
    started(pid);
    info!(
        successor = pid,
        "successor started; waiting for it to connect"
    );
    let result = converse(&listener, &mut child, deadline, offer);
    if result.is_err() {
        // Nothing was committed: the successor must not serve anything.
        let _ = child.kill();
        let _ = child.wait();
    }
    result.map(|channel| (pid, child, channel))
}

fn converse(
    listener: &UnixListener,
    child: &mut Child,
    deadline: Instant,
    offer: &Offer,
) -> Result<Channel, HandoverError> {
    let pid = child.id();
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(status) = child.try_wait().ok().flatten() {
                    return Err(exited(pid, status));
                }
                if Instant::now() >= deadline {
                    return Err(HandoverError::Timeout(pid));
                }
                std::thread::sleep(POLL);
            }
            Err(e) => return Err(HandoverError::Io(format!("accept: {e}"))),
        }
    };
    let broken = |e: std::io::Error| HandoverError::Io(e.to_string());
    stream.set_nonblocking(false).map_err(broken)?;
    let mut channel = Channel::new(stream);
    // Only the process we started may take the sockets.
    let peer = rustix::net::sockopt::socket_peercred(channel.stream())
        .map_err(|e| HandoverError::Io(format!("peer credentials: {e}")))?;
    if peer.pid.as_raw_pid() as u32 != pid {
        let reason = format!(
            "pid {} connected to the handover socket, not the successor {pid}",
            peer.pid.as_raw_pid()
        );
        let _ = channel.send(
            &Message::Refused {
                reason: reason.clone(),
            },
            &[],
        );
        return Err(HandoverError::Refused(reason));
    }
    let mut next = |channel: &mut Channel| {
        let remaining = deadline.saturating_duration_since(Instant::now());
        channel.set_timeout(remaining).map_err(broken)?;
        receive(channel, child, pid)
    };
    match next(&mut channel)? {
        Message::Hello { .. } => {}
        other => return Err(unexpected(&mut channel, "hello", &other)),
    }
    let entries: Vec<SocketEntry> = offer.sockets.iter().map(|(e, _)| e.clone()).collect();
    let fds: Vec<_> = offer.sockets.iter().map(|(_, fd)| fd.as_fd()).collect();
    let sockets = Message::Sockets {
        node: offer.node,
        next_seq: offer.next_seq,
        sockets: entries,
    };
    channel.send(&sockets, &fds).map_err(broken)?;
    match next(&mut channel)? {
        Message::Ready => {}
        other => return Err(unexpected(&mut channel, "ready", &other)),
    }
    channel.send(&Message::Go, &[]).map_err(broken)?;
    Ok(channel)
}

/// The successor's side of the connections: the history, the connections (their sockets
/// borrowed: this process keeps its own until the end), `Done`; then its `Resumed`, and
/// `Released` back. Blocking.
fn deliver(
    channel: &mut Channel,
    child: &mut Child,
    pid: u32,
    timeout: Duration,
    conns: &[(MovedConn, OwnedFd)],
    history: Vec<RoomSnapshot>,
) -> Result<usize, HandoverError> {
    let failed = |e: std::io::Error| HandoverError::Io(format!("sending connections: {e}"));
    channel.set_timeout(timeout).map_err(failed)?;
    for rooms in batches(history, usize::MAX, RoomSnapshot::weight) {
        channel
            .send(&Message::History { rooms }, &[])
            .map_err(failed)?;
    }
    let all: Vec<&(MovedConn, OwnedFd)> = conns.iter().collect();
    for batch in batches(all, MAX_FDS, |(conn, _)| conn.weight()) {
        let states = batch.iter().map(|(conn, _)| conn.clone()).collect();
        let fds: Vec<_> = batch.iter().map(|(_, fd)| fd.as_fd()).collect();
        channel
            .send(&Message::Connections { conns: states }, &fds)
            .map_err(failed)?;
    }
    channel.send(&Message::Done, &[]).map_err(failed)?;
    match receive(channel, child, pid)? {
        Message::Resumed { count } => {
            if count != conns.len() {
                warn!(
                    sent = conns.len(),
                    registered = count,
                    "the successor did not take every connection (no such server or route there)"
                );
            }
        }
        other => return Err(unexpected(channel, "resumed", &other)),
    }
    channel.send(&Message::Released, &[]).map_err(failed)?;
    Ok(conns.len())
}

/// The next message from the successor, or why there is none.
fn receive(channel: &mut Channel, child: &mut Child, pid: u32) -> Result<Message, HandoverError> {
    match channel.recv() {
        Ok((Message::Refused { reason }, _)) => Err(HandoverError::Refused(reason)),
        Ok((message, _)) => Ok(message),
        Err(e) if e.is_timeout() => Err(HandoverError::Timeout(pid)),
        Err(ChannelError::Frame(e @ (FrameError::Magic | FrameError::Version(_)))) => {
            let reason = e.to_string();
            let _ = channel.send(
                &Message::Refused {
                    reason: reason.clone(),
                },
                &[],
            );
            Err(HandoverError::Incompatible(reason))
        }
        Err(e) => {
            // A hang-up is most often the successor exiting: say how it ended.
            for _ in 0..50 {
                if let Some(status) = child.try_wait().ok().flatten() {
                    return Err(exited(pid, status));
                }
                std::thread::sleep(POLL);
            }
            Err(HandoverError::Io(e.to_string()))
        }
    }
}

fn unexpected(channel: &mut Channel, wanted: &str, got: &Message) -> HandoverError {
    let reason = format!("expected `{wanted}`, got {got:?}");
    let _ = channel.send(
        &Message::Refused {
            reason: reason.clone(),
        },
        &[],
    );
    HandoverError::Io(reason)
}

fn exited(pid: u32, status: std::process::ExitStatus) -> HandoverError {
    HandoverError::Exited {
        pid,
        status: status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_the_order_and_the_bounds() {
        let items: Vec<usize> = (0..10).collect();
        assert_eq!(
            batches(items.clone(), 4, |_| 1),
            vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]
        );
        let heavy = batches(items, 100, |i| {
            if *i == 3 {
                BATCH_BYTES * 2
            } else {
                BATCH_BYTES / 3
            }
        });
        assert_eq!(
            heavy,
            vec![vec![0, 1, 2], vec![3], vec![4, 5, 6], vec![7, 8, 9]]
        );
        assert!(batches(Vec::<u8>::new(), 4, |_| 1).is_empty());
    }
}
