//! The store as the collector and the officer use it: append, reopen, recover, search,
//! attribute, concurrent writers and readers.

use std::net::IpAddr;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use khetnet_retention::batch;
use khetnet_retention::query::{self, Query};
use khetnet_retention::record::{Body, SessionStatus};
use khetnet_retention::store::{LIVE_FILE, View};
use khetnet_retention::testing::{ManualClock, flow, lease, nat, opts_at, session};
use khetnet_retention::verify::{VerifyOptions, verify};
use khetnet_retention::{Error, Options, Store};

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn all(view: &View) -> Vec<u64> {
    let q = Query::between(Timestamp::MIN, Timestamp::MAX);
    let mut v: Vec<u64> = query::search(view, &q)
        .unwrap()
        .0
        .iter()
        .map(|h| h.record_no)
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn appended_records_survive_reopening_and_sealing_with_contiguous_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = opts_at(t("2026-01-01T00:00:00Z"));
    let store = Store::init(tmp.path(), &opts).unwrap();
    let r1 = store.append((0..10).map(flow).collect()).unwrap();
    store.seal_now().unwrap();
    let r2 = store.append((10..25).map(flow).collect()).unwrap();
    assert_eq!(r1.records, 10);
    assert_eq!(r1.chained.unwrap().first_record, 0);
    assert_eq!(r2.chained.unwrap().first_record, 10);
    drop(store);
    let store = Store::open(tmp.path(), &opts).unwrap();
    assert!(store.recovery().is_none());
    let r3 = store.append((25..30).map(flow).collect()).unwrap();
    assert_eq!(r3.chained.unwrap().first_record, 25);
    assert_eq!(all(&store.view().unwrap()), (0..30).collect::<Vec<_>>());
    assert!(
        verify(tmp.path(), &VerifyOptions::default())
            .unwrap()
            .intact
    );
}

#[test]
fn a_torn_tail_is_cut_back_reported_and_kept_and_nothing_acknowledged_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = opts_at(t("2026-01-01T00:00:00Z"));
    let store = Store::init(tmp.path(), &opts).unwrap();
    store.append((0..10).map(flow).collect()).unwrap();
    store.append((10..20).map(flow).collect()).unwrap();
    drop(store);
    // Half of a further frame, as a crash in the middle of a write leaves it.
    let b = batch::Batch {
        seq: 99,
        prev: batch::GENESIS,
        written_at: t("2026-01-01T00:00:00Z"),
        first_record: 20,
        content: batch::Content::Records {
            records: (20..30).map(flow).collect(),
        },
    };
    let (frame, _) = batch::encode(&b).unwrap();
    let live = tmp.path().join(LIVE_FILE);
    let mut bytes = std::fs::read(&live).unwrap();
    let good = bytes.len() as u64;
    bytes.extend_from_slice(&frame[..frame.len() / 2]);
    std::fs::write(&live, &bytes).unwrap();
    assert!(
        !verify(tmp.path(), &VerifyOptions::default())
            .unwrap()
            .intact
    );

    let store = Store::open(tmp.path(), &opts).unwrap();
    let rec = store.recovery().expect("the torn tail is reported");
    assert_eq!(rec.offset, good);
    assert_eq!(rec.cut_bytes, (frame.len() / 2) as u64);
    assert_eq!(
        std::fs::read(&rec.saved_to).unwrap(),
        frame[..frame.len() / 2]
    );
    assert!(rec.to_string().contains("torn tail"));
    assert_eq!(all(&store.view().unwrap()), (0..20).collect::<Vec<_>>());
    let r = store.append(vec![flow(20)]).unwrap();
    assert_eq!(r.chained.unwrap().first_record, 20);
    store.sign_now().unwrap();
    assert!(
        verify(tmp.path(), &VerifyOptions::default())
            .unwrap()
            .intact
    );
}

#[test]
fn damage_followed_by_intact_batches_is_refused_not_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = opts_at(t("2026-01-01T00:00:00Z"));
    let store = Store::init(tmp.path(), &opts).unwrap();
    store.append((0..10).map(flow).collect()).unwrap();
    store.append((10..20).map(flow).collect()).unwrap();
    drop(store);
    let live = tmp.path().join(LIVE_FILE);
    let mut bytes = std::fs::read(&live).unwrap();
    bytes[50] ^= 1;
    std::fs::write(&live, &bytes).unwrap();
    match Store::open(tmp.path(), &opts) {
        Err(Error::Damaged { offset, .. }) => assert_eq!(offset, 0),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a damaged tail was opened for writing"),
    }
    assert_eq!(
        std::fs::read(&live).unwrap(),
        bytes,
        "the evidence was changed"
    );
}

