//! The clock check against SNTP responders the test runs on loopback: one in step with this
//! machine, one 50 ms ahead (over the law's 10 ms), one that never answers.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, loopback_config};
use jiff::{SignedDuration, Timestamp};
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
    h.stop().await;
}
