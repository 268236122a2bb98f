//! `[app] origins`: the app's WebSocket routes refuse pages of other sites (403) before the
//! auth middleware runs; the listed origin and non-browser clients reach it.

mod common;

use common::*;

#[tokio::test]
async fn app_routes_refuse_other_origins_before_auth() {
    let app = start("[app]\norigins = [\"https://app.example\"]\n").await;
    for path in ["/wss/demo", "/wss/rooms/lobby"] {
        let (evil, ws) = handshake(app.ws, path, &[("Origin", "https://evil.example")]).await;
        assert!(ws.is_none());
        assert_eq!(evil.status, 403, "{path}: {evil:?}");
        assert_eq!(evil.json()["error"], "origin_forbidden");
        // The listed origin gets as far as the auth middleware (no token: refused there).
        let (good, ws) = handshake(app.ws, path, &[("Origin", "https://app.example")]).await;
        assert!(ws.is_none());
        assert_eq!(good.status, 401, "{path}: {good:?}");
    }
    // The built-in /echo has no origin list.
    let (echo, ws) = handshake(app.ws, "/echo", &[("Origin", "https://evil.example")]).await;
    assert_eq!(echo.status, 101);
    drop(ws);
}