#[test]
fn appends_from_several_threads_are_all_chained_once() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options {
        seal_max_bytes: 4 << 10,
        ..opts_at(t("2026-01-01T00:00:00Z"))
    };
    let store = Arc::new(Store::init(tmp.path(), &opts).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|th| {
            let store = store.clone();
            std::thread::spawn(move || {
                for b in 0..25 {
                    let n = th * 10_000 + b * 10;
                    store.append((n..n + 10).map(flow).collect()).unwrap();
                    if th == 0 && b == 12 {
                        // Waits for the seal that the small seal size started by now (on its
                        // own thread) and seals again, amid the other threads' appends.
                        store.seal_now().unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let view = store.view().unwrap();
    assert!(
        view.segments.len() > 1,
        "the small seal size sealed segments"
    );
    assert_eq!(all(&view), (0..1000).collect::<Vec<_>>());
    store.sign_now().unwrap();
    assert!(
        verify(tmp.path(), &VerifyOptions::default())
            .unwrap()
            .intact
    );
}

#[test]
fn a_reader_sees_a_growing_prefix_while_the_writer_appends_and_seals() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options {
        seal_max_bytes: 16 << 10,
        ..opts_at(t("2026-01-01T00:00:00Z"))
    };
    let store = Arc::new(Store::init(tmp.path(), &opts).unwrap());
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for b in 0..200u32 {
                store
                    .append((b * 5..b * 5 + 5).map(flow).collect())
                    .unwrap();
            }
        })
    };
    let reader = Store::open_read(tmp.path(), &opts).unwrap();
    let mut seen = 0;
    while seen < 1000 {
        let got = all(&reader.view().unwrap());
        assert_eq!(
            got,
            (0..got.len() as u64).collect::<Vec<_>>(),
            "a gap or a duplicate"
        );
        assert!(
            got.len() >= seen,
            "records vanished: {} after {seen}",
            got.len()
        );
        seen = got.len();
        if writer.is_finished() && seen < 1000 {
            let got = all(&reader.view().unwrap());
            assert_eq!(got.len(), 1000);
            break;
        }
    }
    writer.join().unwrap();
}

#[test]
fn a_point_query_reads_only_the_segments_that_can_match() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t("2026-01-01T00:00:00Z"));
    let opts = Options {
        clock: clock.clock(),
        ..Options::default()
    };
    let store = Store::init(tmp.path(), &opts).unwrap();
    // Ten segments, each an hour of flows from its own 256 addresses.
    for s in 0..10u32 {
        for b in 0..4 {
            let n = s * 256 + b * 64;
            let mut rs: Vec<_> = (n..n + 64).map(flow).collect();
            for r in &mut rs {
                r.event_time += SignedDuration::from_hours(s.into());
            }
            store.append(rs).unwrap();
        }
        store.seal_now().unwrap();
    }
    let view = store.view().unwrap();
    assert_eq!(view.segments.len(), 10);
    let day = Query::between(t("2026-01-01T00:00:00Z"), t("2026-01-02T00:00:00Z"));
    let check = |q: Query, hits: usize, max_read: u64| {
        let (found, stats) = query::search(&view, &q).unwrap();
        assert_eq!(found.len(), hits, "{q:?}");
        assert!(
            stats.segments_read <= max_read,
            "read {} segments for {q:?}",
            stats.segments_read
        );
    };
    // 10.0.7.x is only in segment 7 (flow n = 7*256 + x).
    check(
        Query {
            ip: Some(ip("10.0.7.9")),
            ..day.clone()
        },
        1,
        1,
    );
    check(
        Query {
            ip: Some(ip("10.9.9.9")),
            ..day.clone()
        },
        0,
        1,
    );
    check(
        Query {
            ip: Some(ip("203.0.113.1")),
            ..day.clone()
        },
        2560,
        10,
    );
    check(
        Query {
            ip: Some(ip("203.0.113.1")),
            port: Some(443),
            user: Some("nobody".into()),
            ..day.clone()
        },
        0,
        1,
    );
    // Segment s holds flows n = 256 s .. 256 s + 255 at hour s plus n seconds.
    let in_segment_3 = Query::between(t("2026-01-01T03:14:00Z"), t("2026-01-01T03:15:00Z"));
    let (found, stats) = query::search(&view, &in_segment_3).unwrap();
    assert_eq!(found.len(), 61);
    assert_eq!(stats.segments_read, 1);
    check(
        Query {
            school: Some("S999".into()),
            ..day.clone()
        },
        0,
        0,
    );
}

