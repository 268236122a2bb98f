//! The per-room sequencer: on every node, the one place where a history room's publications
//! meet its local members, so that no member receives offset n+1 before n.
//!
//! Publications reach a node in any order: two publishers (on this node or others) append
//! to the store and get offsets 7 and 8, but the second may reach the node first, through a
//! faster task or another backplane connection. The sequencer keeps `last`, the offset the
//! room's live members were sent last, and for each publication of the current epoch:
//!
//! - `last + 1`: delivered at once, then every buffered successor that is now contiguous;
//! - `<= last`: dropped (a duplicate, such as a gap filled from the store that arrives
//!   again);
//! - `> last + 1`: buffered; when the gap is not filled within [`GAP_WAIT`] the hub reads
//!   the missing offsets from the store, and when the store says they are gone (trimmed,
//!   or a new epoch) every member is closed with [`CloseCode::RESYNC`] and the sequencer
//!   skips ahead.
//!
//! A publication of an unknown epoch means the store lost the room's history and started
//! again: the sequencer moves to it (from offset 0) and retires the old epoch, whose late
//! publications are then dropped.
//!
//! Members that are recovering (`join_from` is reading history for them) get the live
//! publications in a buffer of their own instead; members whose recovery read further than
//! the sequencer has delivered are skipped until the sequencer passes them. See
//! [`super::hub`] for how the seam between history and live messages is closed.
//!
//! Locking: one `std::sync::Mutex` per room, held while a publication is queued to every
//! member (queueing never blocks: it appends to the connection's outbox), because two
//! threads delivering n and n+1 for the same room must not interleave. Lock order: the room's
//! sequencer, then the registry's room shard (taken briefly to list members); never the
//! reverse. Never held across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::{Position, Publication};
use crate::compression::Fanout;
use crate::conn::ConnId;
use crate::registry::Rooms;
use crate::{CloseCode, Message};

/// How long a gap may stay open before the missing offsets are read from the store.
pub(crate) const GAP_WAIT: Duration = Duration::from_millis(250);

/// How many retired epochs a room remembers (to drop their late publications).
const RETIRED: usize = 8;

/// Turns a publication into the message its room's members receive.
pub(crate) type Envelope = Arc<dyn Fn(&str, &Publication) -> Message + Send + Sync>;

/// What the sequencer needs to deliver: the room's name, its local members, the envelope.
pub(crate) struct Ctx<'a> {
    pub(crate) room: &'a str,
    pub(crate) rooms: &'a Rooms,
    pub(crate) envelope: &'a Envelope,
}

/// Where one member stands, when it is not simply live.
enum Cursor {
    /// `join_from` is reading its history: live publications wait here for it.
    Recovering(Vec<Publication>),
    /// Its recovery sent it up to this offset of the current epoch, beyond `last`.
    Ahead(u64),
    /// It is moving to a successor process, which recovers it from where it stood: this
    /// node delivers nothing more to it.
    Parked,
}

/// One room's sequencer.
#[derive(Default)]
pub(crate) struct RoomSeq {
    /// The epoch being delivered; `None` until the room's top was read from the store.
    epoch: Option<String>,
    /// The offset live members were sent last.
    last: u64,
    /// Epochs this room moved away from.
    retired: Vec<String>,
    /// Publications beyond `last + 1`, by offset.
    pending: BTreeMap<u64, Publication>,
    /// A task is waiting to fill the gap.
    pub(crate) gap_armed: bool,
    /// A task is reading the room's top to start the sequencer.
    pub(crate) init_started: bool,
    cursors: HashMap<ConnId, Cursor>,
    /// Removed from the map (no local member left): a joiner that locked it late retries.
    pub(crate) dead: bool,
}

/// What [`RoomSeq::offer`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Offered {
    /// Local members the publication was queued to now (0 when it was buffered or dropped).
    pub(crate) delivered: usize,
    /// A gap opened and no task is filling it yet: the caller must start one.
    pub(crate) arm_gap: bool,
    /// The publication was dropped as already delivered (or of a retired epoch).
    pub(crate) dropped: bool,
}

impl RoomSeq {
    /// Whether the sequencer knows its epoch.
    pub(crate) fn started(&self) -> bool {
        self.epoch.is_some()
    }

