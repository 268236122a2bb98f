//! Argon2id password hashing, always run off the async runtime.

use std::sync::OnceLock;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};

use super::StoreError;

/// Hashes `password` with Argon2id (the crate's recommended parameters) and a
/// random salt; returns the PHC string (`$argon2id$v=19$m=...`).
pub(super) async fn hash(password: String) -> Result<String, StoreError> {
    run_blocking(move || hash_now(&password)).await?
}

/// Verifies `password` against the PHC string `stored`; with `stored == None`
/// it verifies against a fixed dummy hash instead, so that an unknown account
/// costs about as much time as a known one. Returns whether it matched.
pub(super) async fn verify(password: String, stored: Option<String>) -> Result<bool, StoreError> {
    run_blocking(move || {
        let argon2 = Argon2::default();
        match stored {
            Some(stored) => match argon2.verify_password(password.as_bytes(), stored.as_str()) {
                Ok(()) => Ok(true),
                Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
                Err(e) => Err(StoreError::CorruptHash(e.to_string())),
            },
            None => {
                let dummy = dummy_hash()?;
                // The result is irrelevant: this only spends the same time.
                let _ = argon2.verify_password(password.as_bytes(), dummy);
                Ok(false)
            }
        }
    })
    .await?
}

fn hash_now(password: &str) -> Result<String, StoreError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Hash(e.to_string()))
}

/// A hash of a random password with the same parameters as real ones,
/// computed once per process.
fn dummy_hash() -> Result<&'static str, StoreError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h);
    }
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).map_err(|e| StoreError::Hash(e.to_string()))?;
    let password: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let hashed = hash_now(&password)?;
    Ok(DUMMY.get_or_init(|| hashed))
}

async fn run_blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Hash(format!("hashing task failed: {e}")))
}
