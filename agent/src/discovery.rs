//! Discovery of devices on the school LAN: an ARP sweep of one IPv4 network the district
//! configured (a `discovery` target), with the MAC's vendor from the IEEE registry when the
//! system has it (Debian's `ieee-data`: `/usr/share/ieee-data/oui.csv`). Also the ICMP sweep
//! that `khetnet-agent sweep --icmp` runs.
//!
//! Invariants:
//! - Only the addresses of the configured network are asked for; the agent never sweeps a
//!   network it was not given, and nothing larger than [`MAX_PREFIX`] (a /22, 1022 hosts).
//! - A sweep is bounded in time: two rounds of requests, each followed by a fixed wait.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The widest network a sweep accepts: a /22 (1024 addresses).
pub const MAX_PREFIX: u8 = 22;

/// Where Debian's `ieee-data` package keeps the IEEE MA-L (OUI) registry.
pub const OUI_CSV: &str = "/usr/share/ieee-data/oui.csv";

/// One device seen on the LAN, as the report carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Discovered {
    pub ip: String,
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    pub vendor: Option<String>,
    pub seen_at: String,
}

/// An IPv4 network `a.b.c.d/n` with n from [`MAX_PREFIX`] to 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Network, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected an IPv4 network like 192.168.1.0/24"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{s:?}: {ip:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to 32"))?;
        if prefix < MAX_PREFIX {
            return Err(format!(
                "{s:?}: at most a /{MAX_PREFIX} (1024 addresses) is swept; split larger networks"
            ));
        }
        let mask = u32::MAX << (32 - u32::from(prefix));
        if u32::from(ip) & !mask != 0 {
            return Err(format!(
                "{s:?}: host bits are set; the network is {}/{prefix}",
                Ipv4Addr::from(u32::from(ip) & mask)
            ));
        }
        Ok(Network { base: ip, prefix })
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl Network {
    /// The host addresses: without the network and broadcast addresses, except in a /31 or /32.
    pub fn hosts(&self) -> Vec<Ipv4Addr> {
        let first = u32::from(self.base);
        let size = 1u32 << (32 - u32::from(self.prefix));
        let range = if size > 2 {
            first + 1..first + size - 1
        } else {
            first..first + size
        };
        range.map(Ipv4Addr::from).collect()
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.base)
    }
}

/// The vendors of `macs` (by their 24-bit OUI) from an IEEE `oui.csv`
/// (`Registry,Assignment,Organization Name,Organization Address`).
pub fn vendors(registry: impl BufRead, macs: &[String]) -> HashMap<String, String> {
    let wanted: HashSet<String> = macs.iter().filter_map(|m| oui_of(m)).collect();
    let mut found = HashMap::new();
    for line in registry.lines().map_while(Result::ok) {
        if found.len() == wanted.len() {
            break;
        }
        let mut fields = line.splitn(3, ',');
        let (Some(_registry), Some(assignment), Some(rest)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let assignment = assignment.to_ascii_uppercase();
        if !wanted.contains(&assignment) {
            continue;
        }
        let name = match rest.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next().unwrap_or(""),
            None => rest.split(',').next().unwrap_or(""),
        };
        found.insert(assignment, name.trim().to_owned());
    }
    macs.iter()
        .filter_map(|m| Some((m.clone(), found.get(&oui_of(m)?)?.clone())))
        .collect()
}

fn oui_of(mac: &str) -> Option<String> {
    let hex: String = mac.chars().filter(char::is_ascii_hexdigit).collect();
    (hex.len() == 12).then(|| hex[..6].to_ascii_uppercase())
}

/// Vendors from the system's registry; none when `ieee-data` is not installed.
fn system_vendors(macs: &[String]) -> HashMap<String, String> {
    match std::fs::File::open(Path::new(OUI_CSV)) {
        Ok(file) => vendors(std::io::BufReader::new(file), macs),
        Err(_) => HashMap::new(),
    }
}

