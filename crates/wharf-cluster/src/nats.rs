//! NATS: commands over core pub/sub, presence in a JetStream key-value bucket whose entries
//! expire after the presence TTL (one key per node).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::SelectAll;
use tokio::sync::watch;
use wharf::cluster::{Backplane, BackplaneError, BoxFuture, Link, Subscription};

const TIMEOUT: Duration = Duration::from_secs(3);

/// A NATS backplane (`nats://host:port`). The server must have JetStream enabled
/// (`nats-server -js`) for presence.
#[derive(Debug, Clone)]
pub struct NatsBackplane {
    url: String,
    bucket: String,
    ttl: Duration,
}

impl NatsBackplane {
    /// A backplane for the NATS server at `url`; subjects start with `prefix`, and presence
    /// lives in the bucket `<prefix>_presence` with entries that expire after `ttl`.
    pub fn new(url: &str, prefix: &str, ttl: Duration) -> NatsBackplane {
        let safe: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        NatsBackplane {
            url: url.to_owned(),
            bucket: format!("{safe}_presence"),
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
            let presence = jetstream::new(client.clone())
                .create_or_update_key_value(kv::Config {
                    bucket: self.bucket.clone(),
                    history: 1,
                    max_age: self.ttl,
                    storage: jetstream::stream::StorageType::Memory,
                    ..Default::default()
                })
                .await
                .map_err(|e| error(format!("JetStream key-value bucket {}: {e}", self.bucket)))?;
            Ok(Arc::new(NatsLink {
                client,
                presence,
                lost,
            }) as Arc<dyn Link>)
        })
    }
}

struct NatsLink {
    client: async_nats::Client,
    presence: kv::Store,
    lost: watch::Receiver<bool>,
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
            let mut all = SelectAll::new();
            for subject in channels {
                all.push(self.client.subscribe(subject).await.map_err(error)?);
            }
            // The subscriptions are registered with the server before we return.
            self.client.flush().await.map_err(error)?;
            Ok(Box::new(NatsSubscription {
                subscribers: all,
                lost: self.lost.clone(),
            }) as Box<dyn Subscription>)
        })
    }

    fn put_presence(
        &self,
        node: u16,
        snapshot: Bytes,
        _ttl: Duration,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        // The bucket's max_age is the TTL: an entry not written again expires.
        Box::pin(async move {
            self.presence
                .put(node.to_string(), snapshot)
                .await
                .map(|_| ())
                .map_err(error)
        })
    }

    fn presence(&self) -> BoxFuture<'_, Result<Vec<Bytes>, BackplaneError>> {
        Box::pin(async move {
            let mut keys = self.presence.keys().await.map_err(error)?;
            let mut out = Vec::new();
            while let Some(key) = keys.next().await {
                let key = key.map_err(error)?;
                if let Some(value) = self.presence.get(key).await.map_err(error)? {
                    out.push(value);
                }
            }
            Ok(out)
        })
    }

    fn remove_presence(&self, node: u16) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(async move { self.presence.purge(node.to_string()).await.map_err(error) })
    }
}

struct NatsSubscription {
    subscribers: SelectAll<async_nats::Subscriber>,
    lost: watch::Receiver<bool>,
}

impl Subscription for NatsSubscription {
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
