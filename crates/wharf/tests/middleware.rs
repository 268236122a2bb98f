//! Handshake middleware: order, rejections before the upgrade, ready tower layers.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wharf::http::StatusCode;
use wharf::{Echo, HandshakeRequest, Rejection, Route, Router, middleware};
use wharf_proto::OpCode;

both_doors! {
    server_layers_run_before_route_layers_each_in_order_added,
    a_rejecting_middleware_answers_before_the_upgrade,
    tower_timeout_layer_turns_a_slow_middleware_into_500,
    tower_concurrency_limit_layer_plugs_in,
    server_layers_guard_config_mounted_routes_too,
}

fn record(
    log: &Log,
    name: &'static str,
) -> middleware::FromFnLayer<
    impl Fn(HandshakeRequest) -> std::future::Ready<Result<HandshakeRequest, Rejection>>
    + Clone
    + Send
    + Sync
    + 'static,
> {
    let log = log.clone();
    middleware::from_fn(move |req: HandshakeRequest| {
        log.lock().expect("log").push(name.to_owned());
        std::future::ready(Ok(req))
    })
}

async fn server_layers_run_before_route_layers_each_in_order_added() {
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let route = Route::new(Echo)
        .layer(record(&log, "route 1"))
        .layer(record(&log, "route 2"));
    let router = Router::new()
        .route("/echo", route)
        .route("/plain", Echo)
        .layer(record(&log, "server 1"))
        .layer(record(&log, "server 2"));
    let server = start_ws(router).await;
    let mut ws = connect(server.addr(), "/echo").await;
    assert_eq!(
        *log.lock().expect("log"),
        ["server 1", "server 2", "route 1", "route 2"]
    );
    assert_echo(&mut ws, "through").await;
    log.lock().expect("log").clear();
    let plain = connect(server.addr(), "/plain").await;
    assert_eq!(*log.lock().expect("log"), ["server 1", "server 2"]);
    // An unknown route runs no middleware at all.
    log.lock().expect("log").clear();
    let response = raw_request(server.addr(), upgrade_request("/nope", "").as_bytes()).await;
    assert_eq!(response.status, 404);
    assert!(log.lock().expect("log").is_empty());
    drop((ws, plain));
    server.shutdown().await;
}

async fn a_rejecting_middleware_answers_before_the_upgrade() {
    let (recorder, mut events) = Recorder::new();
    let auth = middleware::from_fn(|req: HandshakeRequest| async move {
        let ok = req
            .headers()
            .get("authorization")
            .is_some_and(|v| v == "Bearer good");
        if ok {
            Ok(req)
        } else {
            Err(
                Rejection::new(StatusCode::UNAUTHORIZED, "unauthorized", "token required")
                    .with_code(40101),
            )
        }
    });
    let server = start_ws(Router::new().route("/secure", Route::new(recorder).layer(auth))).await;
    let response = raw_request(server.addr(), upgrade_request("/secure", "").as_bytes()).await;
    assert_eq!(response.status, 401);
    assert_eq!(response.header("sec-websocket-accept"), None);
    let body = response.json();
    assert_eq!(body["code"], 40101);
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(body["msg"], "token required");
    let response = raw_request(
        server.addr(),
        upgrade_request("/secure", "Authorization: Bearer bad\r\n").as_bytes(),
    )
    .await;
    assert_eq!(response.status, 401);
    // No handler ran for the refused handshakes.
    assert!(events.0.try_recv().is_err());
    let mut request = format!("ws://{}/secure", server.addr())
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("authorization", "Bearer good".parse().expect("header"));
    let mut ws = connect_request(server.addr(), request).await;
    greeting_id(&mut ws).await;
    drop(ws);
    server.shutdown().await;
}

async fn tower_timeout_layer_turns_a_slow_middleware_into_500() {
    let slow = middleware::from_fn(|req: HandshakeRequest| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, Rejection>(req)
    });
    let router = Router::new()
        .route("/slow", Route::new(Echo).layer(slow))
        .route("/fast", Echo)
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(
            100,
        )));
    let server = start_ws(router).await;
    // The middleware would take a minute; the 100 ms timeout answers long before (the bound
    // is loose so that only a timeout that does not fire breaks it, not a loaded machine).
    let started = std::time::Instant::now();
    let response = raw_request(server.addr(), upgrade_request("/slow", "").as_bytes()).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.status, 500);
    let body = response.json();
    assert_eq!(body["code"], 500);
    assert_eq!(body["error"], "internal_error");
    assert!(!response.body.contains("elapsed"), "{}", response.body);
    // The timeout layer does not disturb fast routes.
    let mut ws = connect(server.addr(), "/fast").await;
    assert_echo(&mut ws, "quick").await;
    drop(ws);
    server.shutdown().await;
}

async fn tower_concurrency_limit_layer_plugs_in() {
    // A gate behind the limit holds each handshake until the test lets it through and counts
    // the handshakes that reached it.
    let entered = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(tokio::sync::Semaphore::new(0));
    let gate = {
        let (entered, open) = (entered.clone(), open.clone());
        middleware::from_fn(move |req: HandshakeRequest| {
            let (entered, open) = (entered.clone(), open.clone());
            async move {
                entered.fetch_add(1, Ordering::SeqCst);
                open.acquire().await.expect("gate open").forget();
                Ok::<_, Rejection>(req)
            }
        })
    };
    let route = Route::new(Echo)
        .layer(tower::limit::ConcurrencyLimitLayer::new(1))
        .layer(gate);
    let server = start_ws(Router::new().route("/limited", route)).await;
    let a = tokio::spawn(RawWs::connect(server.addr(), "/limited"));
    eventually("the first handshake to reach the gate", || {
        entered.load(Ordering::SeqCst) == 1
    })
    .await;
    let b = tokio::spawn(RawWs::connect(server.addr(), "/limited"));
    // While the first holds the only permit, the second waits in front of the limit. Without
    // the limit it would reach the gate within milliseconds.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        entered.load(Ordering::SeqCst),
        1,
        "the limit let a second one in"
    );
    open.add_permits(1);
    let mut a = within("first handshake", a).await.expect("first");
    // The limit covers the handshake only: once the first is upgraded the second goes on.
    eventually("the second handshake to reach the gate", || {
        entered.load(Ordering::SeqCst) == 2
    })
    .await;
    open.add_permits(1);
    let mut b = within("second handshake", b).await.expect("second");
    for (ws, text) in [(&mut a, b"a"), (&mut b, b"b")] {
        ws.send(OpCode::Text, text).await;
        assert_eq!(ws.read_frame().await.payload, text);
    }
    drop((a, b));
    server.shutdown().await;
}

async fn server_layers_guard_config_mounted_routes_too() {
    let guard = middleware::from_fn(|req: HandshakeRequest| async move {
        if req.headers().contains_key("x-pass") {
            Ok(req)
        } else {
            Err(Rejection::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "x-pass required",
            ))
        }
    });
    let config = wharf::Config::empty().with_server(ws_server().with_route("/echo", "echo"));
    let builder = wharf::Server::builder(config)
        .websocket("ws", Router::new().route("/app", Echo).layer(guard));
    let server = start(builder).await;
    for path in ["/echo", "/app"] {
        let response = raw_request(server.addr(), upgrade_request(path, "").as_bytes()).await;
        assert_eq!(response.status, 403, "{path}");
        assert_eq!(response.json()["error"], "forbidden");
        let ws = RawWs::connect_with(
            server.addr(),
            upgrade_request(path, "X-Pass: 1\r\n").as_bytes(),
        )
        .await;
        drop(ws);
    }
    server.shutdown().await;
}
