//! Payload buffers kept per thread for the next message: [`take`] and [`give`].
//!
//! A server that echoes or relays messages of a few KiB allocates a buffer for each one as
//! it is decoded and frees it once it has been written. Allocators serve that badly: with
//! one such buffer alive at a time, the allocator's page for its size empties at every free
//! and is refilled at every allocation, both on their slow paths (measured in
//! `docs/decisions.md`, "A buffer per message, kept"). A buffer given back here after its
//! write is taken by the next message of about its size instead, on the same thread.
//!
//! Only buffers from [`POOLED_FROM`] bytes to 64 KiB are kept: smaller ones are cheap to
//! allocate, larger ones are rare. A thread keeps at most four of each power-of-two size
//! and 256 KiB in all; what does not fit is freed as usual.

use std::cell::RefCell;

/// The smallest buffer kept, and the smallest length [`take`] looks for.
pub const POOLED_FROM: usize = 1024;
/// The largest buffer kept.
const POOLED_UP_TO: usize = 64 * 1024;
/// One size class per power of two from [`POOLED_FROM`] to [`POOLED_UP_TO`].
const CLASSES: usize = 7;
/// Buffers kept per size class.
const PER_CLASS: usize = 4;
/// Bytes kept in all, per thread.
const KEPT_BYTES: usize = 256 * 1024;

struct Pool {
    classes: [Vec<Vec<u8>>; CLASSES],
    /// The capacities of the buffers kept, summed.
    bytes: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool {
            classes: [const { Vec::new() }; CLASSES],
            bytes: 0,
        })
    };
}

/// An empty buffer with room for at least `len` bytes: one kept on this thread when there is
/// one of about that size (at most a quarter more), a new one otherwise.
///
/// ```
/// let buf = wharf_proto::pool::take(4096);
/// assert!(buf.is_empty() && buf.capacity() >= 4096);
/// ```
#[inline]
pub fn take(len: usize) -> Vec<u8> {
    // Checked here, inlined, so a small message pays a comparison, not a call.
    match class(len) {
        Some(class) => take_kept(class, len),
        None => Vec::with_capacity(len),
    }
}

fn take_kept(class: usize, len: usize) -> Vec<u8> {
    POOL.try_with(|pool| pool.borrow_mut().pop(class, len))
        .ok()
        .flatten()
        .unwrap_or_else(|| Vec::with_capacity(len))
}

/// Gives back a buffer that is no longer needed, for [`take`] to hand out again on this
/// thread. Its contents are dropped; a buffer outside the kept sizes, or one more than the
/// pool holds, is freed.
///
/// ```
/// use wharf_proto::pool;
///
/// let mut buf = pool::take(3000);
/// buf.extend_from_slice(&[7; 3000]);
/// let at = buf.as_ptr();
/// pool::give(buf);
/// let again = pool::take(2900);
/// assert_eq!((again.as_ptr(), again.len()), (at, 0)); // the same buffer, emptied
/// ```
pub fn give(mut buf: Vec<u8>) {
    let Some(class) = class(buf.capacity()) else {
        return;
    };
    buf.clear();
    // Once the thread's pool is gone (the thread is exiting) the buffer is simply freed.
    let _ = POOL.try_with(|pool| pool.borrow_mut().push(class, buf));
}

/// The size class of a buffer of `size` bytes, if such buffers are kept.
#[inline]
fn class(size: usize) -> Option<usize> {
    if !(POOLED_FROM..=POOLED_UP_TO).contains(&size) {
        return None;
    }
    let log2 = (usize::BITS - 1 - size.leading_zeros()) as usize;
    Some(log2 - POOLED_FROM.trailing_zeros() as usize)
}

impl Pool {
    fn pop(&mut self, class: usize, len: usize) -> Option<Vec<u8>> {
        let kept = self.classes.get_mut(class)?;
        let capacity = kept.last()?.capacity();
        if capacity < len || capacity - len > len / 4 {
            return None;
        }
        self.bytes -= capacity;
        kept.pop()
    }

    fn push(&mut self, class: usize, buf: Vec<u8>) {
        let Some(kept) = self.classes.get_mut(class) else {
            return;
        };
        if kept.len() < PER_CLASS && self.bytes + buf.capacity() <= KEPT_BYTES {
            self.bytes += buf.capacity();
            kept.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept() -> (usize, usize) {
        POOL.with_borrow(|pool| (pool.classes.iter().map(Vec::len).sum(), pool.bytes))
    }

    #[test]
    fn size_classes_are_powers_of_two_from_one_kib_to_sixty_four() {
        assert_eq!(class(POOLED_FROM - 1), None);
        assert_eq!(class(1024), Some(0));
        assert_eq!(class(2047), Some(0));
        assert_eq!(class(2048), Some(1));
        assert_eq!(class(4096), Some(2));
        assert_eq!(class(64 * 1024), Some(CLASSES - 1));
        assert_eq!(class(64 * 1024 + 1), None);
    }

    #[test]
    fn a_buffer_given_back_is_taken_for_a_message_of_about_its_size() {
        let buf = Vec::<u8>::with_capacity(4000);
        let at = buf.as_ptr();
        give(buf);
        assert_eq!(kept(), (1, 4000));
        // More than a quarter larger than needed: a new buffer, the kept one stays.
        let fresh = take(3199);
        assert_ne!(fresh.as_ptr(), at);
        // Too small.
        let larger = take(4001);
        assert_ne!(larger.as_ptr(), at);
        assert_eq!(kept(), (1, 4000));
        let again = take(3200);
        assert_eq!(
            (again.as_ptr(), again.capacity(), again.len()),
            (at, 4000, 0)
        );
        assert_eq!(kept(), (0, 0));
    }

    #[test]
    fn small_huge_and_surplus_buffers_are_freed() {
        give(Vec::with_capacity(POOLED_FROM - 1));
        give(Vec::with_capacity(POOLED_UP_TO + 1));
        assert_eq!(kept(), (0, 0));
        for _ in 0..PER_CLASS + 2 {
            give(Vec::with_capacity(1500));
        }
        assert_eq!(kept(), (PER_CLASS, PER_CLASS * 1500));
        // The byte budget holds before the count does: 64 KiB buffers fill it at four.
        for _ in 0..PER_CLASS {
            give(Vec::with_capacity(POOLED_UP_TO));
        }
        let (count, bytes) = kept();
        assert!(bytes <= KEPT_BYTES, "{bytes}");
        assert_eq!(count, PER_CLASS + 3);
    }

    #[test]
    fn each_thread_has_its_own() {
        give(Vec::with_capacity(8192));
        let elsewhere = std::thread::spawn(kept).join().expect("thread");
        assert_eq!(elsewhere, (0, 0));
        assert_eq!(kept(), (1, 8192));
    }
}
