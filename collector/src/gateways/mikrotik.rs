//! MikroTik RouterOS: firewall rules with `log=yes` and hotspot login/logout.
//!
//! Firewall lines (RouterOS 6 and 7, documented under IP/Firewall/Filter "log"):
//!
//! ```text
//! forward: in:ether2 out:ether1, connection-state:new src-mac 00:0c:29:aa:bb:cc, proto TCP (SYN), 10.0.0.5:51234->1.2.3.4:443, NAT (10.0.0.5:51234->203.0.113.9:51234)->1.2.3.4:443, len 60
//! ```
//!
//! The `NAT` part, present when the connection is translated, is written
//! `NAT (SRC->NEWSRC)->DST` for src-nat and `NAT SRC->(DST->NEWDST)` for dst-nat. A line with a
//! NAT part becomes a [`Nat`] record (what attribution needs); one without becomes a [`Flow`] of
//! the one logged packet.
//!
//! Hotspot lines (topic `hotspot,account,info`): `student1 (10.5.50.9): logged in` and
//! `student1 (10.5.50.9): logged out: keepalive timeout`; on-login scripts often log
//! `hotspot user student1 logged in 10.5.50.9 AA:BB:CC:DD:EE:FF`. Both become [`Session`]
//! start and stop; a MAC anywhere in the line is taken as the calling station.

use std::net::IpAddr;

use khetnet_retention::record::{Body, Flow, Nat, Session, SessionStatus};

use super::{Line, Needle, Parsed, endpoint, protocol_number};
use crate::mac;

static PROTO: Needle = Needle::new("proto ");
static LOGGED_IN: Needle = Needle::new("): logged in");
static LOGGED_OUT: Needle = Needle::new("): logged out");
static HOTSPOT: Needle = Needle::new("hotspot");
static USER: Needle = Needle::new("user ");

/// Recognises a RouterOS firewall or hotspot line.
pub fn parse(line: &Line<'_>) -> Option<Parsed> {
    firewall(line).or_else(|| hotspot(line)).map(Parsed::new)
}

fn firewall(line: &Line<'_>) -> Option<Body> {
    let text = line.text;
    let proto_at = PROTO.find(text)?;
    let after_proto = &text[proto_at + "proto ".len()..];
    let name = after_proto
        .split([' ', ','])
        .next()
        .filter(|n| !n.is_empty())?;
    let protocol = protocol_number(name)?;
    let mut parts = after_proto.split(", ").skip(1);
    // The first part with an arrow (ICMP's "(type 8, code 0)" has none).
    let addresses = parts.find(|p| p.contains("->"))?;
    let (src, dst) = addresses.split_once("->")?;
    let (src_ip, src_port) = endpoint(src)?;
    let (dst_ip, dst_port) = endpoint(dst)?;
    let mut nat = None;
    let mut len = None;
    for part in parts {
        if let Some(n) = part.strip_prefix("NAT ") {
            nat = Some(translation(n, protocol)?);
        } else if let Some(l) = part.strip_prefix("len ") {
            len = l.trim().parse().ok();
        }
    }
    if let Some(nat) = nat {
        return Some(Body::Nat(nat));
    }
    Some(Body::Flow(Flow {
        protocol,
        src_ip,
        src_port,
        dst_ip,
        dst_port,
        bytes: len,
        packets: len.map(|_| 1),
        start: None,
        end: None,
        exporter: None,
        nat_src_ip: None,
        nat_src_port: None,
        action: None,
        user: None,
    }))
}

/// `(SRC->NEWSRC)->DST`, `SRC->(DST->NEWDST)` or `(SRC->NEWSRC)->(DST->NEWDST)`.
fn translation(text: &str, protocol: u8) -> Option<Nat> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('(') {
        // src-nat (possibly with dst-nat too): the inside host is the original source.
        let (pair, dst) = rest.split_once(")->")?;
        let (inside, outside) = pair.split_once("->")?;
        let (inside_ip, inside_port) = endpoint(inside)?;
        let (outside_ip, outside_port) = endpoint(outside)?;
        let dst = match dst.strip_prefix('(') {
            Some(both) => both.strip_suffix(')')?.split_once("->")?.1,
            None => dst,
        };
        let (dst_ip, dst_port) = endpoint(dst)?;
        return Some(Nat {
            protocol: Some(protocol),
            inside_ip,
            inside_port,
            outside_ip,
            outside_port,
            dst_ip: Some(dst_ip),
            dst_port,
        });
    }
    // dst-nat (port forwarding to a school server): the remote peer is the source.
    let (remote, pair) = text.split_once("->(")?;
    let (outside, inside) = pair.strip_suffix(')')?.split_once("->")?;
    let (remote_ip, remote_port) = endpoint(remote)?;
    let (outside_ip, outside_port) = endpoint(outside)?;
    let (inside_ip, inside_port) = endpoint(inside)?;
    Some(Nat {
        protocol: Some(protocol),
        inside_ip,
        inside_port,
        outside_ip,
        outside_port,
        dst_ip: Some(remote_ip),
        dst_port: remote_port,
    })
}

