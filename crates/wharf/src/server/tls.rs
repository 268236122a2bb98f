//! TLS for any server: a rustls acceptor from the configured PEM files, and a listener that
//! hands axum finished TLS streams (handshakes run concurrently, each bounded in time).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::debug;

use crate::Error;
use crate::config::TlsConfig;

/// What a `websocket` server's own listener offers in ALPN: it reads HTTP/1.1 heads only.
pub(crate) const ALPN_HTTP1: &[&[u8]] = &[b"http/1.1"];

/// What an `http` server offers in ALPN: h2 first, so browsers speak HTTP/2 to it (and may
/// open WebSockets as extended CONNECT streams, RFC 8441), HTTP/1.1 for everyone else.
pub(crate) const ALPN_H2_HTTP1: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The acceptor for server `server`, offering the protocols `alpn` in the TLS handshake, or
/// an error naming the file and the problem.
pub(crate) fn acceptor(
    server: &str,
    tls: &TlsConfig,
    alpn: &[&[u8]],
) -> Result<TlsAcceptor, Error> {
    let fail = |message: String| Error::Tls {
        server: server.to_owned(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| fail(format!("certificate {}: {e}", tls.cert.display())))?;
    if certs.is_empty() {
        return Err(fail(format!("no certificate in {}", tls.cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| fail(format!("private key {}: {e}", tls.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            fail(format!(
                "{} and {}: {e}",
                tls.cert.display(),
                tls.key.display()
            ))
        })?;
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Runs the TLS handshake on `stream` within `timeout`; `None` when it fails.
pub(crate) async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// An axum listener yielding TLS streams. The TCP accept loop runs in its own task and
/// stops when the listener is dropped.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub(crate) fn new(listener: TcpListener, acceptor: TlsAcceptor, timeout: Duration) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (done, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = done.closed() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, peer)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (acceptor, done) = (acceptor.clone(), done.clone());
                tokio::spawn(async move {
                    if let Some(tls) = handshake(&acceptor, stream, peer, timeout).await {
                        let _ = done.send((tls, peer)).await;
                    }
                });
            }
        });
        TlsListener { ready, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(next) => next,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
