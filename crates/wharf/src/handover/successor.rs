//! The new process's side: take the predecessor's sockets, bind on them, confirm.

use std::net::TcpListener;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use tracing::info;

use super::channel::{Channel, ChannelError};
use super::wire::{FrameError, Message, SocketKind};
use super::{Arrivals, HANDOVER_ENV, HandoverError};

/// What a successor received from its predecessor: the listening sockets (by server name),
/// the node id and connection sequence to continue, and the socket to confirm on.
///
/// Give it to [`ServerBuilder::inherit`](crate::ServerBuilder::inherit) before binding,
/// take the application's own sockets with [`take_unix`](Inherited::take_unix), then
/// [`confirm`](Inherited::confirm) once everything is up.
pub struct Inherited {
    pub(crate) node: u16,
    pub(crate) next_seq: u64,
    pub(crate) tcp: Vec<(String, TcpListener)>,
    unix: Vec<(String, UnixListener)>,
    channel: Channel,
    timeout: Duration,
}

impl std::fmt::Debug for Inherited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inherited")
            .field("node", &self.node)
            .field("tcp", &self.tcp)
            .field("unix", &self.unix)
            .finish()
    }
}

impl Inherited {
    /// When this process was started as a successor ([`HANDOVER_ENV`] is set): connects to
    /// the predecessor and receives its sockets, waiting at most `timeout`. `None` on a
    /// first start. Blocking: call it from a blocking thread (or before the runtime).
    pub fn from_env(timeout: Duration) -> Result<Option<Inherited>, HandoverError> {
        match std::env::var_os(HANDOVER_ENV) {
            Some(path) if !path.is_empty() => {
                Inherited::connect(PathBuf::from(path), timeout).map(Some)
            }
            _ => Ok(None),
        }
    }

    fn connect(path: PathBuf, timeout: Duration) -> Result<Inherited, HandoverError> {
        let stream = UnixStream::connect(&path).map_err(|e| {
            HandoverError::Io(format!(
                "cannot reach the predecessor at {} ({HANDOVER_ENV}): {e}",
                path.display()
            ))
        })?;
        let mut channel = Channel::new(stream);
        channel.set_timeout(timeout).map_err(io)?;
        channel
            .send(
                &Message::Hello {
                    pid: std::process::id(),
                },
                &[],
            )
            .map_err(io)?;
        let (message, fds) = channel.recv().map_err(from_channel)?;
        let (node, next_seq, sockets) = match message {
            Message::Sockets {
                node,
                next_seq,
                sockets,
            } => (node, next_seq, sockets),
            Message::Refused { reason } => return Err(HandoverError::Refused(reason)),
            other => {
                return Err(HandoverError::Io(format!(
                    "expected `sockets`, got {other:?}"
                )));
            }
        };
        if fds.len() != sockets.len() {
            let reason = format!(
                "{} sockets announced, {} received",
                sockets.len(),
                fds.len()
            );
            let _ = channel.send(
                &Message::Refused {
                    reason: reason.clone(),
                },
                &[],
            );
            return Err(HandoverError::Io(reason));
        }
        let (mut tcp, mut unix) = (Vec::new(), Vec::new());
        for (entry, fd) in sockets.into_iter().zip(fds) {
            match entry.kind {
                SocketKind::Tcp => tcp.push((entry.name, TcpListener::from(fd))),
                SocketKind::Unix => unix.push((entry.name, UnixListener::from(fd))),
            }
        }
        info!(
            node,
            sockets = tcp.len() + unix.len(),
            "received the predecessor's listening sockets"
        );
        Ok(Inherited {
            node,
            next_seq,
            tcp,
            unix,
            channel,
            timeout,
        })
    }

    /// The cluster node id to keep.
    pub fn node(&self) -> u16 {
        self.node
    }

    /// Takes the application's Unix listening socket called `name`, if it was handed over.
    pub fn take_unix(&mut self, name: &str) -> Option<UnixListener> {
        let at = self.unix.iter().position(|(n, _)| n == name)?;
        Some(self.unix.remove(at).1)
    }

