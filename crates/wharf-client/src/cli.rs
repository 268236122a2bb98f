//! The `wharf client` command line: [`ClientArgs`] and [`run`].
//!
//! ```no_run
//! use clap::Parser;
//! use wharf_client::cli::{ClientArgs, run};
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     client: ClientArgs,
//! }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> std::process::ExitCode {
//!     run(Cli::parse().client).await
//! }
//! ```
//!
//! Exit codes: 0 clean close (or `--expect` reached, then close 1000), 1 network or
//! protocol error (or timeout), 2 usage, 3 handshake refused (status and body printed).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncBufReadExt;

use crate::{Client, ClientConfig, ClientError, ClientSender, Event, Message, connect};

mod rooms;

/// How to reach a server: the URL, handshake headers and TLS options. Shared by
/// `wharf client` and `wharf bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// The WebSocket URL (ws:// or wss://), e.g. ws://127.0.0.1:9502/echo
    #[arg(value_name = "URL")]
    pub url: String,
    /// An extra handshake header, `Name: value` (repeatable)
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// A subprotocol to offer (repeatable)
    #[arg(long = "protocol", value_name = "NAME")]
    pub protocols: Vec<String>,
    /// A bearer token, sent as `Authorization: Bearer <TOKEN>`
    #[arg(
        long,
        env = "WHARF_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// wss://: trust only the CA certificates in this PEM file (instead of the built-in roots)
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// wss://: the TLS server name to send and verify, instead of the URL's host
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// Offer permessage-deflate (compressed messages both ways when the server accepts)
    #[arg(long)]
    pub compress: bool,
    /// Connect timeout; for `wharf client --send`, also the bound on waiting for the
    /// expected messages
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,
}

impl Default for ConnectionArgs {
    fn default() -> Self {
        ConnectionArgs {
            url: String::new(),
            headers: Vec::new(),
            protocols: Vec::new(),
            token: None,
            ca_file: None,
            server_name: None,
            compress: false,
            timeout: 10.0,
        }
    }
}

impl ConnectionArgs {
    /// The [`ClientConfig`] these arguments describe, or a usage message.
    ///
    /// ```
    /// use wharf_client::cli::ConnectionArgs;
    ///
    /// let args = ConnectionArgs {
    ///     url: "wss://127.0.0.1:9443/echo".into(),
    ///     headers: vec!["X-Trace: 1".into()],
    ///     server_name: Some("wharf.test".into()),
    ///     ..ConnectionArgs::default()
    /// };
    /// let config = args.config()?;
    /// assert_eq!(config.server_name.as_deref(), Some("wharf.test"));
    /// # Ok::<(), String>(())
    /// ```
    pub fn config(&self) -> Result<ClientConfig, String> {
        let timeout = Duration::try_from_secs_f64(self.timeout)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or_else(|| {
                format!(
                    "--timeout {} is not a positive number of seconds",
                    self.timeout
                )
            })?;
        let mut config = ClientConfig::default().with_connect_timeout(timeout);
        for header in &self.headers {
            let (name, value) = header
                .split_once(':')
                .filter(|(n, _)| !n.trim().is_empty())
                .ok_or_else(|| format!("-H {header:?}: expected `Name: value`"))?;
            config = config.with_header(name.trim(), value.trim());
        }
        if let Some(token) = &self.token {
            config = config.with_header("Authorization", format!("Bearer {token}"));
        }
        config.protocols.clone_from(&self.protocols);
        config.ca_file.clone_from(&self.ca_file);
        config.server_name.clone_from(&self.server_name);
        config.compression = self.compress;
        Ok(config)
    }
}

/// Arguments of `wharf client`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientArgs {
    /// How to connect (URL, headers, TLS).
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// A text message to send (repeatable); without it the client reads stdin
    #[arg(long = "send", value_name = "TEXT")]
    pub send: Vec<String>,
    /// Exit (after a close 1000) once this many messages have arrived
    #[arg(long, value_name = "N")]
    pub expect: Option<u64>,
    /// Print every event as one JSON line (kind, data, timestamp)
    #[arg(long)]
    pub json: bool,
    /// Follow this room with the rooms protocol (`wharf.rooms.v1`, URL path /wss/rooms;
    /// repeatable): one line per publication (room, position, text) on stdout, recovery
    /// notices on stderr; `--send` then publishes to the first room
    #[arg(long = "room", value_name = "NAME")]
    pub rooms: Vec<String>,
}