/// Sweeps `network` with ARP requests from the interface whose own address is in it, and
/// returns who answered. Blocking: run it on a blocking thread.
///
/// # Errors
/// No interface of this machine is on `network`; the raw socket cannot be opened (the agent
/// needs CAP_NET_RAW).
pub fn arp_sweep(network: Network, wait: Duration) -> Result<Vec<Discovered>, String> {
    use pnet_packet::MutablePacket;
    use pnet_packet::Packet;
    use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, ArpPacket, MutableArpPacket};
    use pnet_packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};

    let (interface, own_ip) = pnet_datalink::interfaces()
        .into_iter()
        .filter(|i| !i.is_loopback() && i.is_up() && i.mac.is_some())
        .find_map(|i| {
            let own = i.ips.iter().find_map(|n| match n.ip() {
                IpAddr::V4(ip) if n.prefix() <= network.prefix && n.contains(IpAddr::V4(network.base)) => {
                    Some(ip)
                }
                _ => None,
            })?;
            Some((i, own))
        })
        .ok_or_else(|| {
            format!("no interface of this machine has an address in {network}: the agent sweeps only a network it is on")
        })?;
    let own_mac = interface.mac.expect("filtered on a MAC");
    let config = pnet_datalink::Config {
        read_timeout: Some(Duration::from_millis(20)),
        promiscuous: false,
        ..Default::default()
    };
    let (mut tx, mut rx) = match pnet_datalink::channel(&interface, config) {
        Ok(pnet_datalink::Channel::Ethernet(tx, rx)) => (tx, rx),
        Ok(_) => return Err(format!("{}: not an Ethernet interface", interface.name)),
        Err(e) => {
            return Err(format!(
                "opening a raw socket on {}: {e} (the agent needs CAP_NET_RAW)",
                interface.name
            ));
        }
    };

    let mut found: BTreeMap<Ipv4Addr, (String, jiff::Timestamp)> = BTreeMap::new();
    let hosts: Vec<Ipv4Addr> = network
        .hosts()
        .into_iter()
        .filter(|ip| *ip != own_ip)
        .collect();
    for _round in 0..2 {
        for &target in hosts.iter().filter(|ip| !found.contains_key(ip)) {
            let mut frame = [0u8; 42];
            let mut ethernet = MutableEthernetPacket::new(&mut frame).expect("42 bytes");
            ethernet.set_destination(pnet_datalink::MacAddr::broadcast());
            ethernet.set_source(own_mac);
            ethernet.set_ethertype(EtherTypes::Arp);
            let mut arp = MutableArpPacket::new(ethernet.payload_mut()).expect("28 bytes");
            arp.set_hardware_type(ArpHardwareTypes::Ethernet);
            arp.set_protocol_type(EtherTypes::Ipv4);
            arp.set_hw_addr_len(6);
            arp.set_proto_addr_len(4);
            arp.set_operation(ArpOperations::Request);
            arp.set_sender_hw_addr(own_mac);
            arp.set_sender_proto_addr(own_ip);
            arp.set_target_hw_addr(pnet_datalink::MacAddr::zero());
            arp.set_target_proto_addr(target);
            if let Some(Err(e)) = tx.send_to(&frame, None) {
                return Err(format!("sending on {}: {e}", interface.name));
            }
        }
        let until = Instant::now() + wait;
        while Instant::now() < until {
            let Ok(bytes) = rx.next() else { continue };
            let Some(ethernet) = EthernetPacket::new(bytes) else {
                continue;
            };
            if ethernet.get_ethertype() != EtherTypes::Arp {
                continue;
            }
            let Some(arp) = ArpPacket::new(ethernet.payload()) else {
                continue;
            };
            let sender = arp.get_sender_proto_addr();
            if arp.get_operation() == ArpOperations::Reply
                && arp.get_target_proto_addr() == own_ip
                && network.contains(sender)
                && sender != own_ip
            {
                found.entry(sender).or_insert_with(|| {
                    (arp.get_sender_hw_addr().to_string(), jiff::Timestamp::now())
                });
            }
        }
        if found.len() == hosts.len() {
            break;
        }
    }
    let macs: Vec<String> = found.values().map(|(mac, _)| mac.clone()).collect();
    let vendors = system_vendors(&macs);
    Ok(found
        .into_iter()
        .map(|(ip, (mac, at))| Discovered {
            ip: ip.to_string(),
            vendor: vendors.get(&mac).cloned(),
            mac,
            seen_at: at.to_string(),
        })
        .collect())
}