    /// Tells the predecessor this process is up and healthy, waits for its `Go` (it stops
    /// accepting), then receives its open connections. Give them to
    /// [`BoundServer::resume`](crate::BoundServer::resume), which registers them, tells the
    /// predecessor, and drives them once it lets go of them; then serve. On an error the
    /// predecessor keeps serving everything (the connections too) and this process must
    /// exit. Blocking.
    pub fn confirm(mut self) -> Result<Arrivals, HandoverError> {
        self.channel.set_timeout(self.timeout).map_err(io)?;
        self.channel.send(&Message::Ready, &[]).map_err(io)?;
        match self.channel.recv().map_err(from_channel)? {
            (Message::Go, _) => {}
            (Message::Refused { reason }, _) => return Err(HandoverError::Refused(reason)),
            (other, _) => {
                return Err(HandoverError::Io(format!("expected `go`, got {other:?}")));
            }
        }
        // The predecessor has stopped accepting, and owns its connections until it releases
        // them (`Release::wait`): none of them may be read or written here before.
        let mut arrivals = Vec::new();
        let mut history = Vec::new();
        loop {
            match self.channel.recv().map_err(from_channel)? {
                (Message::History { rooms }, _) => history.extend(rooms),
                (Message::Connections { conns }, fds) if fds.len() == conns.len() => {
                    arrivals.extend(conns.into_iter().zip(fds));
                }
                (Message::Done, _) => break,
                (other, _) => {
                    return Err(HandoverError::Io(format!(
                        "expected connections, got {other:?}"
                    )));
                }
            }
        }
        info!(
            connections = arrivals.len(),
            history_rooms = history.len(),
            "received the predecessor's open connections"
        );
        let release = Release {
            channel: self.channel,
            timeout: self.timeout,
        };
        Ok(Arrivals(arrivals, history, Some(release)))
    }

    /// Refuses the handover (this process cannot serve), telling the predecessor why.
    pub fn refuse(mut self, reason: &str) {
        let _ = self.channel.send(
            &Message::Refused {
                reason: reason.to_owned(),
            },
            &[],
        );
    }
}

/// The last exchange of a handover, in the successor: it says it has registered the
/// connections, and the predecessor lets go of them.
pub(crate) struct Release {
    channel: Channel,
    timeout: Duration,
}

impl std::fmt::Debug for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Release").finish_non_exhaustive()
    }
}

impl Release {
    /// Says `count` connections are registered, and waits for `Released`. On an error the
    /// predecessor keeps them (it kills this process): drive none of them.
    pub(crate) async fn wait(self, count: usize) -> Result<(), HandoverError> {
        tokio::task::spawn_blocking(move || self.exchange(count))
            .await
            .unwrap_or_else(|e| Err(HandoverError::Io(format!("handover task failed: {e}"))))
    }

    fn exchange(mut self, count: usize) -> Result<(), HandoverError> {
        self.channel.set_timeout(self.timeout).map_err(io)?;
        self.channel
            .send(&Message::Resumed { count }, &[])
            .map_err(io)?;
        match self.channel.recv().map_err(from_channel)? {
            (Message::Released, _) => Ok(()),
            (Message::Refused { reason }, _) => Err(HandoverError::Refused(reason)),
            (other, _) => Err(HandoverError::Io(format!(
                "expected `released`, got {other:?}"
            ))),
        }
    }
}

fn io(e: std::io::Error) -> HandoverError {
    HandoverError::Io(e.to_string())
}

fn from_channel(e: ChannelError) -> HandoverError {
    match e {
        ChannelError::Frame(e @ (FrameError::Magic | FrameError::Version(_))) => {
            HandoverError::Incompatible(e.to_string())
        }
        e if e.is_timeout() => HandoverError::Io("the predecessor did not answer in time".into()),
        e => HandoverError::Io(e.to_string()),
    }
}
