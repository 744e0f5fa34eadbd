//! Evidence export: records plus a signed manifest that `verify-export` checks without the store.

use std::path::Path;
use std::process::Command;

use jiff::{SignedDuration, Timestamp};
use khetnet_retention::export::{Format, verify_export};
use khetnet_retention::query::Query;
use khetnet_retention::signing::{Keys, read_public};
use khetnet_retention::testing::{flow, opts_at};
use khetnet_retention::{Record, Store};

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn store_with_flows(dir: &Path) -> Store {
    let store = Store::init(dir, &opts_at(t("2026-02-01T00:00:00Z"))).unwrap();
    store.append((0..300).map(flow).collect()).unwrap();
    store.seal_now().unwrap();
    let mut raw = flow(300);
    raw.body = khetnet_retention::record::Body::Raw(khetnet_retention::record::Raw {
        protocol: "syslog".into(),
        data: b"line one,\n\"quoted\" line two".to_vec(),
        reason: None,
    });
    store.append(vec![raw]).unwrap();
    store
}

fn day() -> Query {
    Query::between(
        t("2026-01-01T00:00:00Z"),
        t("2026-01-01T00:00:00Z") + SignedDuration::from_hours(24),
    )
}

#[test]
fn an_export_holds_exactly_the_matching_records_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_flows(&tmp.path().join("store"));
    for (format, file) in [
        (Format::Jsonl, "records.jsonl"),
        (Format::Csv, "records.csv"),
    ] {
        let out = tmp.path().join(file);
        let q = Query {
            ip: Some("10.0.0.7".parse().unwrap()),
            ..day()
        };
        let m = store.export("officer", &q, format, &out, false).unwrap();
        assert_eq!(m.records, 1);
        assert_eq!(m.files[0].name, file);
        assert_eq!(m.actor, "officer");
        assert!(m.query.contains("--ip 10.0.0.7"));
        let check = verify_export(&out, Some(store.keys().public())).unwrap();
        assert!(check.ok, "{:?}", check.problems);
        if format == Format::Jsonl {
            let line = std::fs::read_to_string(out.join(file)).unwrap();
            let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
            let r: Record = serde_json::from_value(v["record"].clone()).unwrap();
            assert_eq!(r, flow(7));
        }
    }
    // All 301 records, the raw one with a line break and quotes, one line each.
    let out = tmp.path().join("all");
    let m = store
        .export("officer", &day(), Format::Csv, &out, false)
        .unwrap();
    assert_eq!(m.records, 301);
    assert_eq!(m.by_kind["flow"], 300);
    assert!(verify_export(&out, None).unwrap().ok);
    let csv = std::fs::read_to_string(out.join("records.csv")).unwrap();
    assert_eq!(csv.lines().count(), 302);
    assert!(
        csv.contains("\"line one,\\n\"\"quoted\"\" line two\""),
        "{}",
        csv.lines().last().unwrap()
    );
    // Refuses to write into a directory that already holds files.
    assert!(
        store
            .export("officer", &day(), Format::Csv, &out, false)
            .is_err()
    );
}

#[test]
fn a_changed_export_is_caught_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_flows(&tmp.path().join("store"));
    let fresh = |name: &str| {
        let out = tmp.path().join(name);
        store
            .export("officer", &day(), Format::Jsonl, &out, false)
            .unwrap();
        out
    };
    let check = |dir: &Path, key: Option<ed25519_dalek::VerifyingKey>, needle: &str| {
        let c = verify_export(dir, key).unwrap();
        assert!(!c.ok, "tampering went unnoticed");
        assert!(
            c.problems.iter().any(|p| p.contains(needle)),
            "{needle}: {:?}",
            c.problems
        );
    };
    let key = Some(store.keys().public());

    let out = fresh("edited");
    let f = out.join("records.jsonl");
    let text = std::fs::read_to_string(&f)
        .unwrap()
        .replacen("10.0.0.5", "10.0.0.6", 1);
    std::fs::write(&f, text).unwrap();
    check(&out, key, "records.jsonl does not match its SHA-256");

    let out = fresh("dropped");
    let f = out.join("records.jsonl");
    let text = std::fs::read_to_string(&f).unwrap();
    let kept: Vec<&str> = text.lines().skip(1).collect();
    std::fs::write(&f, kept.join("\n") + "\n").unwrap();
    check(&out, key, "holds 300 records, the manifest says 301");

    let out = fresh("manifest");
    let m = out.join("manifest.json");
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replace("\"officer\"", "\"someone-else\"");
    std::fs::write(&m, text).unwrap();
    check(&out, key, "not signed by the store key");

    // Re-signed with another key: passes only if the officer does not supply the real one.
    let out = fresh("resigned");
    let other = Keys::create(&tmp.path().join("other-key").tap_mkdir()).unwrap();
    let bytes = std::fs::read(out.join("manifest.json")).unwrap();
    std::fs::write(out.join("manifest.sig"), other.sign_hex(&bytes)).unwrap();
    check(&out, key, "not signed by the store key");
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn the_cli_exports_and_verify_export_exits_zero_only_when_intact() {
    let bin = env!("CARGO_BIN_EXE_khetnet-retention");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    drop(store_with_flows(&dir));
    let out = tmp.path().join("case-42");
    let run = |args: &[&str]| Command::new(bin).args(args).output().unwrap();
    let export = run(&[
        "--store",
        dir.to_str().unwrap(),
        "--actor",
        "officer-kanya",
        "export",
        "--from",
        "2026-01-01T07:00:00+07:00",
        "--to",
        "2026-01-02T07:00:00+07:00",
        "--port",
        "443",
        "--format",
        "csv",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let key = dir.join("public-key.txt");
    read_public(&key).unwrap();
    let verify = |extra: &[&str]| {
        let mut args = vec![
            "verify-export",
            out.to_str().unwrap(),
            "--public-key",
            key.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let ok = verify(&[]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("300 records"));
    let f = out.join("records.csv");
    let mut bytes = std::fs::read(&f).unwrap();
    let n = bytes.len();
    bytes.truncate(n - 20);
    std::fs::write(&f, bytes).unwrap();
    let bad = verify(&["--json"]);
    assert_eq!(bad.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap();
    assert_eq!(v["ok"], false);
    // The export itself was logged with the officer's name.
    let search = run(&[
        "--store",
        dir.to_str().unwrap(),
        "--json",
        "search",
        "--from",
        "2026-01-01T00:00:00Z",
        "--to",
        "2030-01-01T00:00:00Z",
        "--user",
        "officer-kanya",
    ]);
    let text = String::from_utf8_lossy(&search.stdout);
    assert!(text.contains("\"action\":\"export\""), "{text}");
}
