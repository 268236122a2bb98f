//! Live upgrades of `wharf serve`: on SIGUSR2 or a `wharf upgrade` request on the control
//! socket, start the binary this process was started from again (a new build, a new config),
//! with the same arguments and environment, and hand it the listening sockets
//! ([`wharf::handover`]). See docs/operations.md.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use tracing::{debug, info};
use wharf::handover::{HandoverError, Upgrader};

use crate::control::{self, ControlSocket};

/// What an upgrade starts and hands over.
#[derive(Debug)]
pub struct Upgrades {
    upgrader: Upgrader,
    program: PathBuf,
    args: Vec<OsString>,
    data_dir: PathBuf,
    control: Option<OwnedFd>,
}

impl Upgrades {
    /// Upgrades that start `program` (see [`startup_program`]) with this process's
    /// arguments, create the handover socket in `data_dir` and hand over `control` too.
    pub fn new(
        upgrader: Upgrader,
        program: PathBuf,
        data_dir: &Path,
        control: Option<&ControlSocket>,
    ) -> std::io::Result<Upgrades> {
        Ok(Upgrades {
            upgrader,
            program,
            args: std::env::args_os().skip(1).collect(),
            data_dir: std::path::absolute(data_dir)?,
            control: control.map(ControlSocket::duplicate).transpose()?,
        })
    }

    /// Runs one handover; on success this process then stops accepting
    /// ([`Upgrader::handed_over`] completes).
    pub async fn run(&self) -> Result<u32, HandoverError> {
        let mut successor = Command::new(&self.program);
        successor
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        let mut extra = Vec::new();
        if let Some(fd) = &self.control {
            let fd = fd
                .try_clone()
                .map_err(|e| HandoverError::Io(format!("control socket: {e}")))?;
            extra.push((control::HANDOVER_NAME.to_owned(), fd));
        }
        self.upgrader
            .upgrade(successor, &self.data_dir, &extra)
            .await
    }

    /// Listens for SIGUSR2 at once (its default action ends the process) and returns the
    /// task that runs a handover on each, until this process has handed over.
    pub fn on_sigusr2(self: Arc<Self>) -> impl std::future::Future<Output = ()> + Send {
        use tokio::signal::unix::{SignalKind, signal};
        let usr2 = signal(SignalKind::user_defined2());
        async move {
            let mut usr2 = match usr2 {
                Ok(usr2) => usr2,
                Err(e) => {
                    debug!(error = %e, "cannot listen for SIGUSR2");
                    return;
                }
            };
            self.each_sigusr2(&mut usr2).await;
        }
    }

    async fn each_sigusr2(self: &Arc<Self>, usr2: &mut tokio::signal::unix::Signal) {
        loop {
            tokio::select! {
                () = self.upgrader.handed_over() => return,
                got = usr2.recv() => if got.is_none() { return },
            }
            info!("upgrade requested by SIGUSR2");
            let upgrades = self.clone();
            // Its own task: a second SIGUSR2 during a handover is refused, not queued.
            tokio::spawn(async move { upgrades.run().await });
        }
    }
}

/// The binary to start as the successor: the path this process was started by (`argv[0]`,
/// made absolute) when it names a file, so that a symlink switched to a new release starts
/// the new one; else the running executable's path.
pub fn startup_program() -> PathBuf {
    let by_path = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .filter(|p| p.components().count() > 1 && p.is_file())
        .and_then(|p| std::path::absolute(p).ok());
    by_path
        .or_else(|| std::env::current_exe().ok())
        .unwrap_or_else(|| PathBuf::from("wharf"))
}
