//! A WebSocket echo server on one port, for conformance runs and benchmarks:
//! `cargo run --release -p wharf --example echo -- 9002` serves `ws://127.0.0.1:9002/echo`.

use wharf::{Config, Echo, Router, Server, ServerConfig, ServerKind};

#[tokio::main]
async fn main() -> Result<(), wharf::Error> {
    let port = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(9002);
    let config = Config::empty()
        .with_server(ServerConfig::new("ws", ServerKind::Websocket, port).with_host("127.0.0.1"));
    let server = Server::builder(config)
        .websocket("ws", Router::new().route("/echo", Echo))
        .bind()
        .await?;
    server.serve(wharf::shutdown_signal()).await
}
