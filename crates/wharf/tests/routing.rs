//! Routing: unknown paths, plain HTTP to a WebSocket route, path parameters, several routes
//! and one handler type on two routes.

mod common;

use common::*;
use wharf::{Conn, Echo, Handler, HandlerError, OpenRequest, Router};

/// Sends the route pattern, the path and the `room` parameter on open.
struct Where;

impl Handler for Where {
    async fn on_open(&self, conn: &Conn, _request: &OpenRequest) -> Result<(), HandlerError> {
        conn.send(format!(
            "{} {} {}",
            conn.route(),
            conn.path(),
            conn.param("room").unwrap_or("-")
        ))?;
        Ok(())
    }
}

async fn server() -> Running {
    start_ws(
        Router::new()
            .route("/echo", Echo)
            .route("/rooms/{room}", Where)
            .route("/where", Where),
    )
    .await
}

#[tokio::test]
async fn unknown_path_gets_404_json_and_no_upgrade() {
    let server = server().await;
    let response = raw_request(server.addr(), upgrade_request("/nope?x=1", "").as_bytes()).await;
    assert_eq!(response.status, 404);
    assert_eq!(response.header("description"), Some("Route Error"));
    assert_eq!(response.header("sec-websocket-accept"), None);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = response.json();
    assert_eq!(body["code"], 404);
    assert_eq!(body["error"], "route_not_found");
    assert!(body["msg"].as_str().is_some_and(|m| m.contains("/nope")));
    // A plain GET to an unknown path is a 404 too (not a 426).
    let response = raw_request(server.addr(), plain_get("/nope").as_bytes()).await;
    assert_eq!(response.status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn plain_http_get_to_a_websocket_route_gets_426() {
    let server = server().await;
    let response = raw_request(server.addr(), plain_get("/echo").as_bytes()).await;
    assert_eq!(response.status, 426);
    assert_eq!(response.header("upgrade"), Some("websocket"));
    let body = response.json();
    assert_eq!(body["code"], 426);
    assert_eq!(body["error"], "upgrade_required");
    server.shutdown().await;
}

#[tokio::test]
async fn params_and_several_routes() {
    let server = server().await;
    let mut ws = connect(server.addr(), "/rooms/lobby").await;
    assert_eq!(next_text(&mut ws).await, "/rooms/{room} /rooms/lobby lobby");
    let mut ws2 = connect(server.addr(), "/rooms/kitchen?x=1").await;
    assert_eq!(
        next_text(&mut ws2).await,
        "/rooms/{room} /rooms/kitchen kitchen"
    );
    // The same handler type on a second route, without a parameter.
    let mut ws3 = connect(server.addr(), "/where").await;
    assert_eq!(next_text(&mut ws3).await, "/where /where -");
    let mut echo = connect(server.addr(), "/echo").await;
    assert_echo(&mut echo, "still echoing").await;
    // A parameter route does not match deeper paths.
    let response = raw_request(server.addr(), upgrade_request("/rooms/a/b", "").as_bytes()).await;
    assert_eq!(response.status, 404);
    drop((ws, ws2, ws3, echo));
    server.shutdown().await;
}
