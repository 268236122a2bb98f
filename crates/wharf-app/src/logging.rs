//! Logging: `tracing` to stdout, human-readable by default or one JSON object per line.

use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event. Default.
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global subscriber, writing to stdout. The filter comes from `WHARF_LOG`
/// (or `RUST_LOG`), default `info`; for example `WHARF_LOG=warn` or `WHARF_LOG=wharf=debug`.
pub fn init(format: LogFormat) {
    init_to(format, false);
}

/// As [`init`], writing to stderr when `to_stderr` (for commands whose stdout is a
/// result, such as `wharf token`).
pub fn init_to(format: LogFormat, to_stderr: bool) {
    let filter = std::env::var("WHARF_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|e| {
        eprintln!("wharf: ignoring the log filter `{filter}`: {e}");
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = match (format, to_stderr) {
        (LogFormat::Human, false) => builder.with_ansi(false).try_init(),
        (LogFormat::Human, true) => builder
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .try_init(),
        (LogFormat::Json, false) => builder.json().flatten_event(true).try_init(),
        (LogFormat::Json, true) => builder
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("wharf: logging was already set up: {e}");
    }
}
