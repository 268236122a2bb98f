//! The users store: accounts with Argon2id password hashes, over SQL.
//!
//! One code path serves three backends: a SQLite file (the default, created and
//! migrated on first start), PostgreSQL and MySQL/MariaDB, chosen by the
//! database URL. The store keeps a typed pool per backend and picks the
//! placeholder style each needs (`$1` for SQLite and PostgreSQL, `?` for MySQL).
//!
//! Table `users`: `id` (auto-increment primary key), `account` (unique,
//! compared case-sensitively on every backend), `password_hash` (a PHC string)
//! and `created_at` (Unix seconds, UTC). Migrations are tracked in
//! `wharf_migrations` and run on every connect; they are idempotent and
//! serialised between processes (an immediate transaction on SQLite, an
//! advisory lock on PostgreSQL, a named lock on MySQL).
//!
//! ```no_run
//! # async fn demo() -> Result<(), wharf_app::users::StoreError> {
//! use wharf_app::users::UserStore;
//! let store = UserStore::open_default(std::path::Path::new("data")).await?;
//! let alice = store.add("alice", "correct horse").await?;
//! assert_eq!(store.verify("alice", "correct horse").await?, Some(alice));
//! # Ok(()) }
//! ```

mod password;
mod sql;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::Connection;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use self::sql::{MIGRATIONS, Query};

/// Name of the SQLite file that [`UserStore::open_default`] uses in the data directory.
pub const DEFAULT_DB_FILE: &str = "wharf.db";

/// Longest account name, in characters.
pub const MAX_ACCOUNT_LEN: usize = 64;

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Longest accepted password, in characters (bounds the work a login request can cause).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// How long to wait for a database connection before giving up.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a SQLite file's connection stays open unused. sqlx runs each on a thread of its
/// own, and while a process has more than one thread every socket call of every connection
/// costs more, in libc and in the kernel (docs/decisions.md, "One thread, and system calls
/// without libc's cancellation points"); reopening costs far less than a login's hash.
const SQLITE_IDLE: Duration = Duration::from_secs(1);

/// A user account as stored (the password hash never leaves the store).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct User {
    /// Database id (auto-increment, never reused on SQLite; positive).
    pub id: i64,
    /// Account name: 1-64 characters of `[A-Za-z0-9_.@-]`.
    pub account: String,
    /// Creation time, Unix seconds (UTC).
    pub created_at: i64,
}

/// The SQL backend a [`UserStore`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// A SQLite file (or `sqlite::memory:`).
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    MySql,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
            Backend::MySql => "MySQL/MariaDB",
        })
    }
}

/// Errors of the users store. Messages never contain passwords or the
/// database URL (which may carry one).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The account name is not 1-64 characters of `[A-Za-z0-9_.@-]`.
    /// Caller: show the message to the user and ask for another name (HTTP 400).
    #[error("invalid account name: {0}")]
    InvalidAccount(String),

    /// The password is shorter than 8 characters or longer than 1024.
    /// Caller: show the message and ask for another password (HTTP 400).
    #[error("invalid password: {0}")]
    InvalidPassword(String),

    /// An account with this name already exists.
    /// Caller: pick another name or remove the existing account first (HTTP 409).
    #[error("account {0:?} already exists")]
    DuplicateAccount(String),

    /// The database URL names no supported backend.
    /// Caller: fix `DATABASE_URL` (`sqlite:`, `postgres://`, `postgresql://`,
    /// `mysql://` or `mariadb://`).
    #[error(
        "unsupported database URL scheme {scheme:?}: expected sqlite:, postgres://, postgresql://, mysql:// or mariadb://"
    )]
    UnsupportedUrl {
        /// The scheme found (text before the first `:`).
        scheme: String,
    },

    /// The database URL could not be parsed.
    /// Caller: fix `DATABASE_URL` (percent-encode special characters in the password).
    #[error("invalid {backend} database URL: {source}")]
    InvalidUrl {
        /// Backend the scheme selected.
        backend: Backend,
        /// Parser error.
        #[source]
        source: sqlx::Error,
    },

    /// The data directory could not be created.
    /// Caller: check the path and its permissions, or pass another `--data-dir`.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// No connection could be made.
    /// Caller: check that the server runs and that the URL's host, port, user,
    /// password and database are right (for SQLite: that the file is writable).
    #[error("cannot connect to the {backend} database: {source}")]
    Connect {
        /// Backend tried.
        backend: Backend,
        /// Driver error.
        #[source]
        source: sqlx::Error,
    },

    /// A migration failed (version 0: the bookkeeping table or lock).
    /// Caller: fix the cause shown (permissions, disk space, a conflicting
    /// `users` table) and start again; migrations are idempotent.
    #[error("database migration {version} failed: {source}")]
    Migrate {
        /// The migration's version; 0 for the bookkeeping around them.
        version: i64,
        /// Driver error.
        #[source]
        source: sqlx::Error,
    },

    /// Another process held the migration lock for over 60 seconds.
    /// Caller: look for a stuck `wharf` process on the same database and retry.
    #[error("timed out waiting for the database migration lock")]
    MigrationLock,

    /// A query failed (connection lost, database locked or full, ...).
    /// Caller: log it and answer 500 / exit non-zero; retrying later may work.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),

    /// Password hashing could not run (no OS randomness, the worker panicked).
    /// Caller: log it and answer 500; it is not the user's fault.
    #[error("password hashing failed: {0}")]
    Hash(String),

    /// A stored password hash is not a valid Argon2 PHC string.
    /// Caller: log it; reset that account's password (remove and add it again).
    #[error("stored password hash is unreadable: {0}")]
    CorruptHash(String),
}