pub(crate) const EXIT_ERROR: u8 = 1;
pub(crate) const EXIT_USAGE: u8 = 2;
pub(crate) const EXIT_REFUSED: u8 = 3;

/// Runs the client described by `args` and returns the process exit code.
pub async fn run(args: ClientArgs) -> ExitCode {
    let out = Printer { json: args.json };
    let config = match args.connection.config() {
        Ok(config) => config,
        Err(message) => {
            out.error(&message);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if !args.rooms.is_empty() {
        return ExitCode::from(rooms::follow(&args, config, &out).await);
    }
    let client = match connect(&args.connection.url, &config).await {
        Ok(client) => client,
        Err(e) => return out.failure(&e).into(),
    };
    out.line("open", client.protocol().unwrap_or_default(), None);
    if let Some(params) = client.deflate() {
        out.line("extension", &params.to_header(), None);
    }
    let code = if args.send.is_empty() {
        interactive(client, &out).await
    } else {
        scripted(client, &args, &config, &out).await
    };
    ExitCode::from(code)
}

async fn scripted(
    mut client: Client,
    args: &ClientArgs,
    config: &ClientConfig,
    out: &Printer,
) -> u8 {
    for text in &args.send {
        if let Err(e) = client.send(Message::Text(text.clone())).await {
            return out.failure(&e).into_code();
        }
    }
    let Some(expect) = args.expect.filter(|&n| n > 0) else {
        return close(&mut client, out).await;
    };
    let deadline = tokio::time::Instant::now() + config.connect_timeout;
    let mut seen = 0;
    loop {
        match tokio::time::timeout_at(deadline, client.recv()).await {
            Err(_) => {
                out.error(&format!("timed out after {seen} of {expect} messages"));
                let _ = client.close(1000, "").await;
                return EXIT_ERROR;
            }
            Ok(Err(e)) => return out.failure(&e).into_code(),
            Ok(Ok(None)) => return 0,
            Ok(Ok(Some(event))) => {
                out.event(&event);
                match event {
                    Event::Message(_) => {
                        seen += 1;
                        if seen >= expect {
                            return close(&mut client, out).await;
                        }
                    }
                    Event::Close { .. } => return 0,
                    Event::Ping(_) | Event::Pong(_) => {}
                }
            }
        }
    }
}

async fn close(client: &mut Client, out: &Printer) -> u8 {
    match client.close(1000, "").await {
        Ok(Some((code, reason))) => {
            out.event(&Event::Close { code, reason });
            0
        }
        Ok(None) => {
            out.error("the server did not answer the close frame");
            0
        }
        Err(e) => out.failure(&e).into_code(),
    }
}

async fn interactive(client: Client, out: &Printer) -> u8 {
    let (sender, mut receiver) = client.split();
    let printer = *out;
    let mut reader = tokio::spawn(async move {
        loop {
            match receiver.recv().await {
                Ok(Some(event)) => {
                    printer.event(&event);
                    if matches!(event, Event::Close { .. }) {
                        return 0;
                    }
                }
                Ok(None) => return 0,
                Err(e) => return printer.failure(&e).into_code(),
            }
        }
    });
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            code = &mut reader => return code.unwrap_or(EXIT_ERROR),
            line = lines.next_line() => {
                let line = match line {
                    Ok(Some(line)) => line,
                    Ok(None) | Err(_) => {
                        let _ = sender.close(1000, "").await;
                        return finish(reader).await;
                    }
                };
                match command(&sender, &line, out).await {
                    Ok(true) => return finish(reader).await,
                    Ok(false) => {}
                    Err(e) => return out.failure(&e).into_code(),
                }
            }
        }
    }
}

/// Waits (bounded) for the reader task to see the server's close.
async fn finish(reader: tokio::task::JoinHandle<u8>) -> u8 {
    match tokio::time::timeout(Duration::from_secs(5), reader).await {
        Ok(Ok(code)) => code,
        Ok(Err(_)) => EXIT_ERROR,
        Err(_) => 0,
    }
}

