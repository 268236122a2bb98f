//! `wharf serve`: load the config, open the users store and the token keys, build the
//! servers, run until SIGINT/SIGTERM, or until a successor took over (SIGUSR2 or `wharf
//! upgrade`: [`crate::upgrade`]).
//!
//! Started as a successor (`WHARF_HANDOVER` set), it loads and checks its config first
//! (a bad one exits 2 before anything moves), then takes its predecessor's listening
//! sockets, opens the store and keys, binds on them, and confirms; only then does it serve.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tracing::{info, warn};
use wharf::handover::Inherited;
use wharf::server::Stop;

use crate::app::AppParts;
use crate::config::AppConfig;
use crate::control::{self, ControlSocket};
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
    let program = crate::upgrade::startup_program();
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
    // A successor takes its predecessor's sockets only now that its config has loaded.
    let timeout = config.server.handover.timeout;
    let mut inherited =
        match tokio::task::spawn_blocking(move || Inherited::from_env(timeout)).await {
            Ok(Ok(inherited)) => inherited,
            Ok(Err(e)) => {
                eprintln!("wharf: handover: {e}");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("wharf: handover: {e}");
                return ExitCode::FAILURE;
            }
        };
    if !parts.any() {
        let bound = crate::app::bind_core_with(&config, inherited.as_mut()).await;
        return start(bound, inherited, &config, program).await;
    }
    let store = match open_store(&config).await {
        Ok(store) => store,
        Err(e) => {
            give_up(inherited, &format!("users store: {e}"));
            eprintln!("wharf: users store: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tokens = match open_tokens(&config) {
        Ok(tokens) => tokens,
        Err(e) if is_config_error(&e) => {
            give_up(inherited, &format!("bad configuration: [jwt]: {e}"));
            eprintln!("wharf: bad configuration: [jwt]: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => {
            give_up(inherited, &format!("JWT keys: {e}"));
            eprintln!("wharf: JWT keys: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = first_start(&store, create_demo_user).await {
        give_up(inherited, &format!("users store: {e}"));
        eprintln!("wharf: users store: {e}");
        return ExitCode::FAILURE;
    }
    if !config.auth.enabled {
        warn!("handshake auth is off (auth.enabled = false or JWT_OPEN=false)");
    }
    let bound = crate::app::bind_with(&config, store, tokens, inherited.as_mut()).await;
    start(bound, inherited, &config, program).await
}

/// Tells a predecessor, if any, that this successor cannot serve.
fn give_up(inherited: Option<Inherited>, why: &str) {
    if let Some(inherited) = inherited {
        inherited.refuse(why);
    }
}

/// Opens (or takes over) the control socket, confirms a handover, then serves until a
/// shutdown or a handover to a successor.
async fn start(
    bound: Result<wharf::BoundServer, wharf::Error>,
    mut inherited: Option<Inherited>,
    config: &AppConfig,
    program: PathBuf,
) -> ExitCode {
    // Listening before `listening` is logged: a SIGTERM sent at once drains, not kills.
    let shutdown = wharf::shutdown_signal();
    let bound = match bound {
        Ok(bound) => bound,
        Err(e) => {
            give_up(inherited, &e.to_string());
            return bind_failed(&e);
        }
    };
    let data_dir = config.data_dir();
    let path = control::socket_path(&data_dir);
    let handed = inherited
        .as_mut()
        .and_then(|i| i.take_unix(control::HANDOVER_NAME));
    let socket = match handed {
        Some(listener) => ControlSocket::from_std(listener, &path).map_err(|e| e.to_string()),
        None => ControlSocket::open(&path),
    };
    let socket = socket
        .inspect_err(|e| {
            warn!("no control socket ({e}): `wharf upgrade` is off, SIGUSR2 still works")
        })
        .ok();
    if let Some(inherited) = inherited {
        // Config loaded, store and keys open, servers bound on the predecessor's sockets,
        // cluster joined: healthy. The predecessor stops accepting once it has this, then
        // hands over its open connections: registered here, then released by the
        // predecessor, then resumed, before anything is served.
        let arrivals = match tokio::task::spawn_blocking(move || inherited.confirm()).await {
            Ok(Ok(arrivals)) => arrivals,
            Ok(Err(e)) => return handover_failed(&e),
            Err(e) => return handover_failed(&e),
        };
        if let Err(e) = bound.resume(arrivals).await {
            return handover_failed(&e);
        }
        info!(
            pid = std::process::id(),
            "handover confirmed: this process serves"
        );
    }
    let upgrader = bound.upgrader();
    let upgrades = match crate::upgrade::Upgrades::new(
        upgrader.clone(),
        program,
        &data_dir,
        socket.as_ref(),
    ) {
        Ok(upgrades) => Arc::new(upgrades),
        Err(e) => {
            eprintln!("wharf: upgrades: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sigusr2 = tokio::spawn(upgrades.clone().on_sigusr2());
    let (done_tx, done) = tokio::sync::watch::channel(false);
    let control = socket.map(|socket| {
        let run = {
            let upgrades = upgrades.clone();
            move || {
                let upgrades = upgrades.clone();
                async move { upgrades.run().await.map_err(|e| e.to_string()) }
            }
        };
        let handed_over = upgrader.clone();
        let mut done = done.clone();
        tokio::spawn(async move {
            let stop = async move {
                tokio::select! {
                    () = handed_over.handed_over() => {}
                    _ = done.wait_for(|d| *d) => {}
                }
            };
            control::serve(&socket, run, stop).await;
            socket
        })
    });
    let stop = {
        let upgrader = upgrader.clone();
        async move {
            tokio::select! {
                () = shutdown => Stop::Shutdown,
                () = upgrader.handed_over() => Stop::HandedOver,
            }
        }
    };
    let served = bound.serve_until(stop).await;
    done_tx.send_replace(true);
    sigusr2.abort();
    if let Some(control) = control {
        if let Ok(socket) = control.await {
            // After a handover the successor answers on it: the file stays.
            if !upgrader.is_handed_over() {
                socket.remove();
            }
        }
    }
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wharf: {e}");
            ExitCode::FAILURE
        }
    }
}

fn handover_failed(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("wharf: handover: {error}; the predecessor keeps serving");
    ExitCode::FAILURE
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