    /// Whether publications wait for a missing one.
    pub(crate) fn stuck(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The epoch, `last`, and the highest buffered offset, for a gap fill.
    pub(crate) fn gap(&self) -> Option<(Position, u64)> {
        let epoch = self.epoch.clone()?;
        let upto = *self.pending.keys().next_back()?;
        Some((Position::new(epoch, self.last), upto))
    }

    /// Whether `member` has a cursor (is recovering or ahead).
    pub(crate) fn has_cursors(&self) -> bool {
        !self.cursors.is_empty()
    }

    /// Starts the sequencer after `top`, the last offset its members have (a recovery's
    /// read): buffered publications of that epoch beyond it are delivered in order.
    pub(crate) fn start(&mut self, ctx: &Ctx<'_>, top: &Position) -> Offered {
        if self.epoch.is_some() {
            return Offered::default();
        }
        self.epoch = Some(top.epoch.clone());
        self.last = top.offset;
        let pending = std::mem::take(&mut self.pending);
        let mut out = Offered::default();
        for (_, publication) in pending {
            let offered = self.offer(ctx, publication);
            out.arm_gap |= offered.arm_gap;
        }
        out
    }

    /// Starts the sequencer for members that joined live, `top` being the store's latest
    /// position read after they joined. Everything buffered was published after the
    /// sequencer was created (at the first join), so it is all delivered, even below `top`.
    pub(crate) fn start_live(&mut self, ctx: &Ctx<'_>, top: &Position) -> Offered {
        let first = self
            .pending
            .values()
            .find(|p| p.position.epoch == top.epoch)
            .map_or(top.offset, |p| p.position.offset - 1);
        self.start(
            ctx,
            &Position::new(top.epoch.clone(), first.min(top.offset)),
        )
    }

    /// Starts the sequencer from what it buffered, when the store could not be read: the
    /// lowest buffered publication is taken as the next one.
    pub(crate) fn start_from_pending(&mut self, ctx: &Ctx<'_>) -> Offered {
        let Some(first) = self.pending.values().next() else {
            return Offered::default();
        };
        let top = Position::new(first.position.epoch.clone(), first.position.offset - 1);
        self.start(ctx, &top)
    }

    /// Takes one publication, from this node's publisher, another node, or a gap fill.
    pub(crate) fn offer(&mut self, ctx: &Ctx<'_>, publication: Publication) -> Offered {
        let Some(epoch) = &self.epoch else {
            // Not started: keep it until the room's top is known.
            let offset = publication.position.offset;
            if offset > 0 {
                self.pending.insert(offset, publication);
            }
            return Offered::default();
        };
        if *epoch != publication.position.epoch {
            if self.retired.contains(&publication.position.epoch) {
                return Offered {
                    dropped: true,
                    ..Offered::default()
                };
            }
            // The store lost the history and started a new epoch: follow it from its start.
            // Members see the new epoch in the positions they receive.
            if self.retired.len() == RETIRED {
                self.retired.remove(0);
            }
            self.retired.push(epoch.clone());
            self.epoch = Some(publication.position.epoch.clone());
            self.last = 0;
            self.pending.clear();
            self.cursors
                .retain(|_, cursor| matches!(cursor, Cursor::Recovering(_) | Cursor::Parked));
        }
        let offset = publication.position.offset;
        if offset <= self.last {
            return Offered {
                dropped: true,
                ..Offered::default()
            };
        }
        if offset > self.last + 1 {
            self.pending.insert(offset, publication);
            let arm_gap = !self.gap_armed;
            self.gap_armed = true;
            return Offered {
                arm_gap,
                ..Offered::default()
            };
        }
        let delivered = self.deliver(ctx, &publication);
        self.last = offset;
        while let Some(next) = self.pending.remove(&(self.last + 1)) {
            self.deliver(ctx, &next);
            self.last += 1;
        }
        // Whatever is left is beyond a gap (or stale, below `last`).
        self.pending = self.pending.split_off(&(self.last + 1));
        let arm_gap = !self.pending.is_empty() && !self.gap_armed;
        self.gap_armed |= arm_gap;
        Offered {
            delivered,
            arm_gap,
            dropped: false,
        }
    }

    /// The missing offsets are gone (trimmed, or the store moved to another epoch, or it
    /// cannot be read): closes every local member with [`CloseCode::RESYNC`] (they rejoin
    /// from their last position and learn what they can recover) and skips to the first
    /// buffered publication. Returns how many members were closed.
    pub(crate) fn resync(&mut self, ctx: &Ctx<'_>) -> usize {
        let members = ctx.rooms.members(ctx.room);
        let closed = members
            .iter()
            .filter(|conn| {
                conn.close(
                    CloseCode::RESYNC,
                    "history gap: rejoin from your last position",
                )
            })
            .count();
        self.cursors
            .retain(|_, cursor| matches!(cursor, Cursor::Parked));
        if let Some(first) = self.pending.keys().next().copied() {
            self.last = first - 1;
            let pending = std::mem::take(&mut self.pending);
            for (_, publication) in pending {
                self.offer(ctx, publication);
            }
        }
        closed
    }

    /// Marks `member` as recovering: live publications wait in its own buffer.
    pub(crate) fn recovering(&mut self, member: ConnId) {
        self.cursors.insert(member, Cursor::Recovering(Vec::new()));
    }

    /// Ends `member`'s recovery: returns the live publications buffered for it, and makes it
    /// live from `sent` (the last offset of `epoch` its recovery sent), skipping what the
    /// sequencer has not delivered yet up to there.
    pub(crate) fn recovered(&mut self, member: ConnId, epoch: &str, sent: u64) -> Vec<Publication> {
        let buffered = match self.cursors.remove(&member) {
            Some(Cursor::Recovering(buffered)) => buffered,
            _ => Vec::new(),
        };
        let last_buffered = buffered
            .last()
            .filter(|p| p.position.epoch == epoch)
            .map_or(sent, |p| p.position.offset.max(sent));
        if self.epoch.as_deref() == Some(epoch) && self.last < last_buffered {
            self.cursors.insert(member, Cursor::Ahead(last_buffered));
        }
        buffered
    }

    /// The next offset of `epoch` the sequencer will hand `member`: the first it buffered
    /// for it, or `last + 1`; `None` when the sequencer follows another epoch.
    pub(crate) fn next_for(&self, member: ConnId, epoch: &str) -> Option<u64> {
        if self.epoch.as_deref() != Some(epoch) {
            return None;
        }
        match self.cursors.get(&member) {
            Some(Cursor::Recovering(buffered)) => match buffered.first() {
                Some(first) if first.position.epoch == epoch => Some(first.position.offset),
                Some(_) => None,
                None => Some(self.last + 1),
            },
            _ => Some(self.last + 1),
        }
    }

    /// Stops delivering to `member`, which moves to a successor process, and returns the
    /// position of the last publication it was queued: everything up to it is in its
    /// outbox (or written), nothing after it. `None` when that is not known (the sequencer
    /// has not started, or the member is recovering): the successor joins it live again.
    pub(crate) fn park(&mut self, member: ConnId) -> Option<Position> {
        let previous = self.cursors.insert(member, Cursor::Parked);
        let epoch = self.epoch.clone()?;
        match previous {
            None => Some(Position::new(epoch, self.last)),
            Some(Cursor::Ahead(sent)) => Some(Position::new(epoch, sent.max(self.last))),
            Some(Cursor::Recovering(_) | Cursor::Parked) => None,
        }
    }

    /// Forgets `member` (it left or closed).
    pub(crate) fn forget(&mut self, member: ConnId) {
        self.cursors.remove(&member);
    }

    /// Queues `publication` to every live member (encoded once), into the buffer of every
    /// recovering one, and skips members already past it. Returns how many queued it.
    fn deliver(&mut self, ctx: &Ctx<'_>, publication: &Publication) -> usize {
        let members = ctx.rooms.members(ctx.room);
        if members.is_empty() {
            return 0;
        }
        let message = (ctx.envelope)(ctx.room, publication);
        let frame = Fanout::new(message.opcode(), message.as_bytes());
        let offset = publication.position.offset;
        let mut delivered = 0;
        for conn in &members {
            match self.cursors.get_mut(&conn.id()) {
                None => {}
                Some(Cursor::Recovering(buffered)) => {
                    buffered.push(publication.clone());
                    continue;
                }
                Some(Cursor::Parked) => continue,
                Some(Cursor::Ahead(sent)) if offset <= *sent => continue,
                Some(Cursor::Ahead(_)) => {
                    self.cursors.remove(&conn.id());
                }
            }
            delivered += usize::from(conn.queue_fanout(&frame));
        }
        delivered
    }
}
