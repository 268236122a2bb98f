//! The SQL text of the users store: queries in both placeholder styles and the
//! migrations, one DDL text per dialect.

/// One query in the two placeholder styles: `$1` (SQLite and PostgreSQL) and
/// `?` (MySQL/MariaDB).
pub(super) struct Query {
    /// `$1, $2, ...` placeholders (PostgreSQL; SQLite accepts them too).
    pub(super) dollar: &'static str,
    /// `?` placeholders (MySQL/MariaDB).
    pub(super) qmark: &'static str,
}

pub(super) const INSERT_USER: Query = Query {
    dollar: "INSERT INTO users (account, password_hash, created_at) VALUES ($1, $2, $3)",
    qmark: "INSERT INTO users (account, password_hash, created_at) VALUES (?, ?, ?)",
};

pub(super) const USER_BY_ACCOUNT: Query = Query {
    dollar: "SELECT id, account, created_at FROM users WHERE account = $1",
    qmark: "SELECT id, account, created_at FROM users WHERE account = ?",
};

pub(super) const LOGIN_BY_ACCOUNT: Query = Query {
    dollar: "SELECT id, account, created_at, password_hash FROM users WHERE account = $1",
    qmark: "SELECT id, account, created_at, password_hash FROM users WHERE account = ?",
};

pub(super) const USER_BY_ID: Query = Query {
    dollar: "SELECT id, account, created_at FROM users WHERE id = $1",
    qmark: "SELECT id, account, created_at FROM users WHERE id = ?",
};

pub(super) const ACCOUNT_BY_ID: Query = Query {
    dollar: "SELECT account FROM users WHERE id = $1",
    qmark: "SELECT account FROM users WHERE id = ?",
};

pub(super) const DELETE_BY_ACCOUNT: Query = Query {
    dollar: "DELETE FROM users WHERE account = $1",
    qmark: "DELETE FROM users WHERE account = ?",
};

pub(super) const LIST_USERS: Query = Query {
    dollar: "SELECT id, account, created_at FROM users ORDER BY id",
    qmark: "SELECT id, account, created_at FROM users ORDER BY id",
};

pub(super) const COUNT_USERS: Query = Query {
    dollar: "SELECT COUNT(*) FROM users",
    qmark: "SELECT COUNT(*) FROM users",
};

/// Bookkeeping table: one row per applied migration.
pub(super) const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS wharf_migrations (\
     version BIGINT NOT NULL PRIMARY KEY, \
     description VARCHAR(255) NOT NULL, \
     applied_at BIGINT NOT NULL)";

pub(super) const APPLIED_VERSIONS: &str = "SELECT version FROM wharf_migrations ORDER BY version";

pub(super) const RECORD_MIGRATION: Query = Query {
    dollar: "INSERT INTO wharf_migrations (version, description, applied_at) VALUES ($1, $2, $3)",
    qmark: "INSERT INTO wharf_migrations (version, description, applied_at) VALUES (?, ?, ?)",
};

/// One schema change. The same list runs on every backend; only the DDL
/// dialect differs. Statements must be idempotent (`IF NOT EXISTS`) because
/// MySQL cannot roll back DDL.
pub(super) struct Migration {
    pub(super) version: i64,
    pub(super) description: &'static str,
    pub(super) sqlite: &'static [&'static str],
    pub(super) postgres: &'static [&'static str],
    pub(super) mysql: &'static [&'static str],
}

/// All migrations, in version order.
pub(super) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "create users",
    sqlite: &["CREATE TABLE IF NOT EXISTS users (\
         id INTEGER PRIMARY KEY AUTOINCREMENT, \
         account VARCHAR(64) NOT NULL UNIQUE, \
         password_hash VARCHAR(255) NOT NULL, \
         created_at BIGINT NOT NULL)"],
    postgres: &["CREATE TABLE IF NOT EXISTS users (\
         id BIGSERIAL PRIMARY KEY, \
         account VARCHAR(64) NOT NULL UNIQUE, \
         password_hash VARCHAR(255) NOT NULL, \
         created_at BIGINT NOT NULL)"],
    // Binary collation: accounts compare case-sensitively, as on SQLite and PostgreSQL.
    mysql: &["CREATE TABLE IF NOT EXISTS users (\
         id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, \
         account VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, \
         password_hash VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, \
         created_at BIGINT NOT NULL, \
         UNIQUE KEY users_account_key (account)\
         ) ENGINE=InnoDB"],
}];

/// PostgreSQL advisory lock key that serialises migrations ("wharfmig" in ASCII).
pub(super) const PG_MIGRATION_LOCK: i64 = 0x7768_6172_666d_6967;

/// MySQL named lock (scoped by database name) that serialises migrations; the
/// result is cast so that it decodes as `i64` (1 = acquired).
pub(super) const MYSQL_GET_LOCK: &str =
    "SELECT CAST(GET_LOCK(CONCAT('wharf_migrate:', MD5(IFNULL(DATABASE(), ''))), 60) AS SIGNED)";
pub(super) const MYSQL_RELEASE_LOCK: &str =
    "SELECT CAST(RELEASE_LOCK(CONCAT('wharf_migrate:', MD5(IFNULL(DATABASE(), '')))) AS SIGNED)";
