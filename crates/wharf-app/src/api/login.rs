//! `POST /auth/login`: `{"account","password"}` → `{"token","expires_at","token_type"}`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wharf::axum::Json;
use wharf::axum::extract::State;
use wharf::http::StatusCode;

use super::ApiState;
use super::body::JsonBody;
use super::error::ApiError;

/// The login request.
#[derive(Debug, Deserialize)]
pub struct LoginRequest {
    /// The account name.
    pub account: String,
    /// The password.
    pub password: String,
}

/// The login answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoginResponse {
    /// The JWT.
    pub token: String,
    /// When it expires, Unix seconds.
    pub expires_at: i64,
    /// Always `"Bearer"`.
    pub token_type: String,
}

/// Checks the password and issues a token; 401 `invalid_credentials` otherwise.
pub(crate) async fn login(
    State(state): State<Arc<ApiState>>,
    JsonBody(request): JsonBody<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let user = state
        .store
        .verify(&request.account, &request.password)
        .await
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "wrong account or password",
            )
        })?;
    let (token, expires_at) = state.tokens.issue(&user).map_err(|e| {
        if e == crate::tokens::TokenError::CannotSign {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string())
        } else {
            ApiError::internal(&e)
        }
    })?;
    Ok(Json(LoginResponse {
        token,
        expires_at,
        token_type: "Bearer".to_owned(),
    }))
}
