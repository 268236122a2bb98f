//! Test helpers: an in-process wharf echo server.

#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod python;
pub mod tls;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wharf::{Config, Echo, Router, Server, ServerConfig, ServerKind};

/// Every test step is bounded by this.
pub const STEP: Duration = Duration::from_secs(10);

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

pub struct Wharf {
    pub addr: SocketAddr,
    pub sender: wharf::Sender,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), wharf::Error>>>,
}

impl Wharf {
    /// Starts wharf with `/echo` on 127.0.0.1:`port` (0 = any).
    pub async fn start(port: u16) -> Result<Wharf, wharf::Error> {
        Self::start_with(ServerConfig::new("ws", ServerKind::Websocket, port)).await
    }

    /// Starts wharf with `/echo` on a server configured as `server` (named `ws`, bound to
    /// 127.0.0.1).
    pub async fn start_with(server: ServerConfig) -> Result<Wharf, wharf::Error> {
        let config = Config::empty().with_server(server.with_host("127.0.0.1"));
        let server = Server::builder(config)
            .websocket("ws", Router::new().route("/echo", Echo))
            .bind()
            .await?;
        let addr = server.local_addr("ws").expect("ws server bound");
        let sender = server.sender();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = rx.await;
        }));
        Ok(Wharf {
            addr,
            sender,
            stop: Some(tx),
            task: Some(task),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Shuts the server down and waits for it (bounded); panics unless `serve` returned
    /// `Ok` in time, so a server that failed or hung under a test fails that test.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(STEP, task)
                .await
                .expect("the server to stop within STEP")
                .expect("the server task not to panic")
                .expect("serve to return Ok");
        }
    }
}

/// Runs `fut` bounded by [`STEP`], panicking on timeout.
pub async fn bounded<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(STEP, fut)
        .await
        .expect("test step timed out")
}
