//! What the rooms protocol keeps per connection, set up at the handshake: the check that the
//! client speaks `wharf.rooms.v1`, and its publish rate limit.

use std::future::{Ready, ready};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wharf::http::StatusCode;
use wharf::http::header::SEC_WEBSOCKET_PROTOCOL;
use wharf::middleware::FromFnLayer;
use wharf::rate_limit::TokenBucket;
use wharf::{HandshakeRequest, Rejection};

use super::ROOMS_PROTOCOL;
use crate::api::error::ApiError;
use crate::config::RoomsProtocolConfig;

/// A connection's own state, as connection data (`conn.get::<Session>()`).
#[derive(Debug, Clone)]
pub struct Session {
    publishes: Option<Arc<Mutex<TokenBucket>>>,
}

impl Session {
    /// A session with a full publish bucket (none when the limit is off).
    fn new(config: &RoomsProtocolConfig) -> Session {
        let publishes = (config.publish_rate > 0).then(|| {
            let burst = config.publish_burst.max(1);
            Arc::new(Mutex::new(TokenBucket::new(
                config.publish_rate,
                burst,
                Instant::now(),
            )))
        });
        Session { publishes }
    }

    /// Takes one publish from the bucket, or 429 `rate_limited`.
    pub fn take_publish(&self, config: &RoomsProtocolConfig) -> Result<(), ApiError> {
        let Some(bucket) = &self.publishes else {
            return Ok(());
        };
        let mut bucket = bucket.lock().unwrap_or_else(|e| e.into_inner());
        bucket.refill(Instant::now());
        if bucket.take() {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "more than {} publishes a second (burst {}); slow down",
                config.publish_rate, config.publish_burst
            ),
        ))
    }
}

/// Refuses a handshake that does not offer `wharf.rooms.v1` (400 `protocol_required`) and
/// gives the others their [`Session`].
pub fn check(
    mut request: HandshakeRequest,
    config: &RoomsProtocolConfig,
) -> Result<HandshakeRequest, Rejection> {
    let offered = request
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|protocol| protocol.trim() == ROOMS_PROTOCOL);
    if !offered {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "protocol_required",
            format!("offer the subprotocol {ROOMS_PROTOCOL} (Sec-WebSocket-Protocol)"),
        ));
    }
    request.extensions_mut().insert(Session::new(config));
    Ok(request)
}

/// [`check`] as a route layer.
pub fn layer(
    config: RoomsProtocolConfig,
) -> FromFnLayer<
    impl Fn(HandshakeRequest) -> Ready<Result<HandshakeRequest, Rejection>>
    + Clone
    + Send
    + Sync
    + 'static,
> {
    let config = Arc::new(config);
    wharf::middleware::from_fn(move |request| ready(check(request, &config)))
}
