//! `wharf serve` processes forming a cluster on loopback: each on ports 0, its addresses
//! read from its JSON log, killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{API_KEY, SECRET};

/// One running node.
pub struct Node {
    child: Child,
    pub ws: SocketAddr,
    pub http: SocketAddr,
    dir: tempfile::TempDir,
}

/// What a node is started with.
#[derive(Clone)]
pub struct NodeConfig {
    pub backplane: String,
    pub prefix: String,
    pub ttl: String,
    pub extra_env: Vec<(String, String)>,
}

impl NodeConfig {
    pub fn new(backplane: &str, prefix: &str) -> NodeConfig {
        NodeConfig {
            backplane: backplane.to_owned(),
            prefix: prefix.to_owned(),
            ttl: "3s".to_owned(),
            extra_env: Vec::new(),
        }
    }
}

/// Starts `wharf serve` with `config` and waits for both servers to listen.
pub fn spawn(config: &NodeConfig) -> Node {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = command(config, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn wharf serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    // Reads the log for as long as the node runs, so its pipe never fills.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let fields = &json;
            if fields["message"] == "listening" {
                let server = fields["server"].as_str().unwrap_or_default().to_owned();
                let addr = fields["addr"]
                    .as_str()
                    .and_then(|a| a.parse::<SocketAddr>().ok());
                if let Some(addr) = addr {
                    let _ = tx.send((server, addr));
                }
            }
        }
    });
    let (mut ws, mut http) = (None, None);
    while ws.is_none() || http.is_none() {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok((server, addr)) if server == "ws" => ws = Some(addr),
            Ok((server, addr)) if server == "http" => http = Some(addr),
            Ok(_) => {}
            Err(_) => {
                let status = child.try_wait();
                let _ = child.kill();
                panic!("wharf serve did not start listening within 20s (status {status:?})");
            }
        }
    }
    Node {
        child,
        ws: ws.expect("ws"),
        http: http.expect("http"),
        dir,
    }
}

/// The `wharf serve` command for `config` with its data in `dir` (not started).
pub fn command(config: &NodeConfig, dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wharf"));
    command
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env_remove("WHARF_CONFIG")
        .env("WHARF_DATA_DIR", dir)
        .env(
            "JWT_SECRET",
            std::str::from_utf8(SECRET).expect("utf-8 secret"),
        )
        .env("WHARF_API_KEY", API_KEY)
        .env("WHARF_HTTP_HOST", "127.0.0.1")
        .env("WHARF_HTTP_PORT", "0")
        .env("WHARF_WS_HOST", "127.0.0.1")
        .env("WHARF_WS_PORT", "0")
        .env("WHARF_CLUSTER_BACKPLANE", &config.backplane)
        .env("WHARF_CLUSTER_PREFIX", &config.prefix)
        .env("WHARF_CLUSTER_PRESENCE_TTL", &config.ttl)
        .env("WHARF_LOG_FORMAT", "json")
        .env("WHARF_LOG", "info");
    for (name, value) in &config.extra_env {
        command.env(name, value);
    }
    command
}

impl Node {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its data directory (`WHARF_DATA_DIR`).
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Kills the process at once (SIGKILL): no close handshakes, no presence cleanup.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
