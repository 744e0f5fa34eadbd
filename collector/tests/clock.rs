//! The clock check against SNTP responders the test runs on loopback: one in step with this
//! machine, one 50 ms ahead (over the law's 10 ms), one that never answers. Each measurement
//! is stored as a `clock` record, the health verdict names the server over the limit, and
//! `khetnet-retention status` shows the alert.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, loopback_config};
use jiff::{SignedDuration, Timestamp};
use khetnet_retention::record::{Body, ClockOffset};
use tokio::net::UdpSocket;

/// An SNTP server whose clock is `skew` ahead of this machine's.
async fn responder(skew: SignedDuration) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut buf = [0u8; 48];
        // Bounded: a few requests at most in a test.
        for _ in 0..16 {
            let Ok((48, peer)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            let t = Timestamp::now() + skew;
            let reply = khetnet_collector::clock::reply(&buf, t, t, 1);
            let _ = socket.send_to(&reply, peer).await;
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_measured_and_over_10ms_is_flagged() {
    let in_step = responder(SignedDuration::ZERO).await;
    let ahead = responder(SignedDuration::from_millis(50)).await;
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut config = loopback_config();
    config.ntp_servers = vec![
        in_step.clone(),
        ahead.clone(),
        silent.local_addr().unwrap().to_string(),
    ];
    let mut h = Harness::start(config).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let readings = loop {
        let readings = h.running().clock();
        if readings.len() == 3 {
            break readings;
        }
        assert!(Instant::now() < deadline, "no clock readings: {readings:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let first = readings[0].result.as_ref().unwrap();
    assert_eq!(readings[0].server, in_step);
    assert!(!first.over_limit(), "in step: {first:?}");
    let second = readings[1].result.as_ref().unwrap();
    assert!(second.over_limit(), "50 ms ahead: {second:?}");
    let ms = second.offset.as_millis();
    assert!((40..=60).contains(&ms), "offset {ms} ms, expected about 50");
    let error = readings[2].result.as_ref().unwrap_err();
    assert!(error.contains("no answer"), "{error}");
    // What /healthz of `khetnet serve` reports for the clock.
    let health = h.running().clock_readings().health().unwrap().unwrap_err();
    assert!(
        health.contains(&ahead) && health.contains("over the law's 10 ms"),
        "{health}"
    );
    // Every measurement is in the store, with the server asked and the offset.
    let records = h
        .wait_for("three clock records", |records| {
            records
                .iter()
                .filter(|r| matches!(r.body, Body::Clock(_)))
                .count()
                >= 3
        })
        .await;
    let clock: Vec<&ClockOffset> = records
        .iter()
        .filter_map(|r| match &r.body {
            Body::Clock(c) => Some(c),
            _ => None,
        })
        .collect();
    let of = |server: &str| clock.iter().find(|c| c.server == server).unwrap();
    assert!(!of(&in_step).over_limit(), "{:?}", of(&in_step));
    let stored_ahead = of(&ahead);
    assert!(stored_ahead.over_limit());
    let ms = stored_ahead.offset_ns.unwrap() / 1_000_000;
    assert!((40..=60).contains(&ms), "stored offset {ms} ms");
    let failed = of(&silent.local_addr().unwrap().to_string());
    assert_eq!(failed.offset_ns, None);
    assert!(failed.error.as_deref().unwrap().contains("no answer"));
    h.stop().await;
    // `khetnet-retention status` shows the alert from the collector's last snapshot.
    let status = h.store.status().unwrap();
    let shown = khetnet_retention::cli::render_status(&status);
    let line = shown
        .lines()
        .find(|l| l.starts_with("clock:") && l.contains(&ahead))
        .unwrap_or_else(|| panic!("no clock line for {ahead}:\n{shown}"));
    assert!(line.contains("OVER the law's 10 ms"), "{line}");
}
