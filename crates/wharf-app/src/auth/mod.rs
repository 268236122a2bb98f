//! Handshake auth: the seed's `WebSocketAuthMiddleware`, decided before the upgrade.
//!
//! On the routes it guards (a route layer on the app's WebSocket routes, not on the
//! built-in `/echo`), a handshake passes only when:
//!
//! 1. the route is in the whitelist `auth.routes` (else 403 `route_forbidden`);
//! 2. it carries a token (see [`extract`]; else 401 `token_missing`);
//! 3. the token verifies (else 401 with [`TokenError::code`](crate::tokens::TokenError::code):
//!    `token_expired`, `token_invalid_signature`, `token_wrong_algorithm`, …).
//!
//! The verified [`Claims`] become connection data: `conn.get::<Claims>()`. With
//! `auth.enabled = false` (or `JWT_OPEN=false`) every handshake passes, as in the seed.

pub mod extract;

use std::future::{Ready, ready};
use std::sync::Arc;

use http::StatusCode;
use tracing::debug;
use wharf::middleware::FromFnLayer;
use wharf::{HandshakeRequest, Rejection, RouteParams};

use self::extract::{Found, find_token};
use crate::config::AuthConfig;
use crate::tokens::{Claims, Tokens};

/// Decides one handshake. Cheap to share.
#[derive(Debug, Clone)]
pub struct Guard {
    tokens: Arc<Tokens>,
    config: AuthConfig,
}

impl Guard {
    /// A guard verifying with `tokens` under `config`.
    pub fn new(tokens: Arc<Tokens>, config: AuthConfig) -> Guard {
        Guard { tokens, config }
    }

    /// The same guard with `route` (a path or route pattern) allowed besides `auth.routes`:
    /// for routes the app mounts behind tokens whatever the seed's whitelist says, such as
    /// the rooms protocol.
    pub fn allowing(&self, route: &str) -> Guard {
        let mut guard = self.clone();
        if !guard.config.routes.iter().any(|r| r == route) {
            guard.config.routes.push(route.to_owned());
        }
        guard
    }

    /// Passes `request` on with its [`Claims`] inserted, or refuses it.
    pub fn check(&self, mut request: HandshakeRequest) -> Result<HandshakeRequest, Rejection> {
        if !self.config.enabled {
            return Ok(request);
        }
        let pattern = request
            .extensions()
            .get::<RouteParams>()
            .map(|p| p.route.clone());
        let path = request.uri().path();
        let allowed = self
            .config
            .routes
            .iter()
            .any(|r| r == path || pattern.as_deref() == Some(r.as_str()));
        if !allowed {
            debug!(path, "handshake refused: route not in auth.routes");
            return Err(Rejection::new(
                StatusCode::FORBIDDEN,
                "route_forbidden",
                format!("the route {path} may not be opened"),
            ));
        }
        let token = match find_token(&request, self.config.query_token)? {
            Found::Token(token) => token,
            Found::Missing => {
                return Err(Rejection::new(
                    StatusCode::UNAUTHORIZED,
                    "token_missing",
                    "send a token: Authorization: Bearer <token>, or the subprotocol wharf.bearer.<token>",
                ));
            }
            Found::QueryDisabled => {
                return Err(Rejection::new(
                    StatusCode::UNAUTHORIZED,
                    "token_missing",
                    "the token query parameter is disabled (auth.query_token = false); send Authorization: Bearer <token> or the subprotocol wharf.bearer.<token>",
                ));
            }
        };
        let claims: Claims = self.tokens.verify(token).map_err(|e| {
            debug!(code = e.code(), "handshake refused: bad token");
            let status = if e.is_client_error() {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            Rejection::new(status, e.code(), e.to_string())
        })?;
        // The connection is indexed by its user, for push-to-user and presence.
        request
            .extensions_mut()
            .insert(wharf::UserId::new(claims.uid.to_string()));
        request.extensions_mut().insert(claims);
        Ok(request)
    }
}

/// The checking function's result, as `from_fn` wants it.
pub type CheckFuture = Ready<Result<HandshakeRequest, Rejection>>;

/// The guard as a handshake middleware, for `Route::layer` or `Router::layer`.
pub fn layer(
    guard: Guard,
) -> FromFnLayer<impl Fn(HandshakeRequest) -> CheckFuture + Clone + Send + Sync + 'static> {
    let guard = Arc::new(guard);
    wharf::middleware::from_fn(move |request: HandshakeRequest| ready(guard.check(request)))
}
