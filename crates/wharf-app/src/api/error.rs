//! The API's error responses: the same JSON shape as handshake rejections,
//! `{"code": <status>, "error": "<kind>", "msg": "<text>"}`.

use wharf::axum::response::{IntoResponse, Response};
use wharf::http::StatusCode;

/// An API error: a status, a stable machine code and a message.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    msg: String,
}

impl ApiError {
    /// An error with `status`, a stable `error` kind and a human message.
    pub fn new(status: StatusCode, error: &'static str, msg: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            msg: msg.into(),
        }
    }

    /// 400 with `error`.
    pub fn bad_request(error: &'static str, msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error, msg)
    }

    /// 500 `internal_error`; the cause is logged, never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "API request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine code.
    pub fn error(&self) -> &'static str {
        self.error
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The same JSON shape as every handshake rejection: {"code", "error", "msg"}.
        wharf::Rejection::new(self.status, self.error, self.msg)
            .into_response()
            .map(wharf::axum::body::Body::from)
            .into_response()
    }
}
