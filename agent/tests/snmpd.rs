//! The SNMP probe against a real Net-SNMP `snmpd`, started by the test on a loopback port
//! with its own configuration. Skipped, saying so, when `snmpd` is not installed
//! (`apt-get install snmpd`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use khetnet_agent::probe::{Prober, Target};

struct Snmpd(Child);

impl Drop for Snmpd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn snmpd_path() -> Option<std::path::PathBuf> {
    ["/usr/sbin/snmpd", "/usr/local/sbin/snmpd"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
}

fn target(port: u16, community: &str) -> Target {
    Target {
        id: 1,
        name: "switch".into(),
        probe: "snmp".into(),
        address: "127.0.0.1".into(),
        port: Some(port.into()),
        snmp_community: Some(community.into()),
        interval_secs: 60,
    }
}

#[tokio::test]
async fn snmp_v2c_system_and_interfaces_from_a_real_snmpd() {
    let Some(snmpd) = snmpd_path() else {
        eprintln!("SKIPPED: snmpd is not installed (apt-get install snmpd)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("snmpd.conf");
    std::fs::write(
        &conf,
        format!(
            "agentAddress udp:127.0.0.1:{port}\nrocommunity khetnet-test 127.0.0.1\nsysName khetnet-test-switch\nsysLocation server room\n"
        ),
    )
    .unwrap();
    let child = Command::new(snmpd)
        .args(["-f", "-Lo", "-C", "-c"])
        .arg(&conf)
        .arg("-p")
        .arg(dir.path().join("snmpd.pid"))
        .env("SNMP_PERSISTENT_DIR", dir.path())
        .env("MIBS", "")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("snmpd starts");
    let guard = Snmpd(child);
    let prober = Prober::new(Duration::from_secs(1));

    let mut sample = prober.probe(&target(port, "khetnet-test")).await;
    for _ in 0..50 {
        if sample.ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        sample = prober.probe(&target(port, "khetnet-test")).await;
    }
    assert!(sample.ok, "{sample:?}");
    let detail = sample.detail.unwrap();
    assert_eq!(detail["sys_name"], "khetnet-test-switch", "{detail}");
    assert!(
        detail["sys_descr"].as_str().unwrap().contains("Linux"),
        "{detail}"
    );
    assert!(
        detail["sys_uptime_secs"].as_f64().unwrap() >= 0.0,
        "{detail}"
    );
    let interfaces = detail["interfaces"].as_array().unwrap();
    let lo = interfaces
        .iter()
        .find(|i| i["descr"] == "lo")
        .unwrap_or_else(|| panic!("no lo in {detail}"));
    assert_eq!(lo["oper_status"], "up", "{lo}");
    assert!(lo["in_octets"].as_u64().is_some(), "64-bit counters: {lo}");
    assert!(lo["out_octets"].as_u64().is_some(), "64-bit counters: {lo}");

    // A wrong community gets no answer from snmpd: the device counts as down.
    let wrong = prober.probe(&target(port, "wrong")).await;
    assert!(!wrong.ok);
    assert!(wrong.error.unwrap().contains("no answer"));

    // snmpd stopped: down.
    drop(guard);
    let gone = prober.probe(&target(port, "khetnet-test")).await;
    assert!(!gone.ok, "{gone:?}");
}
