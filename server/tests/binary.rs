//! The `khetnet` binary as a newcomer meets it: first start prints the admin password once,
//! the server answers, SIGTERM stops it cleanly; `config check` names bad keys.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_khetnet");

/// The embedded collector on loopback ports the system picks, with one input's port taken.
fn loopback_collector(cmd: &mut Command, taken_tcp: &str) {
    for key in ["SYSLOG_UDP", "RELP", "RADIUS", "NETFLOW", "IPFIX"] {
        cmd.env(format!("KHETNET_COLLECTOR_{key}"), "127.0.0.1:0");
    }
    cmd.env("KHETNET_COLLECTOR_SYSLOG_TCP", taken_tcp);
    cmd.env("KHETNET_COLLECTOR_ALLOW", "127.0.0.0/8=1040100001");
}

#[test]
fn first_start_prints_the_admin_password_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let mut cmd = Command::new(BIN);
    loopback_collector(&mut cmd, &taken_addr);
    let mut child = cmd
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .env_remove("KHETNET_ADMIN_PASSWORD")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut password, mut url, mut syslog_udp, mut tcp_down) = (None, None, None, None);
    while url.is_none() {
        let line = lines
            .next()
            .expect("the server printed its address")
            .unwrap();
        if let Some(rest) = line.split("with password ").nth(1) {
            password = Some(rest.trim().to_owned());
        }
        if line.contains("syslog_udp") {
            syslog_udp = line
                .split("listening on ")
                .nth(1)
                .map(|a| a.trim().to_owned());
        }
        if line.contains("syslog_tcp") && line.contains("DOWN") {
            tcp_down = Some(line.clone());
        }
        if let Some(rest) = line.strip_prefix("khetnet: serving ") {
            url = Some(rest.trim_end_matches('/').to_owned());
        }
    }
    let (password, url) = (
        password.expect("a generated password was printed"),
        url.unwrap(),
    );
    assert!(
        password.len() >= 20,
        "a strong generated password: {password}"
    );
    let syslog_udp = syslog_udp.expect("the console says where syslog over UDP listens");
    let tcp_down = tcp_down.expect("the console says the syslog TCP input is down");
    assert!(
        tcp_down.contains(&taken_addr),
        "the down input names its address: {tcp_down}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let resp = client
            .post(format!("{url}/api/v1/auth/login"))
            .json(&serde_json::json!({ "username": "admin", "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let health: serde_json::Value = client
            .get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let component = |name: &str| {
            health["components"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == name)
                .cloned()
        };
        let udp = component("collector.syslog_udp").expect("each input is in /healthz");
        assert_eq!(udp["status"], "ok", "{health}");
        let tcp = component("collector.syslog_tcp").expect("the down input is in /healthz");
        assert_eq!(tcp["status"], "down");
        assert!(
            tcp["detail"]
                .as_str()
                .unwrap()
                .contains("collector.syslog_tcp"),
            "the fix names the key"
        );
        assert_eq!(
            health["status"], "degraded",
            "the web UI keeps serving with an input down"
        );
    });

    // A gateway's line reaches the store through the embedded collector.
    let gateway = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let line =
        b"<134>Nov 21 10:00:00 gw1 dnsmasq-dhcp[99]: DHCPACK(br0) 10.1.2.3 aa:bb:cc:dd:ee:ff pc1";
    gateway.send_to(line, &syslog_udp).unwrap();
    std::thread::sleep(Duration::from_millis(500));

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not stop within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let options = khetnet_retention::Options::default();
    let store = khetnet_retention::Store::open_read(dir.path().join("store"), &options).unwrap();
    let stored = store.status().unwrap();
    assert_eq!(
        stored.records, 1,
        "the line sent over UDP was stored before exit"
    );

    // A second start on the same data prints no password: it was shown only once. (It stops
    // at once on a port that is taken, after the database step that would print it.)
    let output = Command::new(BIN)
        .args(["serve", "--no-collector", "--listen", &taken_addr, "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("password"), "{stdout}");
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["serve", "--no-collector", "--listen", &addr, "--data"])
        .arg(dir.path())
        .env("KHETNET_ADMIN_PASSWORD", "a good admin password")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&addr) && stderr.contains("--listen"),
        "{stderr}"
    );
}

#[test]
fn config_check_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        let path = dir.path().join("khetnet.toml");
        std::fs::write(&path, text).unwrap();
        Command::new(BIN)
            .args(["config", "check"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let ok = check("[server]\nlisten = \"127.0.0.1:9000\"\n");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = check("[collector]\nallow = [\"10.1.0.0/33=S1\"]\n");
    assert!(
        !bad.status.success(),
        "a bad collector value is refused by check too"
    );
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("collector.allow"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let bad = check("[retention]\nretention_days = 7\n");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("retention.retention_days") && stderr.contains("90"),
        "{stderr}"
    );
    let example = Command::new(BIN)
        .args(["config", "example"])
        .output()
        .unwrap();
    let text = String::from_utf8(example.stdout).unwrap();
    std::fs::write(dir.path().join("example.toml"), &text).unwrap();
    let checked = Command::new(BIN)
        .args(["config", "check"])
        .arg(dir.path().join("example.toml"))
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "the printed example is a valid file"
    );
}

/// An SNTP server on loopback whose clock is 50 ms ahead of this machine's; answers a bounded
/// number of requests.
fn skewed_sntp() -> String {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 48];
        for _ in 0..16 {
            let Ok((48, peer)) = socket.recv_from(&mut buf) else {
                return;
            };
            let t = jiff::Timestamp::now() + jiff::SignedDuration::from_millis(50);
            let _ = socket.send_to(&khetnet_collector::clock::reply(&buf, t, t, 1), peer);
        }
    });
    addr
}

#[test]
fn healthz_shows_the_clock_degraded_when_it_is_off_by_more_than_10ms() {
    let dir = tempfile::tempdir().unwrap();
    let ntp = skewed_sntp();
    let mut cmd = Command::new(BIN);
    loopback_collector(&mut cmd, "127.0.0.1:0");
    let mut child = cmd
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .env("KHETNET_ADMIN_PASSWORD", "a good admin password")
        .env("KHETNET_COLLECTOR_NTP_SERVERS", &ntp)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("the server printed its address")
            .unwrap();
        if let Some(rest) = line.strip_prefix("khetnet: serving ") {
            break rest.trim_end_matches('/').to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    // Stopped however the test ends.
    struct Stop(u32);
    impl Drop for Stop {
        fn drop(&mut self) {
            unsafe { libc::kill(self.0 as i32, libc::SIGTERM) };
        }
    }
    let stop = Stop(child.id());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (health, clock) = loop {
        let health: serde_json::Value = rt.block_on(async {
            reqwest::get(format!("{url}/healthz"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        });
        let clock = health["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "collector.clock")
            .cloned();
        if let Some(clock) = clock
            && clock["status"] == "degraded"
        {
            break (health, clock);
        }
        assert!(
            Instant::now() < deadline,
            "the clock was not reported degraded: {health}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let detail = clock["detail"].as_str().unwrap();
    assert!(
        detail.contains(&ntp) && detail.contains("over the law's 10 ms"),
        "{detail}"
    );
    assert_eq!(health["status"], "degraded", "{health}");
    drop(stop);
    let _ = child.wait();
}
