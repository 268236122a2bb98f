//! Who may use the admin endpoints (`/api/*`): the API key, or a JWT with `admin: true`.
//!
//! The key comes as `X-Api-Key: <key>` or `Authorization: Bearer <key>`. Without
//! credentials: 401 `credentials_missing`; with a wrong key or an invalid token: 403
//! `bad_credentials`; with a valid token of a non-admin: 403 `not_admin`.

use wharf::axum::extract::FromRequestParts;
use wharf::http::request::Parts;
use wharf::http::{HeaderMap, StatusCode, header};

use super::ApiState;
use super::error::ApiError;
use std::sync::Arc;

use crate::tokens::Tokens;

/// Proof that the request may use the admin endpoints.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<Arc<ApiState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, Self::Rejection> {
        check(&parts.headers, state)
    }
}

fn check(headers: &HeaderMap, state: &ApiState) -> Result<Admin, ApiError> {
    let wrong = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "bad_credentials",
            "wrong credentials",
        )
    };
    if let Some(key) = headers.get("x-api-key") {
        let key = key.to_str().map_err(|_| wrong())?;
        return match &state.api_key {
            Some(expected) if same(key.trim(), expected) => Ok(Admin),
            _ => Err(wrong()),
        };
    }
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "credentials_missing",
            "send X-Api-Key: <key> or Authorization: Bearer <key or admin token>",
        ));
    };
    let value = value.to_str().map_err(|_| wrong())?.trim();
    let presented = match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => {
            value.get(7..).unwrap_or("").trim()
        }
        _ => value,
    };
    verify(presented, state.api_key.as_deref(), &state.tokens)
}

/// Checks one presented credential: the API key, or a JWT with `admin: true`. 403
/// `bad_credentials` for a wrong key or an invalid token, 403 `not_admin` for a valid
/// token without admin rights.
///
/// Shared by `/api/*` and the dashboard's feed handshake
/// ([`crate::feed`]), so both accept exactly the same credentials.
pub fn verify(presented: &str, api_key: Option<&str>, tokens: &Tokens) -> Result<Admin, ApiError> {
    if let Some(expected) = api_key {
        if same(presented, expected) {
            return Ok(Admin);
        }
    }
    match tokens.verify(presented) {
        Ok(claims) if claims.admin => Ok(Admin),
        Ok(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_admin",
            "this token has no admin rights",
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "bad_credentials",
            "wrong credentials",
        )),
    }
}

/// Compares without an early exit on the first differing byte.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
