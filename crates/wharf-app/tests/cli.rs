//! The built binary: `user add|list|remove`, `token`, `client`, and a bad config file. Each
//! failure is checked by its exit code and its message, each success by what it printed.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use wharf_app::tokens::{SECRET_FILE, TokenConfig, Tokens, resolve_secret};

fn wharf(data_dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .env("WHARF_DATA_DIR", data_dir)
        .env_remove("DATABASE_URL")
        .env_remove("JWT_SECRET")
        .env_remove("WHARF_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wharf");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts a failure with exit code `code` whose message (on stderr) contains `message`, and
/// nothing on stdout: an exit code alone could come from any failure.
fn assert_fails(output: &Output, code: i32, message: &str) {
    assert_eq!(output.status.code(), Some(code), "{output:?}");
    assert!(stderr(output).contains(message), "{output:?}");
    assert_eq!(stdout(output), "", "{output:?}");
}

#[test]
fn users_and_tokens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let added = wharf(&data, &["user", "add", "alice"], "secret-password\n");
    assert!(added.status.success(), "{added:?}");
    assert!(
        stdout(&added).starts_with("added user alice (id "),
        "{added:?}"
    );
    assert!(data.join("wharf.db").exists());

    let listed = wharf(&data, &["user", "list"], "");
    assert!(listed.status.success(), "{listed:?}");
    assert!(stdout(&listed).contains("\talice\t"), "{}", stdout(&listed));

    let token = wharf(&data, &["token", "alice"], "");
    assert!(token.status.success(), "{token:?}");
    let token = stdout(&token);
    let token = token.trim();
    assert!(data.join(SECRET_FILE).exists(), "the secret was generated");
    let (secret, _) = resolve_secret(None, &data).expect("generated secret");
    let tokens = Tokens::new(&TokenConfig::default(), Some(&secret)).expect("tokens");
    let claims = tokens.verify(token).expect("the printed token verifies");
    assert_eq!(claims.account, "alice");
    assert!(!claims.admin);
    // Without --room/--publish: the configured [jwt] grants (the defaults).
    assert_eq!(claims.rooms, ["demo:*", "user:{uid}"]);
    assert_eq!(claims.publish, ["demo:*"]);
    let granted = wharf(
        &data,
        &[
            "token",
            "alice",
            "--room",
            "news",
            "--room",
            "chat:*",
            "--publish",
            "chat:*",
        ],
        "",
    );
    assert!(granted.status.success(), "{granted:?}");
    let claims = tokens
        .verify(stdout(&granted).trim())
        .expect("the granted token verifies");
    assert_eq!(
        (claims.rooms, claims.publish),
        (
            vec!["news".to_owned(), "chat:*".to_owned()],
            vec!["chat:*".to_owned()]
        )
    );

    let missing = wharf(&data, &["token", "nobody"], "");
    assert_fails(
        &missing,
        1,
        "wharf: no user nobody; add it with `wharf user add nobody`",
    );

    let removed = wharf(&data, &["user", "remove", "alice"], "");
    assert!(removed.status.success(), "{removed:?}");
    assert_eq!(stdout(&removed), "removed user alice\n");
    let listed = wharf(&data, &["user", "list"], "");
    assert!(listed.status.success(), "{listed:?}");
    assert!(!stdout(&listed).contains("alice"), "{listed:?}");
    let again = wharf(&data, &["user", "remove", "alice"], "");
    assert_fails(&again, 1, "wharf: no user alice");
}

#[test]
fn empty_password_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = wharf(dir.path(), &["user", "add", "alice"], "");
    assert_fails(&out, 1, "wharf: no password given");
    // Refused before the store is touched: no user was added.
    let listed = wharf(dir.path(), &["user", "list"], "");
    assert!(!stdout(&listed).contains("alice"), "{listed:?}");
}

#[test]
fn bad_config_exits_2_and_names_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    for text in ["bogus = 1\n", "[auth]\nenabled = \"maybe\"\n"] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, text).expect("write");
        let file = file.to_str().expect("utf-8 path");
        let out = wharf(dir.path(), &["serve", "--config", file], "");
        assert_fails(&out, 2, "wharf: bad configuration");
        assert!(stderr(&out).contains("bad.toml"), "{out:?}");
    }
}

