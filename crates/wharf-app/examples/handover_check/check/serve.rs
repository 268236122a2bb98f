//! The `wharf serve` under test: started from `<dir>/bin/wharf`, a symlink the check
//! switches as a deploy does (to a crashing release, then back), with a config file of
//! three servers (the HTTP API, plain `ws` with `/echo` and the app's `/wss/rooms`, and a
//! `tls` WebSocket server with `/echo`), its own data directory and per-address cap off.
//! Its successors share its stdout: one reader thread follows the whole process tree.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Error;

/// The API key of the server under test.
pub const API_KEY: &str = "handover-check-api-key-0123456789";

/// Messages a room keeps (more than the check publishes to one room).
const HISTORY_SIZE: usize = 100_000;

/// A running `wharf serve` and the successors it handed over to.
pub struct Serve {
    child: Child,
    dir: tempfile::TempDir,
    /// The plain WebSocket server (`/echo`, `/wss/rooms`).
    pub ws: SocketAddr,
    /// The TLS WebSocket server (`/echo`).
    pub tls: SocketAddr,
    /// The HTTP API.
    pub http: SocketAddr,
    /// The pids of every process of the tree: the first, then each successor.
    pub pids: Vec<u32>,
    /// Warnings and errors logged by any of them.
    warnings: Arc<Mutex<Vec<String>>>,
}

/// The TLS server's certificate and key.
pub struct Tls<'a> {
    /// PEM certificate chain.
    pub cert: &'a Path,
    /// PEM private key.
    pub key: &'a Path,
}

