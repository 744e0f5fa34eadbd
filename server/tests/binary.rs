//! The `khetnet` binary as a newcomer meets it: first start prints the admin password once,
//! the server answers, SIGTERM stops it cleanly; `config check` names bad keys.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_khetnet");

#[test]
fn first_start_prints_the_admin_password_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .env_remove("KHETNET_ADMIN_PASSWORD")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut password, mut url) = (None, None);
    while url.is_none() {
        let line = lines
            .next()
            .expect("the server printed its address")
            .unwrap();
        if let Some(rest) = line.split("with password ").nth(1) {
            password = Some(rest.trim().to_owned());
        }
        if let Some(rest) = line.strip_prefix("khetnet: serving ") {
            url = Some(rest.trim_end_matches('/').to_owned());
        }
    }
    let (password, url) = (
        password.expect("a generated password was printed"),
        url.unwrap(),
    );
    assert!(
        password.len() >= 20,
        "a strong generated password: {password}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let resp = client
            .post(format!("{url}/api/v1/auth/login"))
            .json(&serde_json::json!({ "username": "admin", "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let health: serde_json::Value = client
            .get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let collector = health["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "collector")
            .cloned();
        assert!(
            collector.is_some(),
            "the embedded collector's state is reported: {health}"
        );
    });

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not stop within 15 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "clean exit on SIGTERM: {status}");

    // A second start on the same data prints no password: it was shown only once. (It stops
    // at once on a port that is taken, after the database step that would print it.)
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let output = Command::new(BIN)
        .args([
            "serve",
            "--no-collector",
            "--listen",
            &taken.local_addr().unwrap().to_string(),
            "--data",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("password"), "{stdout}");
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["serve", "--no-collector", "--listen", &addr, "--data"])
        .arg(dir.path())
        .env("KHETNET_ADMIN_PASSWORD", "a good admin password")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&addr) && stderr.contains("--listen"),
        "{stderr}"
    );
}

#[test]
fn config_check_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        let path = dir.path().join("khetnet.toml");
        std::fs::write(&path, text).unwrap();
        Command::new(BIN)
            .args(["config", "check"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let ok = check("[server]\nlisten = \"127.0.0.1:9000\"\n");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = check("[retention]\nretention_days = 7\n");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("retention.retention_days") && stderr.contains("90"),
        "{stderr}"
    );
    let example = Command::new(BIN)
        .args(["config", "example"])
        .output()
        .unwrap();
    let text = String::from_utf8(example.stdout).unwrap();
    std::fs::write(dir.path().join("example.toml"), &text).unwrap();
    let checked = Command::new(BIN)
        .args(["config", "check"])
        .arg(dir.path().join("example.toml"))
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "the printed example is a valid file"
    );
}