/// Runs one stdin line; `Ok(true)` when a close was sent.
async fn command(sender: &ClientSender, line: &str, out: &Printer) -> Result<bool, ClientError> {
    let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
    match cmd {
        "/ping" => sender.ping(rest.as_bytes().to_vec()).await.map(|()| false),
        "/close" => {
            let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            let code = if code.is_empty() {
                Ok(1000)
            } else {
                code.parse::<u16>()
            };
            match code {
                Ok(code) if wharf_proto::is_valid_close_code(code) => {
                    sender.close(code, reason).await.map(|()| true)
                }
                _ => {
                    out.error("usage: /close [code] [reason] (code 1000-4999)");
                    Ok(false)
                }
            }
        }
        "/binary" => match from_hex(rest) {
            Some(data) => sender
                .send(Message::Binary(data.into()))
                .await
                .map(|()| false),
            None => {
                out.error("usage: /binary HEX (e.g. /binary 00ff10)");
                Ok(false)
            }
        },
        // `//text` sends `/text`.
        _ => {
            let text = line
                .strip_prefix('/')
                .filter(|t| t.starts_with('/'))
                .unwrap_or(line);
            sender
                .send(Message::Text(text.to_owned()))
                .await
                .map(|()| false)
        }
    }
}

/// A failure's exit code.
pub(crate) struct Failure(u8);

impl Failure {
    pub(crate) fn into_code(self) -> u8 {
        self.0
    }
}

impl From<Failure> for ExitCode {
    fn from(f: Failure) -> Self {
        ExitCode::from(f.0)
    }
}

/// Writes events to stdout (human or JSON lines) and errors to stderr.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Printer {
    json: bool,
}

impl Printer {
    fn event(&self, event: &Event) {
        match event {
            Event::Message(Message::Text(text)) => self.line("text", text, None),
            Event::Message(Message::Binary(data)) => self.line("binary", &to_hex(data), None),
            Event::Ping(data) => self.line("ping", &String::from_utf8_lossy(data), None),
            Event::Pong(data) => self.line("pong", &String::from_utf8_lossy(data), None),
            Event::Close { code, reason } => self.line("close", reason, Some(*code)),
        }
    }

    pub(crate) fn line(&self, kind: &str, data: &str, code: Option<u16>) {
        let now = timestamp(SystemTime::now());
        let text = if self.json {
            let mut v = serde_json::json!({ "kind": kind, "data": data, "timestamp": now });
            if let (Some(code), Some(map)) = (code, v.as_object_mut()) {
                map.insert("code".into(), code.into());
            }
            v.to_string()
        } else {
            match code {
                Some(code) => format!("{now} {kind} {code} {data}"),
                None => format!("{now} {kind} {data}"),
            }
        };
        let _ = writeln!(std::io::stdout().lock(), "{}", text.trim_end());
    }

    pub(crate) fn error(&self, message: &str) {
        if self.json {
            self.line("error", message, None);
        }
        let _ = writeln!(std::io::stderr().lock(), "error: {message}");
    }

    pub(crate) fn failure(&self, error: &ClientError) -> Failure {
        match error {
            ClientError::Refused { status, body } => {
                if self.json {
                    self.line("refused", body, Some(*status));
                }
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "handshake refused: HTTP {status}\n{body}"
                );
                Failure(EXIT_REFUSED)
            }
            ClientError::InvalidUrl(_) => {
                self.error(&error.to_string());
                Failure(EXIT_USAGE)
            }
            _ => {
                self.error(&error.to_string());
                Failure(EXIT_ERROR)
            }
        }
    }
}

pub(crate) fn to_hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

/// RFC 3339 UTC with milliseconds, e.g. `2024-05-01T12:00:00.123Z`.
pub(crate) fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        assert_eq!(timestamp(t), "2024-02-29T12:34:56.789Z");
    }

    #[test]
    fn hex() {
        assert_eq!(from_hex("00ff 10"), Some(vec![0, 255, 16]));
        assert_eq!(from_hex("0"), None);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(to_hex(&[0, 255, 16]), "00ff10");
    }

    #[test]
    fn headers_token_and_tls() -> Result<(), String> {
        let args = ConnectionArgs {
            url: "ws://x/".into(),
            headers: vec!["X-A: 1".into()],
            token: Some("t".into()),
            ca_file: Some("ca.pem".into()),
            timeout: 3.0,
            ..ConnectionArgs::default()
        };
        let c = args.config()?;
        let want = [("X-A", "1"), ("Authorization", "Bearer t")].map(|(a, b)| (a.into(), b.into()));
        assert_eq!(c.headers, want);
        assert_eq!(c.ca_file, Some(PathBuf::from("ca.pem")));
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        let bad = ConnectionArgs {
            headers: vec!["nocolon".into()],
            ..args.clone()
        };
        assert!(bad.config().is_err());
        let bad = ConnectionArgs {
            timeout: 0.0,
            ..args
        };
        assert!(bad.config().is_err());
        Ok(())
    }
}
