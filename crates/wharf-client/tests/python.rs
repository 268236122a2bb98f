//! Interoperability with a server no one here wrote: Python's `websockets`.
//!
//! The test creates a venv (`$WHARF_CLIENT_VENV`, default `target/wharf-client-venv`) and
//! installs `websockets` into it if missing. If Python or pip is unavailable the test prints
//! why and passes without running (set `WHARF_CLIENT_REQUIRE_PYTHON=1` to make that a failure).

#![allow(missing_docs)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use common::{TestResult, bounded};
use wharf_client::{ClientConfig, Event, Message, connect};

fn venv() -> PathBuf {
    std::env::var_os("WHARF_CLIENT_VENV").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/wharf-client-venv"),
        PathBuf::from,
    )
}

/// The venv's python with `websockets` importable, or why not.
fn python() -> Result<PathBuf, String> {
    let dir = venv();
    let python = dir.join("bin/python");
    let has = |p: &PathBuf| {
        Command::new(p)
            .args(["-c", "import websockets.asyncio.server"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has(&python) {
        return Ok(python);
    }
    let status = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&dir)
        .status();
    if !status.is_ok_and(|s| s.success()) {
        return Err(format!("python3 -m venv {} failed", dir.display()));
    }
    let pip = Command::new(dir.join("bin/pip"))
        .args(["install", "-q", "websockets"])
        .status();
    if !pip.is_ok_and(|s| s.success()) || !has(&python) {
        return Err("pip install websockets failed".into());
    }
    Ok(python)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn echo_and_close_against_python_websockets() -> TestResult {
    let python = match python() {
        Ok(python) => python,
        Err(why) if std::env::var_os("WHARF_CLIENT_REQUIRE_PYTHON").is_none() => {
            eprintln!("skipping the Python interop test: {why}");
            return Ok(());
        }
        Err(why) => return Err(why.into()),
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/echo_server.py");
    let mut child = Killed(
        Command::new(python)
            .arg(script)
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let stdout = child.0.stdout.take().ok_or("no stdout")?;
    let port = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let port: u16 = bounded(port).await??.trim().parse()?;

    let url = format!("ws://127.0.0.1:{port}/any/path?q=1");
    let mut client = bounded(connect(&url, &ClientConfig::default())).await?;
    client.send(Message::from("hello python")).await?;
    assert_eq!(
        bounded(client.recv()).await?,
        Some(Event::Message(Message::Text("hello python".into())))
    );
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    client.send(Message::from(data.clone())).await?;
    assert_eq!(
        bounded(client.recv()).await?,
        Some(Event::Message(Message::Binary(data.into())))
    );
    client.ping(b"p".to_vec()).await?;
    assert_eq!(bounded(client.recv()).await?, Some(Event::Pong("p".into())));
    let reply = bounded(client.close(1000, "bye")).await?;
    assert_eq!(reply, Some((1000, "bye".into())));
    assert_eq!(bounded(client.recv()).await?, None);
    Ok(())
}
