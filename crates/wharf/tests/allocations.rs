//! What a message costs the server in heap allocations, counted by a global allocator on the
//! server's own thread: the message's buffer, and nothing for calling its handler (the
//! driver is built for the handler's type and keeps the call's future in the connection's
//! task) unless the handler's futures are large (each call is then boxed); docs/decisions.md,
//! "A handler called without a box".
// A counting global allocator is the one way to see what a process allocates; it only
// forwards to the system allocator.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use tokio::sync::oneshot;
use wharf::{Conn, Handler, HandlerError, Message, Route, Router, Server};
use wharf_proto::OpCode;

/// Counts the allocations of the threads that ask for it, each into its own counter (tests
/// may run side by side in one process).
struct Counting;

thread_local! {
    static COUNTER: Cell<Option<&'static AtomicU64>> = const { Cell::new(None) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches only
// a const thread-local `Cell` (no allocation, no destructor) and an atomic that is never
// freed.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Ok(Some(counter)) = COUNTER.try_with(Cell::get) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Echoes like the built-in handler, declared as an application would.
struct Mirror;

impl Handler for Mirror {
    async fn on_message(&self, conn: &Conn, message: Message) -> Result<(), HandlerError> {
        conn.send(message)?;
        Ok(())
    }
}

/// Echoes too, but holds 4 KiB across an await: its calls are too large to keep in every
/// connection's task, so each is boxed.
struct Hoarder;

impl Handler for Hoarder {
    async fn on_message(&self, conn: &Conn, message: Message) -> Result<(), HandlerError> {
        let scratch = [0u8; 4096];
        tokio::task::yield_now().await;
        conn.send(message)?;
        std::hint::black_box(&scratch);
        Ok(())
    }
}

const MESSAGES: u64 = 2_000;

/// One message at a time, as the benchmark's echo sends them: each read brings one message,
/// so each is one handler call. Before the driver was built for the handler's type, each
/// call boxed its future: two allocations a message.
#[test]
fn an_echoed_message_costs_the_server_one_allocation() {
    // The message's buffer; the rest (a timer check now and then) rounds to nothing.
    assert_allocations_per_echo(Route::new(Mirror), 1.0);
}

/// A handler whose futures are large still echoes, at one more allocation a message (its
/// boxed call), and its idle connections stay small.
#[test]
fn a_handler_with_large_futures_has_each_call_boxed() {
    assert_allocations_per_echo(Route::new(Hoarder), 2.0);
}

/// Echoes through `route` and asserts what a message costs the server's thread, within a
/// fifth of an allocation.
fn assert_allocations_per_echo(route: Route, expected: f64) {
    let per_message = server_allocations_per_echo(route);
    assert!(
        (per_message - expected).abs() < 0.2,
        "{per_message:.3} allocations a message, expected {expected}"
    );
}

/// Echoes 32-byte messages one at a time through `route`, and counts what each costs the
/// server's thread.
fn server_allocations_per_echo(route: Route) -> f64 {
    let allocations: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    // The server alone on a thread of its own (a current-thread runtime: its connections
    // run there too), the only thread whose allocations count.
    let server = std::thread::spawn(move || {
        COUNTER.with(|counter| counter.set(Some(allocations)));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            // No heartbeat: a ping mid-test would be a frame the round trips do not expect.
            let mut server = ws_server();
            server.heartbeat.interval = std::time::Duration::ZERO;
            let builder = Server::builder(wharf::Config::empty().with_server(server))
                .websocket("ws", Router::new().route("/echo", route));
            let running = start(builder).await;
            addr_tx.send(running.addr()).expect("the test waits");
            let _ = stop_rx.await;
            running.shutdown().await;
        });
    });
    let addr = addr_rx.recv().expect("the server's address");
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let per_message = client.block_on(async move {
        let mut ws = RawWs::connect(addr, "/echo").await;
        let payload = [b'x'; 32];
        let round_trip = async |ws: &mut RawWs| {
            ws.send(OpCode::Text, &payload).await;
            let frame = ws.read_frame().await;
            assert_eq!(
                (frame.opcode, frame.payload.as_slice()),
                (0x1, &payload[..])
            );
        };
        // Warm-up: buffers grown, the timer settled.
        for _ in 0..200 {
            round_trip(&mut ws).await;
        }
        let before = allocations.load(Ordering::Relaxed);
        for _ in 0..MESSAGES {
            round_trip(&mut ws).await;
        }
        let after = allocations.load(Ordering::Relaxed);
        (after - before) as f64 / MESSAGES as f64
    });
    let _ = stop_tx.send(());
    server.join().expect("the server thread ends");
    per_message
}
