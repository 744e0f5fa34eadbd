//! Holds and purge: purge removes only whole segments past retention and outside every active
//! hold, leaves signed tombstones, and verify tells it from deletion.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use jiff::{SignedDuration, Timestamp};
use khetnet_retention::holds::{HoldRequest, holds};
use khetnet_retention::query::{self, Query};
use khetnet_retention::testing::{ManualClock, flow};
use khetnet_retention::verify::{ProblemKind, VerifyOptions, verify};
use khetnet_retention::{Error, Options, Store};

const DAY: SignedDuration = SignedDuration::from_hours(24);

fn day(d: i64) -> Timestamp {
    "2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap() + DAY * d as i32
}

fn hold(case: &str, d: i64, ip: Option<&str>, user: Option<&str>, until: Timestamp) -> HoldRequest {
    HoldRequest {
        case: case.into(),
        from: day(d),
        to: day(d) + SignedDuration::from_hours(23),
        ip: ip.map(|s| s.parse().unwrap()),
        user: user.map(str::to_owned),
        until,
        reason: format!("order for case {case}"),
    }
}

/// Ten daily segments (day d holds flows n = 1000 d .. 1000 d + 19, received that day), and
/// holds on day 3 (by IP, placed on day 1), day 5 (by a user no record names), day 7
/// (released) and day 8 (expired by day 60).
fn fixture(dir: &Path) -> (Store, ManualClock) {
    let clock = ManualClock::new(day(0));
    let opts = Options {
        clock: clock.clock(),
        ..Options::default()
    };
    let store = Store::init(dir, &opts).unwrap();
    for d in 0..10 {
        clock.set(day(d));
        let records = (0..20u32)
            .map(|i| {
                let mut r = flow(d as u32 * 1000 + i);
                r.event_time = day(d) + SignedDuration::from_secs(i.into());
                r.receive_time = r.event_time;
                r
            })
            .collect();
        store.append(records).unwrap();
        if d == 1 {
            // flow(3006) comes from 10.0.11.190.
            store
                .hold_add(
                    "officer",
                    hold("C-3", 3, Some("10.0.11.190"), None, day(1) + DAY * 700),
                )
                .unwrap();
        }
        store.seal_now().unwrap();
    }
    clock.set(day(10));
    store
        .hold_add("officer", hold("C-5", 5, None, Some("nobody"), day(400)))
        .unwrap();
    let h7 = store
        .hold_add("officer", hold("C-7", 7, None, None, day(400)))
        .unwrap();
    store
        .hold_release("officer", &h7.id, "case closed")
        .unwrap();
    store
        .hold_add("officer", hold("C-8", 8, None, None, day(60)))
        .unwrap();
    store.seal_now().unwrap();
    (store, clock)
}

/// The days whose segments the plan would purge.
fn purgeable_days(store: &Store) -> BTreeSet<i64> {
    let plan = store.purge("officer", true).unwrap();
    let view = store.view().unwrap();
    plan.purge
        .iter()
        .map(|item| {
            let seg = view
                .segments
                .iter()
                .find(|s| s.path.ends_with(&item.segment))
                .unwrap();
            let t = seg.index.receive.min.unwrap();
            t.duration_since(day(0)).as_hours() / 24
        })
        .collect()
}

#[test]
fn purge_takes_only_what_is_past_retention_and_outside_active_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, clock) = fixture(tmp.path());
    let check = |now: i64, expected: &[i64]| {
        clock.set(day(now));
        assert_eq!(
            purgeable_days(&store),
            expected.iter().copied().collect(),
            "on day {now}"
        );
    };
    check(10, &[]);
    check(90, &[]);
    // Day 90 + 5: days 0..=4 are past 90 days; day 3 is held by IP.
    check(95, &[0, 1, 2, 4]);
    // Day 5's hold names a user none of its records has; day 7's was released; day 8's
    // ended on day 60; day 3 stays held.
    let before: BTreeSet<_> = store
        .view()
        .unwrap()
        .segments
        .into_iter()
        .map(|s| s.path)
        .collect();
    check(99, &[0, 1, 2, 4, 5, 6, 7, 8]);
    // A dry run removes nothing.
    let after: BTreeSet<_> = store
        .view()
        .unwrap()
        .segments
        .into_iter()
        .map(|s| s.path)
        .collect();
    assert!(after.is_superset(&before));
}

