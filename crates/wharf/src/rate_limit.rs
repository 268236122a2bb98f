//! The per-connection message rate limit (`max_messages_per_sec`): a token bucket, public
//! so that handlers can limit what they count themselves (publishes per second, say).
//!
//! The bucket holds up to `burst` tokens and gains `rate` per second; every message a
//! client sends takes one. A client within its rate never notices; one that keeps sending
//! faster drains the bucket and is closed with 1008. Time is passed in, so the arithmetic is
//! tested without sleeping.

use std::time::Instant;

use crate::config::Limits;

/// A token bucket: up to `burst` tokens, `rate` more per second, one taken per event.
///
/// ```
/// use std::time::{Duration, Instant};
/// use wharf::rate_limit::TokenBucket;
/// let start = Instant::now();
/// let mut bucket = TokenBucket::new(10, 2, start);
/// assert!(bucket.take() && bucket.take());
/// assert!(!bucket.take(), "the burst is spent");
/// bucket.refill(start + Duration::from_millis(100));
/// assert!(bucket.take(), "10 per second: one more after 100 ms");
/// ```
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// The bucket `limits` ask for, full; `None` when the limit is off.
    pub(crate) fn from_limits(limits: &Limits, now: Instant) -> Option<TokenBucket> {
        let rate = limits.max_messages_per_sec;
        if rate == 0 {
            return None;
        }
        let burst = match limits.message_burst {
            0 => rate,
            burst => burst,
        };
        Some(TokenBucket::new(rate, burst, now))
    }

    /// A full bucket of `burst` tokens gaining `rate` per second, as of `now`.
    pub fn new(rate: u32, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            refilled: now,
        }
    }

    /// A bucket holding `tokens` (at most `burst`) as of `now`: one carried over from
    /// another process, say, with [`tokens`](TokenBucket::tokens).
    ///
    /// ```
    /// use std::time::Instant;
    /// use wharf::rate_limit::TokenBucket;
    /// let now = Instant::now();
    /// let mut spent = TokenBucket::new(10, 5, now);
    /// while spent.take() {}
    /// let mut again = TokenBucket::with_tokens(10, 5, spent.tokens(), now);
    /// assert!(!again.take(), "still spent");
    /// assert_eq!(TokenBucket::with_tokens(10, 5, 99.0, now).tokens(), 5.0);
    /// ```
    pub fn with_tokens(rate: u32, burst: u32, tokens: f64, now: Instant) -> TokenBucket {
        let mut bucket = TokenBucket::new(rate, burst, now);
        if tokens.is_finite() {
            bucket.tokens = tokens.clamp(0.0, bucket.burst);
        }
        bucket
    }

    /// The tokens it holds as of its last [`refill`](TokenBucket::refill).
    pub fn tokens(&self) -> f64 {
        self.tokens
    }

    /// Adds the tokens earned since the last refill. Called once per batch of decoded frames
    /// rather than per frame: a batch arrived at one instant.
    pub fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
    }

    /// Takes a token for one message; false when the bucket is empty.
    pub fn take(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 5, start);
        assert!((0..5).all(|_| bucket.take()), "the burst");
        assert!(!bucket.take(), "empty");
        bucket.refill(start + Duration::from_millis(100));
        assert!(bucket.take(), "one token per 100 ms");
        assert!(!bucket.take());
        // A long pause refills to the burst, no more.
        bucket.refill(start + Duration::from_secs(60));
        assert_eq!((0..100).filter(|_| bucket.take()).count(), 5);
    }

    #[test]
    fn off_by_default_and_burst_defaults_to_rate() {
        let now = Instant::now();
        assert!(TokenBucket::from_limits(&Limits::default(), now).is_none());
        let limits = Limits {
            max_messages_per_sec: 3,
            ..Limits::default()
        };
        let mut bucket = TokenBucket::from_limits(&limits, now).expect("on");
        assert_eq!((0..10).filter(|_| bucket.take()).count(), 3);
    }
}
