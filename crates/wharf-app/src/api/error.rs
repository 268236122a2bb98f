//! The API's error responses: the same JSON shape as handshake rejections,
//! `{"code": <status>, "error": "<kind>", "msg": "<text>"}`.

use wharf::axum::response::{IntoResponse, Response};
use wharf::http::StatusCode;

/// An API error: a status, a stable machine code and a message. A thin wrapper over
/// [`wharf::Rejection`], so the API and the handshake answer with one JSON shape.
#[derive(Debug, Clone)]
pub struct ApiError(wharf::Rejection);

impl ApiError {
    /// An error with `status`, a stable `error` kind and a human message.
    pub fn new(status: StatusCode, error: &'static str, msg: impl Into<String>) -> ApiError {
        ApiError(wharf::Rejection::new(status, error, msg))
    }

    /// 400 with `error`.
    pub fn bad_request(error: &'static str, msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error, msg)
    }

    /// 500 `internal_error`; the cause is logged, never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "API request failed");
        ApiError(wharf::Rejection::internal())
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.0.status()
    }

    /// The same error as a handshake rejection (for WebSocket routes).
    pub fn into_rejection(self) -> wharf::Rejection {
        self.0
    }

    /// The machine code.
    pub fn error(&self) -> &'static str {
        self.0.error()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0
            .into_response()
            .map(wharf::axum::body::Body::from)
            .into_response()
    }
}
