//! The outgoing queue of one connection: encoded frames waiting to be written.
//!
//! Anyone may push (the connection's own handler, an HTTP handler, another task); only the
//! connection's driver drains it. Frames are encoded once, when pushed, into one
//! [`WriteQueue`] (large payloads kept rather than copied), so a batch of replies leaves in a
//! single write. The queue is bounded in bytes: a push that finds it over the limit marks the
//! connection a slow consumer, and the driver closes it.
//!
//! The lock is a `std::sync::Mutex`: it is held only to append bytes or swap buffers, never
//! across an `.await`, so an async mutex would only add cost (as mini-redis `db.rs` explains).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Waker};

use bytes::Bytes;
use wharf_proto::{Deflater, OpCode};

use crate::CloseCode;
use crate::compression::{Fanout, SendCompression, encode_with};
use crate::write_queue::WriteQueue;

/// Why a push did not queue anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The connection is closing or closed.
    Closed,
    /// The queue was over its limit; the connection will be closed as a slow consumer.
    Full,
}

#[derive(Default)]
struct State {
    queue: WriteQueue,
    waker: Option<Waker>,
    close: Option<(CloseCode, String)>,
    closed: bool,
    overflow: bool,
    /// The server is shutting down (or handing over); not yet seen by the driver.
    stop: bool,
    /// The connection's own compressor, with context takeover (made at first use).
    deflater: Option<Box<Deflater>>,
}

pub(crate) struct Outbox {
    state: Mutex<State>,
    /// Set while the driver runs its handlers: it drains the queue right after, in the same
    /// wake-up, so a push meanwhile need not wake it. Cleared under the lock when the driver
    /// registers its waker again (a push after that sees it cleared, and wakes). Outside the
    /// lock so that setting it costs the driver no lock a message, and the registered waker
    /// stays (no clone and drop of it a message).
    dispatching: AtomicBool,
    limit: usize,
    /// permessage-deflate, when negotiated.
    compression: Option<Box<SendCompression>>,
}

/// What the driver found in the outbox.
pub(crate) enum Drained {
    /// Nothing queued; the waker is registered.
    Empty,
    /// Bytes were moved into the driver's queue.
    Bytes,
    /// A close was requested (after everything queued before it, which was moved too).
    Close(CloseCode, String),
    /// The queue overflowed: close as a slow consumer.
    Overflow,
    /// The server is stopping: drain, close or park (reported once).
    Stop,
}

