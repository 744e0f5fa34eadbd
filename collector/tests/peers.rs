//! Real RADIUS and NetFlow/IPFIX peers, started by the test: radclient (freeradius-utils) and
//! softflowd reading a pcap the test writes. Each is skipped with a message when not installed.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Harness, have, loopback_config};
use khetnet_retention::record::{Body, Input, SessionStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radclient_start_and_stop() {
    if !have("radclient", "freeradius-utils") {
        return;
    }
    let mut h = Harness::start(loopback_config()).await;
    let addr = h.addr("radius");
    let dir = tempfile::tempdir().unwrap();
    let packets = dir.path().join("packets");
    std::fs::write(
        &packets,
        "Acct-Status-Type = Start, User-Name = \"somchai\", Acct-Session-Id = \"s-1\", Framed-IP-Address = 10.5.50.9, Calling-Station-Id = \"AA-BB-CC-DD-EE-01\", NAS-IP-Address = 127.0.0.1\n\n\
         Acct-Status-Type = Stop, User-Name = \"somchai\", Acct-Session-Id = \"s-1\", Framed-IP-Address = 10.5.50.9, Calling-Station-Id = \"AA-BB-CC-DD-EE-01\", Acct-Session-Time = 600, Acct-Input-Octets = 1000, Acct-Output-Octets = 2000, Acct-Terminate-Cause = User-Request, NAS-IP-Address = 127.0.0.1\n",
    )
    .unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("radclient")
            .args(["-r", "1", "-t", "5", "-f"])
            .arg(&packets)
            .arg(addr.to_string())
            .args(["acct", "s3cret"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "radclient failed: {out} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        out.matches("Accounting-Response").count(),
        2,
        "two responses: {out}"
    );
    let records = h
        .wait_for("start and stop", |r| {
            r.iter()
                .filter(|r| matches!(r.body, Body::Session(_)))
                .count()
                == 2
        })
        .await;
    let sessions: Vec<_> = records
        .iter()
        .filter(|r| r.origin.input == Input::Radius)
        .filter_map(|r| match &r.body {
            Body::Session(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(sessions[0].status, SessionStatus::Start);
    assert_eq!(sessions[1].status, SessionStatus::Stop);
    assert_eq!(sessions[1].duration_secs, Some(600));
    assert!(
        sessions
            .iter()
            .all(|s| s.user == "somchai" && s.mac.as_deref() == Some("aa:bb:cc:dd:ee:01"))
    );

    // The wrong secret: radclient gets no answer.
    let dir2 = tempfile::tempdir().unwrap();
    let packets = dir2.path().join("packets");
    std::fs::write(
        &packets,
        "Acct-Status-Type = Start, User-Name = \"mallory\"\n",
    )
    .unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("radclient")
            .args(["-r", "1", "-t", "1", "-f"])
            .arg(&packets)
            .arg(addr.to_string())
            .args(["acct", "wrong"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!output.status.success(), "no answer for a wrong secret");
    h.stop().await;
}

/// A pcap (Ethernet) of one TCP connection 10.5.50.9:51234 <-> 1.2.3.4:443 with `n` packets
/// each way, closed with FIN so softflowd expires it.
fn pcap(n: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(0xa1b2c3d4u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend(0i32.to_le_bytes());
    out.extend(0u32.to_le_bytes());
    out.extend(65535u32.to_le_bytes());
    out.extend(1u32.to_le_bytes()); // Ethernet
    let base = 1_795_233_600u32;
    let mut packet = |t: u32, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: u8| {
        let payload = [0u8; 100];
        let mut ip = vec![0x45, 0];
        ip.extend(((20 + 20 + payload.len()) as u16).to_be_bytes());
        ip.extend([0, 1, 0x40, 0, 64, 6, 0, 0]);
        ip.extend(src);
        ip.extend(dst);
        let sum = checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        let mut tcp = Vec::new();
        tcp.extend(sport.to_be_bytes());
        tcp.extend(dport.to_be_bytes());
        tcp.extend(1u32.to_be_bytes());
        tcp.extend(1u32.to_be_bytes());
        tcp.extend([0x50, flags]);
        tcp.extend(65535u16.to_be_bytes());
        tcp.extend([0, 0, 0, 0]);
        let mut frame = vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00];
        frame.extend(ip);
        frame.extend(tcp);
        frame.extend(payload);
        out.extend((base + t).to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend((frame.len() as u32).to_le_bytes());
        out.extend((frame.len() as u32).to_le_bytes());
        out.extend(frame);
    };
    let inside = [10, 5, 50, 9];
    let server = [1, 2, 3, 4];
    for i in 0..n {
        let flags = if i == 0 {
            0x02
        } else if i == n - 1 {
            0x11
        } else {
            0x10
        };
        packet(i, inside, server, 51234, 443, flags);
        packet(
            i,
            server,
            inside,
            443,
            51234,
            flags | if i == 0 { 0x10 } else { 0 },
        );
    }
    out
}

fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

async fn softflowd_exports(version: &str, input: Input) {
    if !have("softflowd", "softflowd") {
        return;
    }
    let mut config = loopback_config();
    config.ipfix = "127.0.0.1:0".into();
    let mut h = Harness::start(config).await;
    let port = if input == Input::Ipfix {
        h.addr("ipfix")
    } else {
        h.addr("netflow")
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::File::create(dir.path().join("s.pcap"))
        .unwrap()
        .write_all(&pcap(5))
        .unwrap();
    let version = version.to_owned();
    let cwd = dir.path().to_owned();
    // softflowd 1.1.0 cuts the -r path at 16 characters and then waits forever, so it runs in
    // the temporary directory with short relative names; `timeout` bounds it all the same.
    let output = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args([
                "20",
                "softflowd",
                "-d",
                "-r",
                "s.pcap",
                "-n",
                &port.to_string(),
            ])
            .args(["-v", &version, "-c", "s.ctl", "-p", "s.pid"])
            .current_dir(cwd)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "softflowd: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let records = h
        .wait_for("the two directions of the connection", |r| {
            r.iter().filter(|r| matches!(r.body, Body::Flow(_))).count() >= 2
        })
        .await;
    let mut flows: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.body {
            Body::Flow(f) => Some(format!(
                "{:?} {}:{}>{}:{} p{} pkts={:?} exp={:?}",
                r.origin.input,
                f.src_ip,
                f.src_port.unwrap_or(0),
                f.dst_ip,
                f.dst_port.unwrap_or(0),
                f.protocol,
                f.packets,
                f.exporter.map(|e| e.to_string())
            )),
            _ => None,
        })
        .collect();
    flows.sort();
    assert_eq!(
        flows,
        [
            format!(
                "{input:?} 1.2.3.4:443>10.5.50.9:51234 p6 pkts=Some(5) exp=Some(\"127.0.0.1\")"
            ),
            format!(
                "{input:?} 10.5.50.9:51234>1.2.3.4:443 p6 pkts=Some(5) exp=Some(\"127.0.0.1\")"
            ),
        ]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softflowd_netflow_v5() {
    softflowd_exports("5", Input::Netflow).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softflowd_netflow_v9() {
    softflowd_exports("9", Input::Netflow).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softflowd_ipfix() {
    softflowd_exports("10", Input::Ipfix).await;
}
