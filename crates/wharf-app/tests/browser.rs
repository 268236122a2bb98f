//! The demo page and the dashboard in a real browser: headless Chromium driven by the
//! scripts in `tests/browser/` (npm's `playwright-core`), against the app started
//! in-process. `./scripts/test.sh` installs Chromium and the npm package when missing;
//! here a missing one fails the test, it is never skipped.
//!
//! Screenshots land in `target/browser-artifacts/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use common::{API_KEY, TestApp, http, start};

const ACCOUNT: &str = "alice";
const PASSWORD: &str = "correct horse battery";
/// Each script's limit; the scripts stop themselves a little earlier.
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn artifacts() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp: keep the screenshots beside it.
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("../browser-artifacts")
}

/// Fails with what to run when Chromium, node or playwright-core is missing.
fn require_tools() {
    let chromium = std::env::var("WHARF_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run ./scripts/test.sh (it runs apt-get install -y chromium)"
    );
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is missing: install Debian's nodejs and npm (./scripts/test.sh needs them)"
    );
    assert!(
        repo_root()
            .join("tests/browser/node_modules/playwright-core")
            .exists(),
        "playwright-core is missing: run ./scripts/test.sh (npm ci in tests/browser)"
    );
}

/// Runs `tests/browser/<script>` against `app`; panics with its output when it fails.
async fn run_script(app: &TestApp, script: &str) {
    let mut command = tokio::process::Command::new("node");
    command
        .arg(script)
        .current_dir(repo_root().join("tests/browser"))
        .env("WHARF_HTTP_URL", format!("http://{}", app.http))
        .env("WHARF_WS_URL", format!("ws://{}", app.ws))
        .env("WHARF_API_KEY", API_KEY)
        .env("WHARF_ACCOUNT", ACCOUNT)
        .env("WHARF_PASSWORD", PASSWORD)
        .env("WHARF_ARTIFACTS", artifacts())
        .env(
            "WHARF_SCREENSHOT_WAIT_MS",
            std::env::var("WHARF_SCREENSHOT_WAIT_MS").unwrap_or_else(|_| "2500".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().expect("start node");
    let output = tokio::time::timeout(SCRIPT_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} ran over {SCRIPT_LIMIT:?}"))
        .expect("node output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}{stderr}");
    assert!(
        output.status.success(),
        "{script} failed ({}); screenshots in {}\n{stdout}\n{stderr}",
        output.status,
        artifacts().display()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_page_logs_in_talks_and_is_disconnected_by_nihao() {
    require_tools();
    let app = start("").await;
    app.store.add(ACCOUNT, PASSWORD).await.expect("add user");
    run_script(&app, "demo.mjs").await;
}

/// The rooms panel (/client.js) loses nothing when its socket is cut mid-stream: history for
/// `demo:*`, as the built-in config of `wharf serve` keeps.
#[tokio::test(flavor = "multi_thread")]
async fn rooms_panel_shows_every_publication_once_across_a_cut() {
    require_tools();
    let app =
        start("[rooms.history]\n[[rooms.history.rule]]\npattern = \"demo:*\"\nsize = 100\n").await;
    app.store.add(ACCOUNT, PASSWORD).await.expect("add user");
    run_script(&app, "rooms.mjs").await;
}

/// Background traffic for the dashboard: three users chatting in two rooms at a varying
/// pace, and a few refused handshakes. The connections stay open for the whole test, so
/// the counts the script watches only move with its own tabs.
async fn background_traffic(app: &TestApp) {
    for (account, room) in [("bob", "lobby"), ("carol", "lobby"), ("dave", "ops")] {
        let token = common::login(app, account, PASSWORD).await;
        let auth = format!("Bearer {token}");
        let path = format!("/wss/rooms/{room}");
        let (response, ws) = common::handshake(app.ws, &path, &[("Authorization", &auth)]).await;
        assert_eq!(response.status, 101, "{}", response.body);
        let (mut write, mut read) = ws.expect("open").split();
        // Drain what the room sends, or the server would close a slow consumer.
        tokio::spawn(async move { while let Some(Ok(_)) = read.next().await {} });
        tokio::spawn(async move {
            for i in 0u64.. {
                let text = format!("{account} says {i}");
                if write.send(Message::text(text)).await.is_err() {
                    return;
                }
                // 2 to 10 messages a second, changing every few seconds.
                let pause = 100 + (i / 10 % 5) * 100;
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        });
    }
    for auth in ["", "Bearer not.a.token"] {
        let headers: &[(&str, &str)] = if auth.is_empty() {
            &[]
        } else {
            &[("Authorization", auth)]
        };
        let (response, _) = common::handshake(app.ws, "/wss/demo", headers).await;
        assert_eq!(response.status, 401, "{}", response.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_follows_connections_live_and_closes_one() {
    require_tools();
    let app = start("").await;
    app.store.add(ACCOUNT, PASSWORD).await.expect("add user");
    background_traffic(&app).await;
    run_script(&app, "dashboard.mjs").await;
    // Only the dashboard's own feed may be left, and it closes with the browser.
    let listing = common::api(app.http, "GET", "/api/connections", "")
        .await
        .json();
    let demo_left = listing["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .any(|c| c["route"] == "/wss/demo");
    assert!(
        !demo_left,
        "the closed connection is still listed: {listing}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_negotiates_permessage_deflate() {
    require_tools();
    let app = start("[server.compression]\nenabled = true\n").await;
    run_script(&app, "compression.mjs").await;
}

#[tokio::test]
async fn pages_and_config_are_served() {
    let app = start("").await;
    let index = http(app.http, "GET", "/", &[], b"").await;
    assert_eq!(index.status, 200);
    assert!(index.head.contains("content-type: text/html"));
    assert!(index.head.contains("content-security-policy:"));
    assert!(index.body.contains("/assets/demo.js"));
    let dashboard = http(app.http, "GET", "/dashboard", &[], b"").await;
    assert_eq!(dashboard.status, 200);
    assert!(dashboard.body.contains("/assets/dashboard.js"));
    for asset in ["style.css", "common.js", "demo.js", "dashboard.js"] {
        let response = http(app.http, "GET", &format!("/assets/{asset}"), &[], b"").await;
        assert_eq!(response.status, 200, "{asset}");
    }
    let missing = http(app.http, "GET", "/assets/nope.js", &[], b"").await;
    assert_eq!(missing.status, 404);
    let config = http(app.http, "GET", "/config.json", &[], b"").await.json();
    assert_eq!(config["ws_port"], app.ws.port());
    assert_eq!(config["protocol"], "wharf");
    assert_eq!(config["feed_path"], "/wss/admin/feed");
    assert_eq!(config["rooms_path"], "/wss/rooms/");
    assert_eq!(config["rooms_protocol_path"], "/wss/rooms");
    // The rooms client: a module any origin may import.
    let client = http(app.http, "GET", "/client.js", &[], b"").await;
    assert_eq!(client.status, 200);
    assert!(
        client.head.contains("content-type: text/javascript"),
        "{}",
        client.head
    );
    assert!(
        client.head.contains("access-control-allow-origin: *"),
        "{}",
        client.head
    );
    assert!(
        client.body.contains("export function connect("),
        "{}",
        client.body
    );
}
