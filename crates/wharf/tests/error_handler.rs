//! A custom `ErrorHandler`: its rejections, middleware errors and handler-error close codes.

mod common;

use common::*;
use wharf::http::{HeaderName, HeaderValue, StatusCode};
use wharf::{
    BoxError, CloseCode, Config, Conn, ErrorHandler, HandlerError, HandshakeRequest,
    HandshakeResponse, Initiator, Rejection, Route, Router, Server, middleware,
};

both_doors! {
    custom_404,
    every_refusal_passes_through_the_error_handler,
    a_middleware_rejection_is_sent_as_the_middleware_built_it,
    custom_middleware_error,
    handler_errors_and_panics_map_to_the_custom_close_code,
}

struct AppErrors;

impl ErrorHandler for AppErrors {
    fn rejection(&self, rejection: Rejection) -> HandshakeResponse {
        let status = rejection.status();
        let mut response = if status == StatusCode::NOT_FOUND {
            Rejection::new(StatusCode::NOT_FOUND, "no_such_room", "try /rec").with_code(40400)
        } else {
            rejection
        }
        .into_response();
        response.headers_mut().insert(
            HeaderName::from_static("x-app"),
            HeaderValue::from_static("wharf-test"),
        );
        response
    }

    fn middleware_error(&self, error: &BoxError) -> HandshakeResponse {
        Rejection::new(StatusCode::BAD_GATEWAY, "upstream", error.to_string()).into_response()
    }

    fn handler_error(&self, _conn: &Conn, error: &HandlerError) -> (CloseCode, String) {
        (CloseCode::new(4000), format!("app: {error}"))
    }
}

async fn server() -> (Running, Events) {
    let (recorder, events) = Recorder::new();
    let failing = middleware::from_fn(|_req: HandshakeRequest| async move {
        Err::<HandshakeRequest, Rejection>(Rejection::internal())
    });
    let router = Router::new()
        .route("/rec", recorder.clone())
        .route("/refused", Route::new(recorder.clone()).layer(failing))
        .route(
            "/broken",
            Route::new(recorder).layer(tower::layer::layer_fn(|_inner| {
                tower::service_fn(|_req: HandshakeRequest| async move {
                    Err::<HandshakeResponse, BoxError>("database down".into())
                })
            })),
        );
    let builder = Server::builder(Config::empty().with_server(ws_server()))
        .websocket("ws", router)
        .error_handler("ws", AppErrors);
    (start(builder).await, events)
}

async fn custom_404() {
    let (server, _events) = server().await;
    let response = raw_request(server.addr(), upgrade_request("/nope", "").as_bytes()).await;
    assert_eq!(response.status, 404);
    assert_eq!(response.header("x-app"), Some("wharf-test"));
    let body = response.json();
    assert_eq!(body["code"], 40400);
    assert_eq!(body["error"], "no_such_room");
    server.shutdown().await;
}

async fn every_refusal_passes_through_the_error_handler() {
    let (server, _events) = server().await;
    // A malformed head, a bad key, a plain GET, a bad version.
    for (request, status) in [
        (b"NOT HTTP AT ALL\r\n\r\n".to_vec(), 400),
        (
            upgrade_request("/rec", "")
                .replace(KEY, "short")
                .into_bytes(),
            400,
        ),
        (plain_get("/rec").into_bytes(), 426),
        (
            upgrade_request("/rec", "")
                .replace("Version: 13", "Version: 8")
                .into_bytes(),
            426,
        ),
    ] {
        let response = raw_request(server.addr(), &request).await;
        assert_eq!(response.status, status);
        if door() == Door::Mounted && request.starts_with(b"NOT HTTP") {
            // On the mounted door the HTTP server parses the head: hyper answers it.
            assert_eq!(response.header("x-app"), None, "{response:?}");
            continue;
        }
        assert_eq!(response.header("x-app"), Some("wharf-test"), "{response:?}");
    }
    server.shutdown().await;
}

async fn a_middleware_rejection_is_sent_as_the_middleware_built_it() {
    // from_fn turns its Rejection into a response itself; the server's error handler does
    // not see it (it only sees rejections wharf makes and middleware errors).
    let (server, _events) = server().await;
    let response = raw_request(server.addr(), upgrade_request("/refused", "").as_bytes()).await;
    assert_eq!(response.status, 500);
    assert_eq!(response.json()["error"], "internal_error");
    assert_eq!(response.header("x-app"), None);
    server.shutdown().await;
}

async fn custom_middleware_error() {
    let (server, _events) = server().await;
    let response = raw_request(server.addr(), upgrade_request("/broken", "").as_bytes()).await;
    assert_eq!(response.status, 502);
    assert_eq!(response.json()["msg"], "database down");
    server.shutdown().await;
}

async fn handler_errors_and_panics_map_to_the_custom_close_code() {
    let (server, mut events) = server().await;
    let mut ws = connect(server.addr(), "/rec").await;
    let id = greeting_id(&mut ws).await;
    send_text(&mut ws, "fail").await;
    assert_eq!(
        expect_close(&mut ws).await,
        (4000, "app: secret failure detail".to_owned())
    );
    let event = events.close_of(id).await;
    assert_eq!(event.code, CloseCode::new(4000));
    assert_eq!(event.initiator, Initiator::Server);
    let mut ws = connect(server.addr(), "/rec").await;
    greeting_id(&mut ws).await;
    send_text(&mut ws, "panic").await;
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!(code, 4000);
    assert!(reason.contains("handler panicked on purpose"), "{reason}");
    server.shutdown().await;
}
