//! Counters that threads add to without a locked instruction.
//!
//! Every message in and out is counted for its route (messages and bytes, each way). With
//! one atomic per counter that is a `lock xadd` per count, four a message, each one
//! serialising the core's stores; they were a fifth of the bus-locking instructions an
//! echoed message costs. Here each thread that counts takes a slot of its own (given back
//! when it exits) and adds to its own cache line with a plain load and store, which no other
//! thread writes; a read sums the lines. Threads beyond [`SLOTS`] share one more line and add
//! to it atomically, as before. The route counters of `metrics.rs` use it.

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Threads with a line of their own; the others share line `SLOTS`.
const SLOTS: usize = 32;

/// `N` counters, one line of them per thread slot.
pub(crate) struct PerThread<const N: usize> {
    lines: Box<[Line<N>]>,
}

/// One slot's counters, alone in their cache lines (two of them: the adjacent-line
/// prefetcher pairs lines).
#[repr(align(128))]
struct Line<const N: usize>([AtomicU64; N]);

impl<const N: usize> PerThread<N> {
    pub(crate) fn new() -> Self {
        PerThread {
            lines: (0..=SLOTS)
                .map(|_| Line(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        }
    }

    /// Adds each `(counter, amount)`.
    #[inline]
    pub(crate) fn add<const K: usize>(&self, adds: [(usize, u64); K]) {
        let slot = thread_slot();
        let line = &self.lines[slot.min(SLOTS)].0;
        if slot < SLOTS {
            // This thread is the line's only writer: a plain read-add-write loses nothing.
            for (counter, amount) in adds {
                let cell = &line[counter];
                cell.store(
                    cell.load(Ordering::Relaxed).wrapping_add(amount),
                    Ordering::Relaxed,
                );
            }
        } else {
            for (counter, amount) in adds {
                line[counter].fetch_add(amount, Ordering::Relaxed);
            }
        }
    }

    /// The total of `counter` over all threads.
    pub(crate) fn sum(&self, counter: usize) -> u64 {
        self.lines
            .iter()
            .map(|line| line.0[counter].load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

/// Slots given back by threads that exited.
static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// The next slot never taken.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A thread's slot, given back when the thread exits. The lock on [`FREE`] orders the
/// exiting thread's last plain stores before the next owner's first load.
struct Slot(usize);

impl Slot {
    fn take() -> Slot {
        let freed = FREE.lock().unwrap_or_else(|p| p.into_inner()).pop();
        Slot(freed.unwrap_or_else(|| {
            // Past `SLOTS` the count stops growing: every later thread shares.
            NEXT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < SLOTS).then_some(n + 1)
            })
            .unwrap_or(SLOTS)
        }))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Whatever this thread still counts (other thread-locals' destructors) is shared.
        SLOT_INDEX.set(SLOTS);
        if self.0 < SLOTS {
            FREE.lock().unwrap_or_else(|p| p.into_inner()).push(self.0);
        }
    }
}

/// [`SLOT_INDEX`] before the thread's first count.
const UNASSIGNED: usize = usize::MAX;

thread_local! {
    /// The thread's slot: a plain thread-local read on every count.
    static SLOT_INDEX: Cell<usize> = const { Cell::new(UNASSIGNED) };
    /// Holds the slot, to give it back when the thread exits.
    static SLOT: Slot = Slot::take();
}

/// This thread's slot.
#[inline]
fn thread_slot() -> usize {
    match SLOT_INDEX.get() {
        UNASSIGNED => first_slot(),
        slot => slot,
    }
}

#[cold]
fn first_slot() -> usize {
    // While the thread exits (its slot may be gone already), the shared line.
    let slot = SLOT.try_with(|slot| slot.0).unwrap_or(SLOTS);
    SLOT_INDEX.set(slot);
    slot
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counts_from_more_threads_than_slots_all_add_up() {
        let counters = Arc::new(PerThread::<2>::new());
        let threads: Vec<_> = (0..SLOTS as u64 + 8)
            .map(|t| {
                let counters = counters.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        counters.add([(0, 1), (1, t)]);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("adder");
        }
        let threads = SLOTS as u64 + 8;
        assert_eq!(counters.sum(0), threads * 10_000);
        assert_eq!(counters.sum(1), (0..threads).sum::<u64>() * 10_000);
    }

    #[test]
    fn a_slot_given_back_keeps_its_counts_for_the_next_owner() {
        let counters = Arc::new(PerThread::<1>::new());
        for _ in 0..3 {
            // One after the other: each may reuse the slot the previous one gave back.
            let counters = counters.clone();
            std::thread::spawn(move || counters.add([(0, 5)]))
                .join()
                .expect("adder");
        }
        counters.add([(0, 1)]);
        assert_eq!(counters.sum(0), 16);
    }
}