/// Pings every host of `network` (up to three echoes each, `timeout` per echo, all hosts at
/// once) and returns those that answered with their round-trip time in milliseconds.
///
/// # Errors
/// No ICMP socket (the agent needs CAP_NET_RAW or `net.ipv4.ping_group_range`).
pub async fn icmp_sweep(
    network: Network,
    timeout: Duration,
) -> Result<Vec<(Ipv4Addr, f64)>, String> {
    let client = surge_ping::Client::new(&surge_ping::Config::default()).map_err(|e| {
        format!("cannot open an ICMP socket ({e}): run as root or give CAP_NET_RAW")
    })?;
    let mut tasks = tokio::task::JoinSet::new();
    for (n, ip) in network.hosts().into_iter().enumerate() {
        let client = client.clone();
        tasks.spawn(async move {
            let mut pinger = client
                .pinger(IpAddr::V4(ip), surge_ping::PingIdentifier(n as u16))
                .await;
            pinger.timeout(timeout);
            for seq in 0..3u16 {
                if let Ok((_, rtt)) = pinger.ping(surge_ping::PingSequence(seq), &[0u8; 56]).await {
                    return Some((ip, rtt.as_secs_f64() * 1000.0));
                }
            }
            None
        });
    }
    let mut alive: Vec<(Ipv4Addr, f64)> = tasks.join_all().await.into_iter().flatten().collect();
    alive.sort_by_key(|(ip, _)| *ip);
    Ok(alive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let check = |s: &str, expected: Result<(Ipv4Addr, u8, usize), &str>| {
            let got = s
                .parse::<Network>()
                .map(|n| (n.base, n.prefix, n.hosts().len()));
            match (got, expected) {
                (Ok(g), Ok(e)) => assert_eq!(g, e, "{s}"),
                (Err(g), Err(e)) => assert!(g.contains(e), "{s}: {g}"),
                (g, e) => panic!("{s}: got {g:?}, expected {e:?}"),
            }
        };
        check("192.168.1.0/24", Ok(([192, 168, 1, 0].into(), 24, 254)));
        check("10.0.0.0/22", Ok(([10, 0, 0, 0].into(), 22, 1022)));
        check("10.0.0.8/30", Ok(([10, 0, 0, 8].into(), 30, 2)));
        check("10.0.0.8/31", Ok(([10, 0, 0, 8].into(), 31, 2)));
        check("10.0.0.9/32", Ok(([10, 0, 0, 9].into(), 32, 1)));
        check("10.0.0.0/21", Err("at most a /22"));
        check("0.0.0.0/0", Err("at most a /22"));
        check("192.168.1.5/24", Err("the network is 192.168.1.0/24"));
        check("192.168.1.0", Err("expected an IPv4 network"));
        check("fe80::/64", Err("not an IPv4 address"));
        check("10.0.0.0/33", Err("0 to 32"));
    }

    #[test]
    fn membership() {
        let n: Network = "10.1.2.0/28".parse().unwrap();
        assert!(n.contains([10, 1, 2, 0].into()) && n.contains([10, 1, 2, 15].into()));
        assert!(!n.contains([10, 1, 2, 16].into()) && !n.contains([10, 1, 3, 1].into()));
    }

    #[test]
    fn vendor_lookup_from_an_ieee_registry() {
        // The layout of the IEEE's oui.csv, with invented assignments.
        let registry = "Registry,Assignment,Organization Name,Organization Address\n\
            MA-L,0A1B2C,Example Printers Ltd,1 Road Bangkok TH 10100\n\
            MA-L,0A1B2D,\"Quoted, Networks Co.\",2 Soi Chiang Mai TH 50000\n\
            MA-L,0A1B2E,Unused Corp,3 Lane\n";
        let macs = vec![
            "0a:1b:2c:00:00:01".to_owned(),
            "0A:1B:2D:FF:00:02".to_owned(),
            "02:00:00:00:00:03".to_owned(),
        ];
        let found = vendors(registry.as_bytes(), &macs);
        assert_eq!(
            found.get(&macs[0]).map(String::as_str),
            Some("Example Printers Ltd")
        );
        assert_eq!(
            found.get(&macs[1]).map(String::as_str),
            Some("Quoted, Networks Co.")
        );
        assert_eq!(found.get(&macs[2]), None);
        assert_eq!(found.len(), 2);
    }
}
