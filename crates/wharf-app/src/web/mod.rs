//! The browser pages on the http server: the demo at `/` and the dashboard at `/dashboard`.
//!
//! | path | what |
//! |---|---|
//! | `GET /` | the demo: log in, talk to `/wss/demo`, a room chat on `/wss/rooms/{room}` |
//! | `GET /dashboard` | the admin dashboard, fed by [`FEED_PATH`](crate::feed::FEED_PATH) |
//! | `GET /client.js` | the browser client of the rooms protocol (docs/protocol.md), an ES module |
//! | `GET /config.json` | where the pages find the ws server: `{"ws_url","ws_port","protocol",…}` |
//! | `GET /assets/{file}` | the pages' CSS and JavaScript |
//!
//! The pages are public HTML; what they do needs credentials (a login for the demo, the API
//! key or an admin token for the dashboard). Every asset is embedded in the binary
//! (`include_str!`): no framework, no CDN, nothing fetched from elsewhere, which the
//! `Content-Security-Policy` header enforces.
//!
//! The ws server listens on its own port, so the pages ask `/config.json` for it: `ws_url`
//! when `[app] ws_url` is set (a proxy in front), else `ws_port`, the port the ws server is
//! bound to (known once it is bound, so port 0 works), on the page's own host.

use std::sync::{Arc, OnceLock};

use wharf::axum::Json;
use wharf::axum::Router;
use wharf::axum::extract::{Path, State};
use wharf::axum::response::{IntoResponse, Response};
use wharf::axum::routing::get;
use wharf::http::{HeaderValue, StatusCode, header};

use crate::chat::CHAT_PATH;
use crate::demo::DEMO_PATH;
use crate::feed::FEED_PATH;

const INDEX_HTML: &str = include_str!("assets/index.html");
const DASHBOARD_HTML: &str = include_str!("assets/dashboard.html");
const STYLE_CSS: &str = include_str!("assets/style.css");
const COMMON_JS: &str = include_str!("assets/common.js");
const DEMO_JS: &str = include_str!("assets/demo.js");
const DASHBOARD_JS: &str = include_str!("assets/dashboard.js");
const CLIENT_JS: &str = include_str!("assets/client.js");

/// Only this origin's scripts and styles; WebSockets to any host (the ws server is on
/// another port, maybe behind a proxy).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Where the pages find the ws server.
#[derive(Debug, Clone, Default)]
pub struct WebState {
    /// The ws server's port, set once it is bound.
    pub ws_port: Arc<OnceLock<u16>>,
    /// `[app] ws_url`: the ws server's base URL as browsers reach it, when set.
    pub ws_url: Option<String>,
}

/// The pages' routes, ready to merge into the http server's router.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(|| async { html(INDEX_HTML) }))
        .route("/dashboard", get(|| async { html(DASHBOARD_HTML) }))
        .route("/client.js", get(client_js))
        .route("/config.json", get(config))
        .route("/assets/{file}", get(asset))
        .with_state(Arc::new(state))
}

async fn config(State(state): State<Arc<WebState>>) -> Response {
    let body = serde_json::json!({
        "ws_url": state.ws_url,
        "ws_port": state.ws_port.get(),
        "protocol": crate::APP_PROTOCOL,
        "bearer_prefix": crate::auth::extract::BEARER_PROTOCOL_PREFIX,
        "demo_path": DEMO_PATH,
        "rooms_path": CHAT_PATH.trim_end_matches("{room}"),
        "feed_path": FEED_PATH,
        "rooms_protocol_path": crate::rooms::ROOMS_PATH,
    });
    (no_cache(), Json(body)).into_response()
}

/// `/client.js`, importable from pages on other origins too (a module script needs CORS).
async fn client_js() -> Response {
    let mut response = file(CLIENT_JS, JAVASCRIPT);
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

async fn asset(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "style.css" => file(STYLE_CSS, "text/css; charset=utf-8"),
        "common.js" => file(COMMON_JS, JAVASCRIPT),
        "demo.js" => file(DEMO_JS, JAVASCRIPT),
        "dashboard.js" => file(DASHBOARD_JS, JAVASCRIPT),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A static file of `kind`, not to be sniffed as anything else.
fn file(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        no_cache(),
        body,
    )
        .into_response()
}

fn html(body: &'static str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        no_cache(),
        body,
    )
        .into_response()
}

/// The assets change with the binary; `no-cache` makes browsers revalidate (cheap, small).
fn no_cache() -> [(header::HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))]
}