impl Outbox {
    pub(crate) fn new(limit: usize, compression: Option<SendCompression>) -> Outbox {
        Outbox {
            state: Mutex::new(State::default()),
            dispatching: AtomicBool::new(false),
            limit,
            compression: compression.map(Box::new),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a pusher panicked between two plain field writes; the
        // state is still consistent, so keep going rather than take the connection down.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Encodes a whole frame into the queue (compressed when negotiated and worth it) and
    /// returns the bytes queued.
    pub(crate) fn push_frame(&self, opcode: OpCode, payload: &[u8]) -> Result<usize, PushError> {
        match self.compressing(opcode, payload.len()) {
            None => self.push_with(|queue, _| {
                wharf_proto::encode_frame(queue.buf(), opcode, payload, None);
            }),
            Some(c) => self.push_compressed(c, opcode, payload),
        }
    }

    /// Like [`push_frame`](Self::push_frame), for a payload given by value: a large one is
    /// queued as it is, not copied (unless it is compressed).
    pub(crate) fn push_owned(&self, opcode: OpCode, payload: Bytes) -> Result<usize, PushError> {
        match self.compressing(opcode, payload.len()) {
            None => self.push_with(|queue, _| queue.push_frame(opcode, payload)),
            Some(c) => self.push_compressed(c, opcode, &payload),
        }
    }

    fn push_compressed(
        &self,
        c: &SendCompression,
        opcode: OpCode,
        payload: &[u8],
    ) -> Result<usize, PushError> {
        if c.takeover {
            return self.push_own(c, opcode, payload);
        }
        // Compressed before the lock is taken: no context links it to other messages.
        let mut frame = Vec::new();
        c.encode_fresh(opcode, payload, &mut frame);
        self.push_with(|queue, _| queue.buf().extend_from_slice(&frame))
    }

    /// Queues one fan-out message: its shared plain or compressed encoding, or (with context
    /// takeover) compressed by this connection's own compressor.
    pub(crate) fn push_fanout(&self, frame: &Fanout<'_>) -> Result<usize, PushError> {
        match self.compressing(frame.opcode, frame.payload.len()) {
            None => self.push_with(|queue, _| queue.push_shared(&frame.plain)),
            Some(c) if c.takeover => self.push_own(c, frame.opcode, frame.payload),
            Some(c) => frame.with_fresh(c, |bytes| {
                self.push_with(|queue, _| queue.buf().extend_from_slice(bytes))
            }),
        }
    }

    fn compressing(&self, opcode: OpCode, len: usize) -> Option<&SendCompression> {
        self.compression.as_deref().filter(|c| c.wants(opcode, len))
    }

    /// Compresses with the connection's own compressor, under the lock, so messages are
    /// compressed in the order they are queued.
    fn push_own(
        &self,
        c: &SendCompression,
        opcode: OpCode,
        payload: &[u8],
    ) -> Result<usize, PushError> {
        self.push_with(|queue, deflater| {
            let deflater = deflater.get_or_insert_with(|| Box::new(c.own_deflater()));
            encode_with(deflater, opcode, payload, queue.buf());
        })
    }

    fn push_with(
        &self,
        encode: impl FnOnce(&mut WriteQueue, &mut Option<Box<Deflater>>),
    ) -> Result<usize, PushError> {
        let mut state = self.lock();
        if state.closed || state.close.is_some() {
            return Err(PushError::Closed);
        }
        if state.queue.len() >= self.limit {
            state.overflow = true;
            self.wake(&mut state);
            return Err(PushError::Full);
        }
        let before = state.queue.len();
        let State {
            queue, deflater, ..
        } = &mut *state;
        encode(queue, deflater);
        let queued = state.queue.len() - before;
        self.wake(&mut state);
        Ok(queued)
    }

    /// Queues bytes already encoded (a moved connection's unwritten frames).
    pub(crate) fn push_raw(&self, bytes: &[u8]) {
        if !bytes.is_empty() {
            let _ = self.push_with(|queue, _| queue.buf().extend_from_slice(bytes));
        }
    }

    /// Asks the driver to close with `code` and `reason` once what is queued has been written.
    /// Returns false when the connection is already closing.
    pub(crate) fn request_close(&self, code: CloseCode, reason: &str) -> bool {
        let mut state = self.lock();
        if state.closed || state.close.is_some() {
            return false;
        }
        let reason = wharf_proto::truncate_reason(reason).to_owned();
        state.close = Some((code, reason));
        self.wake(&mut state);
        true
    }

    /// Tells the driver that the server is stopping (it drains, closes or parks the
    /// connection). The shutdown reaches every driver this way, through the lock its own
    /// queue takes anyway, rather than through a channel each driver would poll on every
    /// wake-up.
    pub(crate) fn stop(&self) {
        let mut state = self.lock();
        state.stop = true;
        self.wake(&mut state);
    }

    /// Tells the queue that the driver is running its handlers: a push made meanwhile need
    /// not wake the task that will drain the queue right after anyway (the driver polls the
    /// queue, and registers again, before it sleeps).
    pub(crate) fn quiet(&self) {
        // Relaxed: a pusher that misses it only wakes the driver once for nothing.
        self.dispatching.store(true, Ordering::Relaxed);
    }

    /// Marks the connection closed (later pushes fail with [`PushError::Closed`]) and returns
    /// what was still queued, so the driver can write it before its close frame.
    pub(crate) fn close_and_take(&self) -> WriteQueue {
        let mut state = self.lock();
        state.closed = true;
        state.close = None;
        std::mem::take(&mut state.queue)
    }

    /// Bytes waiting in the queue.
    pub(crate) fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// While the socket cannot take more bytes: reports an overflow or a close request at once
    /// (a client that does not read must not keep its connection by not reading), else
    /// registers `cx`'s waker and returns `None`.
    pub(crate) fn poll_urgent(&self, cx: &mut Context<'_>) -> Option<Drained> {
        let mut state = self.lock();
        if state.overflow {
            return Some(Drained::Overflow);
        }
        if std::mem::take(&mut state.stop) {
            return Some(Drained::Stop);
        }
        if let Some((code, reason)) = state.close.take() {
            state.closed = true;
            return Some(Drained::Close(code, reason));
        }
        self.register(&mut state, cx);
        None
    }

    /// Moves queued bytes into `out` (which must be empty), or registers `cx`'s waker.
    pub(crate) fn drain_into(&self, out: &mut WriteQueue, cx: &mut Context<'_>) -> Drained {
        let mut state = self.lock();
        if state.overflow {
            return Drained::Overflow;
        }
        if std::mem::take(&mut state.stop) {
            return Drained::Stop;
        }
        if !state.queue.is_empty() {
            std::mem::swap(&mut state.queue, out);
            return Drained::Bytes;
        }
        if let Some((code, reason)) = state.close.take() {
            state.closed = true;
            return Drained::Close(code, reason);
        }
        self.register(&mut state, cx);
        Drained::Empty
    }

    fn register(&self, state: &mut State, cx: &Context<'_>) {
        // Under the lock: a push after this one sees the flag cleared and the waker set.
        self.dispatching.store(false, Ordering::Relaxed);
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
    }

    fn wake(&self, state: &mut State) {
        if self.dispatching.load(Ordering::Relaxed) {
            return;
        }
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn push_drain_close_order() {
        let outbox = Outbox::new(1024, None);
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(outbox.push_frame(OpCode::Text, b"hi"), Ok(4));
        assert!(outbox.request_close(CloseCode::NORMAL, "bye"));
        assert_eq!(
            outbox.push_frame(OpCode::Text, b"late"),
            Err(PushError::Closed)
        );
        let mut out = WriteQueue::default();
        assert!(matches!(
            outbox.drain_into(&mut out, &mut cx),
            Drained::Bytes
        ));
        assert_eq!(out.to_vec_from(0), [0x81, 2, b'h', b'i']);
        out.reset(0);
        assert!(matches!(
            outbox.drain_into(&mut out, &mut cx),
            Drained::Close(CloseCode::NORMAL, ref r) if r == "bye"
        ));
    }

    #[test]
    fn a_large_payload_given_by_value_is_queued_whole_and_counted() {
        let outbox = Outbox::new(1 << 20, None);
        let payload = Bytes::from(vec![7u8; 5000]);
        assert_eq!(outbox.push_owned(OpCode::Binary, payload.clone()), Ok(5004));
        assert_eq!(outbox.push_frame(OpCode::Text, b"hi"), Ok(4));
        assert_eq!(outbox.queued(), 5008);
        let mut out = WriteQueue::default();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(
            outbox.drain_into(&mut out, &mut cx),
            Drained::Bytes
        ));
        let mut expected = Vec::new();
        wharf_proto::encode_frame(&mut expected, OpCode::Binary, &payload, None);
        wharf_proto::encode_frame(&mut expected, OpCode::Text, b"hi", None);
        assert_eq!(out.into_vec(), expected);
    }

    #[test]
    fn overflow_is_reported() {
        let outbox = Outbox::new(4, None);
        outbox
            .push_frame(OpCode::Binary, b"12345")
            .expect("first fits");
        assert_eq!(
            outbox.push_frame(OpCode::Binary, b"x"),
            Err(PushError::Full)
        );
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(
            outbox.drain_into(&mut WriteQueue::default(), &mut cx),
            Drained::Overflow
        ));
    }

    /// Counts its wake-ups.
    struct Counter(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counter {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_stop_wakes_the_driver_and_is_reported_once_before_the_bytes() {
        let outbox = Outbox::new(1024, None);
        let counter = std::sync::Arc::new(Counter(Default::default()));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut out = WriteQueue::default();
        assert!(matches!(
            outbox.drain_into(&mut out, &mut cx),
            Drained::Empty
        ));
        outbox.push_frame(OpCode::Text, b"hi").expect("queued");
        outbox.stop();
        assert_eq!(counter.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(matches!(
            outbox.drain_into(&mut out, &mut cx),
            Drained::Stop
        ));
        assert!(matches!(
            outbox.drain_into(&mut out, &mut cx),
            Drained::Bytes
        ));
        assert_eq!(out.to_vec_from(0), [0x81, 2, b'h', b'i']);
    }

    #[test]
    fn a_quiet_outbox_queues_without_waking_until_the_driver_registers_again() {
        let outbox = Outbox::new(1024, None);
        let counter = std::sync::Arc::new(Counter(Default::default()));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(
            outbox.drain_into(&mut WriteQueue::default(), &mut cx),
            Drained::Empty
        ));
        outbox.quiet();
        outbox.push_frame(OpCode::Text, b"reply").expect("queued");
        assert_eq!(counter.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        let mut out = WriteQueue::default();
        assert!(matches!(
            outbox.drain_into(&mut out, &mut cx),
            Drained::Bytes
        ));
        out.reset(0);
        assert!(matches!(
            outbox.drain_into(&mut out, &mut cx),
            Drained::Empty
        ));
        outbox.push_frame(OpCode::Text, b"push").expect("queued");
        assert_eq!(counter.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
