//! Cluster backplanes for wharf: [`RedisBackplane`] and [`NatsBackplane`], chosen by the
//! scheme of `cluster.backplane` with [`connect`]; and history stores on the same engines,
//! [`RedisHistory`] and [`NatsHistory`], chosen with [`history_store`].
//!
//! ```no_run
//! # async fn run() -> Result<(), wharf::Error> {
//! let mut config = wharf::Config::default();
//! config.cluster.backplane = Some("redis://127.0.0.1:6379".into());
//! let backplane = wharf_cluster::connect(&config.cluster).expect("a known scheme");
//! let server = wharf::Server::builder(config)
//!     .backplane(backplane)
//!     .bind()
//!     .await?;
//! # Ok(()) }
//! ```

pub mod history;
mod nats;
mod redis;

use std::sync::Arc;

use wharf::ClusterConfig;
use wharf::cluster::{Backplane, BackplaneError, BoxFuture, Link};

pub use crate::history::{AnyHistory, NatsHistory, RedisHistory, history_store};
pub use crate::nats::NatsBackplane;
pub use crate::redis::RedisBackplane;

/// The backplane `config.backplane` names: `redis://…` or `nats://…`.
/// Nothing connects until the server binds.
pub fn connect(config: &ClusterConfig) -> Result<AnyBackplane, BackplaneError> {
    let url = config
        .backplane
        .as_deref()
        .ok_or_else(|| BackplaneError::new("cluster.backplane is not set"))?;
    if url.starts_with("redis://") {
        Ok(AnyBackplane::Redis(RedisBackplane::new(
            url,
            &config.prefix,
        )?))
    } else if url.starts_with("nats://") {
        Ok(AnyBackplane::Nats(NatsBackplane::new(
            url,
            &config.prefix,
            config.presence_ttl,
        )))
    } else {
        Err(BackplaneError::new(format!(
            "cluster.backplane `{url}`: the scheme must be redis:// or nats://"
        )))
    }
}

/// Either engine, as [`connect`] picks it.
#[derive(Debug)]
pub enum AnyBackplane {
    /// Redis pub/sub, presence in Redis keys.
    Redis(RedisBackplane),
    /// NATS pub/sub, presence in a JetStream key-value bucket.
    Nats(NatsBackplane),
}

impl Backplane for AnyBackplane {
    fn engine(&self) -> &'static str {
        match self {
            AnyBackplane::Redis(b) => b.engine(),
            AnyBackplane::Nats(b) => b.engine(),
        }
    }

    fn connect(&self) -> BoxFuture<'_, Result<Arc<dyn Link>, BackplaneError>> {
        match self {
            AnyBackplane::Redis(b) => b.connect(),
            AnyBackplane::Nats(b) => b.connect(),
        }
    }
}
