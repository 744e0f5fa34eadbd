//! Model-based property test of the on-disk invariants (docs/STORE-FORMAT.md): whatever the
//! sequence of appends, seals, signatures, reopenings and torn writes, the store holds exactly
//! the acknowledged records, numbered without gaps, in order, verifies intact (segment names
//! included), and a search for a time window (which picks segments by name) finds exactly the
//! model's records in it.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use khetnet_retention::query::{self, Query};
use khetnet_retention::testing::{ManualClock, flow};
use khetnet_retention::verify::{VerifyOptions, verify};
use khetnet_retention::{Options, Record, Store};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u32>),
    Seal,
    Sign,
    Reopen,
    /// A crash in the middle of writing a frame: `n` bytes of a frame that never completed.
    Tear(usize),
    Advance(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => proptest::collection::vec(0u32..5000, 0..12).prop_map(Op::Append),
        1 => Just(Op::Seal),
        1 => Just(Op::Sign),
        1 => Just(Op::Reopen),
        1 => (1usize..300).prop_map(Op::Tear),
        1 => (0u32..7200).prop_map(Op::Advance),
    ]
}

fn stored(store: &Store) -> Vec<(u64, Record)> {
    let (hits, _) = query::search(
        &store.view().unwrap(),
        &Query::between(Timestamp::MIN, Timestamp::MAX),
    )
    .unwrap();
    let mut v: Vec<(u64, Record)> = hits.into_iter().map(|h| (h.record_no, h.record)).collect();
    v.sort_by_key(|(n, _)| *n);
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_store_holds_exactly_what_was_acknowledged(ops in proptest::collection::vec(op(), 1..25)) {
        let tmp = tempfile::tempdir().unwrap();
        let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
        let opts = Options {
            clock: clock.clock(),
            seal_max_bytes: 8 << 10,
            seal_max_age: Duration::from_secs(3600),
            sign_interval: Duration::from_secs(600),
            ..Options::default()
        };
        let mut store = Some(Store::init(tmp.path(), &opts).unwrap());
        let mut model: Vec<Record> = Vec::new();
        for op in ops {
            let s = store.as_ref().unwrap();
            match op {
                Op::Append(ns) => {
                    let records: Vec<Record> = ns.into_iter().map(flow).collect();
                    let r = s.append(records.clone()).unwrap();
                    prop_assert_eq!(r.chained.unwrap().first_record, model.len() as u64);
                    model.extend(records);
                }
                Op::Seal => s.seal_now().unwrap(),
                Op::Sign => s.sign_now().unwrap(),
                Op::Advance(secs) => clock.advance(SignedDuration::from_secs(secs.into())),
                Op::Reopen => {
                    drop(store.take());
                    store = Some(Store::open(tmp.path(), &opts).unwrap());
                    prop_assert!(store.as_ref().unwrap().recovery().is_none());
                }
                Op::Tear(n) => {
                    drop(store.take());
                    let (frame, _) = khetnet_retention::batch::encode(&khetnet_retention::batch::Batch {
                        seq: 1 << 40,
                        prev: [7; 32],
                        written_at: clock.now(),
                        first_record: 0,
                        content: khetnet_retention::batch::Content::Records { records: (0..4).map(flow).collect() },
                    }).unwrap();
                    let live = tmp.path().join("live.log");
                    let mut bytes = std::fs::read(&live).unwrap();
                    bytes.extend_from_slice(&frame[..n.min(frame.len() - 1)]);
                    std::fs::write(&live, bytes).unwrap();
                    store = Some(Store::open(tmp.path(), &opts).unwrap());
                    prop_assert!(store.as_ref().unwrap().recovery().is_some());
                }
            }
            let got = stored(store.as_ref().unwrap());
            prop_assert_eq!(got.len(), model.len());
            for (i, (n, r)) in got.iter().enumerate() {
                prop_assert_eq!(*n, i as u64);
                prop_assert_eq!(r, &model[i]);
            }
        }
        store.as_ref().unwrap().sign_now().unwrap();
        let report = verify(tmp.path(), &VerifyOptions::default()).unwrap();
        prop_assert!(report.intact, "{:#?}", report.problems);
        prop_assert_eq!(report.records, model.len() as u64);
        prop_assert_eq!(report.unsigned_batches, 0);
        // A window chooses segments by their names' event times and misses nothing.
        let (from, to) = (flow(1000).event_time, flow(2500).event_time);
        let (hits, _) = store
            .as_ref()
            .unwrap()
            .search("model", &Query::between(from, to))
            .unwrap();
        let mut got: Vec<(u64, Record)> = hits
            .into_iter()
            .filter(|h| matches!(h.record.body, khetnet_retention::record::Body::Flow(_)))
            .map(|h| (h.record_no, h.record))
            .collect();
        got.sort_by_key(|(n, _)| *n);
        let want: Vec<(u64, Record)> = model
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, r)| (i as u64, r))
            .filter(|(_, r)| r.event_time >= from && r.event_time <= to)
            .collect();
        prop_assert_eq!(got, want);
    }
}
