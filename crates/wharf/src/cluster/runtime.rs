//! The cluster runtime: one connection to the backplane, kept up with backoff; a publisher
//! that batches outgoing commands; a subscriber that applies the other nodes' commands to
//! local connections; and a presence writer that refreshes this node's snapshot.

use std::collections::{HashMap, HashSet};
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
use super::{Backplane, BackplaneError, Command, Link, Outcome, Subscription};
use crate::config::ClusterConfig;
use crate::{Error, Sender};

/// Commands waiting to be published; beyond this they are dropped and counted.
const QUEUE: usize = 65_536;
/// How many queued commands go out in one publish call.
const BATCH: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a presence write waits for the room channels to catch up with local rooms.
const ROOM_SYNC_WAIT: Duration = Duration::from_secs(1);

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
    /// Local rooms changed: the supervisor brings the room channels it subscribes to in line.
    rooms_dirty: Notify,
    /// The rooms whose channel the current subscription has confirmed.
    subscribed: Mutex<HashSet<Arc<str>>>,
    /// Notified whenever `subscribed` changes.
    subscribed_changed: Notify,
    /// Set (and `broken` notified) when a publish or presence write fails on the current
    /// link; cleared when a new link is up, so a failure of the old one is not held against it.
    broken_flag: AtomicBool,
    broken: Notify,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Asks waiting for answers: request id → where the answers go.
    asks: Mutex<HashMap<u64, mpsc::UnboundedSender<Answer>>>,
    next_request: AtomicU64,
    /// Set once a successor took this node over (see `hand_over`).
    handed_over: AtomicBool,
}

/// One node's answer to an ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) node: u16,
    pub(crate) outcome: Outcome,
    pub(crate) count: u32,
}

/// Where an ask goes.
pub(crate) enum AskTo<'a> {
    Node(u16),
    Room(&'a str),
    All,
}

/// An ask in flight: its answers arrive on `answers` until it is dropped.
pub(crate) struct Asked<'a> {
    cluster: &'a Cluster,
    request: u64,
    pub(crate) answers: mpsc::UnboundedReceiver<Answer>,
}