#[test]
fn attribution_follows_nat_to_lease_to_session_with_its_evidence() {
    let tmp = tempfile::tempdir().unwrap();
    let at = t("2026-03-10T09:15:00+07:00");
    let store = Store::init(tmp.path(), &opts_at(at)).unwrap();
    let public = ip("203.0.113.7");
    let inside = ip("10.1.1.5");
    let mac = "aa:bb:cc:00:11:22";
    let h = |m: i64| at + SignedDuration::from_mins(m);
    store
        .append(vec![
            lease(inside, "de:ad:be:ef:00:01", h(-600)),
            session(
                "old-user",
                "s0",
                Some(inside),
                "de:ad:be:ef:00:01",
                SessionStatus::Start,
                h(-590),
            ),
            session(
                "old-user",
                "s0",
                Some(inside),
                "de:ad:be:ef:00:01",
                SessionStatus::Stop,
                h(-300),
            ),
            lease(inside, mac, h(-120)),
        ])
        .unwrap();
    store.seal_now().unwrap();
    store
        .append(vec![
            session(
                "somchai",
                "s1",
                Some(inside),
                mac,
                SessionStatus::Start,
                h(-60),
            ),
            nat(ip("10.1.1.9"), public, 50124, h(-1)),
            nat(inside, public, 50123, h(-2)),
        ])
        .unwrap();
    store.seal_now().unwrap();
    store
        .append(vec![session(
            "somchai",
            "s1",
            Some(inside),
            mac,
            SessionStatus::Stop,
            h(30),
        )])
        .unwrap();

    let a = store.attribute("officer", public, Some(50123), at).unwrap();
    assert_eq!(a.nat.len(), 1);
    assert_eq!(a.inside.len(), 1);
    let i = &a.inside[0];
    assert_eq!(i.ip, inside);
    assert_eq!(i.macs, vec![mac.to_string()]);
    assert_eq!(i.users, vec!["somchai".to_string()]);
    assert_eq!(i.leases.len(), 1);
    assert_eq!(
        i.sessions.len(),
        2,
        "start and stop of the session support it"
    );
    assert!(
        a.summary.contains("somchai") && a.summary.contains("2026-03-10T09:15:00+07:00"),
        "{}",
        a.summary
    );

    // The other port maps to another inside host, of which nothing else is known.
    let b = store.attribute("officer", public, Some(50124), at).unwrap();
    assert_eq!(b.inside[0].ip, ip("10.1.1.9"));
    assert!(b.inside[0].users.is_empty());

    // Before the new lease, the address belonged to the old user.
    let c = store.attribute("officer", inside, None, h(-400)).unwrap();
    assert_eq!(c.inside[0].users, vec!["old-user".to_string()]);
}

#[test]
fn attribution_finds_the_user_by_mac_when_the_session_has_no_address() {
    let tmp = tempfile::tempdir().unwrap();
    let at = t("2026-03-10T09:15:00+07:00");
    let store = Store::init(tmp.path(), &opts_at(at)).unwrap();
    let mac = "aa:bb:cc:00:11:33";
    store
        .append(vec![
            lease(ip("10.2.0.8"), mac, at - SignedDuration::from_mins(30)),
            session(
                "nok",
                "w1",
                None,
                mac,
                SessionStatus::Start,
                at - SignedDuration::from_mins(29),
            ),
        ])
        .unwrap();
    let a = store
        .attribute("officer", ip("10.2.0.8"), None, at)
        .unwrap();
    assert_eq!(a.inside[0].users, vec!["nok".to_string()]);
    assert_eq!(a.inside[0].by_mac.len(), 1);
}

#[test]
fn every_search_and_attribution_is_logged_with_its_actor() {
    let tmp = tempfile::tempdir().unwrap();
    let now = t("2026-03-10T09:15:00+07:00");
    let store = Store::init(tmp.path(), &opts_at(now)).unwrap();
    let q = Query::between(now - SignedDuration::from_hours(1), now);
    store.search("officer-kanya", &q).unwrap();
    store
        .attribute("officer-kanya", ip("203.0.113.7"), Some(1), now)
        .unwrap();
    let (hits, _) = query::search(
        &store.view().unwrap(),
        &Query {
            user: Some("officer-kanya".into()),
            ..Query::between(Timestamp::MIN, Timestamp::MAX)
        },
    )
    .unwrap();
    let actions: Vec<String> = hits
        .iter()
        .filter_map(|h| match &h.record.body {
            Body::Access(a) => Some(format!("{} {}", a.action, a.detail)),
            _ => None,
        })
        .collect();
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert!(actions[0].starts_with("search --from"));
    assert!(actions[1].starts_with("attribute --ip 203.0.113.7 --port 1"));
}

