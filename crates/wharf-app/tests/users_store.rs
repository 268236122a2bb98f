//! The users store against real databases: a SQLite file in a temporary
//! directory, the running PostgreSQL and the running MariaDB/MySQL.
//!
//! Every scenario runs once per backend. Each PostgreSQL/MySQL test creates
//! its own database (`wharf_test_<random>`) and drops it at the end, so tests
//! can run in parallel (one process each under nextest) on one server.
//! An unreachable server fails the test with the command that starts it.

use std::future::Future;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;
use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;
use wharf_app::users::{Backend, StoreError, UserStore};

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";
const POSTGRES_START: &str =
    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start";
const MYSQL_START: &str =
    "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd";

#[derive(Debug, Clone, Copy)]
enum Service {
    Sqlite,
    Postgres,
    MySql,
}

/// What a scenario gets: a migrated store and the URL it was opened with.
struct Ctx {
    store: UserStore,
    url: String,
    /// The data directory (SQLite only).
    data_dir: Option<PathBuf>,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("OS randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `scheme://user@host:port/db?query` with the database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{db}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// The URL with any password replaced by `***`.
fn redact(url: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[authority_start..]
        .find('/')
        .map_or(url.len(), |i| authority_start + i);
    let authority = &url[authority_start..authority_end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!(
                "{}{user}:***@{host}{}",
                &url[..authority_start],
                &url[authority_end..]
            ),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn unreachable(
    service: &str,
    url_var: &str,
    url: &str,
    err: &dyn std::fmt::Display,
    start: &str,
) -> ! {
    let url = redact(url);
    panic!(
        "{service} is not reachable at {url} (set {url_var} to change it): {err}\n\
         start it with: {start}"
    )
}

/// Why a scenario did not pass.
enum Failure {
    /// The scenario panicked (its message is already printed).
    Panic(Box<dyn std::any::Any + Send>),
    /// Setup failed.
    Setup(String),
}

/// Runs `scenario` in its own task (so that a panic still lets us clean up).
async fn run_scenario<F, Fut>(
    connected: Result<UserStore, StoreError>,
    backend: Backend,
    url: String,
    data_dir: Option<PathBuf>,
    scenario: F,
) -> Result<(), Failure>
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let store =
        connected.map_err(|e| Failure::Setup(format!("opening the {backend} store: {e}")))?;
    assert_eq!(store.backend(), backend);
    let ctx = Ctx {
        store: store.clone(),
        url,
        data_dir,
    };
    let outcome = tokio::spawn(scenario(ctx)).await;
    store.close().await;
    outcome.map_err(|e| Failure::Panic(e.into_panic()))
}

/// Sets up `service`, runs `scenario` on it, cleans up (also when the
/// scenario panics) and then fails the test if the scenario did.
async fn run<F, Fut>(service: Service, scenario: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let outcome = match service {
        Service::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let data_dir = dir.path().join("data");
            // open_default creates the missing data directory and the file.
            let connected = UserStore::open_default(&data_dir).await;
            let db_file = data_dir.join(wharf_app::users::DEFAULT_DB_FILE);
            if connected.is_ok() {
                assert!(db_file.is_file(), "{} not created", db_file.display());
            }
            let url = format!("sqlite://{}", db_file.display());
            run_scenario(connected, Backend::Sqlite, url, Some(data_dir), scenario).await
        }
        Service::Postgres => {
            let base = env_or("WHARF_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL);
            let mut admin = match PgConnection::connect(&base).await {
                Ok(c) => c,
                Err(e) => unreachable(
                    "PostgreSQL",
                    "WHARF_TEST_POSTGRES_URL",
                    &base,
                    &e,
                    POSTGRES_START,
                ),
            };
            let db = format!("wharf_test_{}", random_suffix());
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
                .execute(&mut admin)
                .await
                .expect("CREATE DATABASE on PostgreSQL");
            let url = with_database(&base, &db);
            let connected = UserStore::connect(&url).await;
            let outcome = run_scenario(connected, Backend::Postgres, url, None, scenario).await;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await
            .expect("DROP DATABASE on PostgreSQL");
            let _ = admin.close().await;
            outcome
        }
        Service::MySql => {
            let base = env_or("WHARF_TEST_MYSQL_URL", DEFAULT_MYSQL_URL);
            let mut admin = match MySqlConnection::connect(&base).await {
                Ok(c) => c,
                Err(e) => unreachable(
                    "MariaDB/MySQL",
                    "WHARF_TEST_MYSQL_URL",
                    &base,
                    &e,
                    MYSQL_START,
                ),
            };
            let db = format!("wharf_test_{}", random_suffix());
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
                .execute(&mut admin)
                .await
                .expect("CREATE DATABASE on MariaDB");
            let url = with_database(&base, &db);
            let connected = UserStore::connect(&url).await;
            let outcome = run_scenario(connected, Backend::MySql, url, None, scenario).await;
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}")))
                .execute(&mut admin)
                .await
                .expect("DROP DATABASE on MariaDB");
            let _ = admin.close().await;
            outcome
        }
    };
    match outcome {
        Ok(()) => {}
        Err(Failure::Panic(panic)) => std::panic::resume_unwind(panic),
        Err(Failure::Setup(message)) => panic!("{message}"),
    }
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs(),
    )
    .expect("time fits i64")
}

// ---------------------------------------------------------------- scenarios

async fn migrate_twice_is_idempotent(ctx: Ctx) {
    let store = ctx.store;
    store.migrate().await.expect("second migration");
    store.migrate().await.expect("third migration");
    assert_eq!(store.count().await.expect("count"), 0);
    let alice = store.add("alice", "password-1").await.expect("add alice");

    // Another connect to the same database migrates again and sees the data.
    let again = UserStore::connect(&ctx.url)
        .await
        .expect("reconnect by URL");
    again.migrate().await.expect("migration after reconnect");
    assert_eq!(again.count().await.expect("count"), 1);
    assert_eq!(
        again.find_by_id(alice.id).await.expect("find"),
        Some(alice.clone())
    );
    again.close().await;

    if let Some(dir) = ctx.data_dir {
        let reopened = UserStore::open_default(&dir).await.expect("reopen default");
        assert_eq!(reopened.list().await.expect("list"), vec![alice]);
        reopened.close().await;
    }
}

async fn add_list_remove(ctx: Ctx) {
    let store = ctx.store;
    let before = now();
    let alice = store.add("alice", "password-1").await.expect("add alice");
    let bob = store
        .add("bob@example.com", "password-2")
        .await
        .expect("add bob");
    let after = now();

    assert_eq!(alice.account, "alice");
    assert_eq!(bob.account, "bob@example.com");
    assert!(
        alice.id > 0 && bob.id > alice.id,
        "ids {} {}",
        alice.id,
        bob.id
    );
    assert!((before..=after).contains(&alice.created_at));
    assert_eq!(store.count().await.expect("count"), 2);
    assert_eq!(
        store.list().await.expect("list"),
        vec![alice.clone(), bob.clone()]
    );
    assert_eq!(
        store.find_by_account("alice").await.expect("find"),
        Some(alice.clone())
    );

    assert!(store.remove("alice").await.expect("remove alice"));
    assert!(!store.remove("alice").await.expect("remove alice again"));
    assert!(!store.remove("nobody").await.expect("remove unknown"));
    assert!(
        !store
            .remove("not valid!")
            .await
            .expect("remove invalid name")
    );
    assert_eq!(store.list().await.expect("list"), vec![bob.clone()]);
    assert_eq!(store.count().await.expect("count"), 1);
    assert_eq!(store.find_by_id(alice.id).await.expect("find"), None);

    // A re-added account gets a new id.
    let alice2 = store
        .add("alice", "password-3")
        .await
        .expect("re-add alice");
    assert_ne!(alice2.id, alice.id);
}

async fn duplicate_account(ctx: Ctx) {
    let store = ctx.store;
    store.add("carol", "password-1").await.expect("add carol");
    match store.add("carol", "another-password").await {
        Err(StoreError::DuplicateAccount(account)) => assert_eq!(account, "carol"),
        other => panic!("expected DuplicateAccount, got {other:?}"),
    }
    // The original password still works: nothing was overwritten.
    assert!(
        store
            .verify("carol", "password-1")
            .await
            .expect("verify")
            .is_some()
    );
    // Accounts are case-sensitive on every backend.
    store.add("Carol", "password-1").await.expect("add Carol");
    assert_eq!(store.count().await.expect("count"), 2);
}

async fn concurrent_duplicate_add(ctx: Ctx) {
    // Both pass the early duplicate check; the UNIQUE constraint decides.
    let store = ctx.store;
    let (a, b) = tokio::join!(
        store.add("zoe", "password-1"),
        store.add("zoe", "password-2")
    );
    match (&a, &b) {
        (Ok(_), Err(StoreError::DuplicateAccount(_)))
        | (Err(StoreError::DuplicateAccount(_)), Ok(_)) => {}
        other => panic!("expected one success and one DuplicateAccount, got {other:?}"),
    }
    assert_eq!(store.count().await.expect("count"), 1);
}

async fn bad_account_names(ctx: Ctx) {
    let store = ctx.store;
    let too_long = "a".repeat(65);
    for bad in [
        "",
        "a b",
        "tab\there",
        "semi;colon",
        "quote'",
        "slash/",
        "ünïcode",
        "emoji😀",
        too_long.as_str(),
    ] {
        match store.add(bad, "password-1").await {
            Err(StoreError::InvalidAccount(_)) => {}
            other => panic!("{bad:?}: expected InvalidAccount, got {other:?}"),
        }
    }
    for short in ["", "1234567", "ééééééé"] {
        match store.add("dave", short).await {
            Err(StoreError::InvalidPassword(_)) => {}
            other => panic!("password {short:?}: expected InvalidPassword, got {other:?}"),
        }
    }
    assert_eq!(store.count().await.expect("count"), 0);

    let longest = "a".repeat(64);
    for good in ["x", "a.b@c-d_e", "UPPER.lower-09", longest.as_str()] {
        let user = store.add(good, "12345678").await.expect(good);
        assert_eq!(user.account, good);
    }
    assert_eq!(store.count().await.expect("count"), 4);
}

async fn verify_password(ctx: Ctx) {
    let store = ctx.store;
    let erin = store.add("erin", "s3cret-pass").await.expect("add erin");
    store.add("frank", "other-pass").await.expect("add frank");

    assert_eq!(
        store.verify("erin", "s3cret-pass").await.expect("verify"),
        Some(erin.clone())
    );
    assert_eq!(
        store.verify("erin", "s3cret-pasS").await.expect("verify"),
        None
    );
    assert_eq!(store.verify("erin", "").await.expect("verify"), None);
    assert_eq!(
        store.verify("erin", "other-pass").await.expect("verify"),
        None
    );
    assert_eq!(
        store.verify("ERIN", "s3cret-pass").await.expect("verify"),
        None
    );
    assert_eq!(
        store.verify("nobody", "s3cret-pass").await.expect("verify"),
        None
    );
    assert_eq!(
        store
            .verify("bad name", "s3cret-pass")
            .await
            .expect("verify"),
        None
    );

    assert!(store.remove("erin").await.expect("remove"));
    assert_eq!(
        store.verify("erin", "s3cret-pass").await.expect("verify"),
        None
    );
}

async fn account_by_id(ctx: Ctx) {
    let store = ctx.store;
    let grace = store.add("grace", "password-1").await.expect("add grace");
    let heidi = store.add("heidi", "password-2").await.expect("add heidi");
    assert_eq!(
        store.account_by_id(grace.id).await.expect("lookup"),
        Some("grace".to_owned())
    );
    assert_eq!(
        store.account_by_id(heidi.id).await.expect("lookup"),
        Some("heidi".to_owned())
    );
    assert_eq!(
        store.account_by_id(heidi.id + 1000).await.expect("lookup"),
        None
    );
    assert_eq!(store.account_by_id(-1).await.expect("lookup"), None);
    assert_eq!(store.find_by_id(grace.id).await.expect("find"), Some(grace));
    assert_eq!(store.find_by_id(0).await.expect("find"), None);
}

macro_rules! per_backend {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::run(super::Service::Sqlite, super::$scenario).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::run(super::Service::Postgres, super::$scenario).await;
                }
            )*
        }
        mod mysql {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::run(super::Service::MySql, super::$scenario).await;
                }
            )*
        }
    };
}

