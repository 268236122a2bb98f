//! Following a `wharf serve` child's JSON log (`WHARF_LOG_FORMAT=json`). Shared by the
//! recovery check and the handover check (`#[path]`).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::sync::mpsc;

/// Reads `log` on its own thread for as long as any process writes to it, so its pipe
/// never fills: each `listening` line's server name and address go to `listening`, each
/// warning or error line to `warning`; the pause lines of a handover (and of a take-back) are printed.
pub fn follow(
    log: impl Read + Send + 'static,
    listening: mpsc::Sender<(String, SocketAddr)>,
    mut warning: impl FnMut(String) + Send + 'static,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(log).lines().map_while(Result::ok) {
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if json["message"] == "listening" {
                let server = json["server"].as_str().unwrap_or_default().to_owned();
                if let Some(addr) = json["addr"].as_str().and_then(|a| a.parse().ok()) {
                    let _ = listening.send((server, addr));
                }
            } else if matches!(json["level"].as_str(), Some("WARN" | "ERROR")) {
                if json["message"]
                    == "the handover failed: this process took its connections back and serves on"
                {
                    eprintln!(
                        "server: {} connections taken back, pause max {} ms",
                        json["taken"], json["pause_max_ms"]
                    );
                }
                warning(line);
            } else if json["message"] == "the pause the moved connections saw" {
                // A successor's own account of a handover, beside what the clients saw.
                eprintln!(
                    "server: {} connections resumed, pause p50 {} ms, p99 {} ms, max {} ms",
                    json["resumed"],
                    json["pause_p50_ms"],
                    json["pause_p99_ms"],
                    json["pause_max_ms"]
                );
            }
        }
    });
}
