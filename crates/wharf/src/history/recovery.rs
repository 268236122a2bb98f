//! Joining a history room from a position: [`HistoryHub::join_from`].
//!
//! # Closing the seam in `join_from`
//!
//! A member that recovers must get every publication after `since` exactly once, although
//! publications keep arriving while its history is read. Under the room's sequencer lock,
//! the connection joins the room *and* is marked recovering: from then on every live
//! publication the sequencer delivers goes into that member's own buffer instead of its
//! socket. Then, without the lock, the store is read from `since` (page after page, up to
//! its top) and the history is sent. Then, under the lock again, the buffer is flushed:
//! only publications beyond the last offset the history sent, in the sequencer's order, and
//! the member becomes live. A publication is either in the store before the read (sent from
//! history) or delivered by the sequencer after the mark (buffered), or both (sent once, the
//! buffer copy skipped); when the read went further than the sequencer has delivered, the
//! member is skipped by the sequencer until it passes that offset; when the sequencer is
//! ahead of the history sent (another recovery started it further on), the difference is read
//! from the store before the flush, since the sequencer will not deliver it again. No gap, no
//! duplicate.

use super::hub::{HistoryHub, RoomError, lock};
use super::{HistoryPolicy, Position};
use crate::metrics::HistoryCounters;
use crate::{Conn, SendError};

/// Publications read per store call while recovering.
const PAGE: usize = 1000;
/// How long a recovery waits for this node's subscription to a room new to it.
const ROOM_READY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// What [`Conn::join_from`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// Where the member now stands: the last position it was sent (at least the room's top
    /// when its history was read). Live publications continue from there.
    pub position: Position,
    /// True when nothing after `since` is missing. False when `since` is of another epoch
    /// or older than the history kept: then no history was sent (nothing stale), and the
    /// client should reload its state; live messages continue from `position`.
    pub recovered: bool,
    /// Publications sent from history.
    pub delivered: usize,
}

impl HistoryHub {
    /// Joins `conn` (a local connection) to `room` and sends it every publication after
    /// `since`, then live ones, with no gap and no duplicate at the seam (see the module
    /// docs). `since: None` sends what the room keeps. A `since` of another epoch, or older
    /// than the history kept, sends no history and answers `recovered: false`; a `since`
    /// ahead of the room fails with [`HistoryError::PositionAhead`](super::HistoryError::PositionAhead) (and joins nothing).
    pub async fn join_from(
        &self,
        conn: &Conn,
        room: &str,
        since: Option<&Position>,
    ) -> Result<Recovery, RoomError> {
        let policy = self.policy_or_err(room)?;
        if self.join(conn, room, true)? {
            self.sender.presence_changed(conn, room, "join");
        }
        let recovery = self.catch_up(conn, room, since, &policy).await?;
        let counters = &self.state().counters;
        HistoryCounters::add(if recovery.recovered {
            &counters.recoveries_complete
        } else {
            &counters.recoveries_incomplete
        });
        Ok(recovery)
    }

    /// Joins `conn` to history room `room` live from now: every publication after the room's
    /// current top reaches it, once and in order, and nothing before it. The top is read from
    /// the store first and the member recovers from it, so a publication still on its way
    /// while it joins (stored, not yet delivered to this node) is not missed, as it could be
    /// with a plain [`Conn::join`]. Fails as [`join_from`](Self::join_from) does.
    pub async fn join_from_top(&self, conn: &Conn, room: &str) -> Result<Recovery, RoomError> {
        let top = self.read(room, None, 0).await?.top;
        self.join_from(conn, room, Some(&top)).await
    }

    /// A connection moved from a predecessor (registered, not driven yet) joins `room`
    /// again, marked recovering: from now on live publications wait for it in its own
    /// buffer. No presence event: to the room it never left. Then
    /// [`resume_member`](Self::resume_member) sends what it missed.
    pub(crate) fn rejoin_recovering(&self, conn: &Conn, room: &str) -> bool {
        self.join(conn, room, true).is_ok()
    }

    /// Finishes [`rejoin_recovering`](Self::rejoin_recovering): sends `conn` every
    /// publication after `since` (the last one its predecessor queued to it), then makes it
    /// live, with no gap and no duplicate (the seam of [`join_from`](Self::join_from)). On an
    /// error it has left the room.
    pub(crate) async fn resume_member(
        &self,
        conn: &Conn,
        room: &str,
        since: &Position,
    ) -> Result<Recovery, RoomError> {
        let policy = match self.policy_or_err(room) {
            Ok(policy) => policy,
            Err(error) => {
                self.drop_member(conn, room);
                return Err(error);
            }
        };
        self.catch_up(conn, room, Some(since), &policy).await
    }

