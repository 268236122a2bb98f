//! Counters of what the servers do: connections per route, handshakes accepted and refused by
//! reason, messages and bytes in and out, closes by code and side, messages dropped by
//! reason. Read them with [`Sender::metrics`](crate::Sender::metrics) or scrape them in the
//! Prometheus text format at `GET /metrics` on every `http` server.
//!
//! The hot path only touches counters of the connection's own route (shared by its
//! connections, not by the process), in a cache line of the calling thread's own (no locked
//! instruction: `per_thread.rs`); the maps keyed by reason or code are behind a lock taken
//! once per handshake refusal, close or drop.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::handler::Initiator;
use crate::per_thread::PerThread;

/// The counters of one route of one server.
pub(crate) struct RouteCounters {
    open: AtomicI64,
    /// Messages and bytes in and out (`MESSAGES_IN` …), counted per thread: these are
    /// added to for every message.
    traffic: PerThread<4>,
}

const MESSAGES_IN: usize = 0;
const BYTES_IN: usize = 1;
const MESSAGES_OUT: usize = 2;
const BYTES_OUT: usize = 3;

impl Default for RouteCounters {
    fn default() -> Self {
        RouteCounters {
            open: AtomicI64::new(0),
            traffic: PerThread::new(),
        }
    }
}

impl RouteCounters {
    /// A text or binary message of `len` payload bytes arrived.
    #[inline]
    pub(crate) fn received(&self, len: usize) {
        self.traffic.add([(MESSAGES_IN, 1), (BYTES_IN, len as u64)]);
    }

    /// A data frame of `len` bytes (header included) was queued to a connection.
    #[inline]
    pub(crate) fn queued(&self, len: usize) {
        self.traffic
            .add([(MESSAGES_OUT, 1), (BYTES_OUT, len as u64)]);
    }

    pub(crate) fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The counters of history rooms.
#[derive(Default)]
pub(crate) struct HistoryCounters {
    pub(crate) appends: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) reads: AtomicU64,
    pub(crate) recoveries_complete: AtomicU64,
    pub(crate) recoveries_incomplete: AtomicU64,
    pub(crate) store_errors: AtomicU64,
    pub(crate) gaps_filled: AtomicU64,
    pub(crate) resyncs: AtomicU64,
}

impl HistoryCounters {
    /// Counts one.
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistoryMetrics {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HistoryMetrics {
            appends: read(&self.appends),
            duplicates: read(&self.duplicates),
            reads: read(&self.reads),
            recoveries_complete: read(&self.recoveries_complete),
            recoveries_incomplete: read(&self.recoveries_incomplete),
            store_errors: read(&self.store_errors),
            gaps_filled: read(&self.gaps_filled),
            resyncs: read(&self.resyncs),
        }
    }
}

/// The counters of history rooms on this node.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct HistoryMetrics {
    /// Publications stored.
    pub appends: u64,
    /// Publishes answered as idempotent duplicates (nothing stored or delivered).
    pub duplicates: u64,
    /// History reads (the API's, and recoveries' store reads).
    pub reads: u64,
    /// Recoveries (`join_from`) that sent everything after the client's position.
    pub recoveries_complete: u64,
    /// Recoveries that could not: the position was of another epoch or too old.
    pub recoveries_incomplete: u64,
    /// Store operations that failed (the store was unreachable).
    pub store_errors: u64,
    /// Gaps in a room's delivery filled by reading the store.
    pub gaps_filled: u64,
    /// Gaps that could not be filled: the room's members were closed with 4010 to resync.
    pub resyncs: u64,
}

/// Every counter of the process.
#[derive(Default)]
pub(crate) struct Metrics {
    pub(crate) history: Arc<HistoryCounters>,
    routes: Mutex<BTreeMap<(String, String), Arc<RouteCounters>>>,
    handshakes_accepted: AtomicU64,
    rejected: Mutex<BTreeMap<String, u64>>,
    closes: Mutex<BTreeMap<(u16, &'static str), u64>>,
    dropped: Mutex<BTreeMap<&'static str, u64>>,
    handover: HandoverCounters,
}

/// Live handovers to a successor process, from this process's side.
#[derive(Default)]
struct HandoverCounters {
    started: AtomicU64,
    completed: AtomicU64,
    aborted: Mutex<BTreeMap<&'static str, u64>>,
    /// Connections handed to a successor open.
    moved: AtomicU64,
    /// Connections this process took over open from its predecessor.
    resumed: AtomicU64,
    /// Connections taken back from a successor that failed before taking them.
    taken_back: AtomicU64,
    /// The longest pause a connection taken over saw (ms), over every handover.
    pause_max_ms: AtomicU64,
    /// Connections this process closed because it handed over, by reason.
    closed: Mutex<BTreeMap<&'static str, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// The counters of `route` on `server`, created on first use.
    pub(crate) fn route(&self, server: &str, route: &str) -> Arc<RouteCounters> {
        lock(&self.routes)
            .entry((server.to_owned(), route.to_owned()))
            .or_default()
            .clone()
    }

