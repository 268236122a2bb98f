//! History: rooms that keep their last messages, each at a [`Position`], so that a client
//! that was away gets back exactly what it missed, or is told plainly that it cannot.
//!
//! A room with history gives every message published to it a position `{epoch, offset}`.
//! Offsets are contiguous per room (1, 2, 3, …). The epoch names one unbroken history: it
//! changes whenever the history was lost (a memory store restarted, a Redis key evicted or
//! flushed, a JetStream stream recreated), so a position from another epoch means "what you
//! missed is gone: resync".
//!
//! A [`HistoryStore`] keeps the messages. wharf has one in memory ([`MemoryHistory`], for one
//! node); the `wharf-cluster` crate has Redis Streams and NATS JetStream stores for a
//! cluster. Every store runs the same test suite.
//!
//! ```
//! use std::time::Duration;
//! use wharf::history::{HistoryPolicy, HistoryStore, MemoryHistory};
//! use wharf::Message;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), wharf::history::HistoryError> {
//! let store = MemoryHistory::new();
//! let policy = HistoryPolicy::new(100, Duration::from_secs(300));
//! let first = store.append("news", &Message::text("one"), &policy, None).await?;
//! let second = store.append("news", &Message::text("two"), &policy, None).await?;
//! assert_eq!((first.position.offset, second.position.offset), (1, 2));
//!
//! // Everything after the first message, and whether nothing is missing in between.
//! let page = store.read("news", Some(&first.position), 10, &policy).await?;
//! assert!(page.complete);
//! assert_eq!(page.publications.len(), 1);
//! assert_eq!(page.publications[0].message, Message::text("two"));
//! # Ok(()) }
//! ```

mod hub;
mod memory;
mod position;
mod recovery;
mod sequencer;

use std::sync::Arc;
use std::time::Duration;

use crate::Message;
use crate::cluster::BoxFuture;

pub(crate) use hub::HistoryState;
pub use hub::{HistoryHub, PublishOptions, Published, RoomError};
pub use memory::MemoryHistory;
pub(crate) use memory::RoomSnapshot;
pub use position::{ParsePositionError, Position};
pub use recovery::Recovery;

/// A message as history keeps it: its position and the message (text or binary).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Publication {
    /// Where it stands in its room's history.
    pub position: Position,
    /// The message.
    pub message: Message,
}

impl Publication {
    /// A publication at `position`.
    pub fn new(position: Position, message: Message) -> Publication {
        Publication { position, message }
    }
}

/// How much history a room keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryPolicy {
    /// The most messages kept; older ones are trimmed.
    pub size: usize,
    /// How long a message is kept, and how long an idle room's history (and its epoch)
    /// outlives its last publish.
    pub ttl: Duration,
    /// How long an idempotency key is remembered: a publish retried with the same key
    /// within it returns the first position. Default: 2 minutes.
    pub idempotency_window: Duration,
}

impl HistoryPolicy {
    /// Keep at most `size` messages for at most `ttl`; idempotency keys for 2 minutes.
    pub fn new(size: usize, ttl: Duration) -> HistoryPolicy {
        HistoryPolicy {
            size,
            ttl,
            idempotency_window: Duration::from_secs(120),
        }
    }

    /// The same policy with another idempotency window.
    pub fn with_idempotency_window(mut self, window: Duration) -> HistoryPolicy {
        self.idempotency_window = window;
        self
    }
}

/// What [`HistoryStore::append`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Appended {
    /// The message's position.
    pub position: Position,
    /// True when the idempotency key was seen within the window: nothing was stored, and
    /// `position` is the first publish's. The caller must not deliver the message again.
    pub duplicate: bool,
}

impl Appended {
    /// What an append did: stored at `position`, or (`duplicate`) found there already.
    pub fn new(position: Position, duplicate: bool) -> Appended {
        Appended {
            position,
            duplicate,
        }
    }
}

/// What [`HistoryStore::read`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryPage {
    /// The room's latest position (offset 0 when nothing was ever published in this epoch).
    pub top: Position,
    /// The publications after `since`, oldest first, at most `limit`.
    pub publications: Vec<Publication>,
    /// True when nothing between `since` and the first returned publication is missing:
    /// `since` is of the current epoch and not older than the oldest message kept. False
    /// means the reader missed messages that are gone (and, with another epoch, that
    /// `publications` is empty: nothing of a different history is returned).
    pub complete: bool,
}

