//! TLS for syslog (RFC 5425) with rustls and the ring provider; client certificates optional.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::{Error, Result};

/// Where the certificate, key and (optional) client CA are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by one of these CAs.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Reads the files and builds the acceptor.
    ///
    /// # Errors
    /// [`Error::Tls`] naming the file and what is wrong with it.
    pub fn acceptor(&self) -> Result<TlsAcceptor> {
        let certs = read_certs(&self.cert)?;
        let key = read_key(&self.key)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(&self.cert, e.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in read_certs(ca)? {
                    roots
                        .add(cert)
                        .map_err(|e| tls_error(ca, format!("not a usable CA certificate: {e}")))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| tls_error(ca, e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| tls_error(&self.key, format!("does not match the certificate: {e}")))?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

fn tls_error(path: &Path, reason: String) -> Error {
    Error::Tls {
        path: path.to_owned(),
        reason,
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path).map_err(|e| tls_error(path, format!("cannot read: {e}")))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &bytes[..])
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| tls_error(path, format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(path, "holds no PEM CERTIFICATE".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let bytes = std::fs::read(path).map_err(|e| tls_error(path, format!("cannot read: {e}")))?;
    rustls_pemfile::private_key(&mut &bytes[..])
        .map_err(|e| tls_error(path, format!("not PEM: {e}")))?
        .ok_or_else(|| tls_error(path, "holds no PEM private key".into()))
}
