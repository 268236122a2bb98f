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
//!
//! The driver takes it only when there is something to take. Whoever queues something sets
//! `pending` (under the lock); the driver reads it without the lock, and a wake-up that finds
//! it clear (most of them: a message arrived, nothing was queued) costs two loads. The outbox
//! keeps the driver's waker registered across wake-ups (it wakes by reference), and the
//! driver remembers which waker that is ([`Registered`]), so such a wake-up need not register
//! it again either.
//!
//! Most pushes are a handler's replies to its own connection, made while the driver polls
//! it. For one poll the driver *lends* the thread a queue ([`Lending`]): a push to this
//! outbox from that thread appends to it with neither the lock nor an atomic read-modify-
//! write, and the driver takes the queue back into its write buffer when the poll returns.
//! Order is kept: the outbox lends only while nothing waits in it (else a reply would jump
//! ahead of what was queued before), a push stops using the lent queue as soon as something
//! arrives in the outbox meanwhile, and anything that takes the lock from that thread first
//! moves the lent bytes into the locked queue (a close requested after a reply still leaves
//! after it; a compressed reply with context takeover, which needs the locked compressor,
//! lands behind the plain ones).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use wharf_proto::{Deflater, OpCode};

use crate::CloseCode;
use crate::compression::{Fanout, SendCompression, encode_with};
use crate::write_queue::{Payload, WriteQueue};

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
    /// Something in `state` waits for the driver: bytes, a close request, a stop or an
    /// overflow. Set by whoever adds it and cleared by the driver when it has taken
    /// everything, both under the lock; read by the driver without it.
    pending: AtomicBool,
    /// Set while the driver runs a handler that may push under the lock (it was lent no
    /// queue, or gave it back): it drains the queue right after, in the same wake-up, so a
    /// push meanwhile need not wake it. Written only by the driver: cleared
    /// before it reads `pending` for the last time in a wake-up (a push after that read sees
    /// it cleared, and wakes).
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
            pending: AtomicBool::new(false),
            dispatching: AtomicBool::new(false),
            limit,
            compression: compression.map(Box::new),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a pusher panicked between two plain field writes; the
        // state is still consistent, so keep going rather than take the connection down.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.take_back_lent(&mut state);
        state
    }

    /// This outbox's identity in the thread's [`LENT_TO`].
    fn id(&self) -> usize {
        self as *const Outbox as usize
    }

    /// Under the lock: when this thread's queue is lent to this outbox, moves what it holds
    /// into the locked queue (it was pushed first) and ends the lending, so that whatever
    /// this thread does under the lock comes after it.
    fn take_back_lent(&self, state: &mut State) {
        if LENT_TO.get() != self.id() {
            return;
        }
        LENT_TO.set(0);
        // The driver drains right after its poll, on this thread: what is queued under the
        // lock from now on need not wake it.
        self.quiet();
        let _ = LENT.try_with(|lent| {
            let mut lent = lent.borrow_mut();
            if !lent.is_empty() {
                // In front of what other threads queued meanwhile: a push that came after
                // one of theirs found `pending` set and was never lent, so every lent byte
                // was pushed before them (or at the same time).
                lent.append(&mut state.queue);
                std::mem::swap(&mut *lent, &mut state.queue);
                self.pending.store(true, Ordering::Release);
            }
        });
    }

    /// Lends this thread's queue to this outbox for the pushes of one poll of the
    /// connection's handler, when the driver's write buffer holds `unwritten` bytes; false
    /// (and the pushes take the lock, without waking the driver) while something waits in
    /// the outbox, the queue is lent already, or the write buffer has reached the limit.
    fn lend(&self, unwritten: usize) -> bool {
        let lent =
            unwritten < self.limit && !self.pending.load(Ordering::Acquire) && LENT_TO.get() == 0;
        if lent {
            LENT_TO.set(self.id());
            // The limit counts the write buffer too: a batch of replies, or a handler that
            // pushes between awaits, is bounded as it was in the locked queue.
            LENT_ROOM.set(self.limit - unwritten);
        } else {
            self.quiet();
        }
        lent
    }

    /// Ends this outbox's lending (if it is still open) and appends what was pushed through
    /// it to `out`: by swapping buffers when `out` is empty, as most replies find it.
    fn reclaim(&self, out: &mut WriteQueue) {
        if LENT_TO.get() != self.id() {
            return;
        }
        LENT_TO.set(0);
        let _ = LENT.try_with(|lent| {
            let mut lent = lent.borrow_mut();
            if lent.is_empty() {
                return;
            }
            if out.is_empty() {
                std::mem::swap(out, &mut *lent);
            } else {
                out.append(&mut lent);
            }
        });
    }

    /// Pushes through this thread's queue when it is lent to this outbox, nothing waits in
    /// the outbox, and the queue is under the limit: then takes `encode` and returns the
    /// bytes queued; else leaves `encode` where it is.
    fn push_lent(&self, encode: &mut Option<impl FnOnce(&mut WriteQueue)>) -> usize {
        if LENT_TO.get() != self.id() || self.pending.load(Ordering::Acquire) {
            return 0;
        }
        LENT.try_with(|lent| {
            let mut lent = lent.borrow_mut();
            if lent.len() >= LENT_ROOM.get() {
                return 0;
            }
            let before = lent.len();
            if let Some(encode) = encode.take() {
                encode(&mut lent);
            }
            lent.len() - before
        })
        .unwrap_or(0)
    }

    /// Encodes a whole frame into the queue (compressed when negotiated and worth it) and
    /// returns the bytes queued.
    pub(crate) fn push_frame(&self, opcode: OpCode, payload: &[u8]) -> Result<usize, PushError> {
        match self.compressing(opcode, payload.len()) {
            None => self.push_with(|queue| {
                wharf_proto::encode_frame(queue.buf(), opcode, payload, None);
            }),
            Some(c) => self.push_compressed(c, opcode, payload),
        }
    }

    /// Like [`push_frame`](Self::push_frame), for a payload given by value: a large one is
    /// queued as it is, not copied (unless it is compressed).
    pub(crate) fn push_owned(&self, opcode: OpCode, payload: Payload) -> Result<usize, PushError> {
        match self.compressing(opcode, payload.len()) {
            None => self.push_with(|queue| queue.push_frame(opcode, payload)),
            Some(c) => self.push_compressed(c, opcode, payload.as_slice()),
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
        self.push_with(|queue| queue.buf().extend_from_slice(&frame))
    }

    /// Queues one fan-out message: its shared plain or compressed encoding, or (with context
    /// takeover) compressed by this connection's own compressor.
    pub(crate) fn push_fanout(&self, frame: &Fanout<'_>) -> Result<usize, PushError> {
        match self.compressing(frame.opcode, frame.payload.len()) {
            None => self.push_with(|queue| queue.push_shared(&frame.plain)),
            Some(c) if c.takeover => self.push_own(c, frame.opcode, frame.payload),
            Some(c) => frame.with_fresh(c, |bytes| {
                self.push_with(|queue| queue.buf().extend_from_slice(bytes))
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
        self.push_locked(|queue, deflater| {
            let deflater = deflater.get_or_insert_with(|| Box::new(c.own_deflater()));
            encode_with(deflater, opcode, payload, queue.buf());
        })
    }

    /// Queues what `encode` writes: through the lent queue when it can, else under the lock.
    fn push_with(&self, encode: impl FnOnce(&mut WriteQueue)) -> Result<usize, PushError> {
        let mut encode = Some(encode);
        let queued = self.push_lent(&mut encode);
        match encode {
            // Not taken: through the lock.
            Some(encode) => self.push_locked(|queue, _| encode(queue)),
            None => Ok(queued),
        }
    }

    fn push_locked(
        &self,
        encode: impl FnOnce(&mut WriteQueue, &mut Option<Box<Deflater>>),
    ) -> Result<usize, PushError> {
        let mut state = self.lock();
        if state.closed || state.close.is_some() {
            return Err(PushError::Closed);
        }
        if state.queue.len() >= self.limit {
            state.overflow = true;
            self.notify(&state, Urgency::Urgent);
            return Err(PushError::Full);
        }
        let before = state.queue.len();
        let State {
            queue, deflater, ..
        } = &mut *state;
        encode(queue, deflater);
        let queued = state.queue.len() - before;
        self.notify(&state, Urgency::Bytes);
        Ok(queued)
    }

    /// Queues bytes already encoded (a moved connection's unwritten frames).
    pub(crate) fn push_raw(&self, bytes: &[u8]) {
        if !bytes.is_empty() {
            let _ = self.push_with(|queue| queue.buf().extend_from_slice(bytes));
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
        self.notify(&state, Urgency::Urgent);
        true
    }

    /// Tells the driver that the server is stopping (it drains, closes or parks the
    /// connection). The shutdown reaches every driver this way, through the lock its own
    /// queue takes anyway, rather than through a channel each driver would poll on every
    /// wake-up.
    pub(crate) fn stop(&self) {
        let mut state = self.lock();
        state.stop = true;
        self.notify(&state, Urgency::Urgent);
    }

    /// Tells the queue that the driver is running a handler on this thread and drains right
    /// after: a push made meanwhile need not wake it (before it sleeps, the driver clears
    /// the flag and then reads the queue's `pending`).
    fn quiet(&self) {
        // Relaxed: a pusher that misses it only wakes the driver once for nothing.
        self.dispatching.store(true, Ordering::Relaxed);
    }

    /// Marks the connection closed (later pushes fail with [`PushError::Closed`]) and returns
    /// what was still queued, so the driver can write it before its close frame.
    pub(crate) fn close_and_take(&self) -> WriteQueue {
        let mut state = self.lock();
        state.closed = true;
        state.close = None;
        let queue = std::mem::take(&mut state.queue);
        self.settle(&state);
        queue
    }

    /// Bytes waiting in the queue.
    pub(crate) fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// While the socket cannot take more bytes: reports an overflow or a close request at once
    /// (a client that does not read must not keep its connection by not reading), else
    /// registers `cx`'s waker and returns `None`.
    pub(crate) fn poll_urgent(
        &self,
        cx: &mut Context<'_>,
        registered: &mut Registered,
    ) -> Option<Drained> {
        self.take(None, cx, registered)
    }

    /// Moves queued bytes into `out` (which must be empty), or registers `cx`'s waker.
    #[inline]
    pub(crate) fn drain_into(
        &self,
        out: &mut WriteQueue,
        cx: &mut Context<'_>,
        registered: &mut Registered,
    ) -> Drained {
        if registered.is(cx) && self.nothing_pending() {
            return Drained::Empty;
        }
        self.take(Some(out), cx, registered)
            .unwrap_or(Drained::Empty)
    }

    /// Under the lock, the first of: an overflow, a stop (reported once), the queued bytes
    /// (moved into `out`, when given), a close request. With none, registers `cx`'s waker and
    /// returns `None`. Not inlined: the check in [`drain_into`](Self::drain_into) then costs
    /// a wake-up a few instructions, not this function's whole prologue.
    #[inline(never)]
    fn take(
        &self,
        out: Option<&mut WriteQueue>,
        cx: &mut Context<'_>,
        registered: &mut Registered,
    ) -> Option<Drained> {
        let mut state = self.lock();
        let taken = if state.overflow {
            Some(Drained::Overflow)
        } else if std::mem::take(&mut state.stop) {
            Some(Drained::Stop)
        } else if let Some(out) = out.filter(|_| !state.queue.is_empty()) {
            std::mem::swap(&mut state.queue, out);
            Some(Drained::Bytes)
        } else if let Some((code, reason)) = state.close.take() {
            state.closed = true;
            Some(Drained::Close(code, reason))
        } else {
            self.register(&mut state, cx, registered);
            None
        };
        self.settle(&state);
        taken
    }

    /// Without the lock: true when nothing waits for the driver, and a push from now on
    /// wakes it. The driver clears `dispatching`, then reads `pending`; a pusher sets
    /// `pending`, then reads `dispatching` (all four `SeqCst`). So if this read finds nothing
    /// pending, a push after it finds `dispatching` clear and wakes the driver.
    #[inline]
    fn nothing_pending(&self) -> bool {
        // Only the driver writes `dispatching`: this load sees its own last store.
        if self.dispatching.load(Ordering::Relaxed) {
            self.dispatching.store(false, Ordering::SeqCst);
        }
        !self.pending.load(Ordering::SeqCst)
    }

    /// Under the lock, after the driver took from `state`: whether anything is left for it.
    fn settle(&self, state: &State) {
        let left = state.overflow || state.stop || state.close.is_some() || !state.queue.is_empty();
        // The lock orders this with every pusher; the driver's own later read sees it.
        self.pending.store(left, Ordering::Release);
    }

    /// Under the lock, with nothing pending: a push after this wakes `cx`'s task.
    fn register(&self, state: &mut State, cx: &Context<'_>, registered: &mut Registered) {
        self.dispatching.store(false, Ordering::SeqCst);
        if !registered.is(cx) {
            state.waker = Some(cx.waker().clone());
            registered.0 = Some(cx.waker().clone());
        }
    }

    /// Under the lock, after adding to `state`: tells the driver. Bytes wake it only when
    /// nothing was pending (else it was told already, or runs its handlers and drains right
    /// after); a close, a stop or an overflow always wakes it, even while bytes wait for a
    /// socket that takes none.
    fn notify(&self, state: &State, urgency: Urgency) {
        let told = self.pending.swap(true, Ordering::SeqCst);
        if told && urgency == Urgency::Bytes {
            return;
        }
        if self.dispatching.load(Ordering::SeqCst) {
            return;
        }
        if let Some(waker) = &state.waker {
            waker.wake_by_ref();
        }
    }
}

thread_local! {
    /// The identity of the outbox this thread's [`LENT`] queue is lent to (for one poll of
    /// its handler, [`Lending`]), 0 when none.
    static LENT_TO: Cell<usize> = const { Cell::new(0) };
    /// What the lent queue may hold: the limit less the driver's unwritten bytes.
    static LENT_ROOM: Cell<usize> = const { Cell::new(0) };
    /// The queue a handler's pushes to its own connection append to while it is lent.
    static LENT: RefCell<WriteQueue> = const { RefCell::new(WriteQueue::new()) };
}

/// Polls a handler call with a queue lent for its pushes to its own connection (see the
/// module documentation), and appends what they queued to the driver's write buffer after
/// each poll.
pub(crate) struct Lending<'a, F> {
    pub(crate) outbox: &'a Outbox,
    /// The driver's write buffer, and how much of it is written.
    pub(crate) out: &'a mut WriteQueue,
    pub(crate) written: usize,
    pub(crate) call: F,
}

impl<F: Future + Unpin> Future for Lending<'_, F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let lent = this.outbox.lend(this.out.len() - this.written);
        // The call does not unwind (it is a `CatchUnwind`), so the lending always ends here.
        let polled = Pin::new(&mut this.call).poll(cx);
        if lent {
            this.outbox.reclaim(this.out);
        }
        if polled.is_pending() {
            // The driver drains once the call is done: until then a push need not wake it.
            this.outbox.quiet();
        }
        polled
    }
}

/// What a pusher added, for [`Outbox::notify`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Urgency {
    Bytes,
    Urgent,
}

