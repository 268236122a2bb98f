//! The verdict: what each subscription received against what the publisher had
//! acknowledged. Pure, with its own tests.

use std::collections::{HashMap, HashSet};
use std::fmt;

use wharf_client::rooms::{Notice, Position};

/// A publication the API acknowledged: its room, position and sequence number.
#[derive(Debug, Clone)]
pub struct Acked {
    /// The room.
    pub room: String,
    /// Where it was stored.
    pub position: Position,
    /// The number its text carries.
    pub seq: u64,
}

/// What one subscription of one subscriber got.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// The room.
    pub room: String,
    /// The room's top when it subscribed.
    pub subscribed_at: Option<Position>,
    /// Each publication, as received: position and sequence number.
    pub received: Vec<(Position, u64)>,
    /// The notices, as received.
    pub notices: Vec<Notice>,
}

/// The one line a check prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Subscribers (sessions).
    pub subscribers: usize,
    /// Publications acknowledged by the API.
    pub publications: usize,
    /// Acknowledged publications a subscriber of the room never got (and no loss notice
    /// excused).
    pub lost: usize,
    /// Publications a subscription got more than once.
    pub duplicated: usize,
    /// Publications that came after a later one of the same epoch.
    pub out_of_order: usize,
    /// Loss notices (`recovered: false`, epoch changes) the subscriptions got.
    pub unrecoverable: usize,
}

impl Report {
    /// Whether nothing was lost, duplicated or reordered.
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.out_of_order == 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "recovery: {} subscribers, {} publications, {} lost, {} duplicated, {} out of order, {} unrecoverable",
            self.subscribers,
            self.publications,
            self.lost,
            self.duplicated,
            self.out_of_order,
            self.unrecoverable
        )
    }
}

/// Compares every subscription's record with the acknowledged publications.
pub fn verify(subscribers: usize, acked: &[Acked], records: &[Record]) -> Report {
    let mut by_room: HashMap<&str, Vec<&Acked>> = HashMap::new();
    for a in acked {
        by_room.entry(&a.room).or_default().push(a);
    }
    let mut report = Report {
        subscribers,
        publications: acked.len(),
        ..Report::default()
    };
    for record in records {
        let mut seen_positions = HashMap::new();
        let mut seen_seqs = HashSet::new();
        let mut last: Option<&Position> = None;
        for (position, seq) in &record.received {
            if seen_positions.insert(position, *seq).is_some() || !seen_seqs.insert(*seq) {
                report.duplicated += 1;
                continue;
            }
            if let Some(last) = last {
                if last.epoch() == position.epoch() && position.offset() < last.offset() {
                    report.out_of_order += 1;
                }
            }
            last = Some(position);
        }
        let losses: Vec<&Notice> = record.notices.iter().filter(|n| n.is_loss()).collect();
        report.unrecoverable += losses.len();
        for a in by_room.get(record.room.as_str()).into_iter().flatten() {
            let after_start = record.subscribed_at.as_ref().is_none_or(|start| {
                start.epoch() != a.position.epoch() || start.is_before(&a.position)
            });
            // Received at its position with its own text; another text there is a loss.
            if !after_start || seen_positions.get(&a.position) == Some(&a.seq) {
                continue;
            }
            if !losses.iter().any(|n| excuses(n, &a.position)) {
                report.lost += 1;
            }
        }
    }
    report
}

/// Whether a loss notice covers `position`: after its `since` in the old epoch, or up
/// to its new position in the new one.
fn excuses(notice: &Notice, position: &Position) -> bool {
    let (from, to) = match notice {
        Notice::Unrecovered {
            since,
            position: top,
        } => (since, top),
        Notice::EpochChanged {
            previous,
            position: first,
        } => (previous, first),
        _ => return false,
    };
    let after_from = from.epoch() == position.epoch() && from.offset() < position.offset();
    let upto_to = to.epoch() == position.epoch() && position.offset() <= to.offset();
    if from.epoch() == to.epoch() {
        // History too short for `since`: what lies between is gone.
        after_from && upto_to
    } else {
        // A new epoch: the rest of the old one, and the new one up to `to`.
        after_from || upto_to
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(offset: u64) -> Position {
        Position::new("e", offset)
    }

    fn acked(n: u64) -> Vec<Acked> {
        (1..=n)
            .map(|i| Acked {
                room: "r".into(),
                position: p(i),
                seq: 100 + i,
            })
            .collect()
    }

    fn record(offsets: &[u64]) -> Record {
        Record {
            room: "r".into(),
            subscribed_at: Some(p(0)),
            received: offsets.iter().map(|&o| (p(o), 100 + o)).collect(),
            notices: Vec::new(),
        }
    }

    #[test]
    fn counts_each_fault() {
        let good = verify(1, &acked(4), &[record(&[1, 2, 3, 4])]);
        assert!(good.passed(), "{good}");
        assert_eq!(
            good.to_string(),
            "recovery: 1 subscribers, 4 publications, 0 lost, 0 duplicated, 0 out of order, 0 unrecoverable"
        );
        let bad = verify(1, &acked(4), &[record(&[1, 3, 2, 2])]);
        assert_eq!((bad.lost, bad.duplicated, bad.out_of_order), (1, 1, 1));
        assert!(!bad.passed());
        // Publications before the subscription started are not expected.
        let mut late = record(&[3, 4]);
        late.subscribed_at = Some(p(2));
        assert!(verify(1, &acked(4), &[late]).passed());
    }

    #[test]
    fn a_loss_notice_excuses_its_range_only() {
        let mut r = record(&[1, 4]);
        r.notices.push(Notice::Unrecovered {
            since: p(1),
            position: p(3),
        });
        let report = verify(1, &acked(5), &[r]);
        assert_eq!((report.lost, report.unrecoverable), (1, 1), "{report}");
        // A new epoch excuses the rest of the old one and the new one up to its position.
        let mut acked = acked(3);
        acked.extend((1..=3).map(|i| Acked {
            room: "r".into(),
            position: Position::new("f", i),
            seq: 200 + i,
        }));
        let mut r = record(&[1]);
        r.received.push((Position::new("f", 2), 202));
        r.notices.push(Notice::EpochChanged {
            previous: p(1),
            position: Position::new("f", 2),
        });
        let report = verify(1, &acked, &[r]);
        assert_eq!((report.lost, report.unrecoverable), (1, 1), "{report}");
    }
}