#[test]
fn a_purge_leaves_signed_tombstones_keeps_held_data_and_holds_and_verify_tells_it_from_deletion() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, clock) = fixture(tmp.path());
    clock.set(day(99));
    let plan = store.purge("officer", false).unwrap();
    assert_eq!(plan.purge.len(), 8);
    assert_eq!(store.view().unwrap().segments.len(), 3);
    let everything = |store: &Store| {
        query::search(
            &store.view().unwrap(),
            &Query::between(day(0), day(9) + DAY / 2),
        )
        .unwrap()
        .0
    };
    let left: BTreeSet<i64> = everything(&store)
        .iter()
        .map(|h| h.record.event_time.duration_since(day(0)).as_hours() / 24)
        .collect();
    assert_eq!(
        left,
        [3, 9].into_iter().collect(),
        "held and recent days are kept"
    );
    // The day-3 hold was placed in the day-1 segment, now purged: it lives on in the tombstone.
    let active: Vec<String> = holds(&store.view().unwrap(), clock.now())
        .into_iter()
        .filter(|h| h.active)
        .map(|h| h.hold.case)
        .collect();
    assert_eq!(active, vec!["C-3".to_string(), "C-5".to_string()]);
    store.sign_now().unwrap();
    let report = verify(tmp.path(), &VerifyOptions::default()).unwrap();
    assert!(report.intact, "{:#?}", report.problems);
    assert_eq!(report.purged.len(), 8);
    assert!(report.purged.iter().all(|p| p.actor == "officer"));
    // Purging again finds nothing more.
    assert!(store.purge("officer", false).unwrap().purge.is_empty());

    // Deleting the held segment by hand is not a purge.
    let day3 = store
        .view()
        .unwrap()
        .segments
        .iter()
        .find(|s| s.index.receive.min == Some(day(3)))
        .unwrap()
        .path
        .clone();
    std::fs::remove_file(&day3).unwrap();
    let report = verify(tmp.path(), &VerifyOptions::default()).unwrap();
    assert_eq!(report.purged.len(), 8);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::Missing),
        "{:#?}",
        report.problems
    );
}

#[test]
fn holds_are_refused_beyond_two_years_or_without_a_case() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(day(0));
    let store = Store::init(
        tmp.path(),
        &Options {
            clock: clock.clock(),
            ..Options::default()
        },
    )
    .unwrap();
    let check = |req: HoldRequest, ok: bool| {
        let got = store.hold_add("officer", req.clone());
        assert_eq!(got.is_ok(), ok, "{req:?}: {got:?}");
        if let Err(e) = got {
            assert!(matches!(e, Error::Invalid { .. }), "{e}");
        }
    };
    check(hold("C", 0, None, None, day(730)), true);
    check(hold("C", 0, None, None, day(731)), false);
    check(hold("C", 0, None, None, day(0)), false);
    check(hold("", 0, None, None, day(10)), false);
    check(
        HoldRequest {
            reason: " ".into(),
            ..hold("C", 0, None, None, day(10))
        },
        false,
    );
    check(
        HoldRequest {
            from: day(2),
            to: day(1),
            ..hold("C", 0, None, None, day(10))
        },
        false,
    );
    assert!(matches!(
        store.hold_release("officer", "H-nope", "x"),
        Err(Error::NoSuchHold(_))
    ));
}

#[test]
fn the_cli_beside_a_running_writer_purges_through_the_inbox() {
    let bin = env!("CARGO_BIN_EXE_khetnet-retention");
    let tmp = tempfile::tempdir().unwrap();
    // The fixture's writer stays open, as the collector would; the CLI runs on the system
    // clock (2026 or later), so January's unheld segments are past 90 days.
    let (writer, _clock) = fixture(tmp.path());
    let cli = |args: &[&str]| {
        let out = Command::new(bin)
            .args([
                "--store",
                tmp.path().to_str().unwrap(),
                "--actor",
                "officer-kanya",
                "--json",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let dry = cli(&["purge", "--dry-run"]);
    let n = dry["purge"].as_array().unwrap().len();
    assert!(n >= 8, "{dry}");
    assert_eq!(writer.view().unwrap().segments.len(), 11);
    cli(&["purge"]);
    assert_eq!(writer.view().unwrap().segments.len(), 11 - n);
    // Before the writer chains the tombstones they already account for the purge.
    assert!(!writer.view().unwrap().inbox.is_empty());
    let report = verify(tmp.path(), &VerifyOptions::default()).unwrap();
    assert!(report.intact, "{:#?}", report.problems);
    assert_eq!(report.purged.len(), n);
    writer.tick().unwrap();
    writer.sign_now().unwrap();
    assert!(writer.view().unwrap().inbox.is_empty());
    let report = verify(tmp.path(), &VerifyOptions::default()).unwrap();
    assert!(report.intact, "{report:#?}");
    assert_eq!(report.purged.len(), n);
    let holds = cli(&["hold", "list"]);
    assert!(
        holds
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["hold"]["case"] == "C-3")
    );
}
