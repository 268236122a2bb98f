//! `wharf bench echo`: N connections send messages of one size and time the echoes.
//!
//! Each connection keeps up to `pipeline` messages in flight. With one in flight a
//! connection is a plain send → receive loop; with more, a writer and a reader run side by
//! side in the connection's task (`join!`, no extra task, no cross-thread wake-up) and share
//! a bounded channel of send times: the writer waits for room in it, so the channel's
//! capacity *is* the pipelining depth, and echoes come back in order, so the reader pairs
//! each echo with the oldest send time.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};

use super::report::{EchoReport, Errors, Latency};
use super::{Counters, open_all};
use crate::{Client, ClientConfig, ClientError, ClientReceiver, Event, Message};

/// Parameters of an echo run.
///
/// ```
/// use std::time::Duration;
/// use wharf_client::bench::EchoOptions;
///
/// let options = EchoOptions::default()
///     .with_connections(50)
///     .with_size(32)
///     .with_pipeline(16)
///     .with_duration(Duration::from_secs(10));
/// assert_eq!(options.warmup, Duration::ZERO);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EchoOptions {
    /// Concurrent connections (default 50).
    pub connections: u64,
    /// Payload size of each message in bytes (default 32).
    pub size: usize,
    /// Messages in flight per connection, at least 1 (default 1: strict request/response).
    pub pipeline: usize,
    /// Length of the measurement window (default 10 s).
    pub duration: Duration,
    /// Load before the window opens, not counted (default 0).
    pub warmup: Duration,
    /// Send binary instead of text messages (default false).
    pub binary: bool,
}

impl Default for EchoOptions {
    fn default() -> Self {
        EchoOptions {
            connections: 50,
            size: 32,
            pipeline: 1,
            duration: Duration::from_secs(10),
            warmup: Duration::ZERO,
            binary: false,
        }
    }
}

impl EchoOptions {
    /// Sets the number of connections.
    pub fn with_connections(mut self, n: u64) -> Self {
        self.connections = n;
        self
    }

    /// Sets the message size in bytes.
    pub fn with_size(mut self, bytes: usize) -> Self {
        self.size = bytes;
        self
    }

    /// Sets the pipelining depth (messages in flight per connection).
    pub fn with_pipeline(mut self, depth: usize) -> Self {
        self.pipeline = depth;
        self
    }

    /// Sets the measurement window.
    pub fn with_duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    /// Sets the warm-up before the window.
    pub fn with_warmup(mut self, warmup: Duration) -> Self {
        self.warmup = warmup;
        self
    }

    /// Sends binary messages.
    pub fn with_binary(mut self, binary: bool) -> Self {
        self.binary = binary;
        self
    }
}

/// How long the echoes still in flight when the window closes may take to arrive.
const DRAIN: Duration = Duration::from_secs(2);

/// When to count, when to stop.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// Echoes received from here on are counted.
    start: Instant,
    /// No message is sent after this.
    end: Instant,
    /// Nothing waits past this.
    hard: Instant,
}

/// What one connection measured.
#[derive(Debug, Default)]
struct ConnResult {
    messages: u64,
    latency: Latency,
    errors: Errors,
}

/// Runs an echo load against `url` and returns what it measured; bounded by the connect
/// timeout plus warm-up, duration and a few seconds to drain and close.
///
/// ```no_run
/// use std::time::Duration;
/// use wharf_client::ClientConfig;
/// use wharf_client::bench::{EchoOptions, echo};
///
/// # async fn demo() {
/// let options = EchoOptions::default().with_duration(Duration::from_secs(2));
/// let report = echo("ws://127.0.0.1:9502/echo", &ClientConfig::default(), &options).await;
/// println!("{report}");
/// # }
/// ```
pub async fn echo(url: &str, config: &ClientConfig, options: &EchoOptions) -> EchoReport {
    echo_with(url, config, options, &Arc::new(Counters::default())).await
}

