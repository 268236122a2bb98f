//! `wharf token ACCOUNT`: prints a token for a stored user.

use std::path::Path;
use std::process::ExitCode;

use super::{fail, load, store};
use crate::serve::EXIT_CONFIG;
use crate::setup::{is_config_error, open_tokens};
use crate::tokens::Grants;

/// Looks `account` up in the store and prints a token for it (with `admin: true` when
/// `admin`, and `grants` instead of the configured `[jwt] rooms`/`publish` when given),
/// signed with the key the server uses.
pub async fn run(
    config_path: Option<&Path>,
    account: &str,
    admin: bool,
    grants: Option<Grants>,
) -> ExitCode {
    let config = match load(config_path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let tokens = match open_tokens(&config) {
        Ok(tokens) => tokens,
        Err(e) if is_config_error(&e) => {
            eprintln!("wharf: bad configuration: [jwt]: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => return fail(format!("JWT keys: {e}")),
    };
    let store = match store(&config).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let user = store.find_by_account(account).await;
    store.close().await;
    let user = match user {
        Ok(Some(user)) => user,
        Ok(None) => {
            return fail(format!(
                "no user {account}; add it with `wharf user add {account}`"
            ));
        }
        Err(e) => return fail(e),
    };
    let subject = (user.id, user.account, admin);
    let issued = match grants {
        Some(grants) => tokens.issue_with(subject, grants),
        None => tokens.issue(subject),
    };
    match issued {
        Ok((token, _exp)) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
