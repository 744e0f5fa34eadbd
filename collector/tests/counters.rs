//! The counters a user sees in `khetnet-retention status` after a real collector run: the
//! collector binary receives lines from `logger` over TCP (some a decoder understands, some
//! kept raw) and over UDP, and datagrams from an address not in the allow-list; after SIGTERM
//! its last snapshot (`counters.json`) shows each input and source, the refused address, and
//! what was stored, parsed and kept raw. (A UDP drop needs the store to fall behind; that is
//! provoked in-process in `backpressure.rs`, which checks the same counters.)

mod common;

use std::process::Command;

use common::{free_port, run_collector, terminate};
use khetnet_retention::{Options, Store};

fn logger(args: &[&str], port: u16, tag: &str, file: &std::path::Path) {
    let status = Command::new("logger")
        .args(args)
        .args(["-n", "127.0.0.1", "-P"])
        .arg(port.to_string())
        .args(["-t", tag, "-f"])
        .arg(file)
        .status()
        .unwrap();
    assert!(status.success(), "logger {args:?}");
}

#[test]
fn status_shows_what_each_input_and_source_received_stored_and_refused() {
    if !common::have("logger", "bsdutils") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let tcp = free_port();
    let udp = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let collector = run_collector(
        dir.path(),
        &store,
        &[
            "--syslog-tcp",
            &format!("127.0.0.1:{tcp}"),
            "--syslog-udp",
            &format!("127.0.0.1:{udp}"),
        ],
        "",
    );

    // Over TCP: 60 DHCP leases (parsed) and 40 lines nobody understands (kept raw).
    let leases = dir.path().join("leases.txt");
    std::fs::write(
        &leases,
        (0..60)
            .map(|i| format!("DHCPACK(br0) 10.1.2.{i} aa:bb:cc:dd:ee:{i:02x} pc{i}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let other = dir.path().join("other.txt");
    std::fs::write(
        &other,
        (0..40)
            .map(|i| format!("something else {i}\n"))
            .collect::<String>(),
    )
    .unwrap();
    logger(&["--tcp", "--octet-count"], tcp, "dnsmasq-dhcp", &leases);
    logger(&["--tcp", "--octet-count"], tcp, "app", &other);
    // Over UDP: 5 lines from the gateway.
    let five = dir.path().join("five.txt");
    std::fs::write(
        &five,
        (0..5)
            .map(|i| format!("udp line {i}\n"))
            .collect::<String>(),
    )
    .unwrap();
    logger(&["--udp"], udp, "app", &five);
    // 3 datagrams from 127.0.0.2, which is not allowed.
    let stranger = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    for i in 0..3 {
        stranger
            .send_to(format!("<13>stranger {i}").as_bytes(), ("127.0.0.1", udp))
            .unwrap();
    }
    // Wait (bounded) until everything allowed is stored, then stop cleanly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while Store::open_read(&store, &Options::default())
        .map(|s| common::stored(&s).len())
        .unwrap_or(0)
        < 105
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the lines were not stored"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(terminate(collector).success(), "a clean exit");

    let store = Store::open_read(&store, &Options::default()).unwrap();
    let status = store.status().unwrap();
    let shown = khetnet_retention::cli::render_status(&status);
    eprintln!("{shown}");
    // The rows of the counters table (the `sources:` section above it also names sources).
    let table = &shown[shown.find("collector counters").unwrap()..];
    let row = |name: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row {name} in:\n{shown}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    // input, received, bytes, stored, parsed, raw, malformed, dropped, refused.
    let tcp_row = row("syslog_tcp");
    assert_eq!(
        [
            &tcp_row[1],
            &tcp_row[3],
            &tcp_row[4],
            &tcp_row[5],
            &tcp_row[7],
            &tcp_row[8]
        ],
        ["100", "100", "60", "40", "0", "0"],
        "{shown}"
    );
    assert!(
        tcp_row[2].parse::<u64>().unwrap() > 100 * 30,
        "bytes counted"
    );
    let udp_row = row("syslog_udp");
    assert_eq!(
        [
            &udp_row[1],
            &udp_row[3],
            &udp_row[5],
            &udp_row[7],
            &udp_row[8]
        ],
        ["5", "5", "5", "0", "3"],
        "{shown}"
    );
    let source = row("syslog_tcp/127.0.0.1");
    assert_eq!([&source[1], &source[3], &source[4]], ["100", "100", "60"]);
    assert!(table.contains("school S1"), "{shown}");
    assert!(
        !table.contains("relp"),
        "inputs off and silent are not listed: {shown}"
    );
    assert!(
        shown.contains("refused syslog_udp/127.0.0.2: 3 time(s)"),
        "{shown}"
    );
    assert!(shown.contains("written when it stopped"), "{shown}");

    // The same in `status --json`.
    let json = serde_json::to_value(&status).unwrap();
    let inputs = json["collector"]["inputs"].as_array().unwrap();
    let tcp_json = inputs.iter().find(|i| i["input"] == "syslog_tcp").unwrap();
    assert_eq!(tcp_json["received"], 100);
    assert_eq!(tcp_json["stored"], 100);
    assert_eq!(tcp_json["raw"], 40);
    assert_eq!(json["collector"]["stopped"], true);
}