    /// `conn`, joined to `room` and marked recovering, gets every publication after `since`
    /// and then live ones. In a cluster, this node may only now subscribe to the room's
    /// channel: the history is read once it receives what other nodes publish, so that
    /// nothing published between the read and the subscription is missed. On an error it
    /// has left the room.
    async fn catch_up(
        &self,
        conn: &Conn,
        room: &str,
        since: Option<&Position>,
        policy: &HistoryPolicy,
    ) -> Result<Recovery, RoomError> {
        if !self.sender.room_ready(room, ROOM_READY_WAIT).await {
            tracing::debug!(
                room,
                "the room's subscription is not confirmed; recovering anyway"
            );
        }
        let recovered = self.recover(conn, room, since, policy).await;
        if recovered.is_err() {
            self.drop_member(conn, room);
        }
        recovered
    }

    /// Takes `conn` out of `room` here and out of its sequencer.
    fn drop_member(&self, conn: &Conn, room: &str) {
        self.sender.leave_local(conn, room);
        if let Some(seq) = self.state().seq(room) {
            lock(&seq).forget(conn.id());
        }
    }

    async fn recover(
        &self,
        conn: &Conn,
        room: &str,
        since: Option<&Position>,
        policy: &HistoryPolicy,
    ) -> Result<Recovery, RoomError> {
        let store = self.state().store();
        let first = store
            .read(room, since, PAGE, policy)
            .await
            .inspect_err(|e| self.store_failed(e))?;
        HistoryCounters::add(&self.state().counters.reads);
        let top = first.top.clone();
        // `None` asks for what is kept, whatever was trimmed before; a client's own position
        // that cannot be continued gets nothing stale.
        let recovered = first.complete;
        let mut history = if recovered || since.is_none() {
            first.publications
        } else {
            Vec::new()
        };
        while let Some(last) = history.last().map(|p| p.position.clone()) {
            if last.offset >= top.offset || history.len() >= policy.size {
                break;
            }
            let next = store
                .read(room, Some(&last), PAGE, policy)
                .await
                .inspect_err(|e| self.store_failed(e))?;
            if next.publications.is_empty() || next.top.epoch != top.epoch {
                break;
            }
            history.extend(next.publications);
        }
        let envelope = self.state().envelope();
        let mut sent = top.offset;
        for publication in &history {
            conn.send(envelope(room, publication))?;
            sent = sent.max(publication.position.offset);
        }
        let mut delivered = history.len();
        let mut recovered = recovered;
        loop {
            // Under the lock: if the sequencer has not gone past `sent`, flush what it
            // buffered for this member beyond `sent` and make the member live.
            let upto = {
                let Some(seq) = self.state().seq(room) else {
                    return Err(SendError::Closed(conn.id()).into());
                };
                let mut seq = lock(&seq);
                if seq.dead {
                    // It closed while its history was read, and the room emptied.
                    return Err(SendError::Closed(conn.id()).into());
                }
                let top_sent = Position::new(top.epoch.clone(), sent);
                if seq.start(&self.ctx(room), &top_sent).arm_gap {
                    self.arm_gap(room);
                }
                match seq.next_for(conn.id(), &top.epoch) {
                    // Another recovery started the sequencer beyond `sent`: read the
                    // difference first (the sequencer will not deliver it again).
                    Some(next) if next > sent + 1 && recovered => next - 1,
                    _ => {
                        let mut position = top_sent;
                        for publication in seq.recovered(conn.id(), &top.epoch, sent) {
                            let same_epoch = publication.position.epoch == top.epoch;
                            if same_epoch && publication.position.offset <= sent {
                                continue;
                            }
                            conn.send(envelope(room, &publication))?;
                            position = publication.position;
                        }
                        return Ok(Recovery {
                            position,
                            recovered,
                            delivered,
                        });
                    }
                }
            };
            let after = Position::new(top.epoch.clone(), sent);
            let more = store
                .read(room, Some(&after), (upto - sent) as usize, policy)
                .await
                .inspect_err(|e| self.store_failed(e))?;
            if !more.complete || more.top.epoch != top.epoch || more.publications.is_empty() {
                recovered = false; // gone meanwhile: the member will see a jump
                continue;
            }
            for publication in &more.publications {
                conn.send(envelope(room, publication))?;
                sent = sent.max(publication.position.offset);
                delivered += 1;
            }
        }
    }
}