fn hotspot(line: &Line<'_>) -> Option<Body> {
    let text = line.text;
    let (user, ip, status, cause) = native_hotspot(text).or_else(|| scripted_hotspot(line))?;
    let mac = text
        .split([' ', ',', '(', ')', '='])
        .find_map(mac::normalise);
    Some(Body::Session(Session {
        status,
        user: user.to_owned(),
        session_id: None,
        ip: Some(ip),
        mac,
        nas: line.host.map(str::to_owned),
        input_octets: None,
        output_octets: None,
        duration_secs: None,
        terminate_cause: cause,
    }))
}

type Hotspot<'a> = (&'a str, IpAddr, SessionStatus, Option<String>);

/// `USER (IP): logged in` / `USER (IP): logged out: CAUSE`.
fn native_hotspot(text: &str) -> Option<Hotspot<'_>> {
    let (head, status, tail) = if let Some(i) = LOGGED_IN.find(text) {
        (&text[..i], SessionStatus::Start, "")
    } else if let Some(i) = LOGGED_OUT.find(text) {
        let tail = &text[i + "): logged out".len()..];
        (&text[..i], SessionStatus::Stop, tail)
    } else {
        return None;
    };
    let (before, ip) = head.rsplit_once(" (")?;
    let ip: IpAddr = ip.parse().ok()?;
    let user = before
        .rsplit(' ')
        .next()
        .filter(|u| !u.is_empty() && *u != "->:")?;
    let cause = tail.trim_start_matches(':').trim().to_owned();
    let cause = (status == SessionStatus::Stop && !cause.is_empty()).then_some(cause);
    Some((user, ip, status, cause))
}

