//! A really full disk (a 1 MiB tmpfs): appends fail with `DiskFull`, nothing half-written stays,
//! and appending resumes once space returns. Needs root to mount; elsewhere it says so and
//! passes without checking (the fault-injection unit test in `store.rs` still runs).

use std::path::{Path, PathBuf};
use std::process::Command;

use jiff::Timestamp;
use khetnet_retention::query::{self, Query};
use khetnet_retention::testing::{flow, opts_at};
use khetnet_retention::verify::{VerifyOptions, verify};
use khetnet_retention::{Error, Store};

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_small_tmpfs(at: &Path) -> Option<Mount> {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(at)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mount(at.to_owned()))
}

#[test]
fn a_full_disk_refuses_appends_corrupts_nothing_and_appending_resumes_when_space_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(_mount) = mount_small_tmpfs(tmp.path()) else {
        eprintln!("skipped: cannot mount a tmpfs here (not root)");
        return;
    };
    let dir = tmp.path().join("store");
    let opts = opts_at("2026-01-01T00:00:00Z".parse().unwrap());
    let store = Store::init(&dir, &opts).unwrap();
    let filler = tmp.path().join("filler");
    std::fs::write(&filler, vec![0u8; 256 << 10]).unwrap();

    let mut acked = 0u64;
    let err = loop {
        match store.append((0..20).map(|i| flow(acked as u32 + i)).collect()) {
            Ok(r) => acked = r.chained.unwrap().first_record + r.records,
            Err(e) => break e,
        }
        assert!(acked < 100_000, "the disk never filled");
    };
    assert!(matches!(err, Error::DiskFull { .. }), "{err}");
    assert!(err.to_string().contains("free space"), "{err}");
    assert!(
        store.append((0..20).map(flow).collect()).is_err(),
        "the same batch still does not fit"
    );

    let all = Query::between(Timestamp::MIN, Timestamp::MAX);
    let count = |store: &Store| query::search(&store.view().unwrap(), &all).unwrap().0.len() as u64;
    assert_eq!(
        count(&store),
        acked,
        "exactly the acknowledged records are stored"
    );
    let report = verify(&dir, &VerifyOptions::default()).unwrap();
    assert!(report.intact, "{:#?}", report.problems);

    std::fs::remove_file(&filler).unwrap();
    let r = store.append(vec![flow(1)]).unwrap();
    assert_eq!(r.chained.unwrap().first_record, acked);
    store.sign_now().unwrap();
    assert_eq!(count(&store), acked + 1);
    let report = verify(&dir, &VerifyOptions::default()).unwrap();
    assert!(report.intact, "{:#?}", report.problems);
}
