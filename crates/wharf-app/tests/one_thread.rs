//! `wharf serve` on one worker thread is one thread of the operating system whenever its
//! user store and blocking pool are idle (the SQLite connections close after a second
//! unused, the blocking threads leave after a second), and the store still answers once
//! its connections have closed.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use common::nodes::{self, NodeConfig};

/// The names of the process's threads.
fn threads(pid: u32) -> Vec<String> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task");
    dir.filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect()
}

/// Waits up to 10 s for the process to be one thread; panics with its threads otherwise.
fn wait_for_one_thread(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let names = threads(pid);
        if names.len() == 1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {} threads after 10 s: {names:?}",
            names.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_worker_server_is_one_thread_while_its_store_is_idle() {
    // No cluster (an empty backplane), one worker thread.
    let mut config = NodeConfig::new("", "one-thread");
    config
        .extra_env
        .push(("WHARF_WORKER_THREADS".to_owned(), "1".to_owned()));
    let node = nodes::spawn(&config);
    let (pid, ws, http) = (node.pid(), node.ws, node.http);

    // After start-up (migrations on SQLite, the handover check on a blocking thread).
    wait_for_one_thread(pid);

    // Echo on the one thread.
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{ws}/echo"))
        .await
        .expect("open /echo");
    for i in 0..100 {
        let text = format!("message {i}");
        socket
            .send(Message::text(text.clone()))
            .await
            .expect("send");
        let echoed = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
        assert!(
            matches!(&echoed, Ok(Some(Ok(Message::Text(t)))) if t.as_str() == text),
            "{echoed:?}"
        );
    }
    assert_eq!(threads(pid).len(), 1, "echo needs no other thread");

    // A user added by another process, then a login: the store opens a connection again
    // (its last one closed while idle) and hashes on a blocking thread.
    let mut add = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["user", "add", "alice"])
        .env_remove("DATABASE_URL")
        .env_remove("WHARF_CONFIG")
        .env("WHARF_DATA_DIR", node.data_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("wharf user add");
    add.stdin
        .take()
        .expect("stdin")
        .write_all(b"secret-password\n")
        .expect("password");
    assert!(add.wait().expect("user add").success());
    let body = serde_json::json!({ "account": "alice", "password": "secret-password" });
    let response = common::http(
        http,
        "POST",
        "/auth/login",
        &[],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(response.json()["token"].as_str().is_some());

    // And back to one thread once the store is idle again.
    wait_for_one_thread(pid);
    socket
        .send(Message::text("still here"))
        .await
        .expect("send");
    let echoed = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
    assert!(
        matches!(&echoed, Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "still here"),
        "{echoed:?}"
    );
}