impl Drop for Asked<'_> {
    fn drop(&mut self) {
        self.cluster
            .asks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.request);
    }
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
        takeover: bool,
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
            rooms_dirty: Notify::new(),
            subscribed: Mutex::new(HashSet::new()),
            subscribed_changed: Notify::new(),
            broken_flag: AtomicBool::new(false),
            broken: Notify::new(),
            tasks: Mutex::new(Vec::new()),
            asks: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            handed_over: AtomicBool::new(false),
        });
        let url = config.backplane.as_deref().unwrap_or_default();
        let engine = cluster.backplane.engine();
        let first = match tokio::time::timeout(CONNECT_TIMEOUT, cluster.backplane.connect()).await {
            Ok(Ok(link)) => Ok(link),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(BackplaneError::new("timed out")),
        };
        let node = match &first {
            // A successor keeps its predecessor's node id, whose presence is fresh by design.
            Ok(_) if takeover => node_id,
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

    /// The channel of `room`: `<prefix>.room.<room>`, the name escaped so that it is one
    /// token on every engine (see [`room_token`](super::room_token)).
    fn room_channel(&self, room: &str) -> String {
        format!("{}.room.{}", self.prefix, super::room_token(room))
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

    /// Queues `command` for the nodes with members in `room`: only they subscribe to its
    /// channel.
    /// Returns false when it was dropped (the backplane is down or its queue full).
    pub(crate) fn publish_room(&self, room: &str, command: &Command) -> bool {
        self.enqueue(self.room_channel(room).into(), command)
    }

    /// Waits until this node's subscription to `room`'s channel is confirmed by the engine,
    /// so that every message other nodes publish to the room from then on arrives; false
    /// when that did not happen within `wait` (the backplane is down, or the room has no
    /// local member).
    pub(crate) async fn room_ready(&self, room: &str, wait: Duration) -> bool {
        let confirmed = async {
            loop {
                let changed = self.subscribed_changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if self.is_subscribed(room) {
                    return;
                }
                self.rooms_dirty.notify_one();
                changed.await;
            }
        };
        tokio::time::timeout(wait, confirmed).await.is_ok()
    }

    /// Waits until the confirmed room channels are exactly the rooms with local members, for
    /// at most `wait`; false if they are not by then.
    async fn rooms_synced(&self, sender: &Sender, wait: Duration) -> bool {
        let synced = async {
            loop {
                let changed = self.subscribed_changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                let local = sender.registry().rooms.list();
                {
                    let subscribed = self.subscribed.lock().unwrap_or_else(|p| p.into_inner());
                    if subscribed.len() == local.len()
                        && local.iter().all(|(room, _)| subscribed.contains(room))
                    {
                        return;
                    }
                }
                self.rooms_dirty.notify_one();
                changed.await;
            }
        };
        tokio::time::timeout(wait, synced).await.is_ok()
    }

    fn is_subscribed(&self, room: &str) -> bool {
        self.subscribed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(room)
    }

    /// Subscribes to the channel of every room with a local member and drops the others.
    async fn sync_rooms(
        &self,
        subscription: &mut dyn Subscription,
        sender: &Sender,
    ) -> Result<(), BackplaneError> {
        let wanted: HashSet<Arc<str>> = sender
            .registry()
            .rooms
            .list()
            .into_iter()
            .map(|(room, _)| room)
            .collect();
        let (add, remove) = {
            let subscribed = self.subscribed.lock().unwrap_or_else(|p| p.into_inner());
            let add: Vec<Arc<str>> = wanted.difference(&subscribed).cloned().collect();
            let remove: Vec<Arc<str>> = subscribed.difference(&wanted).cloned().collect();
            (add, remove)
        };
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let channels = |rooms: &[Arc<str>]| rooms.iter().map(|r| self.room_channel(r)).collect();
        if !remove.is_empty() {
            subscription.remove(channels(&remove)).await?;
        }
        if !add.is_empty() {
            subscription.add(channels(&add)).await?;
        }
        {
            let mut subscribed = self.subscribed.lock().unwrap_or_else(|p| p.into_inner());
            for room in &remove {
                subscribed.remove(room);
            }
            subscribed.extend(add);
        }
        self.subscribed_changed.notify_waiters();
        Ok(())
    }

    /// Publishes `command` to `to`, asking each node that applies it to answer this node
    /// (`own_node`) with its outcome. The answers arrive on the returned ask until it is
    /// dropped. While the backplane is down nothing is published (and counted as dropped),
    /// so no answer comes.
    pub(crate) fn ask(&self, to: AskTo<'_>, own_node: u16, command: Command) -> Asked<'_> {
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, answers) = mpsc::unbounded_channel();
        // Registered before it is published, so that no answer can come first.
        self.asks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(request, tx);
        let channel: Arc<str> = match to {
            AskTo::Node(node) => self.node_channel(node),
            AskTo::Room(room) => self.room_channel(room).into(),
            AskTo::All => self.all.clone(),
        };
        let ask = Command::Ask {
            request,
            reply_to: own_node,
            command: Box::new(command),
        };
        self.enqueue(channel, &ask);
        Asked {
            cluster: self,
            request,
            answers,
        }
    }

    /// Whether the backplane is connected now.
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Queues `command` for node `node` only.
    pub(crate) fn publish_to(&self, node: u16, command: &Command) {
        self.enqueue(self.node_channel(node), command);
    }

    /// Queues `command` on `channel`; false when it was dropped (and counted).
    fn enqueue(&self, channel: Arc<str>, command: &Command) -> bool {
        let queued = self.connected.load(Ordering::Relaxed)
            && (self.queue)
                .try_send((channel, command.encode(self.instance)))
                .is_ok();
        if !queued {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    /// Local rooms or users changed: refresh this node's presence soon.
    pub(crate) fn mark_dirty(&self) {
        self.dirty.notify_one();
        self.rooms_dirty.notify_one();
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
    /// This process handed its node to a successor: from now on it neither writes the
    /// node's presence (the successor does) nor removes it when it stops.
    pub(crate) fn hand_over(&self) {
        self.handed_over.store(true, Ordering::Relaxed);
    }

    pub(crate) async fn stop(&self, node: u16) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
        let ours = !self.handed_over.load(Ordering::Relaxed);
        if let Some(link) = self.current().filter(|_| ours) {
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
                // A new subscription has only the node's own channels: subscribe the rooms.
                self.subscribed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                self.set_link(Some(link));
                self.mark_dirty();
                // What history rooms missed while the link was down: re-offered and re-read.
                sender.history_hub().backplane_connected();
                attempt = 0;
                let error = loop {
                    tokio::select! {
                        received = subscription.next() => match received {
                            Ok(payload) => self.receive(payload, &sender),
                            Err(e) => break e,
                        },
                        () = self.rooms_dirty.notified() => {
                            if let Err(e) = self.sync_rooms(subscription.as_mut(), &sender).await {
                                break e;
                            }
                        }
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
            Some((
                _,
                Command::Ask {
                    request,
                    reply_to,
                    command,
                },
            )) => {
                self.counters.received.fetch_add(1, Ordering::Relaxed);
                let (outcome, count) = sender.apply_counted(*command);
                let answer = Command::Answer {
                    request,
                    node: sender.node(),
                    outcome,
                    count: u32::try_from(count).unwrap_or(u32::MAX),
                };
                self.publish_to(reply_to, &answer);
            }
            Some((
                _,
                Command::Answer {
                    request,
                    node,
                    outcome,
                    count,
                },
            )) => {
                self.counters.received.fetch_add(1, Ordering::Relaxed);
                let asks = self.asks.lock().unwrap_or_else(|p| p.into_inner());
                // An answer after the asker stopped waiting is dropped.
                if let Some(waiting) = asks.get(&request) {
                    let _ = waiting.send(Answer {
                        node,
                        outcome,
                        count,
                    });
                }
            }
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
            // Presence shows a room's member once its node receives the room's channel, so
            // that a message sent to the members another node lists reaches them all.
            self.rooms_synced(&sender, ROOM_SYNC_WAIT).await;
            let Some(link) = self.current() else { continue };
            if self.handed_over.load(Ordering::Relaxed) {
                continue;
            }
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
