//! One port: with `app.ws_server` set to the `http` server, `wharf`'s pages, login, API and
//! WebSocket routes (the app's `/wss/*` and a config route) are served on that port alone.

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use wharf_app::config::AppConfig;
use wharf_app::tokens::{TokenConfig, Tokens};
use wharf_app::users::UserStore;

use common::{API_KEY, SECRET, TestApp, api, handshake, http, login};

async fn next(ws: &mut WebSocketStream<TcpStream>) -> Message {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message in time")
        .expect("stream open")
        .expect("no error")
}

#[tokio::test]
async fn pages_api_and_websockets_share_one_port() {
    let text = format!(
        r#"
[[server]]
name = "web"
kind = "http"
host = "127.0.0.1"
port = 0
route = [{{ path = "/echo", handler = "echo" }}]

[app]
http_server = "web"
ws_server = "web"

[api]
key = "{API_KEY}"
"#
    );
    let config = AppConfig::from_toml_str(&text, None).expect("one-port config");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = UserStore::open_default(dir.path()).await.expect("store");
    let tokens = Arc::new(Tokens::new(&TokenConfig::default(), Some(SECRET)).expect("tokens"));
    let bound = wharf_app::app::bind(&config, store.clone(), tokens.clone())
        .await
        .expect("bind");
    let addr = bound.local_addr("web").expect("the one port");
    tokio::spawn(bound.serve(std::future::pending()));
    let app = TestApp {
        ws: addr,
        http: addr,
        addrs: [("web".to_owned(), addr)].into(),
        store,
        tokens,
        _dir: dir,
    };

    let health = http(addr, "GET", "/health", &[], b"").await;
    assert_eq!(health.status, 200, "{}", health.body);
    let page = http(addr, "GET", "/", &[], b"").await;
    assert_eq!(page.status, 200, "{}", page.body);

    // A config route on the http server.
    let (response, ws) = handshake(addr, "/echo", &[]).await;
    assert_eq!(response.status, 101, "{}", response.body);
    let mut echo = ws.expect("open");
    echo.send(Message::text("same port")).await.expect("send");
    assert_eq!(next(&mut echo).await, Message::text("same port"));

    // The app's own WebSocket route: its auth middleware answers, not a 404.
    let (refused, _) = handshake(addr, "/wss/demo", &[]).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    let token = login(&app, "carol", "correct horse battery").await;
    let header = format!("Bearer {token}");
    let (response, ws) = handshake(addr, "/wss/demo", &[("Authorization", &header)]).await;
    assert_eq!(response.status, 101, "{}", response.body);
    let mut demo = ws.expect("open");
    assert_eq!(
        next(&mut demo).await,
        Message::text("Authorization Success")
    );

    // The API on the same port sees both connections.
    let list = api(addr, "GET", "/api/connections", "").await;
    assert_eq!(list.status, 200, "{}", list.body);
    let routes: Vec<String> = list.json()["connections"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["route"].as_str().map(str::to_owned))
        .collect();
    assert!(routes.contains(&"/echo".to_owned()), "{routes:?}");
    assert!(routes.contains(&"/wss/demo".to_owned()), "{routes:?}");

    // An unknown path is still the JSON 404.
    let missing = http(addr, "GET", "/nope", &[], b"").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "route_not_found");
}
