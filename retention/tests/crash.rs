//! kill -9 during sustained appends loses no acknowledged record: a child process appends and
//! prints the number of records acknowledged after each append; the parent kills it at
//! different moments, reopens the store and checks every acknowledged record is there.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use khetnet_retention::query::{self, Query};
use khetnet_retention::testing::flow;
use khetnet_retention::verify::{VerifyOptions, verify};
use khetnet_retention::{Options, Store};

const CHILD_ENV: &str = "KHETNET_RETENTION_CRASH_CHILD";

fn opts() -> Options {
    Options {
        // Small segments, so that kills also land in the middle of seals.
        seal_max_bytes: 16 << 10,
        sign_interval: Duration::from_millis(20),
        ..Options::default()
    }
}

#[test]
#[ignore = "the child process of kill_9_during_sustained_appends_loses_no_acknowledged_record"]
fn crash_child() {
    let dir = std::env::var(CHILD_ENV).expect("run by the crash test");
    let store = Store::open_or_init(&dir, &opts()).unwrap();
    let mut out = std::io::stdout().lock();
    loop {
        let r = store.append((0..50).map(flow).collect()).unwrap();
        let acked = r.chained.unwrap().first_record + r.records;
        writeln!(out, "ACK {acked}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn kill_9_during_sustained_appends_loses_no_acknowledged_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut last_acked = 0;
    for round in 0..4u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let acked = Arc::new(Mutex::new(0u64));
        let reader = {
            let acked = acked.clone();
            let stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(n) = line.strip_prefix("ACK ").and_then(|n| n.parse().ok()) {
                        *acked.lock().unwrap() = n;
                    }
                }
            })
        };
        // Wait for this round's appends to get going, then kill at a different moment each time.
        let start = Instant::now();
        while *acked.lock().unwrap() <= last_acked && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50 + 70 * round));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let acked = *acked.lock().unwrap();
        assert!(
            acked > last_acked,
            "round {round}: the child acknowledged nothing"
        );

        let store = Store::open(&dir, &opts()).unwrap();
        let (hits, _) = query::search(
            &store.view().unwrap(),
            &Query::between(Timestamp::MIN, Timestamp::MAX),
        )
        .unwrap();
        let mut numbers: Vec<u64> = hits.iter().map(|h| h.record_no).collect();
        numbers.sort_unstable();
        assert!(
            numbers.len() as u64 >= acked,
            "round {round}: {acked} acknowledged, {} found after kill -9 (recovery: {:?})",
            numbers.len(),
            store.recovery().map(|r| r.to_string())
        );
        assert_eq!(numbers, (0..numbers.len() as u64).collect::<Vec<_>>());
        eprintln!(
            "round {round}: {acked} acknowledged, {} kept, {} segments, recovery: {:?}",
            numbers.len(),
            store.view().unwrap().segments.len(),
            store.recovery().map(|r| r.to_string())
        );
        drop(store);
        let report = verify(&dir, &VerifyOptions::default()).unwrap();
        assert!(report.intact, "round {round}: {:#?}", report.problems);
        last_acked = numbers.len() as u64;
    }
}