/// At a terminal the password prompt does not echo: `wharf user add` runs under a pseudo
/// terminal (util-linux `script`), the password is typed once the prompt shows, and the
/// terminal's output never contains it; the stored password is the one typed.
#[test]
fn password_prompt_does_not_echo_at_a_terminal() {
    use std::io::Read;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    if Command::new("script").arg("--version").output().is_err() {
        panic!("util-linux `script` is needed to run wharf under a pseudo terminal");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let command = format!("{} user add alice", env!("CARGO_BIN_EXE_wharf"));
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("WHARF_DATA_DIR", dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("WHARF_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn script");
    let mut out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let wait_for = |seen: &mut Vec<u8>, what: &str| {
        while !String::from_utf8_lossy(seen).contains(what) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(chunk) => seen.extend(chunk),
                Err(_) => panic!(
                    "no `{what}` in time; output: {}",
                    String::from_utf8_lossy(seen)
                ),
            }
        }
    };
    wait_for(&mut seen, "password for alice");
    // rpassword prints the prompt, then turns echo off: a password typed within those few
    // microseconds would be echoed by the terminal itself (as for a human typing ahead).
    // Half a second is longer than that by far.
    std::thread::sleep(Duration::from_millis(500));
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"typed-at-a-tty-42\r")
        .expect("type the password");
    wait_for(&mut seen, "added user alice");
    let status = child.wait().expect("wait");
    drop(stdin);
    let _ = reader.join();
    let shown = String::from_utf8_lossy(&seen);
    assert!(status.success(), "{shown}");
    assert!(
        !shown.contains("typed-at-a-tty-42"),
        "the password was echoed: {shown}"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = wharf_app::users::UserStore::open(None, dir.path())
            .await
            .expect("store");
        let user = store
            .verify("alice", "typed-at-a-tty-42")
            .await
            .expect("verify");
        assert!(user.is_some(), "the typed password is the stored one");
        store.close().await;
    });
}

/// The JSON lines `wharf client --json` printed, as (kind, data, code).
fn events(output: &Output) -> Vec<(String, String, Option<u64>)> {
    stdout(output)
        .lines()
        .map(|line| {
            let json: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
            assert!(json["timestamp"].is_string(), "{line}");
            (
                json["kind"].as_str().expect("kind").to_owned(),
                json["data"].as_str().expect("data").to_owned(),
                json["code"].as_u64(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sends_prints_each_event_and_says_why_it_failed() {
    let app = common::start("").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_owned();
    let run = move |args: Vec<String>| {
        let data = data.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            wharf(&data, &args, "")
        })
    };
    let args = |url: String, extra: &[&str]| {
        let mut args = vec!["client".to_owned(), url, "--timeout".into(), "5".into()];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    // The echo comes back, then the client closes with 1000 and the server answers.
    let echo = format!("ws://{}/echo", app.ws);
    let out = run(args(
        echo.clone(),
        &[
            "--send", "hello", "--send", "again", "--expect", "2", "--json",
        ],
    ))
    .await
    .expect("run");
    assert!(out.status.success(), "{out:?}");
    let expected: Vec<(String, String, Option<u64>)> = [
        ("open", "", None),
        ("text", "hello", None),
        ("text", "again", None),
        ("close", "", Some(1000)),
    ]
    .into_iter()
    .map(|(kind, data, code)| (kind.to_owned(), data.to_owned(), code))
    .collect();
    assert_eq!(events(&out), expected);
    // Refused: exit 3 with the status and the server's JSON body.
    let out = run(args(
        format!("ws://{}/nope", app.ws),
        &["--send", "x", "--json"],
    ))
    .await
    .expect("run");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let refused = events(&out);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        (refused[0].0.as_str(), refused[0].2),
        ("refused", Some(404))
    );
    assert!(refused[0].1.contains("\"error\""), "{refused:?}");
    // A bad header: exit 2 and the reason, before any connection.
    let out = run(args(echo, &["-H", "no colon", "--send", "x"]))
        .await
        .expect("run");
    assert_fails(&out, 2, "expected `Name: value`");
}
