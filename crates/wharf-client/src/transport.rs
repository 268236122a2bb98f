//! The byte stream under a connection: plain TCP for `ws://`, rustls over TCP for `wss://`.
//!
//! [`Stream`] and its halves are enums rather than `Box<dyn AsyncRead + AsyncWrite>`, so the
//! hot path (one `poll_read`/`poll_write` per frame batch) is a `match`, not a virtual call.
//! A plain stream splits into tokio's owned TCP halves (no lock); a TLS stream has one rustls
//! state for both directions, so it splits with [`tokio::io::split`] (a small lock per poll).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::url::Target;
use crate::{ClientConfig, ClientError};

/// A connected stream, plain or TLS.
pub(crate) enum Stream {
    Plain(TcpStream),
    // Boxed: a rustls client connection is a few KiB, the TCP stream a few words.
    Tls(Box<TlsStream<TcpStream>>),
}

/// The reading half of a [`Stream`].
pub(crate) enum ReadHalf {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

/// The writing half of a [`Stream`].
pub(crate) enum WriteHalf {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
}

impl Stream {
    pub(crate) fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Self::Plain(tcp) => {
                let (read, write) = tcp.into_split();
                (ReadHalf::Plain(read), WriteHalf::Plain(write))
            }
            Self::Tls(tls) => {
                let (read, write) = tokio::io::split(*tls);
                (ReadHalf::Tls(read), WriteHalf::Tls(write))
            }
        }
    }
}

/// Opens TCP to the target and, for `wss://`, runs the TLS handshake.
pub(crate) async fn connect(target: &Target, config: &ClientConfig) -> Result<Stream, ClientError> {
    // Load the roots before connecting: a bad CA file is a usage error, not a network one.
    let tls = if target.tls {
        Some(config.tls.get(config.ca_file.as_deref())?)
    } else {
        None
    };
    let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
    tcp.set_nodelay(true)?;
    let Some(tls) = tls else {
        return Ok(Stream::Plain(tcp));
    };
    let name = config.server_name.as_deref().unwrap_or(&target.host);
    let name = ServerName::try_from(name.to_owned())
        .map_err(|_| ClientError::Tls(format!("{name:?} is not a valid TLS server name")))?;
    let stream = TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(tls_error)?;
    Ok(Stream::Tls(Box::new(stream)))
}

/// Sorts a failed TLS handshake: certificate rejections, other TLS failures, plain I/O.
fn tls_error(e: io::Error) -> ClientError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(why)) => {
            ClientError::Certificate(format!("{why:?}"))
        }
        Some(other) => ClientError::Tls(other.to_string()),
        None => ClientError::Network(e),
    }
}

/// The rustls configuration of a [`ClientConfig`], built on first use and shared by its
/// clones (so `wharf bench` and [`Reconnecting`](crate::Reconnecting) parse the CA file and
/// copy the root store once, not per connection). Keyed by the CA file it was built from,
/// because [`ClientConfig::ca_file`] is a public field that may change after a clone.
#[derive(Clone, Default)]
pub(crate) struct TlsCache(Arc<Mutex<Option<Cached>>>);

/// A built configuration and the CA file it was built from.
type Cached = (Option<PathBuf>, Arc<rustls::ClientConfig>);

impl fmt::Debug for TlsCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsCache")
    }
}

impl TlsCache {
    fn get(&self, ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, ClientError> {
        // A std mutex: held only to compare and clone an Arc, never across an await.
        let mut slot = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((key, config)) = slot.as_ref() {
            if key.as_deref() == ca_file {
                return Ok(config.clone());
            }
        }
        let config = Arc::new(rustls_config(ca_file)?);
        *slot = Some((ca_file.map(Path::to_path_buf), config.clone()));
        Ok(config)
    }
}

/// Builds the rustls client configuration: Mozilla's roots (webpki-roots), or only the CAs in
/// `ca_file`; the `ring` provider; ALPN `http/1.1`.
fn rustls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let bad = |why: String| ClientError::Tls(format!("CA file {}: {why}", path.display()));
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
                let cert = cert.map_err(|e| bad(e.to_string()))?;
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(bad("no PEM certificate in it".into()));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

macro_rules! both {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Self::Plain($s) => $e,
            Self::Tls($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        both!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        both!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        both!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        both!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        both!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        both!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        both!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        both!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

impl fmt::Debug for ReadHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Plain(_) => "ReadHalf::Plain",
            Self::Tls(_) => "ReadHalf::Tls",
        })
    }
}

impl fmt::Debug for WriteHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Plain(_) => "WriteHalf::Plain",
            Self::Tls(_) => "WriteHalf::Tls",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_roots_are_cached_per_ca_file() -> Result<(), ClientError> {
        let cache = TlsCache::default();
        let a = cache.get(None)?;
        let b = cache.clone().get(None)?;
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.alpn_protocols, [b"http/1.1".to_vec()]);
        Ok(())
    }

    #[test]
    fn a_bad_ca_file_is_a_tls_error() -> Result<(), Box<dyn std::error::Error>> {
        let missing = TlsCache::default().get(Some(Path::new("/nonexistent/ca.pem")));
        assert!(matches!(missing, Err(ClientError::Tls(_))), "{missing:?}");
        let dir = tempfile::tempdir()?;
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n")?;
        let got = TlsCache::default().get(Some(&empty));
        assert!(
            matches!(&got, Err(ClientError::Tls(m)) if m.contains("no PEM")),
            "{got:?}"
        );
        Ok(())
    }
}
