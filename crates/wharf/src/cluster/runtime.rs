//! The cluster runtime: one connection to the backplane, kept up with backoff; a publisher
//! that batches outgoing commands; a subscriber that applies the other nodes' commands to
//! local connections; and a presence writer that refreshes this node's snapshot.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::presence::{NodePresence, now_ms};
use super::{Backplane, BackplaneError, Command, Link, Subscription};
use crate::config::ClusterConfig;
use crate::{Error, Sender};

/// Commands waiting to be published; beyond this they are dropped and counted.
const QUEUE: usize = 65_536;
/// How many queued commands go out in one publish call.
const BATCH: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Whether the node is connected to its backplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackplaneState {
    /// Connected and subscribed: operations reach the whole cluster.
    Connected,
    /// Lost or never reached: operations reach local connections only, the rest is dropped
    /// and counted while the node reconnects.
    Disconnected,
}

/// Counters of a node's cluster traffic, for the API and metrics.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ClusterStats {
    /// The engine (`redis`, `nats`).
    pub engine: &'static str,
    /// This node's id.
    pub node: u16,
    /// Connected or not.
    pub state: BackplaneState,
    /// Commands published to other nodes.
    pub published: u64,
    /// Commands received from other nodes.
    pub received: u64,
    /// Commands not published because the backplane was down or the queue was full
    /// (at-most-once: they are not retried).
    pub dropped: u64,
    /// Payloads received that were not valid commands.
    pub invalid: u64,
    /// Times the backplane connection was lost.
    pub outages: u64,
    /// Times it was re-established after a loss.
    pub reconnects: u64,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    invalid: AtomicU64,
    outages: AtomicU64,
    reconnects: AtomicU64,
}

