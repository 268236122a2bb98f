//! `wharf serve`: load the config, open the users store and the token keys, build the
//! servers, run until SIGINT/SIGTERM.

use std::path::Path;
use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tracing::{info, warn};

use crate::app::AppParts;
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
    // Everything that can be wrong in the config is found before any file is created.
    let parts = match AppParts::of(&config).and_then(|parts| {
        check_tokens(&config).map_err(|e| format!("[jwt]: {e}"))?;
        Ok(parts)
    }) {
        Ok(parts) => parts,
        Err(e) => {
            eprintln!("wharf: bad configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    log_parts(&config, parts);
    if !parts.any() {
        return match crate::app::bind_core(&config).await {
            Ok(bound) => serve(bound).await,
            Err(e) => bind_failed(&e),
        };
    }
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
    match crate::app::bind(&config, store, tokens).await {
        Ok(bound) => serve(bound).await,
        Err(e) => bind_failed(&e),
    }
}

async fn serve(bound: wharf::BoundServer) -> ExitCode {
    match bound.serve(wharf::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wharf: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bind_failed(error: &wharf::Error) -> ExitCode {
    if let wharf::Error::Config(e) = error {
        eprintln!("wharf: bad configuration: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    eprintln!("wharf: {error}");
    ExitCode::FAILURE
}

/// One line per half of the app that is off, naming the setting that brings it back.
fn log_parts(config: &AppConfig, parts: AppParts) {
    if !parts.http {
        info!(
            "no http server called `{}`: the app's login, API, pages and /metrics are off; \
             add an http server with that name (or set app.http_server to one) to serve them",
            config.app.http_server
        );
    }
    if !parts.ws {
        info!(
            "no websocket server called `{}`: /wss/demo, /wss/rooms/{{room}} and \
             /wss/admin/feed are off; add one with that name (or set app.ws_server) to serve them",
            config.app.ws_server
        );
    }
}

/// Checks the `[jwt]` settings as [`open_tokens`] will use them, without reading or writing
/// the secret file (a stand-in secret of the generated length is used when none is set).
fn check_tokens(config: &AppConfig) -> Result<(), crate::tokens::SecretError> {
    if !config.jwt.algorithm.is_symmetric() {
        return crate::tokens::Tokens::new(&config.jwt, None).map(drop);
    }
    match config.jwt.secret.as_deref() {
        Some("") => Err(crate::tokens::SecretError::EmptySecret),
        Some(secret) => crate::tokens::Tokens::new(&config.jwt, Some(secret.as_bytes())).map(drop),
        None => crate::tokens::Tokens::new(&config.jwt, Some(&[0x5a; 32])).map(drop),
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
