//! The mounted door's own promises (the shared ones run over both doors in handshake.rs,
//! echo.rs, limits.rs, middleware.rs, rooms.rs and shutdown.rs): the axum app keeps its own
//! routes, refusals are JSON from the server's error handler, one `Sender` and one
//! `max_connections` span both doors, `nest_service` strips its prefix, and a `mounted`
//! server has no listener of its own.

mod common;

use std::net::SocketAddr;

use common::*;
use tokio::sync::oneshot;
use wharf::axum::routing::get;
use wharf::{
    CloseCode, Config, Conn, Echo, Handler, HandlerError, OpenRequest, Route, Router, Scope,
    Server, ServerConfig,
};

#[tokio::test]
async fn the_app_keeps_its_routes_and_refusals_are_json() {
    on_door(Door::Mounted, async {
        let router = Router::new()
            .route("/echo", Echo)
            .route("/app", Route::new(Echo).origins(["https://app.example"]));
        let server = start_ws(router).await;
        let hello = raw_request(server.addr(), plain_get("/hello").as_bytes()).await;
        assert_eq!(
            (hello.status, hello.body.as_str()),
            (200, "hello from axum")
        );

        // A plain GET to a WebSocket route: wharf answers, not axum.
        let plain = raw_request(server.addr(), plain_get("/echo").as_bytes()).await;
        assert_eq!(plain.status, 426, "{plain:?}");
        assert_eq!(plain.header("content-type"), Some("application/json"));
        assert_eq!(plain.json()["error"], "upgrade_required");

        let missing = raw_request(server.addr(), upgrade_request("/nope", "").as_bytes()).await;
        assert_eq!(missing.status, 404);
        assert_eq!(missing.header("description"), Some("Route Error"));
        assert_eq!(missing.json()["error"], "route_not_found");

        let hijack = upgrade_request("/app", "Origin: https://evil.example\r\n");
        let forbidden = raw_request(server.addr(), hijack.as_bytes()).await;
        assert_eq!(forbidden.status, 403);
        assert_eq!(forbidden.json()["error"], "origin_forbidden");

        // Each refusal is counted under its kind, as data.
        let rejected = server.sender.metrics().handshakes_rejected;
        for kind in ["upgrade_required", "route_not_found", "origin_forbidden"] {
            assert_eq!(rejected.get(kind), Some(&1), "{kind} in {rejected:?}");
        }
        let mut ws = connect(server.addr(), "/echo").await;
        assert_echo(&mut ws, "after the refusals").await;
        drop(ws);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn one_sender_and_one_connection_limit_across_both_doors() {
    let mut config = ws_server();
    config.limits.max_connections = 2;
    let (recorder, mut events) = Recorder::new();
    let mut server = on_door(
        Door::Mounted,
        start_ws_with(config, Router::new().route("/rec", recorder)),
    )
    .await;
    let raw_addr = server.raw.expect("the ws server's own listener");
    assert_ne!(raw_addr, server.addr());
    let mut raw = connect(raw_addr, "/rec").await;
    let raw_id = greeting_id(&mut raw).await;
    let mut mounted = connect(server.addr(), "/rec").await;
    let mounted_id = greeting_id(&mut mounted).await;
    assert_eq!(server.sender.count(), 2);

    assert_eq!(server.sender.broadcast("to all", Scope::All), 2);
    assert_eq!(next_text(&mut raw).await, "to all");
    assert_eq!(next_text(&mut mounted).await, "to all");
    server
        .sender
        .push(mounted_id, "just you")
        .expect("the mounted connection is registered");
    assert_eq!(next_text(&mut mounted).await, "just you");

    // The limit counts both doors: a third connection is refused on either.
    for addr in [server.addr(), raw_addr] {
        let refused = raw_request(addr, upgrade_request("/rec", "").as_bytes()).await;
        assert_eq!(refused.status, 503, "{refused:?}");
        assert_eq!(refused.json()["error"], "too_many_connections");
    }

    server
        .sender
        .close(mounted_id, CloseCode::new(4001), "bye")
        .expect("close");
    assert_eq!(expect_close(&mut mounted).await, (4001, "bye".to_owned()));
    assert_eq!(events.close_of(mounted_id).await.code.as_u16(), 4001);
    eventually("the mounted connection to leave the registry", || {
        !server.sender.exists(mounted_id)
    })
    .await;
    assert!(server.sender.exists(raw_id));
    server.trigger_shutdown();
    assert_eq!(expect_close(&mut raw).await.0, 1001);
    server.join().await.expect("serve returned Ok");
}

/// Says its path parameter and the client's address.
struct WhereAmI;

impl Handler for WhereAmI {
    async fn on_open(&self, conn: &Conn, _request: &OpenRequest) -> Result<(), HandlerError> {
        let room = conn.param("room").unwrap_or("?");
        conn.send(format!("{room} {} {}", conn.path(), conn.peer().ip()))?;
        Ok(())
    }
}

#[tokio::test]
async fn a_mounted_server_nested_under_a_prefix() {
    let config = Config::empty().with_server(ServerConfig::mounted("chat"));
    let bound = within(
        "bind",
        Server::builder(config)
            .websocket("chat", Router::new().route("/rooms/{room}", WhereAmI))
            .bind(),
    )
    .await
    .expect("bind");
    assert_eq!(bound.local_addr("chat"), None, "no listener of its own");
    assert!(bound.service("nope").is_err());
    let app = wharf::axum::Router::new()
        .route("/", get(|| async { "home" }))
        .nest_service("/wss", bound.service("chat").expect("the service"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the app");
    let addr = listener.local_addr().expect("addr");
    let app_task = tokio::spawn(async move {
        wharf::axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let wharf_task = tokio::spawn(bound.serve(async move {
        let _ = stopped.await;
    }));

    // nest_service strips its prefix: the wharf route is `/rooms/{room}`.
    let mut ws = connect(addr, "/wss/rooms/kitchen").await;
    assert_eq!(next_text(&mut ws).await, "kitchen /rooms/kitchen 127.0.0.1");
    let missing = raw_request(addr, upgrade_request("/wss/nope", "").as_bytes()).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "route_not_found");

    // wharf's shutdown closes the mounted connections with 1001 and drains them.
    let _ = stop.send(());
    assert_eq!(expect_close(&mut ws).await.0, 1001);
    within("serve to return", wharf_task)
        .await
        .expect("no panic")
        .expect("serve ok");
    app_task.abort();
}
