//! SIGTERM on the real binary: `wharf serve` closes every client with 1001, runs every
//! `on_close`, and exits 0 within its drain timeout.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use wharf_app::tokens::{TokenConfig, Tokens};

use common::{SECRET, handshake};

const DRAIN: Duration = Duration::from_secs(5);

/// The next JSON log line, within 20 s.
fn next_line(lines: &mpsc::Receiver<serde_json::Value>) -> serde_json::Value {
    lines
        .recv_timeout(Duration::from_secs(20))
        .expect("a log line from wharf serve within 20 s")
}

/// `wharf serve` on port 0 with a JSON log, and that log line by line (read for as long
/// as the process writes it, so its pipe never fills).
fn spawn_serve(data: &std::path::Path) -> (std::process::Child, mpsc::Receiver<serde_json::Value>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env_remove("WHARF_CONFIG")
        .env_remove("WHARF_CLUSTER_BACKPLANE")
        .env("WHARF_DATA_DIR", data)
        .env("JWT_SECRET", std::str::from_utf8(SECRET).expect("utf-8"))
        .env("WHARF_HTTP_HOST", "127.0.0.1")
        .env("WHARF_HTTP_PORT", "0")
        .env("WHARF_WS_HOST", "127.0.0.1")
        .env("WHARF_WS_PORT", "0")
        .env("WHARF_DRAIN_TIMEOUT", "5s")
        .env("WHARF_LOG_FORMAT", "json")
        .env("WHARF_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn wharf serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) {
                let _ = tx.send(json);
            }
        }
    });
    (child, lines)
}

/// A supervisor may send SIGTERM the moment it reads `listening`. Before the fix, the
/// handler was installed only when the server first polled its stop signal, just after
/// that line: about half of such signals ended the process by the signal's default action
/// (no drain, no exit 0), and some were caught and lost (the process ran on).
#[test]
fn sigterm_sent_the_moment_serve_logs_listening_drains_and_exits_0() {
    for attempt in 1..=5 {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut child, lines) = spawn_serve(dir.path());
        while next_line(&lines)["message"] != "listening" {}
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("kill");
        let Some(status) = common::exit_within(&mut child, DRAIN * 2) else {
            let _ = child.kill();
            panic!(
                "attempt {attempt}: still running {:?} after SIGTERM",
                DRAIN * 2
            );
        };
        assert!(
            status.success(),
            "attempt {attempt}: exit status {status:?}"
        );
        assert!(
            std::iter::from_fn(|| lines.recv_timeout(Duration::from_secs(5)).ok())
                .any(|line| line["message"] == "shutdown complete"),
            "attempt {attempt}: no `shutdown complete`"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_client_with_1001_runs_on_close_and_exits_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, lines) = spawn_serve(dir.path());
    let ws: SocketAddr = loop {
        let line = next_line(&lines);
        if line["message"] == "listening" && line["server"] == "ws" {
            break line["addr"].as_str().expect("addr").parse().expect("addr");
        }
    };

    let tokens = Tokens::new(&TokenConfig::default(), Some(SECRET)).expect("tokens");
    let accounts = ["alice", "bob", "carol"];
    let mut clients = Vec::new();
    for (uid, account) in (1i64..).zip(accounts) {
        let (token, _) = tokens.issue((uid, account, false)).expect("issue");
        let header = format!("Bearer {token}");
        let (response, ws) = handshake(ws, "/wss/demo", &[("Authorization", &header)]).await;
        assert_eq!(response.status, 101, "{}", response.body);
        let mut ws = ws.expect("open");
        let hello = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
        assert!(
            matches!(&hello, Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "Authorization Success"),
            "{hello:?}"
        );
        clients.push(ws);
    }

    let signalled = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());
    // Every client: a close frame with 1001, answered by tungstenite while it reads.
    for (account, mut ws) in accounts.into_iter().zip(clients) {
        let (code, reason) = common::next_close(&mut ws, Duration::from_secs(10), account).await;
        assert_eq!(code, 1001, "{account}: {reason}");
        // Finish the close handshake: read to the end of the stream.
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }
    // The process exits 0 on its own, before the drain timeout runs out.
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if signalled.elapsed() > DRAIN {
            let _ = child.kill();
            panic!("wharf serve still running {DRAIN:?} after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status:?}");
    assert!(signalled.elapsed() < DRAIN, "{:?}", signalled.elapsed());
    // on_close ran once for each, with 1001: the demo handler logs `<account> disconnected`.
    let mut closed: Vec<(String, u64)> = Vec::new();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
        let message = line["message"].as_str().unwrap_or_default();
        if let Some(account) = message.strip_suffix(" disconnected") {
            closed.push((account.to_owned(), line["code"].as_u64().unwrap_or(0)));
        }
    }
    closed.sort();
    let expected: Vec<(String, u64)> = accounts.iter().map(|a| ((*a).to_owned(), 1001)).collect();
    assert_eq!(closed, expected);
}
