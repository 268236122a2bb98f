//! The `http` kind of server: the application's axum routes, `/health`, and a JSON 404.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Json;
use axum::http::Uri;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::error;

use crate::Sender;
use crate::rejection::Rejection;

pub(super) fn router(app: axum::Router, sender: Sender, started: Instant) -> axum::Router {
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
    app.route("/health", get(health)).fallback(not_found)
}

async fn not_found(uri: Uri) -> impl IntoResponse {
    Rejection::route_not_found(uri.path())
        .into_response()
        .map(axum::body::Body::from)
}

pub(super) async fn serve(
    listener: TcpListener,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
) {
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
