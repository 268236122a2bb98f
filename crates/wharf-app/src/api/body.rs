//! JSON request bodies with our error shape instead of axum's plain-text rejections.

use serde::de::DeserializeOwned;
use wharf::axum::body::Bytes;
use wharf::axum::extract::{FromRequest, Request};
use wharf::http::StatusCode;

use super::error::ApiError;

/// The largest request body the API reads (413 `body_too_large` above it).
pub const MAX_BODY: usize = 1 << 20;

/// A JSON body of type `T`. Errors: 413 `body_too_large`, 400 `bad_body` (unreadable),
/// 400 `bad_json` (not JSON), 422 `invalid_body` (JSON of the wrong shape).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read(request, state).await?;
        parse(&bytes).map(JsonBody)
    }
}

/// Reads the whole body (at most [`MAX_BODY`] bytes).
async fn read<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is over {MAX_BODY} bytes"),
            )
        } else {
            ApiError::bad_request("bad_body", e.body_text())
        }
    })
}

/// Parses `bytes` as JSON `T` with the API's error codes.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            e.to_string(),
        ),
        _ => ApiError::bad_request("bad_json", e.to_string()),
    })
}

/// An optional JSON body: an empty body is `None`; otherwise as [`JsonBody`].
#[derive(Debug)]
pub struct MaybeJson<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for MaybeJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(MaybeJson(None));
        }
        parse(&bytes).map(|v| MaybeJson(Some(v)))
    }
}
