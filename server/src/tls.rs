//! TLS for the web server (rustls with the ring provider): a configured certificate, or a
//! self-signed one generated once into the data directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Makes ring rustls's process-wide provider; harmless when already done.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The certificate and key to serve with.
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Returns the self-signed certificate in `data_dir/tls`, creating it on first use. It names
/// `localhost`, the loopback addresses, this machine's host name and `extra_names`.
pub fn self_signed(data_dir: &Path, extra_names: &[String]) -> Result<CertFiles> {
    let dir = data_dir.join("tls");
    let files = CertFiles {
        cert: dir.join("self-signed.crt"),
        key: dir.join("self-signed.key"),
    };
    if files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_owned());
        }
    }
    names.extend(extra_names.iter().cloned());
    let certified =
        rcgen::generate_simple_self_signed(names).map_err(|e| Error::Tls(e.to_string()))?;
    std::fs::write(&files.cert, certified.cert.pem())
        .map_err(Error::io(format!("writing {}", files.cert.display())))?;
    write_private(&files.key, certified.signing_key.serialize_pem().as_bytes())?;
    Ok(files)
}

/// Writes a secret readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io(format!("creating {}", path.display())))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(Error::io(format!("writing {}", path.display())))
}

/// Loads a certificate chain and key into the web server's TLS configuration.
pub async fn server_config(files: &CertFiles) -> Result<axum_server::tls_rustls::RustlsConfig> {
    install_crypto_provider();
    axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key)
        .await
        .map_err(|e| {
            Error::Tls(format!(
                "cannot load certificate {} and key {}: {e}; check both are PEM and belong together",
                files.cert.display(),
                files.key.display()
            ))
        })
}
