//! NATS: commands over core pub/sub; presence in a JetStream stream used as a key-value
//! bucket (one subject per node, one message kept per subject, `max_age` = the presence
//! TTL), spoken through JetStream's request API so that it works with every server since
//! 2.9.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::{SelectAll, TakeUntil};
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};
use wharf::cluster::{Backplane, BackplaneError, BoxFuture, Link, Subscription};

const TIMEOUT: Duration = Duration::from_secs(3);
/// JetStream's error code for "stream name already in use with a different configuration".
const STREAM_EXISTS: u64 = 10058;

/// A NATS backplane (`nats://host:port`). The server must have JetStream enabled
/// (`nats-server -js`) for presence.
#[derive(Debug, Clone)]
pub struct NatsBackplane {
    url: String,
    bucket: String,
    ttl: Duration,
}

/// `prefix` as part of a JetStream stream name, which allows only letters, digits, `-` and
/// `_`: anything else becomes `_` (`"wharf.eu"` → `"wharf_eu"`).
pub(crate) fn stream_token(prefix: &str) -> String {
    prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl NatsBackplane {
    /// A backplane for the NATS server at `url`; subjects start with `prefix`, and presence
    /// lives in the stream `KV_<prefix>_presence` with entries that expire after `ttl`.
    pub fn new(url: &str, prefix: &str, ttl: Duration) -> NatsBackplane {
        NatsBackplane {
            url: url.to_owned(),
            bucket: format!("{}_presence", stream_token(prefix)),
            ttl,
        }
    }
}

fn error(e: impl std::fmt::Display) -> BackplaneError {
    BackplaneError::new(e)
}

impl Backplane for NatsBackplane {
    fn engine(&self) -> &'static str {
        "nats"
    }

    fn connect(&self) -> BoxFuture<'_, Result<Arc<dyn Link>, BackplaneError>> {
        Box::pin(async move {
            // The client would reconnect on its own; wharf's runtime does it instead, so that
            // an outage is seen, logged and counted like any other backplane's.
            let (lost_tx, lost) = watch::channel(false);
            let client = async_nats::ConnectOptions::new()
                .connection_timeout(TIMEOUT)
                .request_timeout(Some(TIMEOUT))
                .event_callback(move |event| {
                    let lost_tx = lost_tx.clone();
                    async move {
                        if matches!(
                            event,
                            async_nats::Event::Disconnected | async_nats::Event::Closed
                        ) {
                            lost_tx.send_replace(true);
                        }
                    }
                })
                .connect(self.url.as_str())
                .await
                .map_err(|e| error(format!("{}: {e}", self.url)))?;
            let link = NatsLink {
                client,
                stream: format!("KV_{}", self.bucket),
                subjects: format!("$KV.{}", self.bucket),
                lost,
            };
            link.create_bucket(self.ttl).await?;
            Ok(Arc::new(link) as Arc<dyn Link>)
        })
    }
}

struct NatsLink {
    client: async_nats::Client,
    /// The JetStream stream holding presence.
    stream: String,
    /// Its subject prefix: one subject per node below it.
    subjects: String,
    lost: watch::Receiver<bool>,
}

impl NatsLink {
    /// One JetStream API request; its JSON answer, or the error it reports.
    async fn api(&self, what: &str, body: Value) -> Result<Value, BackplaneError> {
        let subject = format!("$JS.API.{what}.{}", self.stream);
        let reply = self
            .client
            .request(subject, body.to_string().into())
            .await
            .map_err(|e| error(format!("JetStream {what}: {e} (is JetStream enabled?)")))?;
        let answer: Value = serde_json::from_slice(&reply.payload)
            .map_err(|e| error(format!("JetStream {what}: {e}")))?;
        match answer.get("error") {
            Some(problem) => Err(JsError::from(problem).into_backplane(what)),
            None => Ok(answer),
        }
    }

