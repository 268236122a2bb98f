//! How an accepted connection's task starts: with its handler's own type.
//!
//! Routes hold their handlers as `Arc<dyn DynHandler>`, so that one router holds different
//! handler types. Calling a handler through that object would box each call's future (one
//! allocation and one free a message). Instead the object is asked once, when the
//! connection starts, to spawn its driver ([`DynHandler::spawn`]): the driver's future is
//! then built for the concrete handler and calls it directly, its message future stored in
//! the connection's task. A handler whose futures are large (they would make every idle
//! connection larger by more than [`INLINE_CALLS`] bytes) has each call boxed instead, as
//! before (docs/decisions.md, "A handler called without a box").

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::conn::{Conn, OpenRequest};
use crate::driver::{Driver, Ended};
use crate::handler::{CloseEvent, DynHandler, Handler, ResumeEvent};
use crate::socket_io::SocketIo;
use crate::{HandlerError, Message};

/// What a driver does once the connection has ended: logs, counts, releases its slots or
/// keeps it parked for a successor.
pub(crate) type Epilogue<S> = Box<dyn FnOnce(&Conn, Ended<S>) + Send>;

/// A connection ready to be driven, over stream `S`.
pub(crate) struct Launch<S> {
    pub(crate) handler: Arc<dyn DynHandler>,
    pub(crate) driver: Driver<S>,
    /// Bytes the client sent after its request head (or a partial frame header a
    /// predecessor read).
    pub(crate) leftover: Vec<u8>,
    /// The handshake request, for `on_open`; `None` for a connection a predecessor handed
    /// over (`on_open` ran there).
    pub(crate) request: Option<OpenRequest>,
    pub(crate) ended: Epilogue<S>,
}

/// A [`Launch`] over any of the streams a connection can run over, so that an object-safe
/// method can take it.
// Built and taken apart at once when the connection starts, never kept: its size is a move.
#[allow(clippy::large_enum_variant)]
pub(crate) enum AnyLaunch {
    Tcp(Launch<TcpStream>),
    Tls(Launch<tokio_rustls::server::TlsStream<TcpStream>>),
    /// A connection upgraded by hyper, through a mounted [`crate::WebSocketService`].
    Mounted(Launch<crate::server::Upgraded>),
}

impl<S: SocketIo + crate::handover::Transport + Send + Sync + 'static> Launch<S> {
    /// Spawns the connection's task, its driver built for the route's handler type.
    pub(crate) fn spawn(self) {
        let handler = self.handler.clone();
        handler.spawn(S::erase(self));
    }

    /// Spawns the driver for `handler`: calling it directly, its futures kept in the
    /// connection's task, when they are small ([`INLINE_CALLS`]); else boxing each call, so
    /// that a handler whose calls await large futures does not make every one of its idle
    /// connections that large.
    pub(crate) fn spawn_for<H: Handler>(self, handler: Arc<H>) {
        let Launch {
            driver,
            leftover,
            request,
            ended,
            ..
        } = self;
        // Decided when the driver is built for `H`: only the branch taken is compiled.
        if const { calls_fit::<S, H>() } {
            tokio::spawn(driver.run(handler, leftover, request, ended));
        } else {
            let boxed = Arc::new(Boxed(handler));
            tokio::spawn(driver.run(boxed, leftover, request, ended));
        }
    }
}

/// How many bytes a connection's task may grow by to hold its handler's futures in place
/// rather than box each call: about what a boxed call's allocation costs while it runs.
pub(crate) const INLINE_CALLS: usize = 256;

/// Whether `H`'s futures, kept in a connection's task over `S`, make it at most
/// [`INLINE_CALLS`] bytes larger than boxing them would.
const fn calls_fit<S, H>() -> bool
where
    S: SocketIo + crate::handover::Transport + Send + Sync + 'static,
    H: Handler,
{
    task_size(Driver::<S>::run::<H>) <= task_size(Driver::<S>::run::<Boxed<H>>) + INLINE_CALLS
}

/// The size of the future `run` returns: a connection's task (named through the function,
/// as the future's type has no name).
const fn task_size<A, B, C, D, E, F, Run>(run: Run) -> usize
where
    Run: FnOnce(A, B, C, D, E) -> F,
    F: Future,
{
    std::mem::forget(run);
    std::mem::size_of::<F>()
}

/// A handler whose calls are boxed: its futures live on the heap while they run, and the
/// connection's task holds only a pointer.
struct Boxed<H>(Arc<H>);

impl<H: Handler> Handler for Boxed<H> {
    fn on_open(
        &self,
        conn: &Conn,
        request: &OpenRequest,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        Box::pin(self.0.on_open(conn, request))
    }

    fn on_message(
        &self,
        conn: &Conn,
        message: Message,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        Box::pin(self.0.on_message(conn, message))
    }

    fn on_close(&self, conn: &Conn, event: &CloseEvent) -> impl Future<Output = ()> + Send {
        Box::pin(self.0.on_close(conn, event))
    }

    fn movable(&self) -> bool {
        self.0.movable()
    }

    fn carry(&self, conn: &Conn) -> Option<serde_json::Value> {
        self.0.carry(conn)
    }

    fn resume(&self, event: &mut ResumeEvent) -> Result<(), HandlerError> {
        self.0.resume(event)
    }
}

impl AnyLaunch {
    /// Spawns the driver of whichever stream this is, for handler `H`.
    pub(crate) fn spawn_for<H: Handler>(self, handler: Arc<H>) {
        match self {
            AnyLaunch::Tcp(launch) => launch.spawn_for(handler),
            AnyLaunch::Tls(launch) => launch.spawn_for(handler),
            AnyLaunch::Mounted(launch) => launch.spawn_for(handler),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Echo;

    /// Holds 4 KiB across an await: its message future is that large.
    struct Hoarder;

    impl Handler for Hoarder {
        async fn on_message(&self, conn: &Conn, message: Message) -> Result<(), HandlerError> {
            let scratch = [message.len() as u8; 4096];
            tokio::task::yield_now().await;
            conn.send(scratch[..1].to_vec())?;
            Ok(())
        }
    }

    #[test]
    fn small_calls_are_kept_in_the_task_and_large_ones_boxed() {
        assert!(calls_fit::<TcpStream, Echo>());
        assert!(calls_fit::<crate::server::Upgraded, Echo>());
        assert!(!calls_fit::<TcpStream, Hoarder>());
        // Boxed, the large handler's idle connections are no larger than echo's.
        let echo = task_size(Driver::<TcpStream>::run::<Echo>);
        let hoarder = task_size(Driver::<TcpStream>::run::<Boxed<Hoarder>>);
        assert!(hoarder <= echo, "{hoarder} bytes a task, echo's {echo}");
    }
}
