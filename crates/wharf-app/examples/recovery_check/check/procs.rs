//! The processes of a check: a private Redis or NATS on a free port (never the machine's
//! shared ones), and `wharf serve` nodes that can be SIGKILLed and started again on the
//! same ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The API key of the check's nodes.
pub const API_KEY: &str = "recovery-check-api-key-0123456789";

/// A port nothing listens on now.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Which backplane and history store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// `redis-server`, append-only file fsynced at every write: a restart keeps history.
    Redis,
    /// `nats-server -js` with a store directory: a restart keeps the streams.
    Nats,
}

impl std::str::FromStr for EngineKind {
    type Err = String;

    fn from_str(s: &str) -> Result<EngineKind, String> {
        match s {
            "redis" => Ok(EngineKind::Redis),
            "nats" => Ok(EngineKind::Nats),
            other => Err(format!("engine `{other}`: expected redis or nats")),
        }
    }
}

/// A private engine process, killed when dropped.
pub struct Engine {
    kind: EngineKind,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Engine {
    /// Starts it on a free port, with its data in a fresh temp dir.
    pub fn start(kind: EngineKind) -> std::io::Result<Engine> {
        let mut engine = Engine {
            kind,
            port: free_port()?,
            dir: tempfile::tempdir()?,
            child: None,
        };
        engine.up()?;
        Ok(engine)
    }

    /// `redis://127.0.0.1:PORT` or `nats://…`.
    pub fn url(&self) -> String {
        match self.kind {
            EngineKind::Redis => format!("redis://127.0.0.1:{}", self.port),
            EngineKind::Nats => format!("nats://127.0.0.1:{}", self.port),
        }
    }

    /// Starts the process (again) on its port, with the data it kept.
    pub fn up(&mut self) -> std::io::Result<()> {
        let port = self.port.to_string();
        let mut command = match self.kind {
            EngineKind::Redis => {
                let mut c = Command::new("redis-server");
                c.args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
                    .args(["--appendonly", "yes", "--appendfsync", "always"])
                    .arg("--dir")
                    .arg(self.dir.path());
                c
            }
            EngineKind::Nats => {
                let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
                    .into_iter()
                    .find(|p| Path::new(p).exists())
                    .unwrap_or("nats-server");
                let mut c = Command::new(binary);
                c.args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
                    .arg(self.dir.path());
                c
            }
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(std::io::Error::other(format!(
                    "{:?} did not start",
                    self.kind
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops the process: SIGTERM (Redis and NATS shut down cleanly), SIGKILL after 5 s.
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One `wharf serve` node.
pub struct Node {
    binary: PathBuf,
    engine_url: String,
    prefix: String,
    history_size: usize,
    child: Option<Child>,
    /// The WebSocket server's address (the same after a restart).
    pub ws: SocketAddr,
    /// The HTTP API's address (the same after a restart).
    pub http: SocketAddr,
    dir: tempfile::TempDir,
}

impl Node {
    /// Starts a node on ports 0 and waits until both servers listen.
    pub fn start(
        binary: &Path,
        engine_url: &str,
        prefix: &str,
        history_size: usize,
    ) -> std::io::Result<Node> {
        let unbound: SocketAddr = ([127, 0, 0, 1], 0).into();
        let mut node = Node {
            binary: binary.to_owned(),
            engine_url: engine_url.to_owned(),
            prefix: prefix.to_owned(),
            history_size,
            child: None,
            ws: unbound,
            http: unbound,
            dir: tempfile::tempdir()?,
        };
        node.up()?;
        Ok(node)
    }

    /// Starts the process (again), on the ports it had if it ran before.
    pub fn up(&mut self) -> std::io::Result<()> {
        let mut child = Command::new(&self.binary)
            .arg("serve")
            .env_remove("DATABASE_URL")
            .env_remove("WHARF_CONFIG")
            .env("WHARF_DATA_DIR", self.dir.path())
            .env("JWT_OPEN", "false")
            .env("WHARF_API_KEY", API_KEY)
            .env("WHARF_HTTP_HOST", "127.0.0.1")
            .env("WHARF_HTTP_PORT", self.http.port().to_string())
            .env("WHARF_WS_HOST", "127.0.0.1")
            .env("WHARF_WS_PORT", self.ws.port().to_string())
            .env("WHARF_WS_MAX_CONNECTIONS_PER_IP", "0")
            .env("WHARF_CLUSTER_BACKPLANE", &self.engine_url)
            .env("WHARF_CLUSTER_PREFIX", &self.prefix)
            .env("WHARF_ROOMS_HISTORY_SIZE", self.history_size.to_string())
            .env("WHARF_LOG_FORMAT", "json")
            .env("WHARF_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        self.child = Some(child);
        let (tx, rx) = mpsc::channel();
        let log = self.dir.path().join("server.log");
        // Keeps the warnings and errors in server.log.
        let mut kept = std::fs::File::create(log).ok();
        super::serve_log::follow(stdout, tx, move |line| {
            if let Some(file) = kept.as_mut() {
                use std::io::Write as _;
                let _ = writeln!(file, "{line}");
            }
        });
        let (mut ws, mut http) = (None, None);
        while ws.is_none() || http.is_none() {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok((server, addr)) if server == "ws" => ws = Some(addr),
                Ok((server, addr)) if server == "http" => http = Some(addr),
                Ok(_) => {}
                Err(_) => {
                    self.kill();
                    return Err(std::io::Error::other(
                        "wharf serve did not listen within 20 s",
                    ));
                }
            }
        }
        (self.ws, self.http) = (ws.unwrap_or(self.ws), http.unwrap_or(self.http));
        Ok(())
    }

    /// SIGKILL: no close frames, no presence cleanup.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The warnings and errors it logged.
    pub fn warnings(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
