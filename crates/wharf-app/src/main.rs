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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start every configured server (defaults: http on 9501, ws on 9502).
    Serve {
        /// Configuration file (TOML); without one the built-in defaults are used.
        #[arg(long, short, env = "WHARF_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("wharf: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve { config } => runtime.block_on(wharf_app::serve::run(config.as_deref())),
    }
}
