//! What every command needs from the config: the users store and the token keys.

use std::sync::Arc;

use tracing::info;

use crate::config::AppConfig;
use crate::tokens::{SecretError, SecretSource, Tokens};
use crate::users::{StoreError, UserStore};

/// Opens the users store: `database.url` (`DATABASE_URL`) if set, else the SQLite
/// file `wharf.db` in the data directory (created with the directory if missing).
pub async fn open_store(config: &AppConfig) -> Result<UserStore, StoreError> {
    UserStore::open(config.database.url.as_deref(), &config.data_dir()).await
}

/// Builds the token keys: `JWT_SECRET`, else `[jwt] secret`, else the secret file in
/// the data directory (generated on the first start; logged when it is).
pub fn open_tokens(config: &AppConfig) -> Result<Arc<Tokens>, SecretError> {
    let (tokens, source) = Tokens::from_config(&config.jwt, None, &config.data_dir())?;
    match source {
        Some(SecretSource::Generated(path)) => info!(
            path = %path.display(),
            "generated a new JWT secret (set JWT_SECRET or [jwt] secret to choose one)"
        ),
        Some(SecretSource::Loaded(path)) => {
            info!(path = %path.display(), "JWT secret read from the data directory");
        }
        _ => {}
    }
    Ok(Arc::new(tokens))
}

/// Whether a key error is the operator's configuration (exit 2) rather than the
/// machine (I/O, randomness; exit 1).
pub fn is_config_error(error: &SecretError) -> bool {
    !matches!(error, SecretError::Io { .. } | SecretError::Random(_))
}