pub(crate) async fn echo_with(
    url: &str,
    config: &ClientConfig,
    options: &EchoOptions,
    counters: &Arc<Counters>,
) -> EchoReport {
    let mut errors = Errors::default();
    let clients = open_all(url, config, options.connections, counters, &mut errors).await;
    let opened = clients.len() as u64;
    let now = Instant::now();
    let start = now + options.warmup;
    let window = Window {
        start,
        end: start + options.duration,
        hard: start + options.duration + DRAIN + config.close_timeout,
    };
    let payloads = Payloads {
        size: options.size,
        binary: options.binary,
    };
    let pipeline = options.pipeline.max(1);
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let counters = counters.clone();
            tokio::spawn(async move {
                let mut result = ConnResult::default();
                if pipeline == 1 {
                    one_at_a_time(client, payloads, window, &counters, &mut result).await;
                } else {
                    pipelined(client, payloads, pipeline, window, &counters, &mut result).await;
                }
                result
            })
        })
        .collect();
    let mut messages = 0;
    let mut latency = Latency::new();
    for task in tasks {
        match task.await {
            Ok(result) => {
                messages += result.messages;
                latency.merge(&result.latency);
                errors.merge(&result.errors);
            }
            Err(_) => errors.add("panic"),
        }
    }
    EchoReport {
        url: url.to_owned(),
        connections: options.connections,
        opened,
        size: options.size,
        pipeline,
        binary: options.binary,
        window: window.end.saturating_duration_since(window.start),
        messages,
        latency,
        errors,
    }
}

/// Builds message `seq` and checks echoes: a zero-padded sequence number over a fixed
/// pattern, so reordering or corruption is caught without keeping copies of what was sent.
#[derive(Debug, Clone, Copy)]
struct Payloads {
    size: usize,
    binary: bool,
}

impl Payloads {
    /// How many of the 12 sequence digits fit.
    fn prefix(&self) -> usize {
        SEQ_DIGITS.min(self.size)
    }

    fn bytes(&self, seq: u64) -> Vec<u8> {
        let mut out = vec![b'x'; self.size];
        let n = self.prefix();
        // The last `n` digits, so tiny messages still vary.
        out[..n].copy_from_slice(&digits(seq)[SEQ_DIGITS - n..]);
        out
    }

    fn message(&self, seq: u64) -> Message {
        let bytes = self.bytes(seq);
        if self.binary {
            Message::Binary(Bytes::from(bytes))
        } else {
            // Digits and `x` only: always UTF-8, so this never falls back.
            Message::Text(String::from_utf8(bytes).unwrap_or_default())
        }
    }

    /// Whether `message` is the echo of message `seq` (without building it again).
    fn matches(&self, seq: u64, message: &Message) -> bool {
        let got = message.as_bytes();
        let n = self.prefix();
        matches!(message, Message::Binary(_)) == self.binary
            && got.len() == self.size
            && got[..n] == digits(seq)[SEQ_DIGITS - n..]
            && got[n..].iter().all(|&b| b == b'x')
    }
}

const SEQ_DIGITS: usize = 12;

/// `seq` as 12 zero-padded decimal digits (modulo 10^12).
fn digits(mut seq: u64) -> [u8; SEQ_DIGITS] {
    let mut out = [b'0'; SEQ_DIGITS];
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (seq % 10) as u8;
        seq /= 10;
    }
    out
}

/// Send one, wait for its echo, repeat.
async fn one_at_a_time(
    mut client: Client,
    payloads: Payloads,
    window: Window,
    counters: &Counters,
    result: &mut ConnResult,
) {
    let mut seq = 0u64;
    while Instant::now() < window.end {
        let sent = Instant::now();
        if let Err(e) = client.send(payloads.message(seq)).await {
            return fail(result, counters, &e);
        }
        let echo = match timeout_at(window.end + DRAIN, next_message(client.receiver_mut())).await {
            Ok(Ok(echo)) => echo,
            Ok(Err(e)) => return fail(result, counters, &e),
            Err(_) => return fail(result, counters, &ClientError::Timeout),
        };
        let received = Instant::now();
        if !payloads.matches(seq, &echo) {
            return mismatch(result, counters);
        }
        if received >= window.start && received <= window.end {
            result.messages += 1;
            result.latency.record(received - sent);
            counters.messages.fetch_add(1, Ordering::Relaxed);
        }
        seq += 1;
    }
    close(client, window).await;
}

