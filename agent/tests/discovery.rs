//! LAN discovery against real network namespaces made by the test: the agent's namespace holds
//! a bridge (the school LAN) and each school host is a namespace behind a veth pair on it. The
//! agent's `sweep` must find the hosts in the configured range with their MACs, and never ask
//! for one outside it. Skipped, saying so, when namespaces cannot be made (not root, no `ip`).

use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ip_output(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The agent's namespace with a bridge, and host namespaces on it; removed on drop.
struct Lan {
    agent_ns: String,
    hosts: Vec<(String, String)>,
    subnet: String,
}

impl Lan {
    /// `None` when network namespaces cannot be made here.
    fn create(tag: &str, host_octets: &[u8]) -> Option<Lan> {
        let pid = std::process::id();
        let subnet = format!("10.213.{}", pid % 250);
        let mut lan = Lan {
            agent_ns: format!("khn-{tag}-{pid}"),
            hosts: Vec::new(),
            subnet: subnet.clone(),
        };
        let agent = lan.agent_ns.clone();
        let mut steps: Vec<Vec<String>> = vec![
            vec!["netns", "add", &agent],
            vec!["-n", &agent, "link", "set", "lo", "up"],
            vec!["-n", &agent, "link", "add", "br0", "type", "bridge"],
            vec![
                "-n",
                &agent,
                "addr",
                "add",
                &format!("{subnet}.1/24"),
                "dev",
                "br0",
            ],
            vec!["-n", &agent, "link", "set", "br0", "up"],
        ]
        .into_iter()
        .map(|s| s.into_iter().map(str::to_owned).collect())
        .collect();
        for octet in host_octets {
            let ns = format!("khn-{tag}-{pid}-h{octet}");
            let port = format!("p{octet}");
            let address = format!("{subnet}.{octet}");
            for step in [
                vec!["netns", "add", &ns],
                vec![
                    "-n", &agent, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                    "netns", &ns,
                ],
                vec!["-n", &agent, "link", "set", &port, "master", "br0"],
                vec!["-n", &agent, "link", "set", &port, "up"],
                vec![
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{address}/24"),
                    "dev",
                    "eth0",
                ],
                vec!["-n", &ns, "link", "set", "eth0", "up"],
            ] {
                steps.push(step.into_iter().map(str::to_owned).collect());
            }
            lan.hosts.push((ns, address));
        }
        for step in steps {
            let args: Vec<&str> = step.iter().map(String::as_str).collect();
            if !ip(&args) {
                eprintln!(
                    "SKIPPED: `ip {}` failed: network namespaces need root and iproute2",
                    args.join(" ")
                );
                return None;
            }
        }
        Some(lan)
    }

    fn mac(&self, ns: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "cat", "/sys/class/net/eth0/address"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs `khetnet-agent sweep ARGS` inside the agent's namespace.
    fn sweep(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.agent_ns,
                env!("CARGO_BIN_EXE_khetnet-agent"),
                "sweep",
            ])
            .args(args)
            .env_remove("KHETNET_CONFIG")
            .output()
            .expect("the agent runs")
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for (ns, _) in &self.hosts {
            ip(&["netns", "del", ns]);
        }
        ip(&["netns", "del", &self.agent_ns]);
    }
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn arp_sweep_finds_the_hosts_in_range_and_touches_nothing_else() {
    // .10 and .11 inside the configured /28 (.1 to .14); .100 on the same LAN but outside it.
    let Some(lan) = Lan::create("arp", &[10, 11, 100]) else {
        return;
    };
    let range = format!("{}.0/28", lan.subnet);
    let out = lan.sweep(&[&range, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = json_lines(&out);
    let got: Vec<(String, String)> = found
        .iter()
        .map(|d| {
            (
                d["ip"].as_str().unwrap().to_owned(),
                d["mac"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = lan.hosts[..2]
        .iter()
        .map(|(ns, address)| (address.clone(), lan.mac(ns)))
        .collect();
    assert_eq!(got, expected, "{found:?}");
    for d in &found {
        assert!(
            d["seen_at"]
                .as_str()
                .unwrap()
                .parse::<jiff::Timestamp>()
                .is_ok(),
            "{d}"
        );
        // Test-made veth MACs are locally administered: no vendor in the IEEE registry.
        assert_eq!(d["vendor"], Value::Null, "{d}");
    }

    // The hosts asked learned the agent's address from its request; the one outside the range
    // was never asked.
    let agent_ip = format!("{}.1", lan.subnet);
    let asked = ip_output(&["-n", &lan.hosts[0].0, "neigh", "show"]);
    assert!(asked.contains(&agent_ip), "{asked}");
    let outside = ip_output(&["-n", &lan.hosts[2].0, "neigh", "show"]);
    assert!(
        !outside.contains(&agent_ip),
        "the host outside the range heard from the agent: {outside}"
    );

    // The ICMP sweep of the same range finds the same hosts, and the agent's own address.
    let out = lan.sweep(&[&range, "--icmp", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alive: Vec<String> = json_lines(&out)
        .iter()
        .map(|d| d["ip"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        alive,
        [agent_ip, lan.hosts[0].1.clone(), lan.hosts[1].1.clone()]
    );
}

#[test]
fn sweeps_refuse_what_they_were_not_given() {
    let Some(lan) = Lan::create("refuse", &[]) else {
        return;
    };
    let check = |args: &[&str], says: &str| {
        let out = lan.sweep(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    };
    check(&["10.0.0.0/16"], "at most a /22");
    check(&["10.0.0.0/16", "--icmp"], "at most a /22");
    // A network the agent has no address in: ARP cannot reach it, so it is refused.
    check(
        &["192.0.2.0/24"],
        "no interface of this machine has an address in 192.0.2.0/24",
    );
}
