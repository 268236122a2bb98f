//! WebSocket routes on an `http` server: its axum routes, `/health`, config routes and
//! registered WebSocket routes on one port, under the server's limits and error handler.

mod common;

use common::*;
use wharf::axum::routing::get;
use wharf::{Config, Server};

#[tokio::test]
async fn http_routes_and_websocket_routes_share_one_port() {
    let config = Config::from_toml_str(
        r#"
        [[server]]
        name = "http"
        kind = "http"
        host = "127.0.0.1"
        port = 0
        route = [{ path = "/wss/echo", handler = "echo" }]
        limits = { max_connections = 2 }
        "#,
    )
    .expect("an http server with routes is valid");
    let (recorder, mut events) = Recorder::new();
    let builder = Server::builder(config)
        .http(
            "http",
            wharf::axum::Router::new().route("/api/hello", get(|| async { "hi" })),
        )
        .websocket("http", wharf::Router::new().route("/wss/rec", recorder));
    let mut server = start(builder).await;
    let addr = server.http.expect("the http server");

    let hello = raw_request(addr, plain_get("/api/hello").as_bytes()).await;
    assert_eq!((hello.status, hello.body.as_str()), (200, "hi"));
    let health = raw_request(addr, plain_get("/health").as_bytes()).await;
    assert_eq!(health.status, 200);

    let mut echo = connect(addr, "/wss/echo").await;
    assert_echo(&mut echo, "one port").await;
    let mut rec = connect(addr, "/wss/rec").await;
    let id = greeting_id(&mut rec).await;
    assert_eq!(server.sender.count(), 2);
    let listed = server.sender.list();
    assert!(listed.iter().all(|c| c.server == "http"), "{listed:?}");

    // The server's limits hold on its WebSocket routes.
    let refused = raw_request(addr, upgrade_request("/wss/echo", "").as_bytes()).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    // A plain GET to a WebSocket route is wharf's 426; an unknown path the JSON 404.
    let plain = raw_request(addr, plain_get("/wss/echo").as_bytes()).await;
    assert_eq!(plain.status, 426);
    let missing = raw_request(addr, plain_get("/nope").as_bytes()).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "route_not_found");

    // Shutdown closes the WebSocket connections of the http server too.
    server.trigger_shutdown();
    assert_eq!(expect_close(&mut rec).await.0, 1001);
    assert_eq!(events.close_of(id).await.code.as_u16(), 1001);
    assert_eq!(expect_close(&mut echo).await.0, 1001);
    server.join().await.expect("serve returned Ok");
}