/// A typed pool per backend; the queries are the same, the placeholders differ.
#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// Runs `$body` with `$pool` bound to the backend's pool and `$sql` to the
/// query text in that backend's placeholder style.
macro_rules! with_pool {
    ($store:expr, $query:expr, |$pool:ident, $sql:ident| $body:expr) => {{
        let query: &Query = &$query;
        match &$store.pool {
            Pool::Sqlite($pool) => {
                let $sql: &'static str = query.dollar;
                $body
            }
            Pool::Postgres($pool) => {
                let $sql: &'static str = query.dollar;
                $body
            }
            Pool::MySql($pool) => {
                let $sql: &'static str = query.qmark;
                $body
            }
        }
    }};
}

/// The users store. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct UserStore {
    pool: Pool,
}

impl fmt::Debug for UserStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserStore")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

type UserRow = (i64, String, i64);

fn user_from_row((id, account, created_at): UserRow) -> User {
    User {
        id,
        account,
        created_at,
    }
}

impl UserStore {
    /// Connects to the database at `url` and runs the migrations.
    ///
    /// `sqlite:path/to/file.db` (created if missing, WAL mode), `sqlite::memory:`
    /// (one connection, gone at close), `postgres://` / `postgresql://`,
    /// `mysql://` / `mariadb://`. Connections are plain TCP (no TLS).
    pub async fn connect(url: &str) -> Result<UserStore, StoreError> {
        let scheme = url
            .split_once(':')
            .map(|(scheme, _)| scheme.to_ascii_lowercase())
            .unwrap_or_default();
        let store = match scheme.as_str() {
            "sqlite" => {
                let options = SqliteConnectOptions::from_str(url).map_err(|source| {
                    StoreError::InvalidUrl {
                        backend: Backend::Sqlite,
                        source,
                    }
                })?;
                let in_memory = url.contains(":memory:") || url.contains("mode=memory");
                Self::connect_sqlite(options, in_memory).await?
            }
            "postgres" | "postgresql" => {
                let options =
                    PgConnectOptions::from_str(url).map_err(|source| StoreError::InvalidUrl {
                        backend: Backend::Postgres,
                        source,
                    })?;
                let pool = PgPoolOptions::new()
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(|source| StoreError::Connect {
                        backend: Backend::Postgres,
                        source,
                    })?;
                UserStore {
                    pool: Pool::Postgres(pool),
                }
            }
            "mysql" | "mariadb" => {
                let url = match url.get(..8) {
                    Some(prefix) if prefix.eq_ignore_ascii_case("mariadb:") => {
                        format!("mysql:{}", url.get(8..).unwrap_or_default())
                    }
                    _ => url.to_owned(),
                };
                let options = MySqlConnectOptions::from_str(&url).map_err(|source| {
                    StoreError::InvalidUrl {
                        backend: Backend::MySql,
                        source,
                    }
                })?;
                let pool = MySqlPoolOptions::new()
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(|source| StoreError::Connect {
                        backend: Backend::MySql,
                        source,
                    })?;
                UserStore {
                    pool: Pool::MySql(pool),
                }
            }
            _ => return Err(StoreError::UnsupportedUrl { scheme }),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Opens (creating if missing) the SQLite file [`DEFAULT_DB_FILE`] in
    /// `data_dir` (created too if missing), in WAL mode, and runs the migrations.
    pub async fn open_default(data_dir: &Path) -> Result<UserStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let options = SqliteConnectOptions::new().filename(data_dir.join(DEFAULT_DB_FILE));
        let store = Self::connect_sqlite(options, false).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// [`connect`](Self::connect) to `database_url` when one is given (e.g.
    /// from `DATABASE_URL`), otherwise [`open_default`](Self::open_default).
    pub async fn open(
        database_url: Option<&str>,
        data_dir: &Path,
    ) -> Result<UserStore, StoreError> {
        match database_url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => Self::connect(url).await,
            None => Self::open_default(data_dir).await,
        }
    }

    async fn connect_sqlite(
        options: SqliteConnectOptions,
        in_memory: bool,
    ) -> Result<UserStore, StoreError> {
        let mut pool_options = SqlitePoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
        let options = if in_memory {
            // Every connection to `:memory:` is its own database: keep exactly one, forever.
            pool_options = pool_options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
            options
        } else {
            // Every SQLite connection is a thread of sqlx's: close the unused ones soon.
            pool_options = pool_options
                .min_connections(0)
                .idle_timeout(Some(SQLITE_IDLE));
            options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
        };
        let pool =
            pool_options
                .connect_with(options)
                .await
                .map_err(|source| StoreError::Connect {
                    backend: Backend::Sqlite,
                    source,
                })?;
        Ok(UserStore {
            pool: Pool::Sqlite(pool),
        })
    }

    /// Which backend this store uses.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
            Pool::MySql(_) => Backend::MySql,
        }
    }

    /// Applies the migrations not yet applied. Runs on connect already;
    /// calling it again is harmless.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => migrate_sqlite(pool).await,
            Pool::Postgres(pool) => migrate_postgres(pool).await,
            Pool::MySql(pool) => migrate_mysql(pool).await,
        }
    }

    /// Closes every connection; later calls on any clone fail.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
            Pool::MySql(pool) => pool.close().await,
        }
    }

    /// Creates an account. Fails with [`StoreError::InvalidAccount`],
    /// [`StoreError::InvalidPassword`] or [`StoreError::DuplicateAccount`].
    pub async fn add(&self, account: &str, password: &str) -> Result<User, StoreError> {
        validate_account(account)?;
        validate_password(password)?;
        // Cheap early answer for the common duplicate case (the UNIQUE
        // constraint still decides races), before spending a hash on it.
        if self.find_by_account(account).await?.is_some() {
            return Err(StoreError::DuplicateAccount(account.to_owned()));
        }
        let hash = password::hash(password.to_owned()).await?;
        let now = unix_now();
        let inserted = with_pool!(self, sql::INSERT_USER, |pool, q| {
            sqlx::query(q)
                .bind(account)
                .bind(&hash)
                .bind(now)
                .execute(pool)
                .await
                .map(drop)
        });
        match inserted {
            Ok(()) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::DuplicateAccount(account.to_owned()));
            }
            Err(e) => return Err(StoreError::Database(e)),
        }
        self.find_by_account(account)
            .await?
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// All accounts, by id.
    pub async fn list(&self) -> Result<Vec<User>, StoreError> {
        let rows: Vec<UserRow> = with_pool!(self, sql::LIST_USERS, |pool, q| {
            sqlx::query_as(q).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(user_from_row).collect())
    }

    /// Removes an account; `true` if it existed.
    pub async fn remove(&self, account: &str) -> Result<bool, StoreError> {
        let affected = with_pool!(self, sql::DELETE_BY_ACCOUNT, |pool, q| {
            sqlx::query(q)
                .bind(account)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(affected > 0)
    }

    /// The account with this name, if any (exact, case-sensitive match).
    pub async fn find_by_account(&self, account: &str) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = with_pool!(self, sql::USER_BY_ACCOUNT, |pool, q| {
            sqlx::query_as(q).bind(account).fetch_optional(pool).await?
        });
        Ok(row.map(user_from_row))
    }

    /// The account with this id, if any.
    pub async fn find_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = with_pool!(self, sql::USER_BY_ID, |pool, q| {
            sqlx::query_as(q).bind(id).fetch_optional(pool).await?
        });
        Ok(row.map(user_from_row))
    }

    /// The account name of this id, if any (the seed's
    /// `Users::query()->where(['id' => $uid])->value('account')`).
    pub async fn account_by_id(&self, id: i64) -> Result<Option<String>, StoreError> {
        let account: Option<String> = with_pool!(self, sql::ACCOUNT_BY_ID, |pool, q| {
            sqlx::query_scalar(q).bind(id).fetch_optional(pool).await?
        });
        Ok(account)
    }

    /// Checks a login. `Some(user)` when the account exists and the password
    /// matches, `None` otherwise. An unknown account still costs one Argon2
    /// verification, so timing does not tell which accounts exist.
    pub async fn verify(&self, account: &str, password: &str) -> Result<Option<User>, StoreError> {
        if validate_account(account).is_err() || password.chars().count() > MAX_PASSWORD_LEN {
            // No such account can exist; nothing to hide.
            return Ok(None);
        }
        let row: Option<(i64, String, i64, String)> =
            with_pool!(self, sql::LOGIN_BY_ACCOUNT, |pool, q| {
                sqlx::query_as(q).bind(account).fetch_optional(pool).await?
            });
        match row {
            Some((id, account, created_at, hash)) => {
                if password::verify(password.to_owned(), Some(hash)).await? {
                    Ok(Some(User {
                        id,
                        account,
                        created_at,
                    }))
                } else {
                    Ok(None)
                }
            }
            None => {
                password::verify(password.to_owned(), None).await?;
                Ok(None)
            }
        }
    }

    /// Number of accounts.
    pub async fn count(&self) -> Result<i64, StoreError> {
        let n: i64 = with_pool!(self, sql::COUNT_USERS, |pool, q| {
            sqlx::query_scalar(q).fetch_one(pool).await?
        });
        Ok(n)
    }
}

