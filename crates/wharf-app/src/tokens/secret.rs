//! Where the HS256 secret comes from: configured, or generated once into
//! `<data_dir>/jwt.secret` and read back on later starts.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::JwtAlgorithm;

/// Name of the generated secret file in the data directory.
pub const SECRET_FILE: &str = "jwt.secret";

/// Random bytes in a generated secret (stored as twice as many hex characters).
pub const GENERATED_SECRET_BYTES: usize = 32;

/// A secret file shorter than this (in characters, after trimming) is refused;
/// a configured secret shorter than this is accepted with a warning.
const MIN_FILE_SECRET_LEN: usize = 32;

/// Where [`resolve_secret`] found the secret; tell the operator about
/// [`SecretSource::Generated`] (new tokens are signed with a new key).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretSource {
    /// The caller passed one (config file, `JWT_SECRET`, command line); no file was touched.
    Configured,
    /// Read from the secret file written by an earlier start.
    Loaded(PathBuf),
    /// Generated now and written to this file (mode 0600).
    Generated(PathBuf),
}

/// Errors while setting up token keys: the secret, key files, key configuration.
/// They happen at start-up; the caller should report them and exit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The configured secret is empty.
    /// Caller: set a non-empty `JWT_SECRET` / `[jwt] secret`, or unset it to use the generated file.
    #[error("the configured JWT secret is empty")]
    EmptySecret,

    /// HS256 was chosen but no secret was passed to [`Tokens::new`](super::Tokens::new).
    /// Caller: resolve one with [`resolve_secret`] first (or use [`Tokens::from_config`](super::Tokens::from_config)).
    #[error("HS256 needs a secret and none was given")]
    MissingSecret,

    /// Reading or writing the secret file or a key file failed.
    /// Caller: check the path, its permissions and free space.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The secret file holds fewer than 32 characters.
    /// Caller: fix the file, or delete it to generate a new secret (tokens issued with the old one stop working).
    #[error("{path} holds a secret shorter than 32 characters; delete it to generate a new one")]
    WeakSecretFile {
        /// The secret file.
        path: PathBuf,
    },

    /// The operating system gave no random bytes.
    /// Caller: configure a secret explicitly (`JWT_SECRET`).
    #[error("no OS randomness for a JWT secret: {0}")]
    Random(String),

    /// The algorithm needs a key file that is not configured.
    /// Caller: set `[jwt] public_key_file` (and `private_key_file` to issue tokens).
    #[error("{algorithm} needs `{field}` in [jwt]")]
    MissingKeyFile {
        /// The configured algorithm.
        algorithm: JwtAlgorithm,
        /// The missing configuration field.
        field: &'static str,
    },

    /// A key file is not a PEM key usable with the configured algorithm.
    /// Caller: check the file (PKCS#8 private / SubjectPublicKeyInfo public PEM of
    /// the right key type; `openssl genpkey` and `openssl pkey -pubout` write them).
    #[error("{path} is not a valid {algorithm} key: {reason}")]
    InvalidKey {
        /// The key file.
        path: PathBuf,
        /// The configured algorithm.
        algorithm: JwtAlgorithm,
        /// What the parser said.
        reason: String,
    },

    /// A token signed with the private key does not verify with the public key.
    /// Caller: configure the two halves of the same key pair.
    #[error("private_key_file and public_key_file are not a key pair")]
    KeyMismatch,

    /// The `[jwt]` settings contradict each other.
    /// Caller: fix the configuration as the message says.
    #[error("invalid [jwt] configuration: {0}")]
    Config(String),
}

/// Resolves the HS256 secret.
///
/// A `configured` secret (config or `JWT_SECRET`; the caller decides which
/// wins) is returned as-is and no file is touched. Otherwise
/// `<data_dir>/jwt.secret` is read, or, on the first start, created (with
/// `data_dir` if needed) holding 32 random bytes as 64 hex characters, mode
/// 0600, atomically: written to a temporary file first and then linked into
/// place, so concurrent starts agree on one secret. The returned key is the
/// file's text, so `JWT_SECRET=$(cat data/jwt.secret)` gives another node the
/// same key.
pub fn resolve_secret(
    configured: Option<&str>,
    data_dir: &Path,
) -> Result<(Vec<u8>, SecretSource), SecretError> {
    if let Some(secret) = configured {
        if secret.is_empty() {
            return Err(SecretError::EmptySecret);
        }
        if secret.len() < MIN_FILE_SECRET_LEN {
            tracing::warn!(
                len = secret.len(),
                "the configured JWT secret is shorter than 32 bytes; HS256 tokens are only as strong as it"
            );
        }
        return Ok((secret.as_bytes().to_vec(), SecretSource::Configured));
    }
    let path = data_dir.join(SECRET_FILE);
    match read_secret_file(&path) {
        Ok(secret) => return Ok((secret, SecretSource::Loaded(path))),
        Err(SecretError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::create_dir_all(data_dir).map_err(|source| SecretError::Io {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let mut random = [0u8; GENERATED_SECRET_BYTES];
    getrandom::fill(&mut random).map_err(|e| SecretError::Random(e.to_string()))?;
    let text: String = random.iter().map(|b| format!("{b:02x}")).collect();

    let tmp = data_dir.join(format!(
        ".{SECRET_FILE}.{}.{}.tmp",
        std::process::id(),
        random
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ));
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SecretError::Io { path, source }
    };
    write_private(&tmp, format!("{text}\n").as_bytes()).map_err(io_err(&tmp))?;
    // hard_link fails if the target exists: a concurrent start that won the
    // race keeps its secret and we read it. rename is the fallback for file
    // systems without hard links.
    let placed = match fs::hard_link(&tmp, &path) {
        Ok(()) => {
            let _ = fs::remove_file(&tmp);
            true
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let _ = fs::remove_file(&tmp);
            false
        }
        Err(_) => {
            fs::rename(&tmp, &path).map_err(|source| {
                let _ = fs::remove_file(&tmp);
                SecretError::Io {
                    path: path.clone(),
                    source,
                }
            })?;
            true
        }
    };
    if !placed {
        let secret = read_secret_file(&path)?;
        return Ok((secret, SecretSource::Loaded(path)));
    }
    // Make the new directory entry durable (best effort).
    if let Ok(dir) = fs::File::open(data_dir) {
        let _ = dir.sync_all();
    }
    Ok((text.into_bytes(), SecretSource::Generated(path)))
}

fn read_secret_file(path: &Path) -> Result<Vec<u8>, SecretError> {
    let text = fs::read_to_string(path).map_err(|source| SecretError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let secret = text.trim();
    if secret.len() < MIN_FILE_SECRET_LEN {
        return Err(SecretError::WeakSecretFile {
            path: path.to_path_buf(),
        });
    }
    warn_if_readable_by_others(path);
    Ok(secret.as_bytes().to_vec())
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{mode:o}"),
                "JWT secret file is accessible to other users; chmod 600 it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// Creates `path` (which must not exist) readable by the owner only, writes
/// `bytes` and flushes them to disk.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if written.is_err() {
        drop(file);
        let _ = fs::remove_file(path);
    }
    written
}
