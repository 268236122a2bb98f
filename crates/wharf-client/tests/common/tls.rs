//! A test PKI generated per run (rcgen) and a TLS-terminating proxy, so `wss://` can be
//! tested against any plain `ws://` server. Also used by `crates/wharf-app/tests` through
//! `#[path]`.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

/// The names on the server certificate (no IP address, so `wss://127.0.0.1` needs a
/// server-name override).
pub const CERT_NAMES: [&str; 2] = ["localhost", "wharf.test"];

/// A CA and a server certificate signed by it, written as PEM files into a temp dir.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    /// The CA certificate (what `--ca-file` takes).
    pub ca_pem: PathBuf,
    /// The server certificate and its key.
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    /// Another CA, which did not sign the server certificate.
    pub other_ca_pem: PathBuf,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn ca(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

impl TestPki {
    pub fn generate() -> Result<TestPki, Error> {
        let dir = tempfile::tempdir()?;
        let issuer = ca("wharf test CA")?;
        let other = ca("some other CA")?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(CERT_NAMES.map(String::from).to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &issuer)?;
        let write = |name: &str, pem: String| -> Result<PathBuf, Error> {
            let path = dir.path().join(name);
            std::fs::write(&path, pem)?;
            Ok(path)
        };
        Ok(TestPki {
            ca_pem: write("ca.pem", issuer.pem())?,
            cert_pem: write("cert.pem", cert.pem())?,
            key_pem: write("key.pem", key.serialize_pem())?,
            other_ca_pem: write("other-ca.pem", other.pem())?,
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
            dir,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A rustls server configuration serving the certificate.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der.clone()], key)?;
        Ok(Arc::new(config))
    }

    /// Listens on 127.0.0.1 (any port), terminates TLS and forwards the bytes to `backend`;
    /// runs until the runtime stops.
    pub async fn proxy(&self, backend: SocketAddr) -> Result<SocketAddr, Error> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server_config()?);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                });
            }
        });
        Ok(addr)
    }
}