/// Checks an account name: 1-64 characters of `[A-Za-z0-9_.@-]`.
pub fn validate_account(account: &str) -> Result<(), StoreError> {
    if account.is_empty() {
        return Err(StoreError::InvalidAccount("must not be empty".into()));
    }
    if account.len() > MAX_ACCOUNT_LEN {
        return Err(StoreError::InvalidAccount(format!(
            "at most {MAX_ACCOUNT_LEN} characters"
        )));
    }
    if let Some(bad) = account
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-')))
    {
        return Err(StoreError::InvalidAccount(format!(
            "character {bad:?} not allowed (use A-Z, a-z, 0-9, '_', '.', '@', '-')"
        )));
    }
    Ok(())
}

/// Checks a new password: 8 to 1024 characters.
pub fn validate_password(password: &str) -> Result<(), StoreError> {
    let len = password.chars().count();
    if len < MIN_PASSWORD_LEN {
        return Err(StoreError::InvalidPassword(format!(
            "at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if len > MAX_PASSWORD_LEN {
        return Err(StoreError::InvalidPassword(format!(
            "at most {MAX_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|db| db.is_unique_violation())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn migrate_err(version: i64) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Migrate { version, source }
}

/// Applies the migrations missing from the bookkeeping table, using the
/// connection or transaction `$conn` (already locked by the caller), the DDL
/// list `$ddl` of each migration and the bookkeeping insert `$record`.
macro_rules! apply_missing {
    ($conn:expr, $ddl:ident, $record:expr) => {{
        sqlx::query(sql::CREATE_MIGRATIONS_TABLE)
            .execute(&mut *$conn)
            .await
            .map_err(migrate_err(0))?;
        let applied: Vec<i64> = sqlx::query_scalar(sql::APPLIED_VERSIONS)
            .fetch_all(&mut *$conn)
            .await
            .map_err(migrate_err(0))?;
        for migration in MIGRATIONS {
            if applied.contains(&migration.version) {
                continue;
            }
            for statement in migration.$ddl {
                sqlx::query(*statement)
                    .execute(&mut *$conn)
                    .await
                    .map_err(migrate_err(migration.version))?;
            }
            sqlx::query($record)
                .bind(migration.version)
                .bind(migration.description)
                .bind(unix_now())
                .execute(&mut *$conn)
                .await
                .map_err(migrate_err(migration.version))?;
            tracing::info!(
                version = migration.version,
                description = migration.description,
                "applied database migration"
            );
        }
        Ok::<(), StoreError>(())
    }};
}

async fn migrate_sqlite(pool: &SqlitePool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await.map_err(migrate_err(0))?;
    // IMMEDIATE takes the write lock up front: a second process waits (busy
    // timeout) instead of failing to upgrade a read transaction.
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(migrate_err(0))?;
    apply_missing!(tx, sqlite, sql::RECORD_MIGRATION.dollar)?;
    tx.commit().await.map_err(migrate_err(0))
}

async fn migrate_postgres(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(migrate_err(0))?;
    // Held until commit/rollback; advisory locks are per database.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(sql::PG_MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(migrate_err(0))?;
    apply_missing!(tx, postgres, sql::RECORD_MIGRATION.dollar)?;
    tx.commit().await.map_err(migrate_err(0))
}

async fn migrate_mysql(pool: &MySqlPool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await.map_err(migrate_err(0))?;
    let locked: Option<i64> = sqlx::query_scalar(sql::MYSQL_GET_LOCK)
        .fetch_one(&mut *conn)
        .await
        .map_err(migrate_err(0))?;
    if locked != Some(1) {
        return Err(StoreError::MigrationLock);
    }
    // MySQL commits DDL implicitly, so no transaction: the named lock
    // serialises processes and every statement is idempotent.
    let result = async { apply_missing!(conn, mysql, sql::RECORD_MIGRATION.qmark) }.await;
    let released: Result<Option<i64>, sqlx::Error> = sqlx::query_scalar(sql::MYSQL_RELEASE_LOCK)
        .fetch_one(&mut *conn)
        .await;
    if released.is_err() {
        // The lock lives as long as the session: do not return it to the pool.
        drop(conn.detach());
    }
    result
}
