//! A clean shutdown loses nothing: what real senders (`logger` over TCP, six connections; and
//! over UDP) already sent when the collector gets SIGTERM is read and stored before it exits.
//! (Without the shutdown grace, the TCP test lost lines in three trials of four, the UDP test
//! in one of three: it depends on whether the collector notices the signal or the data first.)
//!
//! To make "sent but not yet read" certain rather than a race, the collector is paused
//! (SIGSTOP) while `logger` sends: the connection waits in the kernel's backlog and the lines
//! in its socket buffer. Then SIGTERM and SIGCONT: the collector wakes up to the signal with
//! everything still unread.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, run_collector, signal, wait_exit};
use khetnet_retention::counters::Counters;
use khetnet_retention::{Options, Store};

fn line(i: usize) -> String {
    format!("shutdown-test message-{i:06}")
}

#[test]
fn tcp_lines_sent_before_sigterm_are_stored() {
    if !common::have("logger", "bsdutils") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let port = free_port();
    let mut collector = run_collector(
        dir.path(),
        &store,
        &["--syslog-tcp", &format!("127.0.0.1:{port}")],
        "",
    );
    // Six senders (six connections), 100 lines of about 90 bytes each: well within what the
    // kernel buffers for a paused reader, so each `logger` finishes writing and exits.
    let senders = 6;
    let per_sender = 100;
    let n = senders * per_sender;
    signal(&collector, "STOP");
    let mut loggers = Vec::new();
    for s in 0..senders {
        let lines: String = (s * per_sender..(s + 1) * per_sender)
            .map(|i| line(i) + "\n")
            .collect();
        let file = dir.path().join(format!("lines-{s}.txt"));
        std::fs::write(&file, lines).unwrap();
        let logger = Command::new("logger")
            .args(["--tcp", "--octet-count", "-n", "127.0.0.1", "-P"])
            .arg(port.to_string())
            .args(["-t", "app", "-f"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        loggers.push(logger);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for logger in &mut loggers {
        let sent = loop {
            if let Some(status) = logger.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = logger.kill();
                signal(&collector, "CONT");
                panic!("logger could not hand its lines to the kernel in 20 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(sent.success(), "logger sent everything");
    }

    // SIGTERM arrives with every line still unread.
    signal(&collector, "TERM");
    signal(&collector, "CONT");
    let exit = wait_exit(&mut collector);
    assert!(exit.success(), "a clean exit: {exit}");

    let records = common::stored(&Store::open_read(&store, &Options::default()).unwrap());
    let numbers: std::collections::BTreeSet<usize> = records
        .iter()
        .filter_map(common::raw_text)
        .filter_map(|t| {
            let at = t.find("message-")?;
            t[at + 8..at + 14].parse().ok()
        })
        .collect();
    let missing: Vec<usize> = (0..n).filter(|i| !numbers.contains(i)).take(20).collect();
    assert_eq!(
        numbers.len(),
        n,
        "stored {} of {n}; missing {missing:?}",
        numbers.len()
    );
    // The last counters snapshot says the same.
    let counters = Counters::read(&store).unwrap().unwrap();
    assert!(counters.stopped);
    let tcp = counters
        .inputs
        .iter()
        .find(|i| i.input == "syslog_tcp")
        .unwrap();
    assert_eq!(
        (tcp.tally.received, tcp.tally.stored),
        (n as u64, n as u64),
        "{tcp:?}"
    );
}

#[test]
fn udp_lines_received_before_sigterm_are_stored() {
    if !common::have("logger", "bsdutils") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let mut collector = run_collector(
        dir.path(),
        &store,
        &["--syslog-udp", &format!("127.0.0.1:{port}")],
        "",
    );
    // 200 datagrams of about 90 bytes: the socket's receive buffer holds them while the
    // collector is paused.
    let n = 200;
    let file = dir.path().join("lines.txt");
    std::fs::write(&file, (0..n).map(|i| line(i) + "\n").collect::<String>()).unwrap();
    signal(&collector, "STOP");
    let sent = Command::new("logger")
        .args(["--udp", "-n", "127.0.0.1", "-P"])
        .arg(port.to_string())
        .args(["-t", "app", "-f"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(sent.success(), "logger sent everything");
    signal(&collector, "TERM");
    signal(&collector, "CONT");
    let exit = wait_exit(&mut collector);
    assert!(exit.success(), "a clean exit: {exit}");
    let records = common::stored(&Store::open_read(&store, &Options::default()).unwrap());
    let numbers: std::collections::BTreeSet<usize> = records
        .iter()
        .filter_map(common::raw_text)
        .filter_map(|t| {
            let at = t.find("message-")?;
            t[at + 8..at + 14].parse().ok()
        })
        .collect();
    assert_eq!(numbers.len(), n, "stored {} of {n}", numbers.len());
}
