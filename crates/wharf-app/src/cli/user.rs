//! `wharf user add|list|remove`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use super::{fail, open};

/// `wharf user add ACCOUNT`: the password is one line read from stdin; when stdin is a
/// terminal, it is asked for at a prompt that does not echo what is typed.
pub async fn add(config_path: Option<&Path>, account: &str) -> ExitCode {
    let password = match read_password(account) {
        Ok(password) => password,
        Err(e) => return fail(format!("cannot read the password from stdin: {e}")),
    };
    if password.is_empty() {
        return fail(
            "no password given: write it on stdin, e.g. `echo 'secret-password' | wharf user add alice`",
        );
    }
    let (_, store) = match open(config_path).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let result = store.add(account, &password).await;
    store.close().await;
    match result {
        Ok(user) => {
            println!("added user {} (id {})", user.account, user.id);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `wharf user list`: one line per user, `id<TAB>account<TAB>created_at`.
pub async fn list(config_path: Option<&Path>) -> ExitCode {
    let (_, store) = match open(config_path).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let result = store.list().await;
    store.close().await;
    match result {
        Ok(users) => {
            let mut out = std::io::stdout().lock();
            for user in users {
                if writeln!(out, "{}\t{}\t{}", user.id, user.account, user.created_at).is_err() {
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `wharf user remove ACCOUNT`: exit 1 when there is no such user.
pub async fn remove(config_path: Option<&Path>, account: &str) -> ExitCode {
    let (_, store) = match open(config_path).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let result = store.remove(account).await;
    store.close().await;
    match result {
        Ok(true) => {
            println!("removed user {account}");
            ExitCode::SUCCESS
        }
        Ok(false) => fail(format!("no user {account}")),
        Err(e) => fail(e),
    }
}

/// One line from stdin without its line ending: at a terminal through a prompt with echo
/// off (`rpassword`), else (a pipe, a file) as is.
fn read_password(account: &str) -> std::io::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return rpassword::prompt_password(format!("password for {account} (not shown): "));
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