#[test]
fn status_shows_coverage_each_sources_last_record_and_its_gaps() {
    let tmp = tempfile::tempdir().unwrap();
    let start = t("2026-01-01T00:00:00Z");
    let store = Store::init(tmp.path(), &opts_at(start)).unwrap();
    let at = |r: &mut khetnet_retention::Record, mins: i64| {
        r.event_time = start + SignedDuration::from_mins(mins);
        r.receive_time = r.event_time;
    };
    // netflow/192.0.2.1 every 10 minutes for an hour, silent for 3 hours, then again.
    let mut rs = Vec::new();
    for m in (0..=60).step_by(10).chain([240, 250]) {
        let mut r = flow(m as u32);
        at(&mut r, m);
        rs.push(r);
    }
    store.append(rs[..5].to_vec()).unwrap();
    store.seal_now().unwrap();
    store.append(rs[5..].to_vec()).unwrap();
    let mut other = lease(ip("10.0.0.1"), "aa:aa:aa:aa:aa:aa", start);
    at(&mut other, 2 * 24 * 60);
    store.append(vec![other]).unwrap();

    let st = store.status().unwrap();
    assert_eq!(st.records, 10);
    assert_eq!(st.segments, 1);
    assert!((st.days_covered - 2.0).abs() < 1e-9, "{}", st.days_covered);
    let netflow = st
        .sources
        .iter()
        .find(|s| s.source == "netflow/192.0.2.1")
        .unwrap();
    assert_eq!(netflow.records, 9);
    assert_eq!(netflow.last, Some(start + SignedDuration::from_mins(250)));
    assert_eq!(
        netflow.gaps,
        vec![(
            start + SignedDuration::from_mins(60),
            start + SignedDuration::from_mins(240)
        )]
    );
    let syslog = st
        .sources
        .iter()
        .find(|s| s.source == "syslog_udp/192.0.2.9")
        .unwrap();
    assert_eq!((syslog.records, syslog.gaps.len()), (1, 0));
}

#[test]
fn attribution_reads_only_the_blocks_that_hold_the_endpoint_and_the_assigned_address() {
    let tmp = tempfile::tempdir().unwrap();
    let at = t("2026-01-01T00:30:00Z");
    // One segment of several blocks: no seal before `seal_now`.
    let opts = Options {
        seal_max_records: u64::MAX,
        ..opts_at(at)
    };
    let store = Store::init(tmp.path(), &opts).unwrap();
    let public = ip("203.0.113.9");
    // 120 batches of 1,000 NAT records each (several blocks), all within the NAT look-back,
    // and one lease in the middle. Even records go out through `public`, odd ones through
    // another address.
    let other = ip("203.0.113.10");
    for b in 0..120u32 {
        let mut rs: Vec<_> = (0..1000u32)
            .map(|i| {
                let n = b * 1000 + i;
                let mut r = nat(
                    ip(&format!(
                        "10.{}.{}.{}",
                        3 + n / 65536,
                        n / 256 % 256,
                        n % 256
                    )),
                    if n % 2 == 0 { public } else { other },
                    (1024 + n / 2) as u16,
                    at - SignedDuration::from_secs(i64::from(n % 500)),
                );
                // Destinations as varied as real ones, so that the records fill several blocks.
                if let khetnet_retention::record::Body::Nat(x) = &mut r.body {
                    let h = n.wrapping_mul(2_654_435_761);
                    x.dst_ip = Some(std::net::Ipv4Addr::from(h).into());
                    x.dst_port = Some((h >> 7) as u16);
                    x.inside_port = Some((h >> 13) as u16);
                }
                r
            })
            .collect();
        if b == 30 {
            rs.push(lease(
                ip("10.3.23.112"),
                "aa:bb:cc:dd:ee:ff",
                at - SignedDuration::from_mins(5),
            ));
        }
        store.append(rs).unwrap();
    }
    store.seal_now().unwrap();
    let view = store.view().unwrap();
    let blocks = view.segments[0].index.blocks.len() as u64;
    assert!(blocks >= 5, "{blocks} blocks");
    // n = 6000 is 10.3.23.112 -> 203.0.113.9:4024.
    let a = query::attribute(&view, public, Some(4024), at).unwrap();
    assert_eq!(a.inside[0].ip, ip("10.3.23.112"));
    assert_eq!(a.inside[0].macs, vec!["aa:bb:cc:dd:ee:ff".to_string()]);
    assert!(
        a.scanned.blocks_read <= 3,
        "read {} of {blocks} blocks twice over",
        a.scanned.blocks_read
    );
}

