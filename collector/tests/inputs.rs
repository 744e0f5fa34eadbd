//! Each input over real sockets on loopback, into a real store: what a gateway sends is
//! stored, what is acknowledged is durable, strangers are refused without harming neighbours.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Harness, have, loopback_config};
use khetnet_collector::InputState;
use khetnet_collector::net::Count;
use khetnet_retention::record::{Body, Input, SessionStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const LOGIN: &str =
    "<134>Nov 21 10:59:59 router hotspot,account,info,debug student1 (10.5.50.9): logged in";

fn sessions(records: &[khetnet_retention::Record], input: Input) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.origin.input == input)
        .filter_map(|r| match &r.body {
            Body::Session(s) => Some(format!(
                "{} {:?} {}",
                s.user,
                s.status,
                r.school.as_deref().unwrap_or("-")
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn udp_and_tcp_syslog_from_own_client() {
    let mut h = Harness::start(loopback_config()).await;
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.send_to(LOGIN.as_bytes(), h.addr("syslog_udp"))
        .await
        .unwrap();

    // Octet counting and LF framing mixed on one connection, written in small pieces.
    let mut tcp = TcpStream::connect(h.addr("syslog_tcp")).await.unwrap();
    let counted = LOGIN.replace("student1", "student2");
    let mut wire = format!("{} {}", counted.len(), counted).into_bytes();
    wire.extend(format!("{}\n", LOGIN.replace("student1", "student3")).as_bytes());
    // The last message has no final LF: it is stored when the sender closes.
    wire.extend(LOGIN.replace("student1", "student4").as_bytes());
    for piece in wire.chunks(7) {
        tcp.write_all(piece).await.unwrap();
        tcp.flush().await.unwrap();
    }
    drop(tcp);

    let records = h
        .wait_for("1 UDP and 3 TCP sessions", |r| {
            sessions(r, Input::SyslogUdp).len() == 1 && sessions(r, Input::SyslogTcp).len() == 3
        })
        .await;
    assert_eq!(sessions(&records, Input::SyslogUdp), ["student1 Start S1"]);
    assert_eq!(
        sessions(&records, Input::SyslogTcp),
        [
            "student2 Start S1",
            "student3 Start S1",
            "student4 Start S1"
        ]
    );
    let sources = h.running().sources().clone();
    assert_eq!(sources.get(Input::SyslogTcp, Count::Received), 3);
    assert_eq!(sources.get(Input::SyslogUdp, Count::Received), 1);
    h.stop().await;
}

#[tokio::test]
async fn logger_over_udp_and_tcp() {
    if !have("logger", "util-linux") {
        return;
    }
    let mut h = Harness::start(loopback_config()).await;
    for (flag, port, user, extra) in [
        ("-d", h.addr("syslog_udp").port(), "udpuser", None),
        ("-T", h.addr("syslog_tcp").port(), "tcpuser", None),
        (
            "-T",
            h.addr("syslog_tcp").port(),
            "octetuser",
            Some("--octet-count"),
        ),
    ] {
        let mut cmd = std::process::Command::new("logger");
        cmd.args([
            "-n",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            flag,
            "--rfc3164",
            "-t",
            "hotspot,account,info,debug",
        ]);
        if let Some(extra) = extra {
            cmd.arg(extra);
        }
        cmd.arg(format!("{user} (10.5.50.9): logged in"));
        let status = cmd.status().unwrap();
        assert!(status.success(), "logger {flag} failed");
    }
    let records = h
        .wait_for("three logger sessions", |r| {
            sessions(r, Input::SyslogUdp).len() == 1 && sessions(r, Input::SyslogTcp).len() == 2
        })
        .await;
    assert_eq!(sessions(&records, Input::SyslogUdp), ["udpuser Start S1"]);
    let mut tcp = sessions(&records, Input::SyslogTcp);
    tcp.sort();
    assert_eq!(tcp, ["octetuser Start S1", "tcpuser Start S1"]);
    h.stop().await;
}

#[tokio::test]
async fn strangers_are_refused_and_counted_and_neighbours_keep_going() {
    let mut h = Harness::start(loopback_config()).await;
    // A neighbour connection, open before and after the stranger.
    let mut neighbour = TcpStream::connect(h.addr("syslog_tcp")).await.unwrap();
    neighbour
        .write_all(format!("{LOGIN}\n").as_bytes())
        .await
        .unwrap();

    // 127.0.0.2 is loopback too, but not in the allow-list.
    let stranger_udp = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    stranger_udp
        .send_to(LOGIN.as_bytes(), h.addr("syslog_udp"))
        .await
        .unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut stranger = socket.connect(h.addr("syslog_tcp")).await.unwrap();
    let _ = stranger.write_all(format!("{LOGIN}\n").as_bytes()).await;
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(5), stranger.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the stranger's connection is closed: {closed:?}"
    );
    // Garbage from the neighbour is kept raw; the connection stays up.
    neighbour.write_all(b"\xff\xfe not syslog\n").await.unwrap();
    neighbour
        .write_all(format!("{}\n", LOGIN.replace("student1", "after")).as_bytes())
        .await
        .unwrap();

    let records = h
        .wait_for("the neighbour's three messages", |r| r.len() == 3)
        .await;
    assert!(
        records
            .iter()
            .all(|r| r.origin.peer == Some("127.0.0.1".parse().unwrap()))
    );
    assert_eq!(
        sessions(&records, Input::SyslogTcp),
        ["student1 Start S1", "after Start S1"]
    );
    let sources = h.running().sources().clone();
    assert_eq!(sources.get(Input::SyslogUdp, Count::Refused), 1);
    assert_eq!(sources.get(Input::SyslogTcp, Count::Refused), 1);
    assert_eq!(sources.get(Input::SyslogTcp, Count::Malformed), 1);
    h.stop().await;
}

/// A minimal RELP client: sends frames and reads responses.
struct RelpClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RelpClient {
    async fn connect(addr: SocketAddr) -> RelpClient {
        RelpClient {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, txnr: u64, command: &str, data: &str) {
        let frame = format!("{txnr} {command} {} {data}\n", data.len());
        self.stream.write_all(frame.as_bytes()).await.unwrap();
    }

    /// The next frame's txnr, command and data.
    async fn next(&mut self) -> (u64, String, String) {
        loop {
            if let khetnet_collector::relp::Decoded::Frame { frame, consumed } =
                khetnet_collector::relp::decode(&self.buf)
            {
                let out = (
                    frame.txnr,
                    frame.command.to_owned(),
                    String::from_utf8_lossy(frame.data).into_owned(),
                );
                self.buf.drain(..consumed);
                return out;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
                .await
                .expect("a RELP response within 10 s")
                .unwrap();
            assert!(n > 0, "connection closed while waiting for a response");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[tokio::test]
async fn relp_answers_each_message_once_it_is_stored() {
    let mut h = Harness::start(loopback_config()).await;
    let mut client = RelpClient::connect(h.addr("relp")).await;
    client
        .send(
            1,
            "open",
            "relp_version=0\nrelp_software=test\ncommands=syslog",
        )
        .await;
    let (txnr, command, data) = client.next().await;
    assert_eq!((txnr, command.as_str()), (1, "rsp"));
    assert!(
        data.starts_with("200 OK") && data.contains("commands=syslog"),
        "{data}"
    );
    for i in 2..=4 {
        client
            .send(i, "syslog", &LOGIN.replace("student1", &format!("relp{i}")))
            .await;
    }
    for i in 2..=4 {
        let (txnr, command, data) = client.next().await;
        assert_eq!(
            (txnr, command.as_str(), data.as_str()),
            (i, "rsp", "200 OK")
        );
        // Acknowledged means already in the store.
        let stored = sessions(&h.records(), Input::Relp);
        assert!(
            stored.contains(&format!("relp{i} Start S1")),
            "rsp {i} before the record was stored: {stored:?}"
        );
    }
    client.send(5, "frobnicate", "").await;
    let (txnr, _, data) = client.next().await;
    assert_eq!(txnr, 5);
    assert!(data.starts_with("500"), "{data}");
    client.send(6, "close", "").await;
    assert_eq!(client.next().await.0, 6);
    h.stop().await;
}

fn radius_request(identifier: u8, attributes: &[(u8, &[u8])], secret: &[u8]) -> Vec<u8> {
    use md5::{Digest, Md5};
    let attrs: Vec<u8> = attributes
        .iter()
        .flat_map(|(kind, value)| {
            let mut a = vec![*kind, (value.len() + 2) as u8];
            a.extend_from_slice(value);
            a
        })
        .collect();
    let len = (20 + attrs.len()) as u16;
    let mut packet = vec![4, identifier];
    packet.extend_from_slice(&len.to_be_bytes());
    let mut md5 = Md5::new();
    md5.update(&packet);
    md5.update([0u8; 16]);
    md5.update(&attrs);
    md5.update(secret);
    packet.extend_from_slice(&md5.finalize());
    packet.extend_from_slice(&attrs);
    packet
}

#[tokio::test]
async fn radius_is_answered_only_after_the_session_is_stored() {
    let mut h = Harness::start(loopback_config()).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let start = radius_request(
        7,
        &[
            (40, &1u32.to_be_bytes()),  // Acct-Status-Type Start
            (1, b"somchai"),            // User-Name
            (44, b"sess-1"),            // Acct-Session-Id
            (8, &[10, 5, 50, 9]),       // Framed-IP-Address
            (31, b"AA-BB-CC-DD-EE-01"), // Calling-Station-Id
        ],
        b"s3cret",
    );
    client.send_to(&start, h.addr("radius")).await.unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), client.recv_from(&mut buf))
        .await
        .expect("an Accounting-Response")
        .unwrap();
    assert_eq!(
        (buf[0], buf[1], n),
        (5, 7, 20),
        "Accounting-Response to identifier 7"
    );
    let records = h.records();
    let session = records
        .iter()
        .find_map(|r| match &r.body {
            Body::Session(s) if r.origin.input == Input::Radius => Some(s.clone()),
            _ => None,
        })
        .expect("the session is stored before the response is sent");
    assert_eq!(session.user, "somchai");
    assert_eq!(session.status, SessionStatus::Start);
    assert_eq!(session.mac.as_deref(), Some("aa:bb:cc:dd:ee:01"));

    // The wrong secret: kept raw, counted, not answered.
    let forged = radius_request(8, &[(40, &2u32.to_be_bytes()), (1, b"somchai")], b"wrong");
    client.send_to(&forged, h.addr("radius")).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_millis(700), client.recv_from(&mut buf)).await;
    assert!(answer.is_err(), "a forged request is not answered");
    h.wait_for("the forged request kept raw", |r| {
        r.iter()
            .any(|r| r.origin.input == Input::Radius && matches!(r.body, Body::Raw(_)))
    })
    .await;
    assert_eq!(
        h.running().sources().get(Input::Radius, Count::Malformed),
        1
    );
    h.stop().await;
}

#[tokio::test]
async fn netflow_v5_datagrams_become_flows() {
    let mut h = Harness::start(loopback_config()).await;
    let mut p = Vec::new();
    p.extend(5u16.to_be_bytes());
    p.extend(1u16.to_be_bytes());
    p.extend(100_000u32.to_be_bytes()); // uptime ms
    p.extend(1_795_233_600u32.to_be_bytes()); // export secs
    p.extend(0u32.to_be_bytes());
    p.extend(1u32.to_be_bytes());
    p.extend([0, 0, 0, 0]);
    p.extend([10, 5, 50, 9]);
    p.extend([1, 2, 3, 4]);
    p.extend([0; 8]);
    p.extend(3u32.to_be_bytes());
    p.extend(1500u32.to_be_bytes());
    p.extend(90_000u32.to_be_bytes());
    p.extend(99_000u32.to_be_bytes());
    p.extend(51234u16.to_be_bytes());
    p.extend(443u16.to_be_bytes());
    p.extend([0, 0x02, 6, 0]);
    p.extend([0; 8]);
    let exporter = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    exporter.send_to(&p, h.addr("netflow")).await.unwrap();
    exporter
        .send_to(b"not a flow", h.addr("netflow"))
        .await
        .unwrap();
    let records = h.wait_for("one flow and one raw", |r| r.len() == 2).await;
    let flow = records
        .iter()
        .find_map(|r| match &r.body {
            Body::Flow(f) => Some(f.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(flow.src_ip.to_string(), "10.5.50.9");
    assert_eq!(flow.dst_port, Some(443));
    assert_eq!(flow.bytes, Some(1500));
    assert_eq!(
        h.running().sources().get(Input::Netflow, Count::Malformed),
        1
    );
    h.stop().await;
}

#[tokio::test]
async fn a_busy_port_is_reported_with_the_fix_and_the_other_inputs_run() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let mut config = loopback_config();
    config.syslog_tcp = format!("127.0.0.1:{port}");
    config.syslog_tls = "127.0.0.1:0".into();
    let mut h = Harness::start(config).await;
    let inputs = h.running().inputs().to_vec();
    let state = |name: &str| {
        inputs
            .iter()
            .find(|i| i.name == name)
            .unwrap()
            .state
            .clone()
    };
    match state("syslog_tcp") {
        InputState::Down(why) => {
            assert!(
                why.contains(&port.to_string())
                    && why.contains("another program")
                    && why.contains("collector.syslog_tcp"),
                "{why}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Without a certificate TLS is off (a choice not yet made), not down.
    assert_eq!(state("syslog_tls"), InputState::Off);
    assert_eq!(state("ipfix"), InputState::Off);
    assert!(matches!(state("syslog_udp"), InputState::Listening(_)));
    assert!(!h.running().healthy());
    // The UDP input still works.
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.send_to(LOGIN.as_bytes(), h.addr("syslog_udp"))
        .await
        .unwrap();
    h.wait_for("the UDP message", |r| r.len() == 1).await;
    h.stop().await;
}

#[test]
fn a_privileged_port_names_the_port_and_the_fix() {
    let error = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
    let why = khetnet_collector::net::bind_error(
        "syslog_udp",
        "0.0.0.0:514".parse().unwrap(),
        "udp",
        &error,
    );
    assert!(
        why.contains("514")
            && why.contains("CAP_NET_BIND_SERVICE")
            && why.contains("collector.syslog_udp")
            && why.contains("setcap"),
        "{why}"
    );
}

#[tokio::test]
async fn shutdown_stores_everything_received() {
    let mut h = Harness::start(loopback_config()).await;
    let mut tcp = TcpStream::connect(h.addr("syslog_tcp")).await.unwrap();
    let mut wire = String::new();
    for i in 0..5000 {
        wire.push_str(&format!("<13>Nov 21 10:59:59 host app: message {i}\n"));
    }
    tcp.write_all(wire.as_bytes()).await.unwrap();
    tcp.shutdown().await.unwrap();
    // Wait until the collector has read the whole stream (the connection is closed by it).
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await;
    h.stop().await;
    let records = common::stored(&h.store);
    assert_eq!(records.len(), 5000, "the client's read: {closed:?}");
}

#[tokio::test]
async fn bad_settings_name_the_key() {
    let mut config = loopback_config();
    config.relp = "localhost".into();
    let err = khetnet_collector::Settings::from_config(&config)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("collector.relp") && err.contains("ADDRESS:PORT"),
        "{err}"
    );
    let mut config = loopback_config();
    config.radius_clients = vec!["10.0.0.1".into()];
    let err = khetnet_collector::Settings::from_config(&config)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("collector.radius_clients") && err.contains("SECRET"),
        "{err}"
    );
    let mut config = loopback_config();
    config.allow = vec!["10.0.0.1/8".into()];
    let err = khetnet_collector::Settings::from_config(&config)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("collector.allow") && err.contains("host bits"),
        "{err}"
    );
}

#[test]
fn the_example_file_documents_the_collector_defaults() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/khetnet.example.toml");
    let config = khetnet_config::Config::load(Some(&path), Vec::new()).unwrap();
    assert_eq!(config.collector, khetnet_config::CollectorConfig::default());
    let text = std::fs::read_to_string(&path).unwrap();
    for key in ["tls_cert", "tls_key", "tls_client_ca", "radius_secret"] {
        assert!(
            text.contains(&format!("# {key} = ")),
            "collector.{key} is not documented"
        );
    }
    let settings = khetnet_collector::Settings::from_config(&config.collector).unwrap();
    assert_eq!(settings.syslog_udp, Some("0.0.0.0:514".parse().unwrap()));
    assert_eq!(settings.relp, Some("0.0.0.0:2514".parse().unwrap()));
    assert_eq!(settings.radius, Some("0.0.0.0:1813".parse().unwrap()));
    assert_eq!(settings.ipfix, Some("0.0.0.0:4739".parse().unwrap()));
}
