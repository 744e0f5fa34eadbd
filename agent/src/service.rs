//! `khetnet-agent service install`: the systemd unit shipped in `agent/khetnet-agent.service`,
//! pointed at this binary and configuration file.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The unit as shipped in the repository.
pub const UNIT: &str = include_str!("../khetnet-agent.service");

/// The unit text for `binary` and `config`.
pub fn unit_for(binary: &Path, config: &Path) -> String {
    UNIT.replace(
        "/usr/local/bin/khetnet-agent",
        &binary.display().to_string(),
    )
    .replace("/etc/khetnet/agent.toml", &config.display().to_string())
}

/// Writes `khetnet-agent.service` into `unit_dir` and returns its path.
pub fn install(unit_dir: &Path, binary: &Path, config: &Path) -> Result<PathBuf> {
    if !config.exists() {
        return Err(Error::Config(format!(
            "{}: no such configuration file; write one with an [agent] section first (see config/khetnet.example.toml)",
            config.display()
        )));
    }
    let path = unit_dir.join("khetnet-agent.service");
    crate::state::write_atomic(&path, unit_for(binary, config).as_bytes(), 0o644)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_points_at_the_binary_and_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("agent.toml");
        assert!(install(dir.path(), Path::new("/opt/k/khetnet-agent"), &config).is_err());
        std::fs::write(&config, "[agent]\n").unwrap();
        let path = install(dir.path(), Path::new("/opt/k/khetnet-agent"), &config).unwrap();
        let unit = std::fs::read_to_string(path).unwrap();
        assert!(
            unit.contains(&format!(
                "ExecStart=/opt/k/khetnet-agent --config {} run",
                config.display()
            )),
            "{unit}"
        );
        assert!(unit.contains("Restart=always"));
    }
}
