//! [`Cursor`]: a room's last position, and the rule that no publication reaches the
//! application twice or out of order. Pure, so every case is a unit test.

use super::command::Subscribed;
use super::{Notice, Position, Publication, RoomEvent};

/// What the client knows of one subscribed room: the position of the last publication it
/// delivered (or the top it subscribed at), sent back as `since` on every resubscribe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Cursor {
    last: Option<Position>,
    /// Whether a loss was already reported for the subscribe in flight, so an epoch change
    /// seen in a push and the `recovered: false` of the same subscribe make one notice.
    loss_reported: bool,
}

impl Cursor {
    /// A cursor starting after `since` (an application's saved position), or at nothing.
    pub(crate) fn new(since: Option<Position>) -> Cursor {
        Cursor {
            last: since,
            loss_reported: false,
        }
    }

    /// The `since` of the next subscribe.
    pub(crate) fn since(&self) -> Option<&Position> {
        self.last.as_ref()
    }

    /// A subscribe is being sent.
    pub(crate) fn subscribing(&mut self) {
        self.loss_reported = false;
    }

    /// A push for the room: the events for the application, in order. A push at or before
    /// the last position of the same epoch is a duplicate and gives nothing; a push of
    /// another epoch gives [`Notice::EpochChanged`] first.
    pub(crate) fn push(&mut self, publication: Publication) -> Vec<RoomEvent> {
        let mut events = Vec::with_capacity(1);
        match &self.last {
            Some(last)
                if last.epoch() == publication.position.epoch()
                    && publication.position.offset() <= last.offset() =>
            {
                return events;
            }
            Some(last) if last.epoch() == publication.position.epoch() => {}
            Some(last) => {
                events.push(RoomEvent::Notice(Notice::EpochChanged {
                    previous: last.clone(),
                    position: publication.position.clone(),
                }));
                self.loss_reported = true;
            }
            None => {}
        }
        self.last = Some(publication.position.clone());
        events.push(RoomEvent::Publication(publication));
        events
    }

    /// The reply to a subscribe sent with `since`; the notice for the application, if any.
    ///
    /// The reply's position is the point after which pushes follow, so the cursor moves up
    /// to it (never back: live pushes may have come before the reply).
    pub(crate) fn subscribed(
        &mut self,
        since: Option<&Position>,
        reply: &Subscribed,
        delivered: u64,
    ) -> Option<Notice> {
        let notice = match since {
            None => None,
            Some(since) if reply.recovered => Some(Notice::Recovered {
                since: since.clone(),
                delivered,
            }),
            Some(_) if self.loss_reported => None,
            Some(since) => Some(Notice::Unrecovered {
                since: since.clone(),
                position: reply.position.clone(),
            }),
        };
        let behind = match &self.last {
            None => true,
            Some(last) => last.epoch() != reply.position.epoch() || last.is_before(&reply.position),
        };
        if behind {
            self.last = Some(reply.position.clone());
        }
        notice
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::Payload;

    fn p(epoch: &str, offset: u64) -> Position {
        Position::new(epoch, offset)
    }

    fn publication(epoch: &str, offset: u64) -> Publication {
        Publication {
            room: "r".into(),
            position: p(epoch, offset),
            payload: Payload::from(format!("{offset}")),
        }
    }

    fn delivered(events: &[RoomEvent]) -> Vec<u64> {
        events
            .iter()
            .filter_map(|e| match e {
                RoomEvent::Publication(p) => Some(p.position.offset()),
                RoomEvent::Notice(_) => None,
            })
            .collect()
    }

    fn reply(position: Position, recovered: bool) -> Subscribed {
        Subscribed {
            position,
            recovered,
        }
    }

    #[test]
    fn drops_duplicates_and_stale_pushes() {
        let mut c = Cursor::new(None);
        let mut got = Vec::new();
        for offset in [1, 2, 2, 1, 3, 5, 4, 5, 6] {
            got.extend(delivered(&c.push(publication("e", offset))));
        }
        assert_eq!(got, [1, 2, 3, 5, 6]);
        assert_eq!(c.since(), Some(&p("e", 6)));
    }

    #[test]
    fn first_subscribe_starts_at_the_top() {
        let mut c = Cursor::new(None);
        c.subscribing();
        assert_eq!(c.subscribed(None, &reply(p("e", 4), true), 0), None);
        assert_eq!(c.since(), Some(&p("e", 4)));
        assert!(c.push(publication("e", 4)).is_empty());
        assert_eq!(delivered(&c.push(publication("e", 5))), [5]);
    }

    #[test]
    fn a_live_push_before_the_reply_is_kept() {
        let mut c = Cursor::new(None);
        c.subscribing();
        assert_eq!(delivered(&c.push(publication("e", 5))), [5]);
        c.subscribed(None, &reply(p("e", 4), true), 0);
        assert_eq!(c.since(), Some(&p("e", 5)));
        assert!(c.push(publication("e", 5)).is_empty());
    }

    #[test]
    fn resubscribe_reports_recovery() {
        let mut c = Cursor::new(Some(p("e", 5)));
        c.subscribing();
        let since = c.since().cloned();
        assert_eq!(delivered(&c.push(publication("e", 6))), [6]);
        let notice = c.subscribed(since.as_ref(), &reply(p("e", 6), true), 1);
        assert_eq!(
            notice,
            Some(Notice::Recovered {
                since: p("e", 5),
                delivered: 1
            })
        );
        assert_eq!(c.since(), Some(&p("e", 6)));
    }

    #[test]
    fn unrecovered_moves_to_the_new_top() {
        let mut c = Cursor::new(Some(p("old", 5)));
        c.subscribing();
        let notice = c.subscribed(Some(&p("old", 5)), &reply(p("new", 2), false), 0);
        assert_eq!(
            notice,
            Some(Notice::Unrecovered {
                since: p("old", 5),
                position: p("new", 2)
            })
        );
        assert!(notice.is_some_and(|n| n.is_loss()));
        assert!(c.push(publication("new", 2)).is_empty());
        assert_eq!(delivered(&c.push(publication("new", 3))), [3]);
    }

    #[test]
    fn epoch_change_in_a_push_is_one_notice() {
        let mut c = Cursor::new(Some(p("old", 5)));
        c.subscribing();
        let events = c.push(publication("new", 3));
        assert_eq!(delivered(&events), [3]);
        assert!(matches!(
            &events[0],
            RoomEvent::Notice(Notice::EpochChanged { previous, position })
                if *previous == p("old", 5) && *position == p("new", 3)
        ));
        // The same subscribe's `recovered: false` adds no second notice, and does not move
        // the cursor back to the reply's (older) top.
        assert_eq!(
            c.subscribed(Some(&p("old", 5)), &reply(p("new", 2), false), 0),
            None
        );
        assert_eq!(c.since(), Some(&p("new", 3)));
        // The next subscribe reports again.
        c.subscribing();
        assert!(
            c.subscribed(Some(&p("new", 3)), &reply(p("newer", 0), false), 0)
                .is_some()
        );
    }
}