impl HistoryPage {
    /// A page of `publications` below `top`, `complete` or not.
    pub fn new(top: Position, publications: Vec<Publication>, complete: bool) -> HistoryPage {
        HistoryPage {
            top,
            publications,
            complete,
        }
    }
}

/// Why history could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// The store cannot be reached or refused the operation. Nothing was stored; retry later
    /// (HTTP 503 `backplane_unavailable`).
    #[error("history store unavailable: {0}")]
    Unavailable(String),
    /// `since` is ahead of the room's latest position in the same epoch: it was never
    /// given out. The client's state is wrong; resync (HTTP 400 `bad_position`).
    #[error("position {since} is ahead of the room's latest {top}")]
    PositionAhead {
        /// The position asked for.
        since: Position,
        /// The room's latest position.
        top: Position,
    },
}

/// Where a room's messages are kept, in order, each at a position.
///
/// Implementations assign offsets atomically with the append (two publishers never get the
/// same offset, and offsets have no holes), trim by `policy.size` and `policy.ttl`, and pick a
/// new epoch whenever they lost a room's history. Every store runs the shared test suite
/// (`crates/wharf-cluster/tests/history_store.rs`).
pub trait HistoryStore: Send + Sync + 'static {
    /// The store's name for logs and metrics (`"memory"`, `"redis"`, `"nats"`).
    fn engine(&self) -> &'static str;

    /// Stores `message` (text or binary) as `room`'s next publication and returns its
    /// position. With `idempotency_key`, a key seen within `policy.idempotency_window`
    /// stores nothing and returns the first position with `duplicate: true`.
    fn append<'a>(
        &'a self,
        room: &'a str,
        message: &'a Message,
        policy: &'a HistoryPolicy,
        idempotency_key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Appended, HistoryError>>;

    /// The publications of `room` after `since` (from the oldest kept when `None`), oldest
    /// first, at most `limit` (0 reads only the top), with the room's latest position.
    fn read<'a>(
        &'a self,
        room: &'a str,
        since: Option<&'a Position>,
        limit: usize,
        policy: &'a HistoryPolicy,
    ) -> BoxFuture<'a, Result<HistoryPage, HistoryError>>;
}

impl<S: HistoryStore + ?Sized> HistoryStore for Arc<S> {
    fn engine(&self) -> &'static str {
        (**self).engine()
    }

    fn append<'a>(
        &'a self,
        room: &'a str,
        message: &'a Message,
        policy: &'a HistoryPolicy,
        idempotency_key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Appended, HistoryError>> {
        (**self).append(room, message, policy, idempotency_key)
    }

    fn read<'a>(
        &'a self,
        room: &'a str,
        since: Option<&'a Position>,
        limit: usize,
        policy: &'a HistoryPolicy,
    ) -> BoxFuture<'a, Result<HistoryPage, HistoryError>> {
        (**self).read(room, since, limit, policy)
    }
}

/// Whether reading after `since` misses nothing, given the room's `top` and the `oldest`
/// offset it still keeps (`top.offset + 1` when it keeps none); and the error for a `since`
/// that was never given out. Every store decides completeness with this one rule.
///
/// ```
/// use wharf::history::{Position, completeness};
/// let top = Position::new("e1", 10);
/// assert_eq!(completeness(Some(&Position::new("e1", 4)), &top, 5), Ok(true));
/// assert_eq!(completeness(Some(&Position::new("e1", 3)), &top, 5), Ok(false));
/// assert_eq!(completeness(Some(&Position::new("e0", 4)), &top, 5), Ok(false));
/// assert!(completeness(Some(&Position::new("e1", 11)), &top, 5).is_err());
/// ```
pub fn completeness(
    since: Option<&Position>,
    top: &Position,
    oldest: u64,
) -> Result<bool, HistoryError> {
    let Some(since) = since else {
        // From the start: complete when nothing was trimmed yet.
        return Ok(oldest <= 1);
    };
    if since.epoch != top.epoch {
        return Ok(false);
    }
    if since.offset > top.offset {
        return Err(HistoryError::PositionAhead {
            since: since.clone(),
            top: top.clone(),
        });
    }
    Ok(since.offset + 1 >= oldest)
}