    async fn create_bucket(&self, ttl: Duration) -> Result<(), BackplaneError> {
        let config = json!({
            "name": self.stream,
            "subjects": [format!("{}.>", self.subjects)],
            "max_msgs_per_subject": 1,
            "max_age": ttl.as_nanos() as u64,
            "duplicate_window": ttl.min(Duration::from_secs(120)).as_nanos() as u64,
            "storage": "memory",
            "num_replicas": 1,
            "discard": "old",
            "allow_rollup_hdrs": true,
        });
        match self.api("STREAM.CREATE", config.clone()).await {
            Err(e) if e.0.contains(&format!("[{STREAM_EXISTS}]")) => {
                self.api("STREAM.UPDATE", config).await.map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }
}

/// An error object in a JetStream API answer.
struct JsError {
    code: u64,
    description: String,
}

impl JsError {
    fn from(value: &Value) -> JsError {
        JsError {
            code: value["err_code"].as_u64().unwrap_or_default(),
            description: value["description"].as_str().unwrap_or("error").to_owned(),
        }
    }

    fn into_backplane(self, what: &str) -> BackplaneError {
        error(format!(
            "JetStream {what}: {} [{}]",
            self.description, self.code
        ))
    }
}

impl Link for NatsLink {
    fn publish(&self, batch: Vec<(Arc<str>, Bytes)>) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(async move {
            if *self.lost.borrow() {
                return Err(error("disconnected"));
            }
            for (subject, payload) in batch {
                self.client
                    .publish(subject.to_string(), payload)
                    .await
                    .map_err(error)?;
            }
            Ok(())
        })
    }

    fn subscribe(
        &self,
        channels: Vec<String>,
    ) -> BoxFuture<'_, Result<Box<dyn Subscription>, BackplaneError>> {
        Box::pin(async move {
            let mut subscription = NatsSubscription {
                client: self.client.clone(),
                subscribers: SelectAll::new(),
                cancel: HashMap::new(),
                lost: self.lost.clone(),
            };
            subscription.add(channels).await?;
            Ok(Box::new(subscription) as Box<dyn Subscription>)
        })
    }

    fn put_presence(
        &self,
        node: u16,
        snapshot: Bytes,
        _ttl: Duration,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        // The stream's max_age is the TTL: an entry not written again expires.
        Box::pin(async move {
            let reply = self
                .client
                .request(format!("{}.{node}", self.subjects), snapshot)
                .await
                .map_err(error)?;
            let ack: Value = serde_json::from_slice(&reply.payload).map_err(error)?;
            match ack.get("error") {
                Some(problem) => Err(JsError::from(problem).into_backplane("PUT")),
                None => Ok(()),
            }
        })
    }

    fn presence(&self) -> BoxFuture<'_, Result<Vec<Bytes>, BackplaneError>> {
        Box::pin(async move {
            let filter = json!({ "subjects_filter": format!("{}.>", self.subjects) });
            let info = self.api("STREAM.INFO", filter).await?;
            let subjects: Vec<String> = info["state"]["subjects"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            let mut out = Vec::new();
            for subject in subjects {
                // Expired between the two requests: skip it.
                let Ok(found) = self
                    .api("STREAM.MSG.GET", json!({ "last_by_subj": subject }))
                    .await
                else {
                    continue;
                };
                if let Some(data) = found["message"]["data"].as_str() {
                    out.push(Bytes::from(STANDARD.decode(data).map_err(error)?));
                }
            }
            Ok(out)
        })
    }

    fn remove_presence(&self, node: u16) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(async move {
            let filter = json!({ "filter": format!("{}.{node}", self.subjects) });
            self.api("STREAM.PURGE", filter).await.map(|_| ())
        })
    }
}

/// A subscriber that ends (and so unsubscribes, as it is dropped) when its cancel handle is
/// dropped.
type Cancellable = TakeUntil<async_nats::Subscriber, oneshot::Receiver<()>>;

struct NatsSubscription {
    client: async_nats::Client,
    subscribers: SelectAll<Cancellable>,
    /// One handle per subject: dropping it ends that subject's subscriber.
    cancel: HashMap<String, oneshot::Sender<()>>,
    lost: watch::Receiver<bool>,
}

impl Subscription for NatsSubscription {
    fn add(&mut self, channels: Vec<String>) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(async move {
            for subject in channels {
                if self.cancel.contains_key(&subject) {
                    continue;
                }
                let subscriber = self
                    .client
                    .subscribe(subject.clone())
                    .await
                    .map_err(error)?;
                let (cancel, cancelled) = oneshot::channel();
                self.subscribers.push(subscriber.take_until(cancelled));
                self.cancel.insert(subject, cancel);
            }
            // The subscriptions are registered with the server before we return.
            self.client.flush().await.map_err(error)
        })
    }

    fn remove(&mut self, channels: Vec<String>) -> BoxFuture<'_, Result<(), BackplaneError>> {
        for subject in &channels {
            self.cancel.remove(subject);
        }
        Box::pin(async { Ok(()) })
    }

    fn next(&mut self) -> BoxFuture<'_, Result<Bytes, BackplaneError>> {
        Box::pin(async move {
            if *self.lost.borrow() {
                return Err(error("the NATS connection was lost"));
            }
            tokio::select! {
                message = self.subscribers.next() => match message {
                    Some(message) => Ok(message.payload),
                    None => Err(error("the NATS subscriptions ended")),
                },
                _ = self.lost.wait_for(|lost| *lost) => Err(error("the NATS connection was lost")),
            }
        })
    }
}
