//! The connection driver: one task per open connection, from the 101 to the last byte.
//!
//! It reads into a per-thread scratch buffer, so an idle connection owns no read buffer
//! (only a partial frame header, at most 14 bytes, is kept between reads). Everything one
//! read brings is decoded and handed to the handler before anything is written, and all the
//! replies of that batch leave in one write: pipelined clients cost one syscall per batch,
//! not per message.
//!
//! Cancellation: the driver is never cancelled from outside; shutdown, timeouts and close
//! requests are events inside its loop, so `on_close` always runs exactly once.

use std::cell::RefCell;
use std::future::{Future as _, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};
use wharf_proto::{Decoder, Frame, OpCode, ProtocolError};

use crate::config::{Heartbeat, Limits};
use crate::conn::{Conn, OpenRequest};
use crate::error_handler::ErrorHandler;
use crate::handler::{CatchUnwind, CloseEvent, Handler, Initiator};
use crate::launch::Epilogue;
use crate::outbox::{Drained, Lending, Registered};
use crate::rate_limit::TokenBucket;
use crate::routing::PingPolicy;
use crate::server::Phase;
use crate::socket_io::SocketIo;
use crate::write_queue::WriteQueue;
use crate::{CloseCode, HandlerError, Message};

const SCRATCH_LEN: usize = 64 * 1024;
/// Unwritten bytes above which the driver stops reading: a client that does not read its
/// replies is not allowed to make the server buffer more of them.
const READ_PAUSE: usize = 256 * 1024;
/// A write buffer grown beyond this is freed once empty, so a burst does not pin memory.
const KEEP_WRITE_CAPACITY: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_LEN].into_boxed_slice());
}

enum ReadEvent {
    Data,
    Eof,
    Error(io::Error),
}

enum IoEvent {
    Read(ReadEvent),
    CloseRequested(CloseCode, String),
    Overflow,
    WriteFailed,
    /// The server is stopping ([`Outbox::stop`](crate::outbox::Outbox::stop)).
    Stop,
}

/// What ended the main loop.
enum End {
    /// Close with this code and reason, then wait for the client's close.
    Close(CloseCode, String),
    /// The client sent a close frame (its code, if any, and reason).
    ClientClosed(Option<u16>, String),
    /// The TCP connection is gone.
    Network,
    /// A successor takes the connection over with what its handler carried: stop here,
    /// close nothing. (Boxed: every connection's future holds an `End`.)
    Move(Box<serde_json::Value>),
}

/// How a driver ended.
pub(crate) enum Ended<S> {
    /// The connection closed; `on_close` has run.
    Closed(CloseEvent),
    /// The connection was parked for a successor process, open.
    Moved(crate::handover::Parked<S>),
}

