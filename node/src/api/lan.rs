//! The web UI on the LAN, for the member's phone or tablet on rounds: the same pages as on
//! 127.0.0.1, served over TLS (rustls) with a certificate made for this node on its first
//! start and kept in the home (`tls/`). Its fingerprint (base64 of the SHA-256 of its public
//! key, what browsers pin) is shown beside the phone's pairing QR, so the member can check
//! the phone reached this node and nothing else. Who gets in is decided by
//! [`super::phones`]: only a paired phone's session.
//!
//! TLS handshakes run apart from the accept loop, at most [`MAX_HANDSHAKES`] at once and
//! each within [`HANDSHAKE_TIMEOUT`], so a LAN host that opens connections and says nothing
//! holds no more than that.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Handshakes under way at once, at most.
pub const MAX_HANDSHAKES: usize = 32;
/// A handshake not done after this long is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const TLS_DIR: &str = "tls";
const CERT_FILE: &str = "cert.der";
const KEY_FILE: &str = "key.der";

/// Why the LAN listener could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LanError {
    #[error("cannot read or write the node's TLS certificate in {path}: {reason}")]
    Files { path: PathBuf, reason: String },
    #[error("cannot make the node's TLS certificate: {0}")]
    Certificate(String),
    #[error("cannot serve the web UI on {address}: {reason}")]
    Bind { address: SocketAddr, reason: String },
}

/// The node's TLS certificate and key.
pub struct NodeCertificate {
    cert: Vec<u8>,
    key: zeroize::Zeroizing<Vec<u8>>,
    /// Base64 of the SHA-256 of the certificate's public key (SPKI).
    pub fingerprint: String,
}

impl std::fmt::Debug for NodeCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCertificate")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl NodeCertificate {
    /// The certificate kept in `home`, made (for `names`) on first use.
    pub fn load_or_make(home: &Path, names: &[String]) -> Result<NodeCertificate, LanError> {
        let dir = home.join(TLS_DIR);
        let files = |e: &dyn std::fmt::Display| LanError::Files {
            path: dir.clone(),
            reason: e.to_string(),
        };
        let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
        if cert_path.exists() && key_path.exists() {
            let cert = std::fs::read(&cert_path).map_err(|e| files(&e))?;
            let key = zeroize::Zeroizing::new(std::fs::read(&key_path).map_err(|e| files(&e))?);
            let pair = rcgen::KeyPair::try_from(key.as_slice()).map_err(|e| files(&e))?;
            return Ok(NodeCertificate {
                fingerprint: spki_fingerprint(&pair.public_key_der()),
                cert,
                key,
            });
        }
        let pair = rcgen::KeyPair::generate().map_err(|e| LanError::Certificate(e.to_string()))?;
        let mut names = names.to_vec();
        names.push("localhost".into());
        let mut params = rcgen::CertificateParams::new(names)
            .map_err(|e| LanError::Certificate(e.to_string()))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Cercle node");
        let cert = params
            .self_signed(&pair)
            .map_err(|e| LanError::Certificate(e.to_string()))?;
        crate::home::create_dir(&dir).map_err(|e| files(&e))?;
        let key = zeroize::Zeroizing::new(pair.serialize_der());
        crate::home::write_private(&key_path, &key).map_err(|e| files(&e))?;
        crate::home::write_private(&cert_path, cert.der()).map_err(|e| files(&e))?;
        Ok(NodeCertificate {
            fingerprint: spki_fingerprint(&pair.public_key_der()),
            cert: cert.der().to_vec(),
            key,
        })
    }

    fn acceptor(&self) -> Result<TlsAcceptor, LanError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(self.key.to_vec()),
        );
        let cert = rustls::pki_types::CertificateDer::from(self.cert.clone());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| LanError::Certificate(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .map_err(|e| LanError::Certificate(e.to_string()))?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// What browsers pin: base64 of the SHA-256 of a public key's DER (SubjectPublicKeyInfo).
fn spki_fingerprint(spki: &[u8]) -> String {
    use sha2::Digest as _;
    data_encoding::BASE64.encode(&sha2::Sha256::digest(spki))
}

/// A TLS listener for axum: handshakes done apart, bounded; only completed ones accepted.
pub struct TlsListener {
    done: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Listens on `address` with `certificate`.
    pub async fn bind(
        address: SocketAddr,
        certificate: &NodeCertificate,
    ) -> Result<TlsListener, LanError> {
        let bind = |reason: String| LanError::Bind { address, reason };
        let tcp = TcpListener::bind(address)
            .await
            .map_err(|e| bind(e.to_string()))?;
        let local = tcp.local_addr().map_err(|e| bind(e.to_string()))?;
        let acceptor = certificate.acceptor()?;
        let (tx, done) = mpsc::channel(MAX_HANDSHAKES);
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(error = %e, "a LAN connection could not be accepted");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Over the bound, a new connection is closed at once.
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    tracing::debug!(%peer, "too many TLS handshakes under way; a connection was closed");
                    continue;
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let shake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    match shake.await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "a TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "a TLS handshake timed out"),
                    }
                    drop(permit);
                });
            }
        });
        Ok(TlsListener { done, local, task })
    }
}

impl TlsListener {
    /// The address it listens on.
    pub fn local_addr_known(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Some(accepted) = self.done.recv().await {
                return accepted;
            }
            // The accept task ended (it never does but when aborted): nothing more comes.
            std::future::pending::<()>().await;
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_is_made_once_and_its_fingerprint_kept() {
        let home = tempfile::tempdir().unwrap();
        let first = NodeCertificate::load_or_make(home.path(), &["10.0.0.2".into()]).unwrap();
        let again = NodeCertificate::load_or_make(home.path(), &["10.0.0.2".into()]).unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
        assert_eq!(first.cert, again.cert);
        assert_eq!(
            data_encoding::BASE64
                .decode(first.fingerprint.as_bytes())
                .unwrap()
                .len(),
            32
        );
        assert!(first.acceptor().is_ok());
        assert!(!format!("{first:?}").contains(&hex::encode(&first.key[..8])));
    }
}
