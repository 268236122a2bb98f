//! `wharf serve`: load the config, open the users store and the token keys, build the
//! servers, run until SIGINT/SIGTERM.

use std::path::Path;
use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tracing::{info, warn};

use crate::config::AppConfig;
use crate::setup::{is_config_error, open_store, open_tokens};
use crate::users::UserStore;

/// Exit code for an unusable configuration.
pub const EXIT_CONFIG: u8 = 2;

/// The account `--create-demo-user` creates.
pub const DEMO_ACCOUNT: &str = "demo";

/// Runs `wharf serve` and returns the process exit code.
pub async fn run(
    config_path: Option<&Path>,
    create_demo_user: bool,
    allow_local_only: bool,
) -> ExitCode {
    let mut config = match AppConfig::load(config_path, |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("wharf: bad configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    config.server.cluster.allow_local_only |= allow_local_only;
    let store = match open_store(&config).await {
        Ok(store) => store,
        Err(e) => {
            eprintln!("wharf: users store: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tokens = match open_tokens(&config) {
        Ok(tokens) => tokens,
        Err(e) if is_config_error(&e) => {
            eprintln!("wharf: bad configuration: [jwt]: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => {
            eprintln!("wharf: JWT keys: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = first_start(&store, create_demo_user).await {
        eprintln!("wharf: users store: {e}");
        return ExitCode::FAILURE;
    }
    if !config.auth.enabled {
        warn!("handshake auth is off (auth.enabled = false or JWT_OPEN=false)");
    }
    let bound = match crate::app::bind(&config, store, tokens).await {
        Ok(bound) => bound,
        Err(wharf::Error::Config(e)) => {
            eprintln!("wharf: bad configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => {
            eprintln!("wharf: {e}");
            return ExitCode::FAILURE;
        }
    };
    match bound.serve(wharf::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wharf: {e}");
            ExitCode::FAILURE
        }
    }
}

/// With no users: create `demo` with a random password (printed once) when asked,
/// else say how to add one. There is never a default password.
async fn first_start(
    store: &UserStore,
    create_demo_user: bool,
) -> Result<(), crate::users::StoreError> {
    if create_demo_user {
        if store.find_by_account(DEMO_ACCOUNT).await?.is_some() {
            info!("user `{DEMO_ACCOUNT}` exists already; its password is unchanged");
            return Ok(());
        }
        let password = random_password()?;
        store.add(DEMO_ACCOUNT, &password).await?;
        // Printed once, not logged: log files outlive terminals.
        println!("created user `{DEMO_ACCOUNT}` with password: {password}");
        return Ok(());
    }
    if store.count().await? == 0 {
        warn!(
            "no users yet: add one with `wharf user add <account>` (password on stdin), or start with --create-demo-user"
        );
    }
    Ok(())
}

/// 18 random bytes as 24 URL-safe characters.
pub fn random_password() -> Result<String, crate::users::StoreError> {
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes).map_err(|e| crate::users::StoreError::Hash(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}