    pub(crate) fn accepted(&self) {
        self.handshakes_accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// A handshake was refused (or abandoned) for `reason`, such as `route_not_found`.
    pub(crate) fn rejected(&self, reason: &str) {
        *lock(&self.rejected).entry(reason.to_owned()).or_default() += 1;
    }

    pub(crate) fn closed(&self, code: u16, initiator: Initiator) {
        *lock(&self.closes)
            .entry((code, initiator.as_str()))
            .or_default() += 1;
    }

    /// A message was not queued: `queue_full` (slow consumer) or `closed` (closing).
    pub(crate) fn dropped(&self, reason: &'static str) {
        *lock(&self.dropped).entry(reason).or_default() += 1;
    }

    /// A handover to a successor started.
    pub(crate) fn handover_started(&self) {
        self.handover.started.fetch_add(1, Ordering::Relaxed);
    }

    /// A handover committed: the successor serves.
    pub(crate) fn handover_completed(&self) {
        self.handover.completed.fetch_add(1, Ordering::Relaxed);
    }

    /// A handover was abandoned for `reason` (see `HandoverError::reason`).
    pub(crate) fn handover_aborted(&self, reason: &'static str) {
        *lock(&self.handover.aborted).entry(reason).or_default() += 1;
    }

    /// `n` open connections were taken over from the predecessor, the longest pause `max_ms`.
    pub(crate) fn handover_resumed(&self, n: usize, max_ms: u64) {
        self.handover.resumed.fetch_add(n as u64, Ordering::Relaxed);
        self.handover
            .pause_max_ms
            .fetch_max(max_ms, Ordering::Relaxed);
    }

    /// `n` open connections were handed to the successor.
    pub(crate) fn handover_moved(&self, n: usize) {
        self.handover.moved.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `n` connections sent to a successor that failed were taken back.
    pub(crate) fn handover_taken_back(&self, n: usize) {
        self.handover
            .taken_back
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A connection was closed, not moved, by a handover, for `reason` (`not_movable`).
    pub(crate) fn handover_closed(&self, reason: &'static str) {
        *lock(&self.handover.closed).entry(reason).or_default() += 1;
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let routes: Vec<RouteMetrics> = lock(&self.routes)
            .iter()
            .map(|((server, route), c)| RouteMetrics {
                server: server.clone(),
                route: route.clone(),
                open: c.open.load(Ordering::Relaxed).max(0) as u64,
                messages_in: c.traffic.sum(MESSAGES_IN),
                messages_out: c.traffic.sum(MESSAGES_OUT),
                bytes_in: c.traffic.sum(BYTES_IN),
                bytes_out: c.traffic.sum(BYTES_OUT),
            })
            .collect();
        let sum = |f: fn(&RouteMetrics) -> u64| routes.iter().map(f).sum::<u64>();
        MetricsSnapshot {
            connections: sum(|r| r.open),
            messages_in: sum(|r| r.messages_in),
            messages_out: sum(|r| r.messages_out),
            bytes_in: sum(|r| r.bytes_in),
            bytes_out: sum(|r| r.bytes_out),
            handshakes_accepted: self.handshakes_accepted.load(Ordering::Relaxed),
            handshakes_rejected: lock(&self.rejected).clone(),
            closes: lock(&self.closes)
                .iter()
                .map(|(&(code, side), &count)| CloseCount { code, side, count })
                .collect(),
            dropped: lock(&self.dropped)
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            queued_bytes: 0,
            routes,
            history: self.history.snapshot(),
            handovers: HandoverMetrics {
                started: self.handover.started.load(Ordering::Relaxed),
                completed: self.handover.completed.load(Ordering::Relaxed),
                aborted: lock(&self.handover.aborted)
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), *v))
                    .collect(),
                connections_moved: self.handover.moved.load(Ordering::Relaxed),
                connections_resumed: self.handover.resumed.load(Ordering::Relaxed),
                connections_taken_back: self.handover.taken_back.load(Ordering::Relaxed),
                pause_max_ms: self.handover.pause_max_ms.load(Ordering::Relaxed),
                connections_closed: lock(&self.handover.closed)
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), *v))
                    .collect(),
            },
        }
    }
}