/// The driver's record of the waker its outbox holds (which stays there until the driver
/// registers another): while the driver is polled with that same waker, a wake-up that finds
/// nothing pending need not take the lock to register it again.
#[derive(Default)]
pub(crate) struct Registered(Option<Waker>);

impl Registered {
    #[inline]
    fn is(&self, cx: &Context<'_>) -> bool {
        self.0
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Poll, Waker};

    #[test]
    fn push_drain_close_order() {
        let outbox = Outbox::new(1024, None);
        let mut cx = Context::from_waker(Waker::noop());
        let mut reg = Registered::default();
        assert_eq!(outbox.push_frame(OpCode::Text, b"hi"), Ok(4));
        assert!(outbox.request_close(CloseCode::NORMAL, "bye"));
        assert_eq!(
            outbox.push_frame(OpCode::Text, b"late"),
            Err(PushError::Closed)
        );
        let mut out = WriteQueue::default();
        assert!(matches!(
            outbox.drain_into(&mut out, &mut cx, &mut reg),
            Drained::Bytes
        ));
        assert_eq!(out.to_vec_from(0), [0x81, 2, b'h', b'i']);
        out.reset(0);
        assert!(matches!(
            outbox.drain_into(&mut out, &mut cx, &mut reg),
            Drained::Close(CloseCode::NORMAL, ref r) if r == "bye"
        ));
    }

