//! `wharf serve`: load the config, build the servers, run until SIGINT/SIGTERM.

use std::path::Path;
use std::process::ExitCode;

use wharf::{Config, Server};

/// Exit code for an unusable configuration.
pub const EXIT_CONFIG: u8 = 2;

/// Runs `wharf serve` and returns the process exit code.
pub async fn run(config_path: Option<&Path>) -> ExitCode {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("wharf: bad configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let bound = match Server::builder(config).bind().await {
        Ok(bound) => bound,
        Err(wharf::Error::Config(e)) => {
            eprintln!("wharf: bad configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => {
            eprintln!("wharf: {e}");
            return ExitCode::FAILURE;
        }
    };
    match bound.serve(wharf::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wharf: {e}");
            ExitCode::FAILURE
        }
    }
}