/// A reading of every counter, as [`Sender::metrics`](crate::Sender::metrics) returns it.
/// Totals count since the process started.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Open WebSocket connections on this node.
    pub connections: u64,
    /// Text and binary messages received.
    pub messages_in: u64,
    /// Text and binary messages queued to connections (a room push counts once per member).
    pub messages_out: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Frame bytes queued to connections.
    pub bytes_out: u64,
    /// Handshakes answered with 101.
    pub handshakes_accepted: u64,
    /// Handshakes refused, by reason (the JSON `error` of the refusal, or `timeout`,
    /// `bad_request_head`).
    pub handshakes_rejected: BTreeMap<String, u64>,
    /// Connections closed, by code and by side (`client`, `server`, `network`).
    pub closes: Vec<CloseCount>,
    /// Messages not queued, by reason (`queue_full`, `closed`).
    pub dropped: BTreeMap<String, u64>,
    /// Bytes queued and not yet written, over every open connection.
    pub queued_bytes: u64,
    /// The same per route.
    pub routes: Vec<RouteMetrics>,
    /// History rooms: appends, reads, recoveries, duplicates, store errors.
    pub history: HistoryMetrics,
    /// Live handovers to a successor process (see [`crate::handover`]).
    pub handovers: HandoverMetrics,
}

/// Live handovers from this process to a successor.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct HandoverMetrics {
    /// Handovers started (an upgrade request that was not refused at once).
    pub started: u64,
    /// Handovers that committed: the successor serves.
    pub completed: u64,
    /// Handovers abandoned, by reason (`exited`, `timeout`, `incompatible`, `spawn_failed`,
    /// `refused`, `busy`, `io`); this process kept serving.
    pub aborted: BTreeMap<String, u64>,
    /// Connections handed to the successor open (plain TCP, movable handler, no compression).
    pub connections_moved: u64,
    /// Connections this process took over open from its predecessor.
    pub connections_resumed: u64,
    /// Connections sent to a successor that failed before it took them (it was killed),
    /// and driven on by this process.
    pub connections_taken_back: u64,
    /// The longest pause (ms) a connection taken over saw between the predecessor's last
    /// byte and this process's first.
    pub pause_max_ms: u64,
    /// Connections closed with 1012 because they could not move, by reason (`not_movable`).
    pub connections_closed: BTreeMap<String, u64>,
}

/// Closes with one code by one side.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CloseCount {
    /// The close code.
    pub code: u16,
    /// `client`, `server` or `network`.
    pub side: &'static str,
    /// How many.
    pub count: u64,
}

/// The counters of one route.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RouteMetrics {
    /// The server's name.
    pub server: String,
    /// The route pattern.
    pub route: String,
    /// Open connections.
    pub open: u64,
    /// Messages received.
    pub messages_in: u64,
    /// Messages queued.
    pub messages_out: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Frame bytes queued.
    pub bytes_out: u64,
}

