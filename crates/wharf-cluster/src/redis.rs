//! Redis: commands over pub/sub, presence as one key per node (`SET … PX ttl`) listed in a
//! set of node ids.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Client};
use wharf::cluster::{Backplane, BackplaneError, BoxFuture, Link, Subscription};

const TIMEOUT: Duration = Duration::from_secs(3);

/// A Redis backplane (`redis://host:port[/db]`).
#[derive(Debug, Clone)]
pub struct RedisBackplane {
    client: Client,
    prefix: String,
}

impl RedisBackplane {
    /// A backplane for the Redis at `url`; keys and channels start with `prefix`.
    pub fn new(url: &str, prefix: &str) -> Result<RedisBackplane, BackplaneError> {
        let client = Client::open(url).map_err(|e| BackplaneError::new(format!("{url}: {e}")))?;
        Ok(RedisBackplane {
            client,
            prefix: prefix.to_owned(),
        })
    }
}

impl Backplane for RedisBackplane {
    fn engine(&self) -> &'static str {
        "redis"
    }

    fn connect(&self) -> BoxFuture<'_, Result<Arc<dyn Link>, BackplaneError>> {
        Box::pin(async move {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(TIMEOUT))
                .set_response_timeout(Some(TIMEOUT));
            let conn = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(error)?;
            Ok(Arc::new(RedisLink {
                client: self.client.clone(),
                conn,
                nodes_key: format!("{}:presence:nodes", self.prefix),
                prefix: self.prefix.clone(),
            }) as Arc<dyn Link>)
        })
    }
}

struct RedisLink {
    client: Client,
    conn: MultiplexedConnection,
    prefix: String,
    nodes_key: String,
}

impl RedisLink {
    fn presence_key(&self, node: u16) -> String {
        format!("{}:presence:{node}", self.prefix)
    }
}

fn error(e: redis::RedisError) -> BackplaneError {
    BackplaneError::new(e)
}

impl Link for RedisLink {
    fn publish(&self, batch: Vec<(Arc<str>, Bytes)>) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            for (channel, payload) in &batch {
                pipe.publish(&**channel, &payload[..]).ignore();
            }
            pipe.query_async::<()>(&mut self.conn.clone())
                .await
                .map_err(error)
        })
    }

    fn subscribe(
        &self,
        channels: Vec<String>,
    ) -> BoxFuture<'_, Result<Box<dyn Subscription>, BackplaneError>> {
        Box::pin(async move {
            let mut pubsub = self.client.get_async_pubsub().await.map_err(error)?;
            pubsub.subscribe(channels).await.map_err(error)?;
            let (sink, stream) = pubsub.split();
            Ok(Box::new(RedisSubscription { sink, stream }) as Box<dyn Subscription>)
        })
    }

    fn put_presence(
        &self,
        node: u16,
        snapshot: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(async move {
            redis::pipe()
                .cmd("SET")
                .arg(self.presence_key(node))
                .arg(&snapshot[..])
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .ignore()
                .sadd(&self.nodes_key, node)
                .ignore()
                .query_async::<()>(&mut self.conn.clone())
                .await
                .map_err(error)
        })
    }

    fn presence(&self) -> BoxFuture<'_, Result<Vec<Bytes>, BackplaneError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let nodes: Vec<u16> = redis::cmd("SMEMBERS")
                .arg(&self.nodes_key)
                .query_async(&mut conn)
                .await
                .map_err(error)?;
            if nodes.is_empty() {
                return Ok(Vec::new());
            }
            let keys: Vec<String> = nodes.iter().map(|n| self.presence_key(*n)).collect();
            let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .map_err(error)?;
            // Nodes whose key expired left the cluster: drop them from the index.
            let gone: Vec<u16> = nodes
                .iter()
                .zip(&values)
                .filter(|(_, v)| v.is_none())
                .map(|(n, _)| *n)
                .collect();
            if !gone.is_empty() {
                let _: Result<(), _> = redis::cmd("SREM")
                    .arg(&self.nodes_key)
                    .arg(&gone)
                    .query_async(&mut conn)
                    .await;
            }
            Ok(values.into_iter().flatten().map(Bytes::from).collect())
        })
    }

    fn remove_presence(&self, node: u16) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(async move {
            redis::pipe()
                .del(self.presence_key(node))
                .ignore()
                .srem(&self.nodes_key, node)
                .ignore()
                .query_async::<()>(&mut self.conn.clone())
                .await
                .map_err(error)
        })
    }
}

/// One pub/sub connection: the sink changes the channels (SUBSCRIBE answers once Redis has
/// registered them), the stream yields the messages.
struct RedisSubscription {
    sink: PubSubSink,
    stream: PubSubStream,
}

impl Subscription for RedisSubscription {
    fn add(&mut self, channels: Vec<String>) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(async move { self.sink.subscribe(channels).await.map_err(error) })
    }

    fn remove(&mut self, channels: Vec<String>) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(async move { self.sink.unsubscribe(channels).await.map_err(error) })
    }

    fn next(&mut self) -> BoxFuture<'_, Result<Bytes, BackplaneError>> {
        Box::pin(async move {
            match self.stream.next().await {
                Some(message) => Ok(Bytes::copy_from_slice(message.get_payload_bytes())),
                None => Err(BackplaneError::new(
                    "the Redis subscription connection closed",
                )),
            }
        })
    }
}