/// What the driver takes from its server: the limits and heartbeat it enforces, the error
/// handler it asks for close codes, and how a shutdown closes it. Nothing else of the server (its router, listener, TLS or
/// counters of open connections) reaches a running connection.
pub(crate) struct DriverSettings {
    pub(crate) limits: Limits,
    pub(crate) heartbeat: Heartbeat,
    pub(crate) error_handler: Arc<dyn ErrorHandler>,
    /// How a shutdown closes the connection (`[drain]`).
    pub(crate) drain: crate::config::DrainConfig,
    /// The close reason when the process handed over (`[handover] reason`, with 1012).
    pub(crate) handover_reason: String,
    /// Where the server is in stopping; set before a stop is announced.
    pub(crate) stop: Arc<crate::server::StopPhase>,
    /// Set when the shutdown is announced, before every registered connection's outbox is
    /// told: a connection registered after that finds it set when its driver starts.
    pub(crate) stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl DriverSettings {
    /// The decoder's limits; each fragment of a fragmented message counts as at least 64
    /// bytes against `max_message_size` (the decoder's default `fragment_cost`).
    pub(crate) fn decoder_config(&self) -> wharf_proto::DecoderConfig {
        let mut config = wharf_proto::DecoderConfig::new(wharf_proto::Role::Server);
        config.max_message_size = self.limits.max_message_size;
        config.max_frame_size = self.limits.max_frame_size;
        config
    }
}

/// `repr(C)`, hot fields first: what every message touches (the stream, the connection, the
/// write queue, the frame list, the decoder's state) lies in as few cache lines as it fits,
/// and the rest after it. With many busy connections a wake-up finds little of its
/// connection in the L1 cache, so every line it touches is a miss; the order the compiler
/// chose spread them over the whole struct (docs/decisions.md, "One task a connection,
/// nothing around it").
#[repr(C)]
pub(crate) struct Driver<S> {
    stream: S,
    conn: Conn,
    /// The waker the connection's outbox holds.
    registered: Registered,
    write_buf: WriteQueue,
    written: usize,
    frames: Vec<Frame>,
    header_len: usize,
    failed: Option<ProtocolError>,
    /// `max_messages_per_sec`, when on.
    rate: Option<TokenBucket>,
    /// At or after the last read the timer has accounted for: the time of the timer check
    /// that found a read since the one before ([`Driver::seen`]).
    last_seen: Instant,
    ping_sent: Option<Instant>,
    decoder: Decoder,
    settings: Arc<DriverSettings>,
    /// When a shutdown with `[drain] spread` closes this connection (it is served till then).
    drain_at: Option<Instant>,
    /// Held while the connection may still move to a successor ([`crate::handover`]).
    movable: Option<crate::handover::MovableGuard>,
    header: [u8; wharf_proto::MAX_HEADER_LEN],
    ping: PingPolicy,
    /// Something was read since the last timer check. A read sets only this (no clock
    /// read); the check turns it into `last_seen` (docs/decisions.md, "The idle clock").
    seen: bool,
}

impl<S: SocketIo> Driver<S> {
    pub(crate) fn new(
        stream: S,
        conn: Conn,
        settings: Arc<DriverSettings>,
        ping: PingPolicy,
        deflate: Option<&wharf_proto::DeflateParams>,
    ) -> Self {
        let mut decoder = Decoder::new(settings.decoder_config());
        if let Some(params) = deflate {
            // Compressed messages from the client are inflated, as the handshake agreed.
            decoder.enable_deflate(params);
        }
        let rate = TokenBucket::from_limits(&settings.limits, Instant::now());
        Driver {
            stream,
            conn,
            settings,
            ping,
            decoder,
            header: [0; wharf_proto::MAX_HEADER_LEN],
            header_len: 0,
            frames: Vec::new(),
            failed: None,
            write_buf: WriteQueue::default(),
            written: 0,
            registered: Registered::default(),
            last_seen: Instant::now(),
            ping_sent: None,
            rate,
            drain_at: None,
            movable: None,
            seen: false,
        }
    }

    /// Lets a handover move this connection (its stream, handler and settings allow it).
    pub(crate) fn movable(mut self, guard: Option<crate::handover::MovableGuard>) -> Self {
        self.movable = guard;
        self
    }

