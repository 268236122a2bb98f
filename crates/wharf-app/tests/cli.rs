//! The built binary: `user add|list|remove`, `token`, and a bad config file.

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

#[test]
fn users_and_tokens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let added = wharf(&data, &["user", "add", "alice"], "secret-password\n");
    assert!(added.status.success(), "{added:?}");
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

    let missing = wharf(&data, &["token", "nobody"], "");
    assert_eq!(missing.status.code(), Some(1));

    let removed = wharf(&data, &["user", "remove", "alice"], "");
    assert!(removed.status.success(), "{removed:?}");
    let listed = wharf(&data, &["user", "list"], "");
    assert!(!stdout(&listed).contains("alice"));
    let again = wharf(&data, &["user", "remove", "alice"], "");
    assert_eq!(again.status.code(), Some(1));
}

#[test]
fn empty_password_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = wharf(dir.path(), &["user", "add", "alice"], "");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn bad_config_exits_2_and_names_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    for text in ["bogus = 1\n", "[auth]\nenabled = \"maybe\"\n"] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, text).expect("write");
        let file = file.to_str().expect("utf-8 path");
        let out = wharf(dir.path(), &["serve", "--config", file], "");
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("bad.toml"), "{stderr}");
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
