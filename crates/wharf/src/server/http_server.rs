//! The `http` kind of server: the application's axum routes, `/health`, `/metrics`
//! (Prometheus), the server's WebSocket routes when it has any (on the same port), and a
//! JSON 404.
//!
//! It speaks HTTP/1.1 and HTTP/2 (`axum::serve` on hyper-util's auto builder: h2 with prior
//! knowledge in plain text, ALPN `h2` behind TLS). Over h2 it advertises
//! `SETTINGS_ENABLE_CONNECT_PROTOCOL`, so a client may open the WebSocket routes as extended
//! CONNECT streams (RFC 8441), many on one TCP connection.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Json;
use axum::http::Uri;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;
use tracing::error;

use super::WebSocketService;
use crate::Sender;
use crate::rejection::Rejection;

/// The server's router. `websocket`: the server's WebSocket routes, which then answer every
/// path the HTTP routes do not (an unknown path still gets the JSON 404, from the
/// WebSocket server's error handler).
pub(super) fn router(
    app: axum::Router,
    websocket: Option<WebSocketService>,
    sender: Sender,
    started: Instant,
) -> axum::Router {
    let metrics_sender = sender.clone();
    let health = move || {
        let sender = sender.clone();
        async move {
            Json(serde_json::json!({
                "status": "ok",
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_secs": started.elapsed().as_secs(),
                "connections": sender.count(),
            }))
        }
    };
    let metrics = move || {
        let sender = metrics_sender.clone();
        async move {
            let text = sender
                .metrics()
                .to_prometheus(sender.cluster_stats().as_ref());
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                text,
            )
        }
    };
    let app = app
        .route("/health", get(health))
        .route("/metrics", get(metrics));
    match websocket {
        Some(websocket) => app.fallback_service(websocket),
        None => app.fallback(not_found),
    }
}

async fn not_found(uri: Uri) -> impl IntoResponse {
    Rejection::route_not_found(uri.path())
        .into_response()
        .map(axum::body::Body::from)
}

pub(super) async fn serve<L>(listener: L, router: axum::Router, mut stop: watch::Receiver<bool>)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
    SocketAddr: for<'a> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let shutdown = async move {
        let _ = stop.changed().await;
    };
    if let Err(e) = axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
    {
        error!(error = %e, "http server failed");
    }
}