    /// Runs the connection to its end with `handler`, called directly (not through a boxed
    /// future: [`crate::launch`]); `ended` then gets how it ended: closed (`on_close` has
    /// run) or parked for a successor. `request` is `None` for a connection a predecessor
    /// handed over: `on_open` ran there.
    ///
    /// Not an `async fn`: an async fn's arguments are stored twice in its future (as the
    /// arguments and as the locals they are moved into), and every idle connection's task is
    /// that future. The block below uses what it captures in place, so the driver, the
    /// request head and the rest are stored once; `ended` is the caller's epilogue, run here
    /// rather than in a wrapping future that would hold a second copy of them.
    #[allow(clippy::manual_async_fn)] // see above: the async fn would be 1.4 KiB larger
    pub(crate) fn run<H: Handler>(
        mut self,
        handler: Arc<H>,
        leftover: Vec<u8>,
        request: Option<OpenRequest>,
        ended: Epilogue<S>,
    ) -> impl Future<Output = ()> {
        async move {
            let handler = &*handler;
            // Registered before this runs: a shutdown announced since then missed it.
            if self
                .settings
                .stopping
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                self.conn.0.outbox.stop();
            }
            if !leftover.is_empty() {
                self.feed(&leftover);
            }
            drop(leftover);
            let opened = match &request {
                Some(request) => {
                    let mut opening = pin!(handler.on_open(&self.conn, request));
                    self.called(CatchUnwind(opening.as_mut()).await)
                }
                None => Ok(()),
            };
            let end = match opened {
                Ok(()) => {
                    drop(request);
                    self.main_loop(handler).await
                }
                Err(end) => end,
            };
            let end = match end {
                End::Move(state) => {
                    let conn = self.conn.clone();
                    ended(&conn, Ended::Moved(self.park(*state)));
                    return;
                }
                end => end,
            };
            self.movable = None;
            let event = self.finish(end).await;
            self.conn.sender().closed(&self.conn);
            {
                let mut closing = pin!(handler.on_close(&self.conn, &event));
                if let Err(panic) = CatchUnwind(closing.as_mut()).await {
                    error!(conn = %self.conn.id(), panic, "on_close panicked");
                }
            }
            ended(&self.conn, Ended::Closed(event));
        }
    }

    /// Stops here for a successor: the socket, a partial frame header, unwritten bytes.
    fn park(self, state: serde_json::Value) -> crate::handover::Parked<S> {
        let Driver {
            stream,
            header,
            header_len,
            write_buf,
            written,
            movable,
            ..
        } = self;
        crate::handover::Parked {
            stream,
            read: header[..header_len].to_vec(),
            unwritten: write_buf.to_vec_from(written),
            state,
            guard: movable,
        }
    }

    async fn main_loop<H: Handler>(&mut self, handler: &H) -> End {
        let sleep = tokio::time::sleep_until(self.next_deadline().into());
        tokio::pin!(sleep);
        // Whether the timer has been polled since its last reset (so it is in the timer
        // wheel and will wake the task when due): until it has fired it need not be polled
        // again, and a wake-up for a message costs one load rather than a timer poll.
        let mut armed = false;
        // Whether the timer was brought forward for the first read since the last check.
        let mut checking_soon = false;
        loop {
            if !self.frames.is_empty() {
                if let Some(end) = self.dispatch(handler).await {
                    return end;
                }
            }
            if let Some(error) = self.failed.take() {
                debug!(conn = %self.conn.id(), code = error.code(), reason = error.reason(), "protocol error");
                return End::Close(CloseCode::new(error.code()), error.reason().to_owned());
            }
            let polled = poll_fn(|cx| {
                let io = self.poll_io(cx);
                if self.seen && !checking_soon {
                    // The first read since the last check (the one clock read of a busy
                    // period), before the handler runs on what it read: the next check
                    // comes within a check period, so a connection that goes quiet now is
                    // closed or pinged at most that much late.
                    checking_soon = true;
                    if let Some(soon) = self.next_check() {
                        armed &= !bring_forward(sleep.as_mut(), soon);
                    }
                }
                if let Poll::Ready(event) = io {
                    return Poll::Ready(Some(event));
                }
                if armed && !sleep.is_elapsed() {
                    return Poll::Pending;
                }
                armed = true;
                sleep.as_mut().poll(cx).map(|()| None)
            })
            .await;
            let Some(event) = polled else {
                if let Some(end) = self.on_timer() {
                    return end;
                }
                sleep.as_mut().reset(self.next_deadline().into());
                armed = false;
                checking_soon = false;
                continue;
            };
            match event {
                IoEvent::Read(ReadEvent::Data) => {}
                IoEvent::Read(ReadEvent::Eof) => return End::Network,
                IoEvent::Read(ReadEvent::Error(e)) => {
                    debug!(conn = %self.conn.id(), error = %e, "read failed");
                    return End::Network;
                }
                IoEvent::WriteFailed => return End::Network,
                IoEvent::Stop => match self.settings.stop.get() {
                    // A stop left over from a handover that failed: serve on.
                    Phase::Serving => {}
                    Phase::HandingOver => {
                        // A safe point: nothing is half-decoded (the frames read so far
                        // were dispatched, no handler call is running). Mid-frame, or when
                        // its handler cannot carry it, it serves on instead, and closes with
                        // 1012 once the successor has taken the others.
                        if self.movable.as_ref().is_some_and(|m| m.may_park())
                            && !self.decoder.in_progress()
                        {
                            if let Some(state) = self.carry(handler) {
                                return End::Move(Box::new(state));
                            }
                        }
                        self.movable = None;
                    }
                    Phase::HandedOver | Phase::Shutdown => {
                        self.movable = None;
                        let delay = self.settings.drain.delay(self.conn.id().as_u64());
                        if delay.is_zero() {
                            return self.drained();
                        }
                        let at = Instant::now() + delay;
                        self.drain_at = Some(at);
                        // Only ever earlier: a check brought forward stays where it is.
                        armed &= !bring_forward(sleep.as_mut(), at);
                    }
                },
                IoEvent::CloseRequested(code, reason) => return End::Close(code, reason),
                IoEvent::Overflow => {
                    warn!(conn = %self.conn.id(), queued = self.conn.queued_bytes(), "slow consumer: outgoing queue full, closing");
                    let code = CloseCode::new(self.settings.limits.slow_consumer_code);
                    return End::Close(code, "slow consumer".to_owned());
                }
            }
        }
    }