impl MetricsSnapshot {
    /// The Prometheus text exposition format (version 0.0.4). `cluster` adds the backplane's
    /// state and counters.
    ///
    /// ```
    /// # async fn demo(sender: wharf::Sender) {
    /// let text = sender.metrics().to_prometheus(sender.cluster_stats().as_ref());
    /// assert!(text.contains("# TYPE wharf_connections gauge"));
    /// # }
    /// ```
    pub fn to_prometheus(&self, cluster: Option<&crate::cluster::ClusterStats>) -> String {
        let mut out = String::with_capacity(4096);
        let per_route: [Family; 5] = [
            (
                "wharf_connections",
                "gauge",
                "Open WebSocket connections.",
                |r| r.open,
            ),
            (
                "wharf_messages_received_total",
                "counter",
                "Text and binary messages received.",
                |r| r.messages_in,
            ),
            (
                "wharf_messages_sent_total",
                "counter",
                "Text and binary messages queued to connections.",
                |r| r.messages_out,
            ),
            (
                "wharf_received_bytes_total",
                "counter",
                "Payload bytes received.",
                |r| r.bytes_in,
            ),
            (
                "wharf_sent_bytes_total",
                "counter",
                "Frame bytes queued to connections.",
                |r| r.bytes_out,
            ),
        ];
        for (name, kind, help, value) in per_route {
            header(&mut out, name, kind, help);
            for r in &self.routes {
                let (server, route) = (escape(&r.server), escape(&r.route));
                let _ = writeln!(
                    out,
                    "{name}{{server=\"{server}\",route=\"{route}\"}} {}",
                    value(r)
                );
            }
        }
        let name = "wharf_handshakes_accepted_total";
        header(&mut out, name, "counter", "Handshakes answered with 101.");
        let _ = writeln!(out, "{name} {}", self.handshakes_accepted);
        let name = "wharf_handshakes_rejected_total";
        header(&mut out, name, "counter", "Handshakes refused, by reason.");
        for (reason, n) in &self.handshakes_rejected {
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {n}", escape(reason));
        }
        let name = "wharf_closes_total";
        header(
            &mut out,
            name,
            "counter",
            "Connections closed, by code and side.",
        );
        for c in &self.closes {
            let _ = writeln!(
                out,
                "{name}{{code=\"{}\",side=\"{}\"}} {}",
                c.code, c.side, c.count
            );
        }
        let name = "wharf_messages_dropped_total";
        header(&mut out, name, "counter", "Messages not queued, by reason.");
        for (reason, n) in &self.dropped {
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {n}", escape(reason));
        }
        let name = "wharf_queued_bytes";
        header(
            &mut out,
            name,
            "gauge",
            "Bytes queued to connections and not yet written.",
        );
        let _ = writeln!(out, "{name} {}", self.queued_bytes);
        let h = &self.history;
        let name = "wharf_history_recoveries_total";
        header(
            &mut out,
            name,
            "counter",
            "History recoveries, by whether nothing was missing.",
        );
        let _ = writeln!(
            out,
            "{name}{{result=\"complete\"}} {}",
            h.recoveries_complete
        );
        let _ = writeln!(
            out,
            "{name}{{result=\"incomplete\"}} {}",
            h.recoveries_incomplete
        );
        for (name, help, value) in [
            (
                "wharf_history_appends_total",
                "Publications stored in history.",
                h.appends,
            ),
            (
                "wharf_history_duplicates_total",
                "Publishes answered as idempotent duplicates.",
                h.duplicates,
            ),
            ("wharf_history_reads_total", "History reads.", h.reads),
            (
                "wharf_history_store_errors_total",
                "History store operations that failed.",
                h.store_errors,
            ),
            (
                "wharf_history_gaps_filled_total",
                "Delivery gaps filled from the history store.",
                h.gaps_filled,
            ),
            (
                "wharf_history_resyncs_total",
                "Delivery gaps that could not be filled (members closed with 4010).",
                h.resyncs,
            ),
        ] {
            header(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {value}");
        }
        self.handovers.write_prometheus(&mut out);
        if let Some(c) = cluster {
            let name = "wharf_backplane_up";
            header(
                &mut out,
                name,
                "gauge",
                "Whether the cluster backplane is connected.",
            );
            let up = u8::from(c.state == crate::cluster::BackplaneState::Connected);
            let _ = writeln!(out, "{name}{{engine=\"{}\"}} {up}", c.engine);
            for (name, help, value) in [
                (
                    "wharf_backplane_published_total",
                    "Commands published to other nodes.",
                    c.published,
                ),
                (
                    "wharf_backplane_received_total",
                    "Commands received from other nodes.",
                    c.received,
                ),
                (
                    "wharf_backplane_dropped_total",
                    "Commands dropped: backplane down or queue full.",
                    c.dropped,
                ),
                (
                    "wharf_backplane_outages_total",
                    "Times the backplane connection was lost.",
                    c.outages,
                ),
                (
                    "wharf_backplane_reconnects_total",
                    "Times it was re-established.",
                    c.reconnects,
                ),
            ] {
                header(&mut out, name, "counter", help);
                let _ = writeln!(out, "{name} {value}");
            }
        }
        out
    }
}

impl HandoverMetrics {
    fn write_prometheus(&self, out: &mut String) {
        for (name, help, value) in [
            (
                "wharf_handovers_started_total",
                "Live handovers to a successor started.",
                self.started,
            ),
            (
                "wharf_handovers_completed_total",
                "Live handovers that committed.",
                self.completed,
            ),
            (
                "wharf_handover_connections_moved_total",
                "Connections handed to a successor open.",
                self.connections_moved,
            ),
            (
                "wharf_handover_connections_resumed_total",
                "Connections taken over open from the predecessor.",
                self.connections_resumed,
            ),
            (
                "wharf_handover_connections_taken_back_total",
                "Connections sent to a successor that failed, driven on by this process.",
                self.connections_taken_back,
            ),
        ] {
            header(out, name, "counter", help);
            let _ = writeln!(out, "{name} {value}");
        }
        let name = "wharf_handover_pause_max_ms";
        header(
            out,
            name,
            "gauge",
            "Longest pause a connection taken over saw, in milliseconds.",
        );
        let _ = writeln!(out, "{name} {}", self.pause_max_ms);
        for (name, help, map) in [
            (
                "wharf_handovers_aborted_total",
                "Live handovers abandoned, by reason.",
                &self.aborted,
            ),
            (
                "wharf_handover_connections_closed_total",
                "Connections closed by a handover instead of moved, by reason.",
                &self.connections_closed,
            ),
        ] {
            header(out, name, "counter", help);
            for (reason, n) in map {
                let _ = writeln!(out, "{name}{{reason=\"{}\"}} {n}", escape(reason));
            }
        }
    }
}

/// A per-route metric family: name, type, help, and the value it reads.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&RouteMetrics) -> u64,
);

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
