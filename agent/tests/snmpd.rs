//! The SNMP probe against a real Net-SNMP `snmpd`, started by the test on a loopback port
//! with its own configuration (v2c community, a v3 authPriv user made with `createUser`,
//! Printer-MIB and UPS-MIB values served with `override`). Skipped, saying so, when `snmpd`
//! is not installed (`apt-get install snmpd`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use khetnet_agent::probe::{Prober, Sample, Target};
use khetnet_agent::snmp::SnmpV3;

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
        snmp_v3: None,
        interval_secs: 60,
    }
}

/// A running snmpd on a free loopback port with `extra` configuration lines.
struct Device {
    port: u16,
    _guard: Snmpd,
    _dir: tempfile::TempDir,
}

fn start_snmpd(extra: &str) -> Option<Device> {
    let Some(snmpd) = snmpd_path() else {
        eprintln!("SKIPPED: snmpd is not installed (apt-get install snmpd)");
        return None;
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
            "agentAddress udp:127.0.0.1:{port}\nrocommunity khetnet-test 127.0.0.1\nsysName khetnet-test-switch\nsysLocation server room\n{extra}"
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
    Some(Device {
        port,
        _guard: Snmpd(child),
        _dir: dir,
    })
}

/// Probes until snmpd answers (it takes a moment to start), at most 10 s.
async fn probe_until_up(prober: &Prober, target: &Target) -> Sample {
    let mut sample = prober.probe(target).await;
    for _ in 0..50 {
        if sample.ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        sample = prober.probe(target).await;
    }
    sample
}

const V3_USER: &str =
    "createUser khetnet-v3 SHA \"auth-pass-2569\" AES \"priv-pass-2569\"\nrouser khetnet-v3 priv\n";

fn v3_target(port: u16, auth: &str, privacy: &str) -> Target {
    Target {
        snmp_community: None,
        snmp_v3: Some(SnmpV3 {
            user: "khetnet-v3".into(),
            auth_protocol: "sha".into(),
            auth_passphrase: auth.into(),
            priv_protocol: "aes".into(),
            priv_passphrase: privacy.into(),
        }),
        ..target(port, "")
    }
}

#[tokio::test]
async fn snmp_v3_auth_priv_from_a_real_snmpd() {
    let Some(device) = start_snmpd(V3_USER) else {
        return;
    };
    let prober = Prober::new(Duration::from_secs(1));
    let sample = probe_until_up(
        &prober,
        &v3_target(device.port, "auth-pass-2569", "priv-pass-2569"),
    )
    .await;
    assert!(sample.ok, "{sample:?}");
    let detail = sample.detail.unwrap();
    assert_eq!(detail["sys_name"], "khetnet-test-switch", "{detail}");
    assert!(
        detail["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["descr"] == "lo"),
        "the interface table over v3: {detail}"
    );

    // A wrong auth passphrase: snmpd answers with a report, which the agent names.
    let wrong = prober
        .probe(&v3_target(
            device.port,
            "not-the-pass-2569",
            "priv-pass-2569",
        ))
        .await;
    assert!(!wrong.ok, "{wrong:?}");
    let error = wrong.error.unwrap();
    assert!(
        error.contains("SNMPv3 authentication failed") && error.contains("passphrase"),
        "{error}"
    );

    // A wrong privacy passphrase: the device cannot be read either.
    let wrong_priv = prober
        .probe(&v3_target(
            device.port,
            "auth-pass-2569",
            "not-the-priv-2569",
        ))
        .await;
    assert!(!wrong_priv.ok, "{wrong_priv:?}");

    // The v3 user is not a v2c community: nothing is readable with it in clear.
    let clear = prober.probe(&target(device.port, "khetnet-v3")).await;
    assert!(!clear.ok, "{clear:?}");
}

#[tokio::test]
async fn printer_supplies_and_ups_battery() {
    // A printer's two supplies (one known level, one the MIB's "unknown capacity" and "some
    // remaining") and a UPS on battery, served by snmpd as a printer or UPS would.
    let mibs = "\
override .1.3.6.1.2.1.43.11.1.1.6.1.1 octet_str \"Black Toner Cartridge\"
override .1.3.6.1.2.1.43.11.1.1.8.1.1 integer 2000
override .1.3.6.1.2.1.43.11.1.1.9.1.1 integer 500
override .1.3.6.1.2.1.43.11.1.1.6.1.2 octet_str \"Waste Toner Box\"
override .1.3.6.1.2.1.43.11.1.1.8.1.2 integer -2
override .1.3.6.1.2.1.43.11.1.1.9.1.2 integer -3
override .1.3.6.1.2.1.33.1.2.1.0 integer 3
override .1.3.6.1.2.1.33.1.2.3.0 integer 12
override .1.3.6.1.2.1.33.1.2.4.0 integer 41
override .1.3.6.1.2.1.33.1.4.1.0 integer 5
";
    let Some(device) = start_snmpd(mibs) else {
        return;
    };
    let prober = Prober::new(Duration::from_secs(1));
    let sample = probe_until_up(&prober, &target(device.port, "khetnet-test")).await;
    assert!(sample.ok, "{sample:?}");
    let detail = sample.detail.unwrap();
    assert_eq!(
        detail["supplies"],
        serde_json::json!([
            { "description": "Black Toner Cartridge", "level_percent": 25.0 },
            { "description": "Waste Toner Box", "level_percent": null },
        ]),
        "{detail}"
    );
    let ups = &detail["ups"];
    assert_eq!(ups["on_battery"], true, "{detail}");
    assert_eq!(ups["charge_percent"], 41, "{detail}");
    assert_eq!(ups["minutes_remaining"], 12, "{detail}");
    assert_eq!(ups["battery_status"], "low", "{detail}");
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
    // A Linux host is neither a printer nor a UPS: no such sections.
    assert!(
        detail.get("supplies").is_none() && detail.get("ups").is_none(),
        "{detail}"
    );

    // A wrong community gets no answer from snmpd: the device counts as down.
    let wrong = prober.probe(&target(port, "wrong")).await;
    assert!(!wrong.ok);
    assert!(wrong.error.unwrap().contains("no answer"));

    // snmpd stopped: down.
    drop(guard);
    let gone = prober.probe(&target(port, "khetnet-test")).await;
    assert!(!gone.ok, "{gone:?}");
}
