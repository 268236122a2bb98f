//! A private Redis or NATS server on a free port, that a test stops, restarts and flushes
//! (never the machine's shared ones).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A private engine process; killed when dropped.
pub struct Engine {
    kind: &'static str,
    /// Redis only: an append-only file synced on every write, so a restart keeps the data.
    persistent: bool,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Engine {
    /// Starts a `"redis"` or `"nats"` server (with JetStream) on a free port.
    pub fn start(kind: &'static str) -> Engine {
        Engine::start_with(kind, false)
    }

    /// A Redis that keeps its data across [`down`](Self::down) and [`up`](Self::up)
    /// (append-only, fsync always).
    pub fn start_persistent_redis() -> Engine {
        Engine::start_with("redis", true)
    }

    fn start_with(kind: &'static str, persistent: bool) -> Engine {
        let mut engine = Engine {
            kind,
            persistent,
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        engine.up();
        engine
    }

    /// `redis://127.0.0.1:<port>` or `nats://…`.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.kind, self.port)
    }

    /// Starts the process again on the same port (with the data it kept, if any).
    pub fn up(&mut self) {
        let port = self.port.to_string();
        let mut command = match self.kind {
            "redis" => {
                let mut c = Command::new("redis-server");
                let aof = if self.persistent { "yes" } else { "no" };
                c.args([
                    "--port",
                    &port,
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    aof,
                    "--appendfsync",
                    "always",
                ]);
                c.arg("--dir").arg(self.dir.path());
                c
            }
            _ => {
                let mut c = Command::new("/usr/sbin/nats-server");
                c.args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
                    .arg(self.dir.path());
                c
            }
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start a private {} server: {e}", self.kind));
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{} did not start",
                self.kind
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process.
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it and starts it empty (Redis keeps nothing; NATS gets a fresh store dir).
    pub fn flush_restart(&mut self) {
        self.down();
        self.dir = tempfile::tempdir().expect("temp dir");
        self.up();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.down();
    }
}
