//! The `wharf user`, `wharf token` and `wharf upgrade` commands.
//!
//! They read the same configuration as `wharf serve` (file, `DATABASE_URL`,
//! `WHARF_DATA_DIR`, `JWT_SECRET`) so they act on the store and keys the server uses.
//! Results go to stdout; logs and errors to stderr.

pub mod token;
pub mod upgrade;
pub mod user;

use std::path::Path;
use std::process::ExitCode;

use crate::config::AppConfig;
use crate::serve::EXIT_CONFIG;
use crate::users::UserStore;

/// Loads the config with the environment, or the exit code to return.
fn load(config_path: Option<&Path>) -> Result<AppConfig, ExitCode> {
    AppConfig::load(config_path, |name| std::env::var(name).ok()).map_err(|e| {
        eprintln!("wharf: bad configuration: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Opens the users store, or the exit code to return.
async fn store(config: &AppConfig) -> Result<UserStore, ExitCode> {
    crate::setup::open_store(config).await.map_err(|e| {
        eprintln!("wharf: users store: {e}");
        ExitCode::FAILURE
    })
}

/// Loads the config and opens the users store, or the exit code to return.
async fn open(config_path: Option<&Path>) -> Result<(AppConfig, UserStore), ExitCode> {
    let config = load(config_path)?;
    let store = store(&config).await?;
    Ok((config, store))
}

/// Prints `message` as an error and returns exit code 1.
fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("wharf: {message}");
    ExitCode::FAILURE
}