pub(crate) struct Cluster {
    backplane: Arc<dyn Backplane>,
    instance: u64,
    ttl: Duration,
    all: Arc<str>,
    prefix: String,
    link: RwLock<Option<Arc<dyn Link>>>,
    connected: AtomicBool,
    queue: mpsc::Sender<(Arc<str>, Bytes)>,
    counters: Counters,
    dirty: Notify,
    /// Set (and `broken` notified) when a publish or presence write fails on the current
    /// link; cleared when a new link is up, so a failure of the old one is not held against it.
    broken_flag: AtomicBool,
    broken: Notify,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Cluster {
    /// Connects to the backplane, picks this node's id (the configured one, or a free random
    /// one when it is 0), subscribes, and starts the runtime's tasks. When the backplane
    /// cannot be reached this fails, unless `allow_local_only` is set: the node then starts
    /// alone and keeps trying.
    pub(crate) async fn start(
        backplane: Arc<dyn Backplane>,
        config: &ClusterConfig,
        node_id: u16,
        sender: Sender,
    ) -> Result<Arc<Cluster>, Error> {
        let (queue, outgoing) = mpsc::channel(QUEUE);
        let prefix = config.prefix.clone();
        let cluster = Arc::new(Cluster {
            backplane,
            instance: random_u64(),
            ttl: config.presence_ttl,
            all: format!("{prefix}.all").into(),
            prefix,
            link: RwLock::new(None),
            connected: AtomicBool::new(false),
            queue,
            counters: Counters::default(),
            dirty: Notify::new(),
            broken_flag: AtomicBool::new(false),
            broken: Notify::new(),
            tasks: Mutex::new(Vec::new()),
        });
        let url = config.backplane.as_deref().unwrap_or_default();
        let engine = cluster.backplane.engine();
        let first = match tokio::time::timeout(CONNECT_TIMEOUT, cluster.backplane.connect()).await {
            Ok(Ok(link)) => Ok(link),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(BackplaneError::new("timed out")),
        };
        let node = match &first {
            Ok(link) => cluster.pick_node(link.as_ref(), node_id).await?,
            Err(_) if node_id != 0 => node_id,
            Err(_) => random_node(&HashSet::new()),
        };
        sender.registry().set_node(node);
        let initial = match first {
            Ok(link) => match link.subscribe(cluster.channels(node)).await {
                Ok(subscription) => Some((link, subscription)),
                Err(e) => return Err(unreachable(engine, url, &e)),
            },
            Err(e) if config.allow_local_only => {
                warn!(%engine, url, error = %e, "backplane unreachable; starting local-only and retrying");
                None
            }
            Err(e) => return Err(unreachable(engine, url, &e)),
        };
        if let Some((link, _)) = &initial {
            // Connected before `bind` returns: nothing published right after it is dropped.
            cluster.set_link(Some(link.clone()));
        }
        info!(%engine, node, "cluster node starting");
        let tasks = vec![
            tokio::spawn(cluster.clone().supervise(initial, node, sender.clone())),
            tokio::spawn(cluster.clone().publish_loop(outgoing)),
            tokio::spawn(cluster.clone().presence_loop(sender)),
        ];
        *cluster.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        Ok(cluster)
    }

    fn channels(&self, node: u16) -> Vec<String> {
        vec![self.all.to_string(), self.node_channel(node).to_string()]
    }

    fn node_channel(&self, node: u16) -> Arc<str> {
        format!("{}.node.{node}", self.prefix).into()
    }

    async fn pick_node(&self, link: &dyn Link, wanted: u16) -> Result<u16, Error> {
        let others = decode_fresh(link.presence().await.unwrap_or_default(), self.ttl);
        let used: HashSet<u16> = others.iter().map(|p| p.node).collect();
        if wanted == 0 {
            return Ok(random_node(&used));
        }
        if used.contains(&wanted) {
            warn!(
                node = wanted,
                "another instance with this node id refreshed its presence recently; \
                 if it is still running, give this node a different `node_id`"
            );
        }
        Ok(wanted)
    }

    /// Queues `command` for every node.
    pub(crate) fn publish_all(&self, command: &Command) {
        self.enqueue(self.all.clone(), command);
    }

    /// Queues `command` for node `node` only.
    pub(crate) fn publish_to(&self, node: u16, command: &Command) {
        self.enqueue(self.node_channel(node), command);
    }

    fn enqueue(&self, channel: Arc<str>, command: &Command) {
        if !self.connected.load(Ordering::Relaxed) {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self
            .queue
            .try_send((channel, command.encode(self.instance)))
            .is_err()
        {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Local rooms or users changed: refresh this node's presence soon.
    pub(crate) fn mark_dirty(&self) {
        self.dirty.notify_one();
    }

    /// The presence snapshots of every other live node.
    pub(crate) async fn others(&self, own_node: u16) -> Result<Vec<NodePresence>, BackplaneError> {
        let link = self
            .current()
            .ok_or_else(|| BackplaneError::new("the cluster backplane is unreachable"))?;
        let all = link.presence().await?;
        Ok(decode_fresh(all, self.ttl)
            .into_iter()
            .filter(|p| p.node != own_node)
            .collect())
    }

    pub(crate) fn stats(&self, node: u16) -> ClusterStats {
        let c = &self.counters;
        ClusterStats {
            engine: self.backplane.engine(),
            node,
            state: if self.connected.load(Ordering::Relaxed) {
                BackplaneState::Connected
            } else {
                BackplaneState::Disconnected
            },
            published: c.published.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            invalid: c.invalid.load(Ordering::Relaxed),
            outages: c.outages.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
        }
    }

    /// Stops the runtime and deletes this node's presence, so the others see it gone at once.
    pub(crate) async fn stop(&self, node: u16) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
        if let Some(link) = self.current() {
            let removed =
                tokio::time::timeout(Duration::from_secs(1), link.remove_presence(node)).await;
            if !matches!(removed, Ok(Ok(()))) {
                debug!("could not remove this node's presence; it expires with its TTL");
            }
        }
        self.set_link(None);
    }

    fn current(&self) -> Option<Arc<dyn Link>> {
        self.link.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_link(&self, link: Option<Arc<dyn Link>>) {
        self.connected.store(link.is_some(), Ordering::Relaxed);
        *self.link.write().unwrap_or_else(|p| p.into_inner()) = link;
    }

    async fn connect(
        &self,
        node: u16,
    ) -> Result<(Arc<dyn Link>, Box<dyn Subscription>), BackplaneError> {
        let attempt = async {
            let link = self.backplane.connect().await?;
            let subscription = link.subscribe(self.channels(node)).await?;
            Ok((link, subscription))
        };
        tokio::time::timeout(CONNECT_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| Err(BackplaneError::new("timed out")))
    }

    /// Keeps the node connected: runs the subscription until it fails, then reconnects with
    /// exponential backoff and jitter, resubscribing.
    async fn supervise(
        self: Arc<Self>,
        mut current: Option<(Arc<dyn Link>, Box<dyn Subscription>)>,
        node: u16,
        sender: Sender,
    ) {
        let engine = self.backplane.engine();
        let mut attempt = 0u32;
        loop {
            if let Some((link, mut subscription)) = current.take() {
                self.broken_flag.store(false, Ordering::Relaxed);
                self.set_link(Some(link));
                self.mark_dirty();
                attempt = 0;
                let error = loop {
                    tokio::select! {
                        received = subscription.next() => match received {
                            Ok(payload) => self.receive(payload, &sender),
                            Err(e) => break e,
                        },
                        () = self.link_failed() => {
                            break BackplaneError::new("a publish or presence write failed");
                        }
                    }
                };
                self.set_link(None);
                self.counters.outages.fetch_add(1, Ordering::Relaxed);
                warn!(%engine, %error, "backplane lost; delivering locally only while reconnecting");
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt = attempt.saturating_add(1);
            match self.connect(node).await {
                Ok(pair) => {
                    self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    info!(%engine, attempts = attempt, "backplane reconnected and resubscribed");
                    current = Some(pair);
                }
                Err(error) => debug!(%engine, %error, attempt, "backplane reconnect failed"),
            }
        }
    }

    /// A write on the current link failed: the supervisor drops it and reconnects.
    fn fail_link(&self) {
        self.broken_flag.store(true, Ordering::Relaxed);
        self.broken.notify_one();
    }

    /// Completes when a write on the current link has failed (a stale wake-up from an
    /// earlier link is ignored).
    async fn link_failed(&self) {
        loop {
            self.broken.notified().await;
            if self.broken_flag.swap(false, Ordering::Relaxed) {
                return;
            }
        }
    }

    fn receive(&self, payload: Bytes, sender: &Sender) {
        match Command::decode(payload) {
            Some((origin, _)) if origin == self.instance => {}
            Some((_, command)) => {
                self.counters.received.fetch_add(1, Ordering::Relaxed);
                sender.apply(command);
            }
            None => {
                self.counters.invalid.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    async fn publish_loop(self: Arc<Self>, mut outgoing: mpsc::Receiver<(Arc<str>, Bytes)>) {
        let mut batch = Vec::with_capacity(BATCH);
        while outgoing.recv_many(&mut batch, BATCH).await > 0 {
            let count = batch.len() as u64;
            let sent = match self.current() {
                Some(link) => link.publish(std::mem::take(&mut batch)).await,
                None => Err(BackplaneError::new("not connected")),
            };
            batch.clear();
            match sent {
                Ok(()) => self.counters.published.fetch_add(count, Ordering::Relaxed),
                Err(_) => {
                    self.fail_link();
                    self.counters.dropped.fetch_add(count, Ordering::Relaxed)
                }
            };
        }
    }

    /// Writes this node's presence every third of the TTL, and soon after every change
    /// (changes within a few milliseconds are written together).
    async fn presence_loop(self: Arc<Self>, sender: Sender) {
        let refresh = self.ttl / 3;
        loop {
            tokio::select! {
                () = tokio::time::sleep(refresh) => {}
                () = self.dirty.notified() => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            let Some(link) = self.current() else { continue };
            let snapshot = NodePresence::of(sender.registry(), self.instance);
            let node = snapshot.node;
            let Ok(json) = serde_json::to_vec(&snapshot) else {
                continue;
            };
            if let Err(error) = link.put_presence(node, json.into(), self.ttl).await {
                debug!(%error, "presence write failed");
                self.fail_link();
            }
        }
    }
}

fn unreachable(engine: &str, url: &str, error: &BackplaneError) -> Error {
    Error::Backplane(format!(
        "cannot reach the cluster backplane ({engine}) at {url}: {error}. Start it, fix \
         `cluster.backplane`, or set `cluster.allow_local_only = true` to start without it"
    ))
}

fn decode_fresh(all: Vec<Bytes>, ttl: Duration) -> Vec<NodePresence> {
    let oldest = now_ms().saturating_sub(ttl.as_millis() as u64);
    all.iter()
        .filter_map(|raw| serde_json::from_slice::<NodePresence>(raw).ok())
        .filter(|p| p.at_ms >= oldest)
        .collect()
}

fn random_u64() -> u64 {
    RandomState::new().hash_one((std::time::SystemTime::now(), std::process::id()))
}

fn random_node(used: &HashSet<u16>) -> u16 {
    loop {
        let node = (random_u64() % 65_535) as u16 + 1;
        if !used.contains(&node) {
            return node;
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    let base = BACKOFF_MIN
        .saturating_mul(1 << attempt.min(16))
        .min(BACKOFF_MAX);
    // Full jitter on the upper half: between base/2 and base.
    let half = base / 2;
    half + half.mul_f64((random_u64() % 1000) as f64 / 1000.0)
}
