//! The `http` kind of server: `/health`, the application's axum routes, JSON 404.

mod common;

use common::*;
use wharf::axum::routing::get;
use wharf::{Config, Echo, Router, Server};

async fn server() -> Running {
    let app = wharf::axum::Router::new().route("/hello", get(|| async { "hi from axum" }));
    let config = Config::empty()
        .with_server(http_server())
        .with_server(ws_server());
    start(
        Server::builder(config)
            .http("http", app)
            .websocket("ws", Router::new().route("/echo", Echo)),
    )
    .await
}

#[tokio::test]
async fn health_reports_version_uptime_and_connections() {
    let server = server().await;
    let http = server.http.expect("http server");
    let response = raw_request(http, plain_get("/health").as_bytes()).await;
    assert_eq!(response.status, 200);
    let body = response.json();
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime_secs"].is_u64(), "{body}");
    assert_eq!(body["connections"], 0);
    let ws = connect(server.addr(), "/echo").await;
    let body = raw_request(http, plain_get("/health").as_bytes())
        .await
        .json();
    assert_eq!(body["connections"], 1);
    drop(ws);
    server.shutdown().await;
}

#[tokio::test]
async fn app_routes_work_and_unknown_paths_get_404_json() {
    let server = server().await;
    let http = server.http.expect("http server");
    let response = raw_request(http, plain_get("/hello").as_bytes()).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "hi from axum");
    let response = raw_request(http, plain_get("/nope").as_bytes()).await;
    assert_eq!(response.status, 404);
    let body = response.json();
    assert_eq!(body["code"], 404);
    assert_eq!(body["error"], "route_not_found");
    server.shutdown().await;
}
