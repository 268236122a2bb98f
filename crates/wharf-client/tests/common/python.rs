//! The Python `websockets` interop server, in a venv the tests create.
//!
//! The venv is `$WHARF_CLIENT_VENV`, default `target/wharf-client-venv`; `websockets` is
//! installed into it if missing. Without Python or pip the tests that need it print why and
//! pass without running (set `WHARF_CLIENT_REQUIRE_PYTHON=1` to make that a failure).

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::bounded;

pub fn venv() -> PathBuf {
    std::env::var_os("WHARF_CLIENT_VENV").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/wharf-client-venv"),
        PathBuf::from,
    )
}

/// The venv's python with `websockets` importable, or why not.
pub fn python() -> Result<PathBuf, String> {
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
    // Test binaries run in parallel (nextest: one process per test): one installs.
    let _lock = InstallLock::take(&dir)?;
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

/// A directory next to the venv, created while one process installs.
struct InstallLock(PathBuf);

impl InstallLock {
    fn take(venv: &std::path::Path) -> Result<InstallLock, String> {
        let path = venv.with_extension("lock");
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let started = std::time::Instant::now();
        loop {
            if std::fs::create_dir(&path).is_ok() {
                return Ok(InstallLock(path));
            }
            let stale = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > std::time::Duration::from_secs(300));
            if stale {
                let _ = std::fs::remove_dir(&path);
            } else if started.elapsed() > std::time::Duration::from_secs(300) {
                return Err(format!("{} is held by another test", path.display()));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tests/py/echo_server.py` with `args`; returns the process and its port, or
/// `None` (after printing why) when Python is unavailable and not required.
pub async fn echo_server(
    args: &[&std::path::Path],
) -> Result<Option<(Killed, u16)>, Box<dyn std::error::Error + Send + Sync>> {
    let python = match python() {
        Ok(python) => python,
        Err(why) if std::env::var_os("WHARF_CLIENT_REQUIRE_PYTHON").is_none() => {
            eprintln!("skipping the Python interop test: {why}");
            return Ok(None);
        }
        Err(why) => return Err(why.into()),
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/echo_server.py");
    let mut child = Killed(
        Command::new(python)
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let stdout = child.0.stdout.take().ok_or("no stdout")?;
    let port = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let port: u16 = bounded(port).await??.trim().parse()?;
    Ok(Some((child, port)))
}