per_backend!(
    migrate_twice_is_idempotent,
    add_list_remove,
    duplicate_account,
    concurrent_duplicate_add,
    bad_account_names,
    verify_password,
    account_by_id,
);

// ------------------------------------------------------ backend-independent

#[tokio::test]
async fn unsupported_url_is_refused() {
    match UserStore::connect("redis://127.0.0.1/").await {
        Err(StoreError::UnsupportedUrl { scheme }) => assert_eq!(scheme, "redis"),
        other => panic!("expected UnsupportedUrl, got {other:?}"),
    }
}

#[tokio::test]
async fn in_memory_sqlite_works() {
    let store = UserStore::connect("sqlite::memory:")
        .await
        .expect("memory store");
    let user = store.add("ivan", "password-1").await.expect("add");
    assert_eq!(store.list().await.expect("list"), vec![user]);
    store.close().await;
}

#[tokio::test]
async fn open_uses_url_when_given() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = UserStore::open(Some("sqlite::memory:"), dir.path())
        .await
        .expect("open with URL");
    assert!(!dir.path().join("wharf.db").exists());
    store.close().await;
    let store = UserStore::open(None, dir.path())
        .await
        .expect("open default");
    assert!(dir.path().join("wharf.db").exists());
    store.close().await;
}

#[test]
fn database_url_redaction() {
    assert_eq!(
        redact("postgres://u:secret@h:5432/db?x=1"),
        "postgres://u:***@h:5432/db?x=1"
    );
    assert_eq!(redact("mysql://root@h/db"), "mysql://root@h/db");
}

#[test]
fn database_url_rewrite() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("mysql://root@127.0.0.1:3306", "x"),
        "mysql://root@127.0.0.1:3306/x"
    );
    assert_eq!(
        with_database("mysql://root@h/test?ssl-mode=disabled", "x"),
        "mysql://root@h/x?ssl-mode=disabled"
    );
}