/// `... user USER logged in ... IP ...` written by an on-login/on-logout script; only taken
/// when the line says `hotspot` somewhere, so other systems' "user X logged in" stay raw.
fn scripted_hotspot<'a>(line: &Line<'a>) -> Option<Hotspot<'a>> {
    let text = line.text;
    let says_hotspot = [Some(text), line.app, line.host]
        .into_iter()
        .flatten()
        .any(|s| HOTSPOT.find(s).is_some());
    if !says_hotspot {
        return None;
    }
    let at = USER.find(text)?;
    let rest = &text[at + "user ".len()..];
    let (user, rest) = rest.split_once(' ')?;
    let status = if rest.starts_with("logged in") {
        SessionStatus::Start
    } else if rest.starts_with("logged out") {
        SessionStatus::Stop
    } else {
        return None;
    };
    let ip = rest
        .split([' ', ',', '(', ')', '='])
        .find_map(|t| t.parse::<IpAddr>().ok())?;
    Some((user, ip, status, None))
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;

    fn check(text: &str, expected: &str) {
        assert_eq!(run(super::parse, None, text), expected, "text {text:?}");
    }

    #[test]
    fn mikrotik_firewall_fixtures() {
        check(
            "forward: in:ether2 out:ether1, connection-state:new src-mac 00:0c:29:aa:bb:cc, proto TCP (SYN), 10.0.0.5:51234->1.2.3.4:443, NAT (10.0.0.5:51234->203.0.113.9:51234)->1.2.3.4:443, len 60",
            "nat p=6 in=10.0.0.5:51234 out=203.0.113.9:51234 dst=1.2.3.4:443",
        );
        check(
            "forward: in:bridge out:ether1, src-mac 00:0c:29:aa:bb:cc, proto UDP, 10.0.0.7:5353->8.8.8.8:53, NAT (10.0.0.7:5353->203.0.113.9:40001)->8.8.8.8:53, len 72",
            "nat p=17 in=10.0.0.7:5353 out=203.0.113.9:40001 dst=8.8.8.8:53",
        );
        // dst-nat: a port forwarded to a school web server.
        check(
            "dstnat: in:ether1 out:(unknown 0), src-mac 4c:5e:0c:11:22:33, proto TCP (SYN), 198.51.100.20:40000->203.0.113.9:8080, NAT 198.51.100.20:40000->(203.0.113.9:8080->10.0.0.80:80), len 52",
            "nat p=6 in=10.0.0.80:80 out=203.0.113.9:8080 dst=198.51.100.20:40000",
        );
        // src-nat and dst-nat on the same connection.
        check(
            "forward: in:ether2 out:ether1, proto TCP (ACK), 10.0.0.5:51234->203.0.113.50:80, NAT (10.0.0.5:51234->203.0.113.9:51234)->(203.0.113.50:80->10.0.0.80:80), len 40",
            "nat p=6 in=10.0.0.5:51234 out=203.0.113.9:51234 dst=10.0.0.80:80",
        );
        // No NAT part: a flow of the logged packet; a log prefix before the chain is fine.
        check(
            "DROP-GAMES forward: in:ether2 out:ether1, src-mac 00:0c:29:aa:bb:cc, proto TCP (SYN), 10.0.0.5:51234->1.2.3.4:443, len 60",
            "flow p=6 10.0.0.5:51234>1.2.3.4:443 bytes=60 pkts=1 nat=- act=- start=- end=- exp=-",
        );
        // ICMP: no ports, and a comma inside the parentheses.
        check(
            "input: in:ether1 out:(unknown 0), src-mac 4c:5e:0c:11:22:33, proto ICMP (type 8, code 0), 198.51.100.20->203.0.113.9, len 84",
            "flow p=1 198.51.100.20>203.0.113.9 bytes=84 pkts=1 nat=- act=- start=- end=- exp=-",
        );
        check(
            "forward: in:ether2 out:ether1, proto 47, 10.0.0.5->1.2.3.4, len 100",
            "flow p=47 10.0.0.5>1.2.3.4 bytes=100 pkts=1 nat=- act=- start=- end=- exp=-",
        );
        // IPv6 with ports in brackets.
        check(
            "forward: in:ether2 out:ether1, proto TCP (SYN), [2001:db8::5]:51234->[2001:db8:1::1]:443, len 80",
            "flow p=6 [2001:db8::5]:51234>[2001:db8:1::1]:443 bytes=80 pkts=1 nat=- act=- start=- end=- exp=-",
        );
    }

    #[test]
    fn mikrotik_firewall_near_misses() {
        check(
            "forward: in:ether2 out:ether1, proto FOO, 10.0.0.5->1.2.3.4, len 100",
            "none",
        );
        check(
            "forward: in:ether2 out:ether1, proto TCP (SYN), 10.0.0.5:51234, len 60",
            "none",
        );
        check(
            "forward: in:ether2 out:ether1, proto TCP (SYN), 10.0.0.5:51234->1.2.3.4:443, NAT (garbage), len 60",
            "none",
        );
        check("proto TCP", "none");
    }

    #[test]
    fn mikrotik_hotspot_fixtures() {
        check(
            "student1 (10.5.50.9): logged in",
            "session start user=student1 ip=10.5.50.9 mac=- nas=gw id=- in=- out=- secs=- cause=-",
        );
        check(
            "->: student1 (10.5.50.9): logged out: keepalive timeout",
            "session stop user=student1 ip=10.5.50.9 mac=- nas=gw id=- in=- out=- secs=- cause=keepalive timeout",
        );
        check(
            "teacher.somchai (10.5.50.20): logged out",
            "session stop user=teacher.somchai ip=10.5.50.20 mac=- nas=gw id=- in=- out=- secs=- cause=-",
        );
        check(
            "hotspot user student2 logged in 10.5.50.11 AA:BB:CC:DD:EE:01",
            "session start user=student2 ip=10.5.50.11 mac=aa:bb:cc:dd:ee:01 nas=gw id=- in=- out=- secs=- cause=-",
        );
        check(
            "hotspot user student2 logged out ip=10.5.50.11 mac=AA-BB-CC-DD-EE-01",
            "session stop user=student2 ip=10.5.50.11 mac=aa:bb:cc:dd:ee:01 nas=gw id=- in=- out=- secs=- cause=-",
        );
        check("student1 (not-an-ip): logged in", "none");
        check("user student2 logged in 10.5.50.11", "none");
        check("hotspot user student2 logged in", "none");
    }
}
