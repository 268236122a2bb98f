//! The server side of the control socket.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

use super::{Greeting, MAGIC, MAX_LINE, Reply, Request, VERSION, my_uid};

/// How long a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The listening control socket of this process.
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlSocket {
    /// Creates the socket at `path` (mode 0600). A file left there by a process that is
    /// gone (a stale socket: nobody answers) is replaced; a socket some process still
    /// answers on, a file that is not a socket, or one owned by another user is left alone
    /// and the error says which.
    pub fn open(path: &Path) -> Result<ControlSocket, String> {
        let shown = path.display();
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot inspect {shown}: {e}")),
            Ok(meta) if !meta.file_type().is_socket() => {
                return Err(format!("{shown} exists and is not a socket: not ours"));
            }
            Ok(meta) if meta.uid() != my_uid() => {
                return Err(format!("{shown} is owned by uid {}: not ours", meta.uid()));
            }
            Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(format!(
                        "another process answers on {shown} (a wharf serve with the same data directory?)"
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path)
                        .map_err(|e| format!("cannot remove the stale socket {shown}: {e}"))?;
                    info!(path = %shown, "removed a stale control socket (no process behind it)");
                }
                Err(e) => return Err(format!("cannot check {shown}: {e}")),
            },
        }
        let listener = std::os::unix::net::UnixListener::bind(path)
            .map_err(|e| format!("cannot create {shown}: {e}"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot restrict {shown}: {e}"))?;
        ControlSocket::from_std(listener, path).map_err(|e| format!("{shown}: {e}"))
    }

    /// The socket a predecessor handed over.
    pub fn from_std(
        listener: std::os::unix::net::UnixListener,
        path: &Path,
    ) -> io::Result<ControlSocket> {
        listener.set_nonblocking(true)?;
        Ok(ControlSocket {
            listener: UnixListener::from_std(listener)?,
            path: path.to_owned(),
        })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A duplicate of the socket, to hand to a successor.
    pub fn duplicate(&self) -> io::Result<OwnedFd> {
        self.listener.as_fd().try_clone_to_owned()
    }

    /// Removes the file: on a shutdown without successor (after a handover the successor
    /// answers on it, so it stays).
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Answers on `socket` until `stop` completes; `upgrade` runs a handover and returns the
/// successor's pid or why there is none. Each client is served on its own task, so a
/// second request during a handover is answered (refused) at once. Returns once the
/// answers in flight are written (at most 5 s after `stop`), so the `wharf upgrade` that
/// asked for a handover hears how it ended before this process exits.
pub async fn serve<F, Fut>(socket: &ControlSocket, upgrade: F, stop: impl Future<Output = ()>)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<u32, String>> + Send,
{
    tokio::pin!(stop);
    let mut answers = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = &mut stop => break,
            accepted = socket.listener.accept() => accepted,
        };
        // Finished answers are reaped as they go, so the set holds only those in flight.
        while answers.try_join_next().is_some() {}
        match accepted {
            Ok((stream, _)) => {
                let upgrade = upgrade.clone();
                answers.spawn(async move {
                    if let Err(e) = answer(stream, upgrade).await {
                        warn!(error = %e, "control client failed");
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), answers.join_all()).await;
}

async fn answer<F, Fut>(mut stream: UnixStream, upgrade: F) -> io::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<u32, String>>,
{
    let greeting = Greeting {
        magic: MAGIC.to_owned(),
        version: VERSION,
        pid: std::process::id(),
    };
    write_line(&mut stream, &greeting).await?;
    let peer = stream.peer_cred()?;
    if peer.uid() != my_uid() {
        warn!(uid = peer.uid(), "control client of another user refused");
        return write_line(&mut stream, &failure("not the user this server runs as")).await;
    }
    let mut line = String::new();
    let read = {
        let mut reader = BufReader::new((&mut stream).take(MAX_LINE as u64));
        tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await
    };
    let reply = match read {
        Err(_) => failure("no request within 10s"),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(_)) => match serde_json::from_str::<Request>(line.trim()) {
            Ok(request) if request.command == "upgrade" => {
                info!("upgrade requested on the control socket");
                match upgrade().await {
                    Ok(pid) => Reply {
                        ok: true,
                        successor: Some(pid),
                        error: None,
                    },
                    Err(e) => failure(&e),
                }
            }
            Ok(request) => failure(&format!(
                "unknown command `{}`; this server knows: upgrade",
                request.command
            )),
            Err(e) => failure(&format!("bad request: {e}")),
        },
    };
    write_line(&mut stream, &reply).await
}

fn failure(error: &str) -> Reply {
    Reply {
        ok: false,
        successor: None,
        error: Some(error.to_owned()),
    }
}

async fn write_line(stream: &mut UnixStream, value: &impl serde::Serialize) -> io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line).await
}
