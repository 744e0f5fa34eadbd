//! The `khetnet-agent` binary: a bad configuration is refused at start naming the key; a
//! missing enrollment says what to run; `service install` writes the unit.

use std::process::Command;

fn agent(args: &[&str], config: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(
        &file,
        config.replace("STATE", &dir.path().join("state").display().to_string()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_khetnet-agent"))
        .arg("--config")
        .arg(&file)
        .args(args)
        .env_remove("KHETNET_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_config_is_refused_naming_the_key() {
    let check = |config: &str, key: &str| {
        let (ok, _, err) = agent(&["run"], config);
        assert!(!ok, "{config} was accepted");
        assert!(err.contains(key), "{config}: {err}");
    };
    check("[agent]\nmax_concurrency = 0\n", "agent.max_concurrency");
    check(
        "[agent]\nspool_max_batches = 1\n",
        "agent.spool_max_batches",
    );
    check("[agent]\ncolour = \"red\"\n", "colour");
    check(
        "[agent]\nprobe_timeout_secs = \"soon\"\n",
        "agent.probe_timeout_secs",
    );
}

#[test]
fn run_before_enrollment_says_what_to_do() {
    let (ok, _, err) = agent(&["run"], "[agent]\nstate_dir = \"STATE\"\n");
    assert!(!ok);
    assert!(
        err.contains("khetnet-agent enroll --server URL --token TOKEN"),
        "{err}"
    );
}

#[test]
fn service_install_writes_the_unit() {
    let units = tempfile::tempdir().unwrap();
    let (ok, out, err) = agent(
        &[
            "service",
            "install",
            "--unit-dir",
            &units.path().display().to_string(),
        ],
        "[agent]\nstate_dir = \"STATE\"\n",
    );
    assert!(ok, "{err}");
    assert!(out.contains("systemctl daemon-reload"), "{out}");
    let unit = std::fs::read_to_string(units.path().join("khetnet-agent.service")).unwrap();
    assert!(unit.contains(env!("CARGO_BIN_EXE_khetnet-agent")), "{unit}");
    assert!(unit.contains("run\n"));
}