    /// Hands every decoded frame to the handler, in order.
    async fn dispatch<H: Handler>(&mut self, handler: &H) -> Option<End> {
        let mut end = None;
        if let Some(rate) = &mut self.rate {
            rate.refill(Instant::now());
        }
        // Popped from the end of the reversed list: each pop borrows the list only for
        // itself (so the handler can be called with `&self` between two), and costs less
        // than a `Drain`. What a break leaves is cleared.
        self.frames.reverse();
        while let Some(frame) = self.frames.pop() {
            // Every frame but the close counts: a ping flood is a message flood too.
            let limited = !matches!(frame, Frame::Close(_));
            if limited && self.rate.as_mut().is_some_and(|rate| !rate.take()) {
                warn!(conn = %self.conn.id(), "message rate limit exceeded, closing");
                end = Some(End::Close(
                    CloseCode::POLICY_VIOLATION,
                    "message rate limit exceeded".into(),
                ));
                break;
            }
            let message = match frame {
                Frame::Text(text) => Message::Text(text),
                Frame::Binary(data) => Message::Binary(data),
                Frame::Ping(data) if self.ping == PingPolicy::Auto => {
                    wharf_proto::encode_frame(self.write_buf.buf(), OpCode::Pong, &data, None);
                    continue;
                }
                Frame::Ping(data) => Message::Ping(data),
                Frame::Pong(_) if self.ping == PingPolicy::Auto => continue,
                Frame::Pong(data) => Message::Pong(data),
                Frame::Close(close) => {
                    let (code, reason) = match close {
                        Some((code, reason)) => (Some(code), reason),
                        None => (None, String::new()),
                    };
                    end = Some(End::ClientClosed(code, reason));
                    break;
                }
            };
            if message.is_data() {
                self.conn.0.counters.received(message.len());
            }
            let mut call = pin!(handler.on_message(&self.conn, message));
            let handled = Lending {
                outbox: &self.conn.0.outbox,
                out: &mut self.write_buf,
                written: self.written,
                call: CatchUnwind(call.as_mut()),
            }
            .await;
            if let Err(failure) = self.called(handled) {
                end = Some(failure);
                break;
            }
        }
        self.frames.clear();
        end
    }

