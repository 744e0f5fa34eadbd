//! What the agent keeps in its state directory:
//!
//! - `credential.json` (mode 0600): the server URL, the agent's id, school and credential, and
//!   the CA file to trust (copied into the state directory at enrollment).
//! - `config.json`: the last configuration the server gave (targets and settings), so the agent
//!   starts and probes without the server.
//! - `spool/`: reports not yet acknowledged (see [`crate::spool`]).
//!
//! Files are written to a temporary name, synced, then renamed over the old one, so a crash
//! leaves either the old or the new file, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::probe::Target;
use crate::{Error, Result};

/// The agent's identity, from enrollment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credential {
    pub server_url: String,
    pub agent_id: i64,
    pub school_id: i64,
    pub credential: String,
    /// PEM CA certificate(s) to trust for the server, instead of the system's roots.
    pub ca_cert: Option<PathBuf>,
}

/// Targets and settings, as `GET /api/v1/agent/config` gives them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentConfig {
    pub agent_id: i64,
    pub school_id: i64,
    pub report_interval_secs: u64,
    pub config_refresh_secs: u64,
    pub targets: Vec<Target>,
}

pub fn credential_path(state_dir: &Path) -> PathBuf {
    state_dir.join("credential.json")
}

pub fn config_path(state_dir: &Path) -> PathBuf {
    state_dir.join("config.json")
}

/// Reads the credential, saying how to get one when it is missing.
pub fn load_credential(state_dir: &Path) -> Result<Credential> {
    let path = credential_path(state_dir);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::State {
        path: path.clone(),
        message: if e.kind() == std::io::ErrorKind::NotFound {
            "no credential: run `khetnet-agent enroll --server URL --token TOKEN` first".into()
        } else {
            e.to_string()
        },
    })?;
    serde_json::from_str(&text).map_err(|e| Error::State {
        path,
        message: format!("unreadable credential ({e}); enroll again"),
    })
}

pub fn save_credential(state_dir: &Path, credential: &Credential) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(credential).expect("credential serializes");
    write_atomic(&credential_path(state_dir), &bytes, 0o600)
}

/// The cached configuration, if any. An unreadable cache is ignored (with a warning): the
/// server will send a fresh one.
pub fn load_config(state_dir: &Path) -> Option<AgentConfig> {
    let path = config_path(state_dir);
    let text = std::fs::read_to_string(&path).ok()?;
    match serde_json::from_str(&text) {
        Ok(config) => Some(config),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "ignoring an unreadable cached configuration");
            None
        }
    }
}

/// Caches the configuration, readable only by the agent's user: it holds SNMP communities and
/// SNMPv3 passphrases.
pub fn save_config(state_dir: &Path, config: &AgentConfig) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(config).expect("config serializes");
    write_atomic(&config_path(state_dir), &bytes, 0o600)
}

/// Writes `bytes` to `path` durably: temporary file, fsync, rename, fsync of the folder.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(Error::io(format!("creating {}", tmp.display())))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(Error::io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(Error::io(format!("renaming to {}", path.display())))?;
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(format!("syncing {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_round_trip_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let err = load_credential(dir.path()).unwrap_err().to_string();
        assert!(err.contains("khetnet-agent enroll"), "{err}");
        let c = Credential {
            server_url: "https://127.0.0.1:8443".into(),
            agent_id: 3,
            school_id: 7,
            credential: "kha_x".into(),
            ca_cert: None,
        };
        save_credential(dir.path(), &c).unwrap();
        let back = load_credential(dir.path()).unwrap();
        assert_eq!(back.agent_id, 3);
        let mode = std::fs::metadata(credential_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
