//! History stores on the cluster's engines: [`RedisHistory`] (Redis Streams) and
//! [`NatsHistory`] (NATS JetStream), chosen by the scheme of `cluster.backplane` with
//! [`history_store`]. Both pass the same test suite as wharf's `MemoryHistory`
//! (`tests/history_store.rs`); docs/cluster.md, "History stores", says how each keeps
//! offsets atomic and when it starts a new epoch.

mod nats;
mod redis;

use wharf::ClusterConfig;
use wharf::Message;
use wharf::cluster::{BackplaneError, BoxFuture};
use wharf::history::{Appended, HistoryError, HistoryPage, HistoryPolicy, HistoryStore, Position};

pub use self::nats::NatsHistory;
pub use self::redis::RedisHistory;

/// The history store on the engine `config.backplane` names: `redis://…` or `nats://…`.
/// Nothing connects until the first append or read.
pub fn history_store(config: &ClusterConfig) -> Result<AnyHistory, BackplaneError> {
    let url = config
        .backplane
        .as_deref()
        .ok_or_else(|| BackplaneError::new("cluster.backplane is not set"))?;
    if url.starts_with("redis://") {
        Ok(AnyHistory::Redis(RedisHistory::new(url, &config.prefix)?))
    } else if url.starts_with("nats://") {
        Ok(AnyHistory::Nats(NatsHistory::new(url, &config.prefix)))
    } else {
        Err(BackplaneError::new(format!(
            "cluster.backplane `{url}`: the scheme must be redis:// or nats://"
        )))
    }
}

/// Either engine's store, as [`history_store`] picks it.
#[derive(Debug)]
pub enum AnyHistory {
    /// Redis Streams.
    Redis(RedisHistory),
    /// NATS JetStream.
    Nats(NatsHistory),
}

impl HistoryStore for AnyHistory {
    fn engine(&self) -> &'static str {
        match self {
            AnyHistory::Redis(s) => s.engine(),
            AnyHistory::Nats(s) => s.engine(),
        }
    }

    fn append<'a>(
        &'a self,
        room: &'a str,
        message: &'a Message,
        policy: &'a HistoryPolicy,
        idempotency_key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Appended, HistoryError>> {
        match self {
            AnyHistory::Redis(s) => s.append(room, message, policy, idempotency_key),
            AnyHistory::Nats(s) => s.append(room, message, policy, idempotency_key),
        }
    }

    fn read<'a>(
        &'a self,
        room: &'a str,
        since: Option<&'a Position>,
        limit: usize,
        policy: &'a HistoryPolicy,
    ) -> BoxFuture<'a, Result<HistoryPage, HistoryError>> {
        match self {
            AnyHistory::Redis(s) => s.read(room, since, limit, policy),
            AnyHistory::Nats(s) => s.read(room, since, limit, policy),
        }
    }
}
