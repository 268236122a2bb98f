//! The README's `wharf client` / `wharf bench` examples, run with the built binary against a
//! wharf echo server started here (and, for `wss://`, a TLS-terminating proxy with a test
//! CA), plus the interactive stdin mode of `wharf client`.
//!
//! The examples are read from the README: every `sh` block right after a `<!-- tested`
//! comment. Addresses and the CA file are replaced by the test's (`127.0.0.1:9502` → the
//! echo server, `:9443` → the TLS proxy, `ca.pem` → the generated CA); everything else runs
//! as written and must exit 0. The test fails if the blocks disappear or stop covering
//! the features listed in `COVERED`.

#![allow(missing_docs)]

#[path = "../../wharf-client/tests/common/mod.rs"]
mod client_common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use client_common::Wharf;
use client_common::tls::TestPki;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// What the tested README blocks must keep showing.
const COVERED: [&str; 9] = [
    "wharf client ws://",
    "--send",
    "--compress",
    "--json",
    "wharf client wss://",
    "--ca-file",
    "--server-name",
    "wharf bench echo",
    "wharf bench connect",
];

/// The command lines of the tested blocks.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let mut commands = Vec::new();
    let mut rest = readme.as_str();
    while let Some(at) = rest.find("<!-- tested") {
        rest = &rest[at..];
        let start = rest
            .find("```sh\n")
            .expect("a ```sh block after <!-- tested");
        let body = &rest[start + 6..];
        let end = body.find("```").expect("the block ends");
        commands.extend(
            body[..end]
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("wharf "))
                .map(String::from),
        );
        rest = &body[end..];
    }
    commands
}

/// Splits a command line like sh: single and double quotes, `#` comments.
fn split(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let w = word.get_or_insert_with(String::new);
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    w.push(q);
                }
            }
            '#' if word.is_none() => break,
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// Runs the binary with `stdin`, bounded by `limit` (killed after it).
fn wharf(args: &[String], stdin: &str, limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .env_remove("WHARF_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wharf");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_owned();
    // Lines one by one, so the client sees them as they come, like a terminal.
    let writer = std::thread::spawn(move || {
        for line in stdin.split_inclusive('\n') {
            let _ = input.write_all(line.as_bytes());
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wharf {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

fn substitute(words: Vec<String>, ws: SocketAddr, tls: SocketAddr, ca: &Path) -> Vec<String> {
    words
        .into_iter()
        .skip(1) // `wharf`
        .map(|w| {
            if w == "ca.pem" {
                return ca.display().to_string();
            }
            w.replace("127.0.0.1:9502", &ws.to_string())
                .replace(":9443", &format!(":{}", tls.port()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_client_and_bench_examples_run() -> TestResult {
    let commands = readme_commands();
    let all = commands.join("\n");
    for feature in COVERED {
        assert!(
            all.contains(feature),
            "the tested README blocks no longer show {feature:?}"
        );
    }
    let pki = TestPki::generate()?;
    // As the README says: `WHARF_WS_COMPRESSION=true wharf serve`.
    let compressing = wharf::ServerConfig::new("ws", wharf::ServerKind::Websocket, 0)
        .with_compression(wharf::Compression::on());
    let server = Wharf::start_with(compressing).await?;
    let tls = pki.proxy(server.addr).await?;
    for command in &commands {
        let args = substitute(split(command), server.addr, tls, &pki.ca_pem);
        let output =
            tokio::task::spawn_blocking(move || wharf(&args, "", Duration::from_secs(40))).await?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "README: {command}\nexit: {:?}\nstdout: {stdout}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        if command.contains("--json") {
            for line in stdout.lines() {
                serde_json::from_str::<serde_json::Value>(line)
                    .map_err(|e| format!("README: {command}: not JSON ({e}): {line}"))?;
            }
        }
        if command.contains("--expect") {
            assert!(
                stdout.contains("hello") || stdout.contains("hi"),
                "{command}: {stdout}"
            );
        }
        if command.contains("--compress") {
            let agreed =
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
            let extension = stdout
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .find(|event| event["kind"] == "extension");
            assert_eq!(
                extension.map(|event| event["data"].clone()),
                Some(agreed.into()),
                "{command}: {stdout}"
            );
        }
        if command.starts_with("wharf bench") && !command.contains("--json") {
            assert!(stdout.contains("errors          0"), "{command}: {stdout}");
        }
    }
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_stdin_lines_and_commands() -> TestResult {
    let server = Wharf::start(0).await?;
    let url = format!("ws://{}/echo", server.addr);
    let args = vec!["client".into(), url, "--json".into()];
    let stdin = "hello\n/binary 6869\n//slash\n/ping abc\n/close 1000 bye\n";
    let output =
        tokio::task::spawn_blocking(move || wharf(&args, stdin, Duration::from_secs(20))).await?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{output:?}");
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            let kind = e["kind"].as_str().unwrap_or_default().to_owned();
            let data = e["data"].as_str().unwrap_or_default().to_owned();
            (kind, data)
        })
        .collect();
    let want = [
        ("open", ""),
        ("text", "hello"),
        ("binary", "6869"),
        ("text", "/slash"),
        ("pong", "abc"),
    ]
    .map(|(k, d)| (k.to_owned(), d.to_owned()));
    assert_eq!(&seen[..want.len()], want, "{stdout}");
    let close = events.last().ok_or("no events")?;
    assert_eq!(
        (close["kind"].as_str(), close["code"].as_u64()),
        (Some("close"), Some(1000))
    );

    // Human output: a timestamp, the kind, the data.
    let url = format!("ws://{}/echo", server.addr);
    let args = vec!["client".into(), url];
    let output = tokio::task::spawn_blocking(move || {
        wharf(&args, "hi there\n/close\n", Duration::from_secs(20))
    })
    .await?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{output:?}");
    let text = stdout
        .lines()
        .find(|l| l.contains(" text "))
        .ok_or("no text line")?;
    assert!(
        text.ends_with(" text hi there") && text.starts_with("20"),
        "{stdout}"
    );
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_against_a_refused_url_exits_one() -> TestResult {
    let server = Wharf::start(0).await?;
    let url = format!("ws://{}/nope", server.addr);
    let args: Vec<String> = ["bench", "echo", &url, "-n", "3", "-d", "0.5", "--json"]
        .map(String::from)
        .to_vec();
    let output =
        tokio::task::spawn_blocking(move || wharf(&args, "", Duration::from_secs(20))).await?;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(report["errors"]["by_kind"]["refused_404"], 3, "{report}");
    assert_eq!(report["messages"], 0);
    server.stop().await;
    Ok(())
}

#[test]
fn split_is_shell_like() {
    assert_eq!(
        split(r#"wharf client x --send 'a b' --send "c" # comment"#),
        ["wharf", "client", "x", "--send", "a b", "--send", "c"]
    );
}