impl Serve {
    /// Writes the config and starts `wharf` on ports 0; returns once all three servers listen.
    pub fn start(wharf: &Path, tls: &Tls<'_>, spread: Duration) -> Result<Serve, Error> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("bin"))?;
        std::fs::create_dir_all(dir.path().join("data"))?;
        let wharf = std::fs::canonicalize(wharf)?;
        std::os::unix::fs::symlink(&wharf, dir.path().join("bin/wharf"))?;
        let config = dir.path().join("wharf.toml");
        std::fs::write(&config, config_text(tls, spread))?;
        let mut child = Command::new(dir.path().join("bin/wharf"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env_remove("DATABASE_URL")
            .env_remove("WHARF_CONFIG")
            .env_remove("WHARF_CLUSTER_BACKPLANE")
            .env_remove("WHARF_HANDOVER")
            .env_remove("JWT_SECRET")
            .env("WHARF_DATA_DIR", dir.path().join("data"))
            .env("JWT_OPEN", "false")
            .env("WHARF_API_KEY", API_KEY)
            .env("WHARF_WS_MAX_CONNECTIONS_PER_IP", "0")
            .env("WHARF_TLS_MAX_CONNECTIONS_PER_IP", "0")
            .env("WHARF_LOG_FORMAT", "json")
            .env("WHARF_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let pid = child.id();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::from("no stdout"))?;
        let warnings = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let kept = warnings.clone();
        super::serve_log::follow(stdout, tx, move |line| super::lock(&kept).push(line));
        let mut serve = Serve {
            child,
            dir,
            ws: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            pids: vec![pid],
            warnings,
        };
        let (mut ws, mut tls, mut http) = (None, None, None);
        while ws.is_none() || tls.is_none() || http.is_none() {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok((server, addr)) => match server.as_str() {
                    "ws" => ws = Some(addr),
                    "tls" => tls = Some(addr),
                    "http" => http = Some(addr),
                    _ => {}
                },
                Err(_) => return Err("wharf serve did not listen within 30 s".into()),
            }
        }
        (serve.ws, serve.tls, serve.http) = (
            ws.unwrap_or(serve.ws),
            tls.unwrap_or(serve.tls),
            http.unwrap_or(serve.http),
        );
        Ok(serve)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Points `bin/wharf` at `target`, atomically (a rename over the link).
    fn switch_binary(&self, target: &Path) -> Result<(), Error> {
        let next = self.dir.path().join("bin/wharf.next");
        let _ = std::fs::remove_file(&next);
        std::os::unix::fs::symlink(target, &next)?;
        std::fs::rename(&next, self.dir.path().join("bin/wharf"))?;
        Ok(())
    }

    /// Runs `wharf upgrade` (the original binary, the data directory); returns the
    /// successor's pid, or an error with the command's output.
    pub async fn upgrade(&mut self, wharf: &Path) -> Result<u32, Error> {
        let (ok, output) = upgrade(wharf, &self.data()).await?;
        if !ok {
            return Err(format!("wharf upgrade failed: {output}").into());
        }
        let pid = output
            .split("pid ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .and_then(|pid| pid.parse().ok())
            .ok_or_else(|| format!("no successor pid in {output:?}"))?;
        self.pids.push(pid);
        Ok(pid)
    }

    /// Switches the release to one that crashes on start and asks for an upgrade, which
    /// must fail with the old process serving on; then switches back to `wharf`.
    pub async fn crashing_upgrade(&mut self, wharf: &Path) -> Result<(), Error> {
        let script = "echo 'handover-check: this successor crashes on start' >&2\nexit 3";
        self.failing_upgrade(wharf, "crash.sh", script, &[]).await
    }

    /// Switches the release to `dying` (a command running
    /// [`die_with_connections`](super::dying::die_with_connections)) and asks for an upgrade,
    /// which must fail once that successor has been sent the connections and exited; the
    /// old process takes them back and serves on. Then switches back to `wharf`.
    pub async fn dying_upgrade(&mut self, wharf: &Path, dying: &[String]) -> Result<(), Error> {
        let quoted: Vec<String> = dying
            .iter()
            .map(|word| format!("'{}'", word.replace('\'', "'\\''")))
            .collect();
        let script = format!("exec {}", quoted.join(" "));
        let status = format!("exit status: {}", super::dying::STATUS);
        self.failing_upgrade(wharf, "dying.sh", &script, &[&status])
            .await
    }

    /// Switches the release to a shell script `name` running `script`, asks for an upgrade,
    /// and switches back to `wharf`. The upgrade must fail, saying its successor exited
    /// before taking over, and `also`.
    async fn failing_upgrade(
        &mut self,
        wharf: &Path,
        name: &str,
        script: &str,
        also: &[&str],
    ) -> Result<(), Error> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        self.switch_binary(&path)?;
        let outcome = upgrade(wharf, &self.data()).await;
        self.switch_binary(&std::fs::canonicalize(wharf)?)?;
        let (ok, output) = outcome?;
        let said = |text: &str| output.contains(text);
        if ok || !said("exited before taking over") || !also.iter().all(|text| said(text)) {
            return Err(format!("the failing successor `{name}` was not refused: {output}").into());
        }
        Ok(())
    }

    /// The warnings and errors logged so far.
    pub fn warnings(&self) -> Vec<String> {
        super::lock(&self.warnings).clone()
    }

    /// Stops the serving process (SIGTERM, then waits up to `within` for every process of
    /// the tree to be gone); says which were still running (then SIGKILLed).
    pub fn stop(&mut self, within: Duration) -> Vec<u32> {
        if let Some(last) = self.pids.last() {
            signal("TERM", *last);
        }
        let deadline = std::time::Instant::now() + within;
        let _ = self.child.try_wait();
        loop {
            let _ = self.child.try_wait();
            let alive: Vec<u32> = self.pids.iter().copied().filter(|p| alive(*p)).collect();
            if alive.is_empty() || std::time::Instant::now() >= deadline {
                for pid in &alive {
                    signal("KILL", *pid);
                }
                let _ = self.child.wait();
                return alive;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        for pid in &self.pids {
            if alive(*pid) {
                signal("KILL", *pid);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The config: `[drain] spread` as asked, history for every room, three servers.
fn config_text(tls: &Tls<'_>, spread: Duration) -> String {
    let spread_ms = spread.as_millis();
    // The drain must outlast the spread (the config refuses less).
    let drain_ms = spread_ms + 10_000;
    format!(
        r#"drain_timeout = "{drain_ms}ms"

[drain]
spread = "{spread_ms}ms"

[rooms.history]
size = {HISTORY_SIZE}
ttl = "10m"

[[server]]
name = "http"
kind = "http"
host = "127.0.0.1"
port = 0

[[server]]
name = "ws"
kind = "websocket"
host = "127.0.0.1"
port = 0
route = [{{ path = "/echo", handler = "echo" }}]

[[server]]
name = "tls"
kind = "websocket"
host = "127.0.0.1"
port = 0
route = [{{ path = "/echo", handler = "echo" }}]
tls = {{ cert = "{cert}", key = "{key}" }}
"#,
        cert = tls.cert.display(),
        key = tls.key.display(),
    )
}

/// `wharf upgrade` for `data`: (success, stdout + stderr), within 60 s.
async fn upgrade(wharf: &Path, data: &Path) -> Result<(bool, String), Error> {
    let mut command = tokio::process::Command::new(wharf);
    command
        .arg("upgrade")
        .env_remove("WHARF_CONFIG")
        .env("WHARF_DATA_DIR", data)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .map_err(|_| "wharf upgrade did not answer within 60 s")??;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), text))
}

fn signal(signal: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Whether `pid` still runs (a zombie of ours counts as gone).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}
