//! `khetnet-agent enroll`: exchanges a one-time enrollment token for the agent's credential.

use std::path::Path;

use crate::client::Client;
use crate::state::{self, Credential};
use crate::{Error, Result};

/// Enrolls with the server at `server_url`, saves the credential (and a copy of the CA file)
/// in `state_dir`, then pulls and caches the configuration once to prove it works.
///
/// Plain `http://` is refused except to a loopback address: the credential would cross the
/// network in clear.
///
/// # Errors
/// A bad URL, an unreadable CA file, a TLS failure (wrong CA), a refused token.
pub async fn enroll(
    state_dir: &Path,
    server_url: &str,
    token: &str,
    ca_cert: Option<&Path>,
    name: Option<String>,
) -> Result<Credential> {
    let server_url = server_url.trim_end_matches('/');
    let rest = if let Some(rest) = server_url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = server_url.strip_prefix("http://") {
        let host = rest.split(['/', ':']).next().unwrap_or("");
        let host = if rest.starts_with('[') {
            rest.trim_start_matches('[').split(']').next().unwrap_or("")
        } else {
            host
        };
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(Error::Config(format!(
                "--server {server_url}: use https:// (the credential would cross the network in clear); \
                 start the server with --tls-self-signed and pass its certificate with --ca-cert"
            )));
        }
        rest
    } else {
        return Err(Error::Config(format!(
            "--server {server_url}: must start with https://"
        )));
    };
    if rest.is_empty() {
        return Err(Error::Config("--server: the URL names no host".into()));
    }
    std::fs::create_dir_all(state_dir)
        .map_err(Error::io(format!("creating {}", state_dir.display())))?;
    // Keep our own copy of the CA, so the service does not depend on where it was downloaded.
    let ca_copy = match ca_cert {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(Error::io(format!("reading the CA file {}", path.display())))?;
            let copy = state_dir.join("server-ca.pem");
            state::write_atomic(&copy, &pem, 0o644)?;
            Some(copy)
        }
        None => None,
    };
    let name = name.unwrap_or_else(host_name);
    let client = Client::new(server_url, ca_copy.as_deref(), None)?;
    let enrolled = client.enroll(token.trim(), &name).await?;
    let credential = Credential {
        server_url: server_url.to_owned(),
        agent_id: enrolled.agent_id,
        school_id: enrolled.school_id,
        credential: enrolled.credential,
        ca_cert: ca_copy,
    };
    state::save_credential(state_dir, &credential)?;
    let client = Client::new(
        server_url,
        credential.ca_cert.as_deref(),
        Some(credential.credential.clone()),
    )?;
    let config = client.config().await?;
    state::save_config(state_dir, &config)?;
    Ok(credential)
}

/// This machine's host name, the agent's default name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "khetnet-agent".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plain_http_only_to_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let check = |url: &'static str| {
            let dir = dir.path().to_owned();
            async move {
                enroll(&dir, url, "t", None, Some("a".into()))
                    .await
                    .unwrap_err()
                    .to_string()
            }
        };
        assert!(
            check("http://192.0.2.1:8080")
                .await
                .contains("use https://")
        );
        assert!(check("ftp://x").await.contains("must start with https://"));
        // Loopback plain HTTP is allowed; nothing listens on port 9, so it fails later.
        assert!(
            check("http://127.0.0.1:9")
                .await
                .contains("the server at http://127.0.0.1:9")
        );
    }
}