/// Up to `depth` messages in flight: a writer and a reader joined in one task.
async fn pipelined(
    client: Client,
    payloads: Payloads,
    depth: usize,
    window: Window,
    counters: &Counters,
    result: &mut ConnResult,
) {
    let (sender, mut receiver) = client.split();
    let (times, pending) = mpsc::channel::<(Instant, u64)>(depth);
    let writer = async move {
        let mut seq = 0u64;
        let mut batch = Vec::with_capacity(depth);
        // `reserve` fails once the reader stopped (after an error): nothing more to send.
        while let Ok(first) = times.reserve().await {
            // Every free slot at once, written with one syscall: echoes come back in
            // bursts, and one write per message would make the load generator the limit.
            let mut permits = vec![first];
            while let Ok(permit) = times.try_reserve() {
                permits.push(permit);
            }
            let now = Instant::now();
            if now >= window.end {
                break;
            }
            for permit in permits {
                permit.send((now, seq));
                batch.push(payloads.message(seq));
                seq += 1;
            }
            sender.send_batch(&batch).await?;
            batch.clear();
        }
        // Dropping `times` here tells the reader that no more echoes are due.
        Ok::<_, ClientError>(sender)
    };
    let mut messages = 0u64;
    let mut latency = Latency::new();
    let reader = async {
        // Owned here: when the reader returns early, dropping it wakes a writer blocked in
        // `reserve`.
        let mut pending = pending;
        // `None` once the writer finished and every echo it waited for arrived.
        while let Some((sent, seq)) = pending.recv().await {
            let echo = match timeout_at(window.end + DRAIN, next_message(&mut receiver)).await {
                Ok(Ok(echo)) => echo,
                Ok(Err(e)) => return Some(super::report::kind(&e)),
                Err(_) => return Some("timeout".to_owned()),
            };
            let received = Instant::now();
            if !payloads.matches(seq, &echo) {
                return Some("mismatch".to_owned());
            }
            if received >= window.start && received <= window.end {
                messages += 1;
                latency.record(received - sent);
                counters.messages.fetch_add(1, Ordering::Relaxed);
            }
        }
        None
    };
    let Ok((written, read_error)) =
        timeout_at(window.hard, async { tokio::join!(writer, reader) }).await
    else {
        // A send blocked on a server that stopped reading.
        result.errors.add("deadline");
        counters.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    result.messages += messages;
    result.latency.merge(&latency);
    if let Some(kind) = read_error {
        result.errors.add(kind);
        counters.errors.fetch_add(1, Ordering::Relaxed);
        return;
    }
    match written {
        Ok(sender) => {
            // Close handshake, bounded; the outcome is not part of the measurement.
            let close = async {
                sender.close(1000, "").await?;
                loop {
                    if let Some(Event::Close { .. }) | None = receiver.recv().await? {
                        return Ok::<_, ClientError>(());
                    }
                }
            };
            let _ = timeout_at(window.hard, close).await;
        }
        Err(e) => fail(result, counters, &e),
    }
}

/// Closes with 1000 and waits (bounded) for the reply; not part of the measurement.
async fn close(mut client: Client, window: Window) {
    let _ = timeout_at(window.hard, client.close(1000, "")).await;
}

/// The next text or binary message, skipping pings and pongs; the server closing first is
/// [`ClientError::Closed`].
async fn next_message(receiver: &mut ClientReceiver) -> Result<Message, ClientError> {
    loop {
        match receiver.recv().await? {
            Some(Event::Message(message)) => return Ok(message),
            Some(Event::Ping(_) | Event::Pong(_)) => {}
            Some(Event::Close { .. }) | None => return Err(ClientError::Closed),
        }
    }
}

fn fail(result: &mut ConnResult, counters: &Counters, error: &ClientError) {
    result.errors.add_error(error);
    counters.errors.fetch_add(1, Ordering::Relaxed);
}

fn mismatch(result: &mut ConnResult, counters: &Counters) {
    result.errors.add("mismatch");
    counters.errors.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_their_sequence_number() {
        let text = Payloads {
            size: 16,
            binary: false,
        };
        assert_eq!(text.message(42), Message::Text("000000000042xxxx".into()));
        assert!(text.matches(42, &text.message(42)));
        assert!(!text.matches(43, &text.message(42)));
        let binary = Payloads {
            size: 3,
            binary: true,
        };
        assert_eq!(binary.bytes(1234), b"234");
        assert!(binary.matches(1234, &binary.message(1234)));
        assert!(!binary.matches(1234, &text.message(1234)));
        let empty = Payloads {
            size: 0,
            binary: false,
        };
        assert!(empty.matches(7, &empty.message(7)));
    }
}
