//! A TCP proxy in front of a node, so the check can reset a subscriber's connection the
//! abrupt way: both sockets are closed with a zero linger, which sends RST to the client
//! and to the node (no close frame, no FIN).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A running proxy; its task ends when it is dropped.
pub struct Proxy {
    /// Where subscribers connect.
    pub addr: SocketAddr,
    pairs: Arc<Mutex<HashMap<u64, AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let pairs: Arc<Mutex<HashMap<u64, AbortHandle>>> = Arc::default();
        let table = pairs.clone();
        let accept = tokio::spawn(async move {
            let mut next = 0u64;
            while let Ok((client, _)) = listener.accept().await {
                next += 1;
                let id = next;
                let table2 = table.clone();
                let task = tokio::spawn(async move {
                    let _ = forward(client, upstream).await;
                    lock(&table2).remove(&id);
                });
                lock(&table).insert(id, task.abort_handle());
            }
        });
        Ok(Proxy {
            addr,
            pairs,
            accept: accept.abort_handle(),
        })
    }

    /// Resets one of the open connections, picked with `pick` (any number); false when
    /// none is open.
    pub fn reset(&self, pick: u64) -> bool {
        let mut pairs = lock(&self.pairs);
        let Some(&id) = pairs
            .keys()
            .nth((pick % pairs.len().max(1) as u64) as usize)
        else {
            return false;
        };
        if let Some(task) = pairs.remove(&id) {
            // Aborting drops both sockets; their zero linger turns the close into RST.
            task.abort();
        }
        true
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for (_, task) in lock(&self.pairs).drain() {
            task.abort();
        }
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr) -> std::io::Result<()> {
    client.set_zero_linger()?;
    client.set_nodelay(true)?;
    // A node that is down: the client sees its handshake fail and tries elsewhere.
    let mut server = TcpStream::connect(upstream).await?;
    server.set_zero_linger()?;
    server.set_nodelay(true)?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

/// The table is only touched for a moment (insert, remove, pick); a poisoned lock only
/// means a panicking task, whose entry is harmless.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