#[test]
fn a_crash_between_writing_a_segment_and_emptying_the_tail_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = opts_at(t("2026-01-01T00:00:00Z"));
    let store = Store::init(tmp.path(), &opts).unwrap();
    store.append((0..10).map(flow).collect()).unwrap();
    store.append((10..20).map(flow).collect()).unwrap();
    let live = tmp.path().join(LIVE_FILE);
    let before_seal = std::fs::read(&live).unwrap();
    store.seal_now().unwrap();
    drop(store);
    // The segment is in place but the live tail still holds its batches (without the
    // signature the seal added).
    std::fs::write(&live, &before_seal).unwrap();
    let store = Store::open(tmp.path(), &opts).unwrap();
    assert_eq!(all(&store.view().unwrap()), (0..20).collect::<Vec<_>>());
    let r = store.append(vec![flow(20)]).unwrap();
    assert_eq!(r.chained.unwrap().first_record, 20);
    store.sign_now().unwrap();
    let report = verify(tmp.path(), &VerifyOptions::default()).unwrap();
    assert!(report.intact, "{:#?}", report.problems);
}

#[test]
fn the_longest_retention_asked_for_sticks_to_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let long = Options {
        retention_days: 365,
        ..opts_at(t("2026-01-01T00:00:00Z"))
    };
    drop(Store::init(tmp.path(), &long).unwrap());
    let cli = Store::open_shared(tmp.path(), &opts_at(t("2026-01-01T00:00:00Z"))).unwrap();
    assert_eq!(cli.options().retention_days, 365);
}

/// A store with `old_days` days of flows (four segments a day) before the day of an
/// attribution at `at`, and that day: four segments, the last holding the NAT translation and
/// the lease. Returns the attribution and the number of segments.
fn attribution_after(
    old_days: i32,
    at: Timestamp,
) -> (khetnet_retention::query::Attribution, usize) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::init(tmp.path(), &opts_at(at)).unwrap();
    let day = SignedDuration::from_hours(24);
    let quarter = SignedDuration::from_hours(6);
    let mut n = 0;
    let mut seal = |start: Timestamp, extra: Vec<khetnet_retention::Record>| {
        let mut rs: Vec<_> = (n..n + 100).map(flow).collect();
        n += 100;
        for r in &mut rs {
            r.event_time = start;
            r.receive_time = start;
        }
        rs.extend(extra);
        store.append(rs).unwrap();
        store.seal_now().unwrap();
    };
    for k in (1..=old_days).rev() {
        for j in 0..4 {
            seal(at - day * (k + 1) + quarter * j, Vec::new());
        }
    }
    for j in 0..3 {
        seal(
            at - SignedDuration::from_hours(18) + quarter * j,
            Vec::new(),
        );
    }
    let minute = SignedDuration::from_mins(1);
    seal(
        at,
        vec![
            nat(ip("10.3.0.7"), ip("203.0.113.9"), 4024, at - minute),
            lease(ip("10.3.0.7"), "aa:bb:cc:dd:ee:ff", at - minute * 30),
        ],
    );
    let a = store
        .attribute("somchai", ip("203.0.113.9"), Some(4024), at)
        .unwrap();
    let segments = store.view().unwrap().segments.len();
    (a, segments)
}

#[test]
fn attribution_opens_the_same_footers_however_many_older_days_are_kept() {
    let at = t("2026-01-20T12:00:00Z");
    let (few, few_segments) = attribution_after(2, at);
    let (many, many_segments) = attribution_after(8, at);
    assert_eq!((few_segments, many_segments), (12, 36));
    for a in [&few, &many] {
        assert_eq!(a.inside[0].ip, ip("10.3.0.7"));
        assert_eq!(a.inside[0].macs, vec!["aa:bb:cc:dd:ee:ff".to_string()]);
    }
    // Only the day's four segments meet the lease window (at +- 24 h): their names say so, and
    // the older footers are not read.
    for a in [&few, &many] {
        assert_eq!(a.scanned.segments, 4, "{:?}", a.scanned);
        assert!(a.scanned.segments_read <= 4, "{:?}", a.scanned);
    }
}
