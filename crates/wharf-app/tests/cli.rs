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
