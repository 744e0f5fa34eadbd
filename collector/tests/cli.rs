//! The `khetnet-collector` binary: `import` of plain and gzip files, and `run` refusing bad
//! settings with the key's name.

mod common;

use std::io::Write;
use std::process::Command;

use khetnet_retention::record::{Body, Input};
use khetnet_retention::{Options, Store};

fn collector() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_khetnet-collector"));
    cmd.env_remove("KHETNET_CONFIG");
    cmd
}

#[test]
fn import_plain_and_gzip_files() {
    let dir = tempfile::tempdir().unwrap();
    let text = "Nov 20 10:59:59 dhcp dhcpd[812]: DHCPACK on 10.0.0.5 to aa:bb:cc:dd:ee:ff (pc) via eth1\n\
                1795233598.500 12 10.0.0.5 TCP_MISS/200 100 GET http://example.com/ - HIER_DIRECT/1.2.3.4 -\n\
                something else entirely\n";
    let plain = dir.path().join("messages");
    std::fs::write(&plain, text).unwrap();
    let gz = dir.path().join("messages.1.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
    let store = dir.path().join("store");
    let output = collector()
        .args(["import", "--format", "syslog", "--store"])
        .arg(&store)
        .arg(&plain)
        .arg(&gz)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("3 lines (2 parsed, 1 raw)"),
        "a summary per file: {stdout}"
    );
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    // Not a terminal: no progress bar on stderr.
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let store = Store::open_read(&store, &Options::default()).unwrap();
    let records = common::stored(&store);
    assert_eq!(records.len(), 6);
    assert!(records.iter().all(|r| r.origin.input == Input::Import
        && r.origin.import_sha256.is_some()
        && r.receive_time == r.event_time));
    let proxy = records
        .iter()
        .find(|r| matches!(r.body, Body::Proxy(_)))
        .unwrap();
    assert_eq!(proxy.receive_time.to_string(), "2026-11-21T03:59:58.5Z");
}

#[test]
fn import_refuses_other_formats() {
    let output = collector()
        .args(["import", "--store", "/nonexistent", "--format", "csv", "x"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("syslog"));
}

#[test]
fn run_refuses_a_bad_allow_entry_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = collector()
        .args(["run", "--store"])
        .arg(dir.path().join("store"))
        .args(["--allow", "10.0.0.1/8=S1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("collector.allow") && stderr.contains("did you mean 10.0.0.0/8"),
        "{stderr}"
    );
}
