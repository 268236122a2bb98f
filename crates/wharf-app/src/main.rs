//! The `wharf` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wharf_app::logging::{self, LogFormat};

/// wharf: a WebSocket application server.
#[derive(Debug, Parser)]
#[command(name = "wharf", version, about)]
struct Cli {
    /// Log format: human or json.
    #[arg(
        long,
        global = true,
        env = "WHARF_LOG_FORMAT",
        value_enum,
        default_value = "human"
    )]
    log_format: LogFormat,
    /// Configuration file (TOML); without one the built-in defaults are used.
    #[arg(long, short, global = true, env = "WHARF_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start every configured server (defaults: http on 9501, ws on 9502).
    Serve {
        /// With no user `demo`, create it with a random password, printed once.
        #[arg(long)]
        create_demo_user: bool,
        /// Start even when the cluster backplane is unreachable (local delivery only,
        /// reconnecting in the background); same as `cluster.allow_local_only = true`.
        #[arg(long)]
        allow_local_only: bool,
    },
    /// Hand the running `wharf serve` of this data directory over to a new process (the
    /// binary it was started from, same arguments) without closing its ports; see
    /// docs/operations.md.
    Upgrade,
    /// Manage the users store (DATABASE_URL, else wharf.db in WHARF_DATA_DIR).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Connect to a WebSocket server: interactive, or scripted with --send/--expect.
    Client(wharf_client::cli::ClientArgs),
    /// Load a WebSocket server: `echo` (messages/s, latency) or `connect` (handshakes/s).
    Bench(wharf_client::bench::BenchArgs),
    /// Print a token for a stored user, signed with the server's key.
    Token {
        /// The account.
        account: String,
        /// Give the token admin rights (for the /api endpoints).
        #[arg(long)]
        admin: bool,
        /// A room pattern it may subscribe to (repeatable; `*` any run, `{uid}` its id).
        /// With neither --room nor --publish, it gets the configured [jwt] rooms/publish.
        #[arg(long = "room", value_name = "PATTERN")]
        rooms: Vec<String>,
        /// A room pattern it may publish to (repeatable).
        #[arg(long = "publish", value_name = "PATTERN")]
        publish: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user; the password is one line on stdin.
    Add {
        /// The account name (1-64 of A-Z a-z 0-9 _ . @ -).
        account: String,
    },
    /// List the users: id, account, created_at (Unix seconds).
    List,
    /// Remove a user.
    Remove {
        /// The account name.
        account: String,
    },
}

/// mimalloc rather than the system allocator: every message allocates its buffer and frees
/// it (and a handler with large futures, such as the rooms protocol's, a box for its call);
/// mimalloc's thread-local free lists do that in about half the instructions of glibc's
/// (docs/decisions.md, "Fewer locks and a faster allocator").
/// The library crates choose no allocator: an application that embeds wharf picks its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init_to(
        cli.log_format,
        !matches!(cli.command, Command::Serve { .. }),
    );
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("wharf: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = cli.config.as_deref();
    runtime.block_on(async {
        match cli.command {
            Command::Serve {
                create_demo_user,
                allow_local_only,
            } => wharf_app::serve::run(config, create_demo_user, allow_local_only).await,
            Command::Upgrade => wharf_app::cli::upgrade::run(config).await,
            Command::User { command } => match command {
                UserCommand::Add { account } => wharf_app::cli::user::add(config, &account).await,
                UserCommand::List => wharf_app::cli::user::list(config).await,
                UserCommand::Remove { account } => {
                    wharf_app::cli::user::remove(config, &account).await
                }
            },
            Command::Client(args) => wharf_client::cli::run(args).await,
            Command::Bench(args) => wharf_client::bench::run(args).await,
            Command::Token {
                account,
                admin,
                rooms,
                publish,
            } => {
                let grants = (!rooms.is_empty() || !publish.is_empty())
                    .then_some(wharf_app::tokens::Grants { rooms, publish });
                wharf_app::cli::token::run(config, &account, admin, grants).await
            }
        }
    })
}

/// The tokio runtime: `WHARF_WORKER_THREADS` workers, by default one per core this process
/// may use. With one, the current-thread runtime: it runs woken tasks in the order they were
/// woken, where the multi-thread runtime with a single worker runs the last one woken first
/// and moves what overflows its 256-task queue to a queue it looks at every 61 tasks, so a
/// room push to thousands of members finishes late for some of them (docs/decisions.md,
/// "Fan-out latency"). Its blocking threads (password hashing, the handover check) leave
/// after a second unused, so that an idle one-worker server is one thread (docs/decisions.md,
/// "One thread, and system calls without libc's cancellation points").
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let threads = std::env::var("WHARF_WORKER_THREADS")
        .ok()
        .and_then(|n| n.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 1 {
        return tokio::runtime::Builder::new_current_thread()
            .thread_keep_alive(std::time::Duration::from_secs(1))
            .enable_all()
            .build();
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        // Catches clashing flags (e.g. a subcommand's `-c` against the global `--config`).
        super::Cli::command().debug_assert();
    }
}
