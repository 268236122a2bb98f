//! [`Reconnecting`]: a client that reconnects with exponential backoff and jitter.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::{Client, ClientConfig, ClientError, Event, Message, connect};

/// The delay before reconnect attempt `attempt` (0-based): `base * 2^attempt`, capped at
/// `cap`, then "equal jitter": scaled into `[d/2, d]` by `jitter`, a random sample in `0..1`
/// (values outside are clamped; NaN counts as 0). Pure, so it is easy to test.
///
/// ```
/// use std::time::Duration;
/// use wharf_client::backoff;
///
/// let (base, cap) = (Duration::from_millis(100), Duration::from_secs(5));
/// assert_eq!(backoff(0, base, cap, 1.0), Duration::from_millis(100));
/// assert_eq!(backoff(3, base, cap, 1.0), Duration::from_millis(800));
/// assert_eq!(backoff(3, base, cap, 0.0), Duration::from_millis(400));
/// assert_eq!(backoff(60, base, cap, 1.0), cap);
/// ```
pub fn backoff(attempt: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
    let delay = base.checked_mul(factor).unwrap_or(cap).min(cap);
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(0.0, 1.0)
    };
    let half = delay / 2;
    half + (delay - half).mul_f64(jitter)
}

/// A boxed future returned by an [`OnConnect`] hook.
pub type HookFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ClientError>> + Send + 'a>>;

/// The hook [`Reconnecting`] runs after every successful (re)connect, to authenticate or
/// resubscribe. Any `FnMut(&mut Client) -> HookFuture<'_>` closure implements it.
pub trait OnConnect: Send {
    /// Called with the fresh client; an error drops this connection and retries.
    fn on_connect<'a>(&'a mut self, client: &'a mut Client) -> HookFuture<'a>;
}

impl<F> OnConnect for F
where
    F: for<'a> FnMut(&'a mut Client) -> HookFuture<'a> + Send,
{
    fn on_connect<'a>(&'a mut self, client: &'a mut Client) -> HookFuture<'a> {
        self(client)
    }
}

/// An opt-in client that reconnects when the connection ends.
///
/// [`recv`](Reconnecting::recv) returns the server's [`Event::Close`] (so the application
/// sees it), then the next call reconnects. Network and protocol errors reconnect silently.
/// Attempts wait [`backoff`] between them; after `max_attempts` consecutive failures the
/// last error is returned.
///
/// ```no_run
/// use std::time::Duration;
/// use wharf_client::{ClientConfig, Message, Reconnecting};
///
/// # async fn demo() -> Result<(), wharf_client::ClientError> {
/// let mut ws = Reconnecting::new("ws://127.0.0.1:9502/echo", ClientConfig::default())
///     .with_backoff(Duration::from_millis(100), Duration::from_secs(10))
///     .with_on_connect(|client| {
///         Box::pin(async move { client.send(Message::from("subscribe news")).await })
///     });
/// loop {
///     let event = ws.recv().await?;
///     println!("{event:?}");
/// }
/// # }
/// ```
pub struct Reconnecting {
    url: String,
    config: ClientConfig,
    base: Duration,
    cap: Duration,
    max_attempts: Option<u32>,
    hook: Option<Box<dyn OnConnect>>,
    client: Option<Client>,
    connects: u64,
}

impl std::fmt::Debug for Reconnecting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconnecting")
            .field("url", &self.url)
            .field("connected", &self.client.is_some())
            .field("connects", &self.connects)
            .finish_non_exhaustive()
    }
}

impl Reconnecting {
    /// A reconnecting client for `url`; it connects on first use. Defaults: backoff base
    /// 200 ms, cap 30 s, unlimited attempts, no hook.
    pub fn new(url: impl Into<String>, config: ClientConfig) -> Reconnecting {
        Reconnecting {
            url: url.into(),
            config,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(30),
            max_attempts: None,
            hook: None,
            client: None,
            connects: 0,
        }
    }

