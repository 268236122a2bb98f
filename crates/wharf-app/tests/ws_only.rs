//! `wharf serve` (the built binary) with a config of WebSocket servers only: it serves them,
//! says which parts of the app are off and how to bring them back, and an invalid config is
//! refused (exit 2) before any file is created in the data directory.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

fn wharf_serve(dir: &Path, config: &str) -> Command {
    let file = dir.join("wharf.toml");
    std::fs::write(&file, config).expect("write config");
    let mut command = Command::new(env!("CARGO_BIN_EXE_wharf"));
    command
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&file)
        .env("WHARF_DATA_DIR", dir.join("data"))
        .env_remove("DATABASE_URL")
        .env_remove("JWT_SECRET")
        .env_remove("WHARF_CONFIG")
        .env_remove("WHARF_CLUSTER_BACKPLANE")
        .env("WHARF_LOG", "info")
        .stdin(Stdio::null());
    command
}

/// Kills the server when the test ends, passed or not.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the server and returns it, the address of `server`, and the log lines up to it.
fn start(dir: &Path, config: &str, server: &str) -> (Killed, SocketAddr, Vec<serde_json::Value>) {
    let mut child = wharf_serve(dir, config)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn wharf serve");
    let stdout = child.stdout.take().expect("stdout");
    let child = Killed(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) {
                if tx.send(json).is_err() {
                    break;
                }
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no `listening` for {server} within 20s: {lines:?}"));
        lines.push(line.clone());
        if line["message"] == "listening" && line["server"] == server {
            let addr = line["addr"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .expect("addr");
            return (child, addr, lines);
        }
    }
}

async fn assert_echo(addr: SocketAddr) {
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(format!("ws://{addr}/echo")),
    )
    .await
    .expect("in time")
    .expect("connect");
    ws.send(Message::text("only websockets"))
        .await
        .expect("send");
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("in time")
        .expect("a reply")
        .expect("a message");
    assert_eq!(reply.into_text().expect("text").as_str(), "only websockets");
}

fn files_in(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

const PLAIN: &str = r#"
[[server]]
name = "plain"
kind = "websocket"
host = "127.0.0.1"
port = 0
route = [{ path = "/echo", handler = "echo" }]
"#;

#[tokio::test]
async fn a_config_with_one_websocket_server_serves_echo_and_creates_no_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_server, addr, lines) = start(dir.path(), PLAIN, "plain");
    assert_echo(addr).await;
    let said = |needle: &str| {
        lines
            .iter()
            .any(|l| l["message"].as_str().is_some_and(|m| m.contains(needle)))
    };
    assert!(said("login, API, pages and /metrics are off"), "{lines:?}");
    assert!(said("app.http_server"), "names the setting: {lines:?}");
    assert!(said("/wss/demo"), "{lines:?}");
    assert!(
        files_in(&dir.path().join("data")).is_empty(),
        "no users store or key without the app: {:?}",
        files_in(&dir.path().join("data"))
    );
}

#[tokio::test]
async fn the_ws_server_alone_keeps_the_app_websockets_without_http() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = PLAIN.replace("\"plain\"", "\"ws\"");
    let (_server, addr, lines) = start(dir.path(), &config, "ws");
    assert_echo(addr).await;
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("no http server called `http`"))),
        "{lines:?}"
    );
    // The app's WebSocket routes are mounted: /wss/demo wants a token (401), not 404.
    let response = tokio_tungstenite::connect_async(format!("ws://{addr}/wss/demo")).await;
    match response {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
        }
        other => panic!("expected 401, got {other:?}"),
    }
}

#[test]
fn an_invalid_config_exits_2_before_creating_any_file() {
    for (config, says) in [
        (
            PLAIN.replace("handler = \"echo\"", "handler = \"nope\""),
            "no handler called `nope`",
        ),
        (
            format!("[app]\nhttp_server = \"plain\"\n{PLAIN}"),
            "app.http_server",
        ),
        (format!("[jwt]\nalgorithm = \"RS256\"\n{PLAIN}"), "[jwt]"),
        (
            PLAIN.replace("port = 0", "port = 0\nproxy_protocol = true"),
            "trusted_proxies",
        ),
        (
            PLAIN.replace(
                "port = 0",
                "port = 0\ntls = { cert = \"/nonexistent/cert.pem\", key = \"/nonexistent/key.pem\" }",
            ),
            "server[0].tls.cert",
        ),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = wharf_serve(dir.path(), &config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{config}\n{stderr}");
        assert!(stderr.contains(says), "{says}: {stderr}");
        assert!(
            !dir.path().join("data").exists(),
            "{config}: created {:?}",
            files_in(&dir.path().join("data"))
        );
    }
}
