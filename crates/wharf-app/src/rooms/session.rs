//! What the rooms protocol keeps per connection, set up at the handshake: the check that the
//! client speaks `wharf.rooms.v1`, and its publish rate limit. In a live handover the
//! [`Carried`] state moves with the connection (the bucket's level, the token's claims) and
//! is rebuilt in the successor; its rooms and positions move with the connection itself.

use std::future::{Ready, ready};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

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
        Session::with_tokens(config, None)
    }

    /// A session whose publish bucket holds `tokens` (full when `None`); no bucket when the
    /// limit is off.
    fn with_tokens(config: &RoomsProtocolConfig, tokens: Option<f64>) -> Session {
        let publishes = (config.publish_rate > 0).then(|| {
            let (rate, burst, now) = (
                config.publish_rate,
                config.publish_burst.max(1),
                Instant::now(),
            );
            let bucket = match tokens {
                Some(tokens) => TokenBucket::with_tokens(rate, burst, tokens, now),
                None => TokenBucket::new(rate, burst, now),
            };
            Arc::new(Mutex::new(bucket))
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

impl Session {
    /// What moves with the connection: the publish bucket's level, refilled to now.
    pub fn carry(&self) -> SessionState {
        let publish_tokens = self.publishes.as_ref().map(|bucket| {
            let mut bucket = bucket.lock().unwrap_or_else(|e| e.into_inner());
            bucket.refill(Instant::now());
            bucket.tokens()
        });
        SessionState {
            publish_tokens,
            at_ms: now_ms(),
        }
    }

    /// The session of a connection that moved, under this process's `config`: the bucket
    /// as it was carried, plus what it earned while the connection was in transit (a limit
    /// that was off there starts full here).
    pub fn resume(config: &RoomsProtocolConfig, state: &SessionState) -> Session {
        let in_transit = Duration::from_millis(now_ms().saturating_sub(state.at_ms));
        let earned = in_transit.as_secs_f64() * f64::from(config.publish_rate);
        Session::with_tokens(config, state.publish_tokens.map(|tokens| tokens + earned))
    }
}

/// A [`Session`] as it crosses a live handover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    /// The publish bucket's tokens; `None` when the limit was off.
    pub publish_tokens: Option<f64>,
    /// When they were counted, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// What a rooms connection carries through a live handover
/// ([`wharf::Handler::carry`]): its session and the verified token's claims (its grants).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Carried {
    /// The format of this state; a successor refuses (closes with 1012) one it does not know.
    pub v: u32,
    /// The publish rate limit.
    pub session: SessionState,
    /// The token's claims, when auth is on.
    pub claims: Option<crate::tokens::Claims>,
}

/// The [`Carried`] format this build writes and reads.
pub const CARRIED_VERSION: u32 = 1;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rate: u32, burst: u32) -> RoomsProtocolConfig {
        RoomsProtocolConfig {
            publish_rate: rate,
            publish_burst: burst,
            ..RoomsProtocolConfig::default()
        }
    }

    #[test]
    fn a_spent_bucket_stays_spent_across_a_handover() {
        let config = config(1, 3);
        let session = Session::new(&config);
        for _ in 0..3 {
            session.take_publish(&config).expect("within the burst");
        }
        assert!(session.take_publish(&config).is_err());
        let state = session.carry();
        let json = serde_json::to_value(&state).expect("serialise");
        let state: SessionState = serde_json::from_value(json).expect("parse");
        let resumed = Session::resume(&config, &state);
        assert!(
            resumed.take_publish(&config).is_err(),
            "the level moved, not a fresh burst"
        );
    }

    #[test]
    fn time_in_transit_refills_and_an_off_limit_starts_full() {
        let config = config(10, 5);
        let state = SessionState {
            publish_tokens: Some(0.0),
            at_ms: now_ms() - 1_000,
        };
        let resumed = Session::resume(&config, &state);
        for _ in 0..5 {
            resumed
                .take_publish(&config)
                .expect("refilled over the second in transit");
        }
        let off = SessionState {
            publish_tokens: None,
            at_ms: now_ms(),
        };
        let resumed = Session::resume(&config, &off);
        for _ in 0..5 {
            resumed.take_publish(&config).expect("a full burst");
        }
    }
}