    #[test]
    fn a_large_payload_given_by_value_is_queued_whole_and_counted() {
        let outbox = Outbox::new(1 << 20, None);
        let payload = bytes::Bytes::from(vec![7u8; 5000]);
        assert_eq!(
            outbox.push_owned(OpCode::Binary, payload.clone().into()),
            Ok(5004)
        );
        assert_eq!(outbox.push_frame(OpCode::Text, b"hi"), Ok(4));
        assert_eq!(outbox.queued(), 5008);
        let mut out = WriteQueue::default();
        let mut cx = Context::from_waker(Waker::noop());
        let mut reg = Registered::default();
        assert!(matches!(
            outbox.drain_into(&mut out, &mut cx, &mut reg),
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
        let mut reg = Registered::default();
        assert!(matches!(
            outbox.drain_into(&mut WriteQueue::default(), &mut cx, &mut reg),
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

    /// An outbox and its driver's side: a waker that counts its wake-ups, the record of the
    /// registered waker, the driver's write queue.
    struct Driver {
        outbox: Outbox,
        counter: std::sync::Arc<Counter>,
        waker: Waker,
        registered: Registered,
        out: WriteQueue,
    }

    impl Driver {
        fn new() -> Self {
            let counter = std::sync::Arc::new(Counter(Default::default()));
            Driver {
                outbox: Outbox::new(1024, None),
                waker: Waker::from(counter.clone()),
                counter,
                registered: Registered::default(),
                out: WriteQueue::default(),
            }
        }

        /// Another task's driver now (a new waker, same outbox).
        fn moved(mut self) -> Self {
            self.counter = std::sync::Arc::new(Counter(Default::default()));
            self.waker = Waker::from(self.counter.clone());
            self
        }

        fn drain(&mut self) -> Drained {
            let mut cx = Context::from_waker(&self.waker);
            self.outbox
                .drain_into(&mut self.out, &mut cx, &mut self.registered)
        }

        fn urgent(&mut self) -> Option<Drained> {
            let mut cx = Context::from_waker(&self.waker);
            self.outbox.poll_urgent(&mut cx, &mut self.registered)
        }

        /// The bytes drained so far, taken.
        fn written(&mut self) -> Vec<u8> {
            let bytes = self.out.to_vec_from(0);
            self.out.reset(0);
            bytes
        }

        /// Queues a text message, as a handler or another task would.
        fn push(&self, text: &[u8]) {
            self.outbox.push_frame(OpCode::Text, text).expect("queued");
        }

        /// A driver that found nothing and waits (its waker registered).
        fn waiting() -> Self {
            let mut driver = Driver::new();
            assert!(matches!(driver.drain(), Drained::Empty));
            driver
        }

        /// Drains, expecting bytes, and returns them.
        fn drained_bytes(&mut self) -> Vec<u8> {
            assert!(matches!(self.drain(), Drained::Bytes));
            self.written()
        }

        /// Runs `call` as one poll of the connection's handler, with a lent queue, as the
        /// driver runs `on_message`.
        fn handle(&mut self, call: impl FnOnce(&Outbox)) {
            let mut call = Some(call);
            let outbox = &self.outbox;
            let lending = Lending {
                outbox,
                out: &mut self.out,
                written: 0,
                call: std::future::poll_fn(|_| {
                    if let Some(call) = call.take() {
                        call(outbox);
                    }
                    Poll::Ready(())
                }),
            };
            let mut cx = Context::from_waker(&self.waker);
            assert!(std::pin::pin!(lending).poll(&mut cx).is_ready());
        }

        fn woken(&self) -> usize {
            self.counter.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[test]
    fn a_stop_wakes_the_driver_and_is_reported_once_before_the_bytes() {
        let mut driver = Driver::new();
        assert!(matches!(driver.drain(), Drained::Empty));
        driver.push(b"hi");
        assert_eq!(driver.woken(), 1);
        // Woken again: bytes already pending do not hold back a stop (the driver may be
        // waiting for a socket that takes nothing).
        driver.outbox.stop();
        assert_eq!(driver.woken(), 2);
        assert!(matches!(driver.drain(), Drained::Stop));
        assert!(matches!(driver.drain(), Drained::Bytes));
        assert_eq!(driver.written(), [0x81, 2, b'h', b'i']);
    }

    #[test]
    fn a_quiet_outbox_queues_without_waking_until_the_driver_registers_again() {
        let mut driver = Driver::new();
        assert!(matches!(driver.drain(), Drained::Empty));
        driver.outbox.quiet();
        driver.push(b"reply");
        assert_eq!(driver.woken(), 0);
        assert!(matches!(driver.drain(), Drained::Bytes));
        driver.written();
        assert!(matches!(driver.drain(), Drained::Empty));
        driver.push(b"push");
        assert_eq!(driver.woken(), 1);
    }

    fn text(outbox: &Outbox, bytes: &[u8]) -> Result<usize, PushError> {
        outbox.push_frame(OpCode::Text, bytes)
    }

    #[test]
    fn a_reply_during_a_handler_call_goes_straight_to_the_driver_and_wakes_nobody() {
        let mut driver = Driver::waiting();
        driver.handle(|outbox| {
            assert_eq!(text(outbox, b"a"), Ok(3));
            assert_eq!(text(outbox, b"b"), Ok(3));
        });
        assert_eq!(driver.woken(), 0);
        assert_eq!(driver.written(), [0x81, 1, b'a', 0x81, 1, b'b']);
        // Nothing went through the locked queue.
        assert!(matches!(driver.drain(), Drained::Empty));
        // The lending ended with the call: a push now wakes the driver.
        driver.push(b"c");
        assert_eq!(driver.woken(), 1);
    }

    #[test]
    fn replies_queue_behind_what_waited_in_the_outbox() {
        let mut driver = Driver::new();
        driver.push(b"a");
        driver.handle(|outbox| {
            assert_eq!(text(outbox, b"b"), Ok(3));
        });
        assert!(driver.out.is_empty(), "the reply took the lock, behind `a`");
        assert_eq!(driver.drained_bytes(), [0x81, 1, b'a', 0x81, 1, b'b']);
    }

    #[test]
    fn a_close_requested_after_a_reply_leaves_after_it() {
        let mut driver = Driver::waiting();
        driver.handle(|outbox| {
            assert_eq!(text(outbox, b"a"), Ok(3));
            assert!(outbox.request_close(CloseCode::NORMAL, "bye"));
            assert_eq!(text(outbox, b"late"), Err(PushError::Closed));
        });
        assert_eq!(driver.woken(), 0, "the driver drains right after the call");
        assert_eq!(driver.drained_bytes(), [0x81, 1, b'a']);
        assert!(matches!(
            driver.drain(),
            Drained::Close(CloseCode::NORMAL, ref reason) if reason == "bye"
        ));
    }

    #[test]
    fn taking_the_lock_during_a_call_keeps_the_replies_in_order() {
        let mut driver = Driver::waiting();
        driver.handle(|outbox| {
            assert_eq!(text(outbox, b"a"), Ok(3));
            assert_eq!(outbox.queued(), 3, "the lent bytes count as queued");
            assert_eq!(text(outbox, b"b"), Ok(3));
        });
        assert!(driver.out.is_empty());
        assert_eq!(driver.drained_bytes(), [0x81, 1, b'a', 0x81, 1, b'b']);
    }

    #[test]
    fn a_push_from_another_thread_during_a_call_keeps_the_replies_in_order() {
        let mut driver = Driver::waiting();
        driver.handle(|outbox| {
            assert_eq!(text(outbox, b"a"), Ok(3));
            // Pushed after `a` (the thread starts once `a` is queued), by another thread,
            // through the lock: `b` after it finds it there and takes the lock too.
            std::thread::scope(|scope| {
                scope.spawn(|| text(outbox, b"x").expect("queued"));
            });
            assert_eq!(text(outbox, b"b"), Ok(3));
        });
        assert!(
            driver.out.is_empty(),
            "`a` moved into the locked queue, before `x`"
        );
        assert_eq!(
            driver.drained_bytes(),
            [0x81, 1, b'a', 0x81, 1, b'x', 0x81, 1, b'b']
        );
    }

    #[test]
    fn replies_over_many_calls_are_bounded_by_the_limit() {
        // A client that never reads, and a handler that replies on every call (a batch of
        // requests, or a handler pushing between awaits): what the driver holds unwritten
        // counts against the limit, so the replies stop at it rather than growing.
        let mut driver = Driver::waiting();
        driver.outbox = Outbox::new(8, None);
        let mut refused = None;
        for call in 0..10 {
            driver.handle(|outbox| {
                if text(outbox, b"r") == Err(PushError::Full) {
                    refused.get_or_insert(call);
                }
            });
        }
        // Three 3-byte replies fill the write buffer past 8, three more the locked queue:
        // at most twice the limit is held, as before lending (write buffer and queue).
        assert_eq!(refused, Some(6));
        assert!(matches!(driver.drain(), Drained::Overflow));
    }

    #[test]
    fn the_lent_queue_has_the_outbox_limit() {
        let mut driver = Driver::new();
        driver.outbox = Outbox::new(4, None);
        driver.handle(|outbox| {
            assert_eq!(outbox.push_frame(OpCode::Binary, b"12345"), Ok(7));
            assert_eq!(text(outbox, b"x"), Err(PushError::Full));
        });
        assert!(matches!(driver.drain(), Drained::Overflow));
    }

    #[test]
    fn a_call_pushing_to_another_connection_takes_its_lock_and_wakes_it() {
        let mut driver = Driver::new();
        let mut other = Driver::waiting();
        driver.handle(|_| other.push(b"dm"));
        assert_eq!(other.woken(), 1);
        assert!(driver.out.is_empty());
        assert_eq!(other.drained_bytes(), [0x81, 2, b'd', b'm']);
    }

    #[test]
    fn a_wake_up_with_nothing_pending_keeps_the_waker_and_a_push_after_it_wakes() {
        let mut driver = Driver::new();
        for round in 1..=3 {
            // Nothing pending: the driver sleeps; its waker, registered once, stays.
            assert!(matches!(driver.drain(), Drained::Empty));
            driver.push(b"a");
            driver.push(b"b");
            // The first push wakes it; the second finds it told already.
            assert_eq!(driver.woken(), round);
            assert!(matches!(driver.drain(), Drained::Bytes));
            assert_eq!(driver.written(), [0x81, 1, b'a', 0x81, 1, b'b']);
        }
    }

    #[test]
    fn a_driver_polled_by_another_task_registers_that_task() {
        let mut first = Driver::new();
        assert!(matches!(first.drain(), Drained::Empty));
        // Polled again with another task's waker: nothing is pending, yet it must not skip
        // registering that waker.
        let first_counter = first.counter.clone();
        let mut second = first.moved();
        assert!(matches!(second.drain(), Drained::Empty));
        second.push(b"x");
        let first_woken = first_counter.0.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!((first_woken, second.woken()), (0, 1));
    }

    #[test]
    fn a_close_wakes_the_driver_even_while_bytes_wait_for_the_socket() {
        let mut driver = Driver::new();
        assert!(driver.urgent().is_none());
        driver.push(b"a");
        assert_eq!(driver.woken(), 1);
        // The socket still takes nothing: the driver waits again with bytes pending.
        assert!(driver.urgent().is_none());
        driver.push(b"b");
        assert_eq!(driver.woken(), 1, "more bytes need not wake it");
        assert!(driver.outbox.request_close(CloseCode::NORMAL, "bye"));
        assert_eq!(driver.woken(), 2, "a close must");
        assert!(matches!(
            driver.urgent(),
            Some(Drained::Close(CloseCode::NORMAL, _))
        ));
    }

    /// Pushers on other threads against a driver task that drains as the real one does: every
    /// message arrives, so no wake-up is lost between the lock-free check and a push.
    #[test]
    fn no_wake_up_is_lost_between_pushers_and_the_driver() {
        const PUSHERS: usize = 4;
        const EACH: usize = 20_000;
        let outbox = std::sync::Arc::new(Outbox::new(usize::MAX, None));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let pushers: Vec<_> = (0..PUSHERS)
            .map(|_| {
                let outbox = outbox.clone();
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        outbox.push_frame(OpCode::Binary, b"m").expect("queued");
                        if i % 64 == 0 {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let frames = runtime.block_on(async {
            let mut reg = Registered::default();
            let mut out = WriteQueue::default();
            let mut frames = 0;
            let drain = std::future::poll_fn(|cx| {
                loop {
                    match outbox.drain_into(&mut out, cx, &mut reg) {
                        Drained::Bytes => {
                            frames += out.len() / 3;
                            out.reset(0);
                            // As the driver's handlers do: pushes during it need not wake.
                            outbox.quiet();
                        }
                        Drained::Empty if frames == PUSHERS * EACH => return Poll::Ready(frames),
                        Drained::Empty => return Poll::Pending,
                        _ => unreachable!("nothing else is asked of the outbox"),
                    }
                }
            });
            // The deadline is polled first: a driver that was never woken must not be
            // rescued by the timer's own wake-up.
            let deadline = tokio::time::sleep(std::time::Duration::from_secs(20));
            tokio::select! {
                biased;
                () = deadline => None,
                frames = drain => Some(frames),
            }
        });
        for pusher in pushers {
            pusher.join().expect("pusher");
        }
        assert_eq!(frames, Some(PUSHERS * EACH), "a wake-up was lost");
    }
}