    /// What a handler callback returned: an error or panic becomes the close the error
    /// handler picks. (A plain function over the awaited result, not an `async fn` awaiting
    /// it: a message then costs no second future.)
    #[inline]
    fn called(&self, result: Result<Result<(), HandlerError>, String>) -> Result<(), End> {
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(self.failed_call(Ok(error))),
            Err(panic) => Err(self.failed_call(Err(panic))),
        }
    }

    /// The close for a handler call that returned an error, or panicked (its message).
    #[cold]
    #[inline(never)]
    fn failed_call(&self, failure: Result<HandlerError, String>) -> End {
        let error = match failure {
            Ok(error) => {
                error!(conn = %self.conn.id(), route = self.conn.route(), %error, "handler failed");
                error
            }
            Err(panic) => {
                error!(conn = %self.conn.id(), route = self.conn.route(), panic, "handler panicked");
                HandlerError::msg(panic)
            }
        };
        let (code, reason) = self
            .settings
            .error_handler
            .handler_error(&self.conn, &error);
        End::Close(code, reason)
    }

    /// Decodes bytes that arrived with the handshake request (a client that did not wait for
    /// the 101). No partial header is carried yet, so `bytes` is the whole input.
    fn feed(&mut self, bytes: &[u8]) {
        match self.decoder.decode(&mut bytes.to_vec(), &mut self.frames) {
            Ok(consumed) => self.keep_partial_header(&bytes[consumed..]),
            Err(error) => self.failed = Some(error),
        }
    }

    fn keep_partial_header(&mut self, rest: &[u8]) {
        keep_partial(
            &mut self.header,
            &mut self.header_len,
            &mut self.failed,
            rest,
        );
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<ReadEvent> {
        loop {
            let Driver {
                stream,
                decoder,
                header,
                header_len,
                frames,
                failed,
                ..
            } = self;
            let polled = SCRATCH.with_borrow_mut(|scratch| {
                let carried = *header_len;
                // Most reads carry nothing over: no copy (not even an empty one, which is
                // still a call to `memcpy`).
                if carried > 0 {
                    scratch[..carried].copy_from_slice(&header[..carried]);
                }
                match stream.poll_recv(cx, &mut scratch[carried..]) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(ReadEvent::Error(e)),
                    Poll::Ready(Ok(0)) => Poll::Ready(ReadEvent::Eof),
                    Poll::Ready(Ok(read)) => {
                        let total = carried + read;
                        match decoder.decode(&mut scratch[..total], frames) {
                            Ok(consumed) => {
                                keep_partial(header, header_len, failed, &scratch[consumed..total])
                            }
                            Err(error) => *failed = Some(error),
                        }
                        Poll::Ready(ReadEvent::Data)
                    }
                }
            });
            match polled {
                Poll::Ready(ReadEvent::Data) => {
                    self.seen = true;
                    if self.frames.is_empty() && self.failed.is_none() {
                        continue;
                    }
                    return Poll::Ready(ReadEvent::Data);
                }
                other => return other,
            }
        }
    }

    /// Writes what is pending, drains the outbox, then reads.
    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<IoEvent> {
        loop {
            if self.written < self.write_buf.len() {
                match self
                    .write_buf
                    .poll_write(self.written, &mut self.stream, cx)
                {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        return Poll::Ready(IoEvent::WriteFailed);
                    }
                    Poll::Ready(Ok(n)) => {
                        self.written += n;
                        continue;
                    }
                    Poll::Pending => match self.conn.0.outbox.poll_urgent(cx, &mut self.registered)
                    {
                        Some(Drained::Overflow) => return Poll::Ready(IoEvent::Overflow),
                        Some(Drained::Stop) => return Poll::Ready(IoEvent::Stop),
                        Some(Drained::Close(code, reason)) => {
                            return Poll::Ready(IoEvent::CloseRequested(code, reason));
                        }
                        _ => break,
                    },
                }
            }
            if !self.write_buf.is_empty() {
                self.reset_write_buf();
                if let Poll::Ready(Err(_)) = Pin::new(&mut self.stream).poll_flush(cx) {
                    return Poll::Ready(IoEvent::WriteFailed);
                }
            }
            match self
                .conn
                .0
                .outbox
                .drain_into(&mut self.write_buf, cx, &mut self.registered)
            {
                Drained::Bytes => continue,
                Drained::Empty => break,
                Drained::Close(code, reason) => {
                    return Poll::Ready(IoEvent::CloseRequested(code, reason));
                }
                Drained::Overflow => return Poll::Ready(IoEvent::Overflow),
                Drained::Stop => return Poll::Ready(IoEvent::Stop),
            }
        }
        if self.write_buf.len() - self.written > READ_PAUSE {
            return Poll::Pending;
        }
        self.poll_read(cx).map(IoEvent::Read)
    }

    fn reset_write_buf(&mut self) {
        self.write_buf.reset(KEEP_WRITE_CAPACITY);
        self.written = 0;
    }

    fn next_deadline(&self) -> Instant {
        let limits = &self.settings.limits;
        let heartbeat = &self.settings.heartbeat;
        let far = Instant::now() + Duration::from_secs(24 * 3600);
        let idle = (!limits.idle_timeout.is_zero()).then(|| self.last_seen + limits.idle_timeout);
        let beat = (!heartbeat.interval.is_zero()).then(|| match self.ping_sent {
            Some(sent) => sent + heartbeat.timeout,
            None => self.last_seen + heartbeat.interval,
        });
        [idle, beat, self.drain_at]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(far)
    }

    /// What the handler carries to the successor; `None` (it cannot move) when it says so
    /// or panics.
    fn carry<H: Handler>(&self, handler: &H) -> Option<serde_json::Value> {
        let carry = || handler.carry(&self.conn);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(carry)) {
            Ok(state) => state,
            Err(_) => {
                error!(conn = %self.conn.id(), "Handler::carry panicked; closing instead of moving");
                None
            }
        }
    }

    fn handed_over(&self) -> bool {
        self.settings.stop.get() == Phase::HandedOver
    }

    /// The close of a shutdown: `[drain]`'s code and reason, or 1012 and `[handover]
    /// reason` when a successor took over (this connection cannot move to it).
    fn drained(&self) -> End {
        if self.handed_over() {
            self.conn.sender().counters().handover_closed("not_movable");
            let reason = self.settings.handover_reason.clone();
            return End::Close(CloseCode::SERVICE_RESTART, reason);
        }
        let drain = &self.settings.drain;
        End::Close(CloseCode::new(drain.close_code), drain.reason.clone())
    }

    /// When to check the timers after the first read since the last check: an eighth of
    /// the shorter of the idle timeout and the heartbeat interval from now; `None` when
    /// both are off.
    fn next_check(&self) -> Option<Instant> {
        let idle = self.settings.limits.idle_timeout;
        let beat = self.settings.heartbeat.interval;
        let period = [idle, beat].into_iter().filter(|d| !d.is_zero()).min()?;
        Some(Instant::now() + period / 8)
    }

    fn on_timer(&mut self) -> Option<End> {
        let now = Instant::now();
        if std::mem::take(&mut self.seen) {
            // The latest read came before now: counting from now never closes early.
            self.last_seen = now;
            self.ping_sent = None;
        }
        if self.drain_at.is_some_and(|at| now >= at) {
            return Some(self.drained());
        }
        let limits = &self.settings.limits;
        let heartbeat = &self.settings.heartbeat;
        if !limits.idle_timeout.is_zero() && now >= self.last_seen + limits.idle_timeout {
            return Some(End::Close(CloseCode::GOING_AWAY, "idle timeout".into()));
        }
        if heartbeat.interval.is_zero() {
            return None;
        }
        match self.ping_sent {
            Some(sent) if now >= sent + heartbeat.timeout => {
                Some(End::Close(CloseCode::GOING_AWAY, "ping timeout".into()))
            }
            None if now >= self.last_seen + heartbeat.interval => {
                wharf_proto::encode_frame(self.write_buf.buf(), OpCode::Ping, b"wharf", None);
                self.ping_sent = Some(now);
                None
            }
            _ => None,
        }
    }

    /// Runs the close handshake for `end` within the close timeout and returns the event.
    async fn finish(&mut self, end: End) -> CloseEvent {
        // Whatever the handler queued before the close leaves before the close frame (valid
        // messages that preceded a bad frame are still answered; shutdown flushes the queue).
        let mut queued = self.conn.0.outbox.close_and_take();
        if !matches!(end, End::Network) {
            self.write_buf.append(&mut queued);
        }
        let (event, wait_for_client) = match end {
            End::Close(code, reason) => {
                let code = if code.is_sendable() {
                    code
                } else {
                    CloseCode::INTERNAL_ERROR
                };
                wharf_proto::encode_close(self.write_buf.buf(), code.as_u16(), &reason, None);
                (close_event(code, reason, Initiator::Server), true)
            }
            End::ClientClosed(code, reason) => {
                match code {
                    Some(code) => wharf_proto::encode_close(self.write_buf.buf(), code, "", None),
                    None => {
                        wharf_proto::encode_frame(self.write_buf.buf(), OpCode::Close, &[], None)
                    }
                }
                let code = code.map(CloseCode::new).unwrap_or(CloseCode::NO_STATUS);
                (close_event(code, reason, Initiator::Client), false)
            }
            End::Network | End::Move(_) => {
                return close_event(CloseCode::ABNORMAL, String::new(), Initiator::Network);
            }
        };
        let timeout = self.settings.limits.close_timeout;
        let closing = async {
            self.write_all().await?;
            if wait_for_client {
                self.await_client_close().await;
            }
            poll_fn(|cx| Pin::new(&mut self.stream).poll_shutdown(cx)).await
        };
        if tokio::time::timeout(timeout, closing).await.is_err() {
            debug!(conn = %self.conn.id(), "close handshake timed out");
        }
        event
    }

    async fn write_all(&mut self) -> io::Result<()> {
        poll_fn(|cx| {
            while self.written < self.write_buf.len() {
                match self
                    .write_buf
                    .poll_write(self.written, &mut self.stream, cx)
                {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => self.written += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            Pin::new(&mut self.stream).poll_flush(cx)
        })
        .await?;
        self.reset_write_buf();
        Ok(())
    }

    /// Reads and drops frames until the client's close frame, EOF or an error.
    async fn await_client_close(&mut self) {
        loop {
            self.frames.clear();
            if self.failed.is_some() {
                return;
            }
            match poll_fn(|cx| self.poll_read(cx)).await {
                ReadEvent::Data => {
                    if self.frames.iter().any(|f| matches!(f, Frame::Close(_))) {
                        return;
                    }
                }
                ReadEvent::Eof | ReadEvent::Error(_) => return,
            }
        }
    }
}

/// Moves `sleep` to `at` when that is earlier (never later); true when it moved, and must
/// be polled again to wake the task at its new deadline.
fn bring_forward(sleep: Pin<&mut tokio::time::Sleep>, at: Instant) -> bool {
    let earlier = at < sleep.deadline().into_std();
    if earlier {
        sleep.reset(at.into());
    }
    earlier
}

/// Keeps the unconsumed tail of a read (an incomplete frame header) for the next read.
fn keep_partial(
    header: &mut [u8; wharf_proto::MAX_HEADER_LEN],
    header_len: &mut usize,
    failed: &mut Option<ProtocolError>,
    rest: &[u8],
) {
    if rest.is_empty() {
        *header_len = 0;
        return;
    }
    match header.get_mut(..rest.len()) {
        Some(slot) => {
            slot.copy_from_slice(rest);
            *header_len = rest.len();
        }
        // The decoder promises to leave less than a header; never index out of bounds if not.
        None => *failed = Some(ProtocolError::new(1002, "frame header too long")),
    }
}

fn close_event(code: CloseCode, reason: String, initiator: Initiator) -> CloseEvent {
    CloseEvent {
        code,
        reason,
        initiator,
    }
}

/// Logs a connection's end in one line.
pub(crate) fn log_closed(conn: &Conn, event: &CloseEvent) {
    info!(
        conn = %conn.id(),
        server = conn.server(),
        route = conn.route(),
        peer = %conn.peer(),
        duration_ms = conn.0.opened.elapsed().as_millis() as u64,
        code = event.code.as_u16(),
        reason = %event.reason,
        closed_by = event.initiator.as_str(),
        "connection closed"
    );
}