    /// Sets the backoff base and cap.
    pub fn with_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.base = base;
        self.cap = cap;
        self
    }

    /// Gives up after `attempts` consecutive failed connects.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Sets the hook run after every (re)connect, as a closure returning a boxed future.
    pub fn with_on_connect<F>(self, hook: F) -> Self
    where
        F: for<'a> FnMut(&'a mut Client) -> HookFuture<'a> + Send + 'static,
    {
        self.with_hook(hook)
    }

    /// Sets the hook run after every (re)connect, as any [`OnConnect`] implementation.
    pub fn with_hook(mut self, hook: impl OnConnect + 'static) -> Self {
        self.hook = Some(Box::new(hook));
        self
    }

    /// How many connections were established (the first one included).
    pub fn connects(&self) -> u64 {
        self.connects
    }

    /// Whether a connection is currently open.
    pub fn is_connected(&self) -> bool {
        self.client.is_some()
    }

    /// The current client, connecting (with backoff) if there is none.
    pub async fn client(&mut self) -> Result<&mut Client, ClientError> {
        let mut attempt = 0u32;
        while self.client.is_none() {
            match self.try_connect().await {
                Ok(client) => {
                    self.connects += 1;
                    self.client = Some(client);
                }
                Err(e) => {
                    if matches!(e, ClientError::InvalidUrl(_)) {
                        return Err(e);
                    }
                    attempt += 1;
                    if self.max_attempts.is_some_and(|max| attempt >= max) {
                        return Err(e);
                    }
                    let sample = f64::from(u32::from_le_bytes(crate::random())) / 4_294_967_296.0;
                    let delay = backoff(attempt - 1, self.base, self.cap, sample);
                    tokio::time::sleep(delay).await;
                }
            }
        }
        self.client.as_mut().ok_or(ClientError::Closed)
    }

    async fn try_connect(&mut self) -> Result<Client, ClientError> {
        let mut client = connect(&self.url, &self.config).await?;
        if let Some(hook) = self.hook.as_mut() {
            hook.on_connect(&mut client).await?;
        }
        Ok(client)
    }

    /// Sends a message, (re)connecting first if needed. A failed send drops the connection
    /// and returns the error (the message is not retried: it may have been delivered).
    pub async fn send(&mut self, message: Message) -> Result<(), ClientError> {
        let result = self.client().await?.send(message).await;
        if result.is_err() {
            self.client = None;
        }
        result
    }

    /// The next event, reconnecting as needed; see the type's documentation.
    pub async fn recv(&mut self) -> Result<Event, ClientError> {
        loop {
            match self.client().await?.recv().await {
                Ok(Some(event)) => {
                    if matches!(event, Event::Close { .. }) {
                        self.client = None;
                    }
                    return Ok(event);
                }
                Ok(None) | Err(_) => self.client = None,
            }
        }
    }

    /// Closes the current connection (if any) and stops; a later call to `recv` or `send`
    /// connects again.
    pub async fn close(
        &mut self,
        code: u16,
        reason: &str,
    ) -> Result<Option<(u16, String)>, ClientError> {
        match self.client.take() {
            Some(mut client) => client.close(code, reason).await,
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_until_the_cap() {
        let (base, cap) = (100 * MS, 3000 * MS);
        let got: Vec<_> = (0..8).map(|a| backoff(a, base, cap, 1.0)).collect();
        let want = [100, 200, 400, 800, 1600, 3000, 3000, 3000].map(|m| m * MS);
        assert_eq!(got, want);
    }

    #[test]
    fn jitter_stays_within_half_and_full() {
        let (base, cap) = (100 * MS, 10_000 * MS);
        for attempt in 0..20 {
            let full = backoff(attempt, base, cap, 1.0);
            for step in 0..=10 {
                let d = backoff(attempt, base, cap, f64::from(step) / 10.0);
                assert!(d >= full / 2 && d <= full, "{attempt} {step}: {d:?}");
                assert!(d <= cap);
            }
            assert_eq!(backoff(attempt, base, cap, 0.0), full / 2);
        }
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        let cap = Duration::from_secs(60);
        assert_eq!(backoff(u32::MAX, Duration::MAX, cap, 1.0), cap);
        assert_eq!(backoff(1000, MS, cap, 1.0), cap);
        assert_eq!(backoff(5, MS, cap, f64::NAN), 16 * MS);
        assert_eq!(backoff(5, MS, cap, -3.0), 16 * MS);
        assert_eq!(backoff(5, MS, cap, 7.0), 32 * MS);
        assert_eq!(backoff(0, Duration::ZERO, cap, 0.5), Duration::ZERO);
        assert_eq!(backoff(3, 10 * MS, Duration::ZERO, 1.0), Duration::ZERO);
    }
}
