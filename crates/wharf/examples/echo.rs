//! A WebSocket echo server on one port, for conformance runs and benchmarks:
//! `cargo run --release -p wharf --example echo -- 9002` serves `ws://127.0.0.1:9002/echo`
//! and, for fan-out benchmarks (`../shared/bench/run.sh --scenarios broadcast`),
//! `ws://127.0.0.1:9002/broadcast`: every message to every connection of that route, the
//! sender included, as one room push.
//!
//! Its runtime is the one `wharf serve` picks: on one core (the benchmark harness pins its
//! servers to one) the current-thread runtime, as the harness's Rust peers use, else the
//! multi-thread runtime with a worker per core; `--multi-thread` forces the latter.

use wharf::{
    Config, Conn, Echo, Handler, HandlerError, Message, Router, Server, ServerConfig, ServerKind,
};

/// Joins room `all` on open; each message is pushed to the room (its encoding shared by
/// every member).
struct Broadcast;

impl Handler for Broadcast {
    async fn on_open(&self, conn: &Conn, _: &wharf::OpenRequest) -> Result<(), HandlerError> {
        conn.join("all");
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, message: Message) -> Result<(), HandlerError> {
        conn.sender().push_room("all", message, None);
        Ok(())
    }
}

fn main() -> Result<(), wharf::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port = args.first().and_then(|p| p.parse().ok()).unwrap_or(9002);
    let one_core = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let runtime = if one_core && !args.iter().any(|a| a == "--multi-thread") {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    runtime.map_err(wharf::Error::from)?.block_on(serve(port))
}

async fn serve(port: u16) -> Result<(), wharf::Error> {
    let config = Config::empty()
        .with_server(ServerConfig::new("ws", ServerKind::Websocket, port).with_host("127.0.0.1"));
    let server = Server::builder(config)
        .websocket(
            "ws",
            Router::new()
                .route("/echo", Echo)
                .route("/broadcast", Broadcast),
        )
        .bind()
        .await?;
    server.serve(wharf::shutdown_signal()).await
}
